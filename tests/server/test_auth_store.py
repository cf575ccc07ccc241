"""Access tokens in the store and the token format: only the secret's sha256 is kept (the database file
never holds a secret), revocation, last use, and the in-place upgrade of a v4 database."""

from __future__ import annotations

import re
import sqlite3

import pytest

from runwire.server.auth.tokens import MalformedToken, hash_secret, new_token, parse_token, secret_matches
from runwire.server.errors import AlreadyExists, NotFound
from runwire.server.records import NewRun, TokenRecord
from runwire.server.store.sqlite import SCHEMA_VERSION, SqliteStore


def record(scope: str = "read", experiments: tuple[str, ...] = (), name: str = "") -> tuple[str, TokenRecord]:
    text, parsed = new_token()
    return text, TokenRecord(parsed.token_id, hash_secret(parsed.secret), scope, experiments, name)


def test_token_format_and_parsing():
    text, parsed = new_token()
    assert re.fullmatch(r"rwt_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", text)
    assert parse_token(text) == parsed and parse_token(f"  {text}\n") == parsed
    assert parsed.secret not in repr(parsed)
    assert new_token()[0] != text
    assert secret_matches(parsed.secret, hash_secret(parsed.secret))
    other = parsed.secret[:-1] + ("A" if parsed.secret[-1] != "A" else "B")
    assert not secret_matches(other, hash_secret(parsed.secret))


@pytest.mark.parametrize(
    "bad",
    ["", "rwt_", "Bearer", "rwt_ABCDEF012345_" + "a" * 43, "rwt_0123456789ab_" + "a" * 42,
     "rwt_0123456789ab_" + "a" * 44, "rwt_0123456789a_" + "a" * 43, "xyz_0123456789ab_" + "a" * 43,
     "rwt_0123456789ab_" + "a" * 42 + "=",
     "rwt_0123456789ab_" + "a" * 42 + "\u00e9"],
)  # fmt: skip
def test_malformed_tokens_are_refused_naming_the_format(bad):
    with pytest.raises(MalformedToken, match=r"rwt_<12 hex characters>_<43 characters of urlsafe base64>"):
        parse_token(bad)


async def test_create_list_get_revoke_touch(store):  # SQLite and PostgreSQL (the `store` fixture)
    _, a = record("admin", name="ops")
    _, b = record("read", ("exp-1", "exp-2"))
    stored = await store.create_token(a)
    assert stored.created_time > 0 and stored.last_used_time is None and not stored.revoked
    await store.create_token(b)
    with pytest.raises(AlreadyExists):
        await store.create_token(a)
    listed = await store.list_tokens()
    assert [t.token_id for t in listed] == [a.token_id, b.token_id]
    assert listed[1].experiments == ("exp-1", "exp-2") and listed[0].name == "ops"
    assert (await store.get_token(b.token_id)).secret_sha256 == b.secret_sha256
    assert await store.get_token("000000000000") is None
    await store.touch_token(a.token_id, 1234.5)
    await store.touch_token("000000000000", 1.0)  # unknown: ignored
    assert (await store.get_token(a.token_id)).last_used_time == 1234.5
    revoked = await store.revoke_token(b.token_id)
    assert revoked.revoked and revoked.revoked_time > 0
    again = await store.revoke_token(b.token_id)
    assert again.revoked_time == revoked.revoked_time  # the first revocation time is kept
    with pytest.raises(NotFound, match="no token with id"):
        await store.revoke_token("000000000000")


async def test_the_database_holds_no_secret(tmp_path):
    path = tmp_path / "s.sqlite3"
    store = SqliteStore(path)
    await store.open()
    texts = []
    try:
        for scope in ("read", "write", "admin"):
            text, rec = record(scope)
            texts.append((text, rec))
            await store.create_token(rec)
    finally:
        await store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("s.sqlite3"))
    for text, rec in texts:
        secret = parse_token(text).secret
        assert secret.encode() not in raw and text.encode() not in raw
        assert rec.secret_sha256.encode() in raw and rec.token_id.encode() in raw


async def test_a_v4_database_is_upgraded_in_place(tmp_path):
    path = tmp_path / "old.sqlite3"
    store = SqliteStore(path)
    await store.open()
    await store.create_run(NewRun(experiment_name="e", run_id="r1", status="Running"))
    await store.close()
    con = sqlite3.connect(path)  # make it what a v4 collector left: no tokens table, version 4
    con.execute("DROP TABLE tokens")
    con.execute("PRAGMA user_version = 4")
    con.commit()
    con.close()

    store = SqliteStore(path)
    await store.open()
    try:
        assert (await store.get_run("r1")).experiment_name == "e"
        assert await store.list_tokens() == []
        _, rec = record("write")
        await store.create_token(rec)
        assert (await store.get_token(rec.token_id)).scope == "write"
    finally:
        await store.close()
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 6
    con.close()
