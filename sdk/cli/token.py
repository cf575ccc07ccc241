"""Create, list and revoke the collector's access tokens.

Works directly on the collector's store (its database under --data-dir), so it runs on the collector's
machine, with or without the collector running; a running collector sees new and revoked tokens within
AUTH_CACHE_TTL_S seconds. `create` prints the token once: only the token on the last line of stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from runwire._runtime import default_data_dir
from runwire.cli._common import fail, format_time, iso_time, print_table

if TYPE_CHECKING:
    from runwire.server.store.base import Store

T = TypeVar("T")

TOKEN_NAME_MAX_LENGTH = 200
"""Characters of a token's `--name` (a note saying who or what it is for)."""


def _scope(value: str) -> str:
    from runwire.server.auth.scopes import Scope

    try:
        return Scope.parse(value).label
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _experiment(value: str) -> str:
    from runwire.server.rules import check_experiment_name

    try:
        check_experiment_name(value)
    except Exception as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return value


def _name(value: str) -> str:
    if len(value) > TOKEN_NAME_MAX_LENGTH or not value.isprintable():
        raise argparse.ArgumentTypeError(
            f"a token name is at most {TOKEN_NAME_MAX_LENGTH} printable characters (TOKEN_NAME_MAX_LENGTH)"
        )
    return value


def _store_url(value: str) -> str:
    from runwire.server.store.factory import check_store_url

    try:
        return check_store_url(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    def data_dir(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--data-dir",
            type=Path,
            default=default_data_dir() / "collector",
            metavar="DIR",
            help="the collector's data folder, holding its database (default: %(default)s, as `runwire server`)",
        )
        p.add_argument(
            "--store",
            type=_store_url,
            default=None,
            metavar="URL",
            help="the collector's database when it is not SQLite in --data-dir (its `runwire server --store`, "
            "e.g. postgresql://USER@HOST/DB)",
        )

    sub = parser.add_subparsers(dest="token_command", metavar="create|list|revoke", required=True)
    create = sub.add_parser("create", help="create a token and print it once")
    create.add_argument(
        "--scope",
        type=_scope,
        required=True,
        metavar="read|write|admin",
        help="what the token may do; each scope includes the ones before it",
    )
    create.add_argument(
        "--experiment",
        type=_experiment,
        action="append",
        default=[],
        metavar="NAME",
        help="restrict the token to this experiment (repeatable; default: every experiment)",
    )
    create.add_argument("--name", type=_name, default="", metavar="TEXT", help="a note: who or what the token is for")
    data_dir(create)
    listing = sub.add_parser("list", help="list tokens (never their secrets)")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    data_dir(listing)
    revoke = sub.add_parser("revoke", help="revoke a token by its id")
    revoke.add_argument("token_id", metavar="ID", help="the token's id (the 12 hex characters after rwt_)")
    data_dir(revoke)


def _database(args: argparse.Namespace, must_exist: bool) -> Store | None:
    """The collector's store (`--store`, else SQLite in `--data-dir`); None when `must_exist` and the
    SQLite file is not there."""
    from runwire.server.store.factory import make_store
    from runwire.server.store.sqlite import SqliteStore

    store = make_store(args.store, args.data_dir.expanduser())
    if must_exist and isinstance(store, SqliteStore) and not store.path.is_file():
        return None
    return store


async def _with_store(store: Store, fn: Callable[[Store], Awaitable[T]]) -> T:
    await store.open()
    try:
        return await fn(store)
    finally:
        await store.close()


def run(args: argparse.Namespace) -> int:
    from runwire.server.errors import CollectorError

    try:
        if args.token_command == "create":
            return _create(args)
        db = _database(args, must_exist=True)
        if db is None:
            return fail("token", f"no collector database under {args.data_dir} (give the collector's --data-dir)")
        if args.token_command == "list":
            return _list(args, db)
        return _revoke(args, db)
    except CollectorError as e:
        return fail("token", str(e))


def _create(args: argparse.Namespace) -> int:
    from runwire.server.auth.tokens import hash_secret, new_token
    from runwire.server.records import TokenRecord

    db = _database(args, must_exist=False)
    assert db is not None
    text, parsed = new_token()
    record = TokenRecord(
        token_id=parsed.token_id,
        secret_sha256=hash_secret(parsed.secret),
        scope=args.scope,
        experiments=tuple(dict.fromkeys(args.experiment)),
        name=args.name,
        created_time=time.time(),
    )
    stored = asyncio.run(_with_store(db, lambda store: store.create_token(record)))
    restriction = ", ".join(stored.experiments) if stored.experiments else "every experiment"
    print(
        f"created token {stored.token_id} (scope {stored.scope}, {restriction}) in {db.describe()}\n"
        "It is shown only this once; give it to clients as RUNWIRE_TOKEN or `runwire agent --token-file`:",
        file=sys.stderr,
    )
    print(text, flush=True)
    return 0


def _list(args: argparse.Namespace, db: Store) -> int:
    tokens = asyncio.run(_with_store(db, lambda store: store.list_tokens()))
    if args.json:
        print(json.dumps([
            {"id": t.token_id, "name": t.name, "scope": t.scope, "experiments": list(t.experiments),
             "created_time": iso_time(t.created_time), "last_used_time": iso_time(t.last_used_time),
             "revoked_time": iso_time(t.revoked_time)}
            for t in tokens
        ], indent=2))  # fmt: skip
        return 0
    rows = [
        [t.token_id, t.scope, ",".join(t.experiments) or "*", "revoked" if t.revoked else "active",
         format_time(t.created_time), format_time(t.last_used_time), t.name]
        for t in tokens
    ]  # fmt: skip
    print_table(["ID", "SCOPE", "EXPERIMENTS", "STATE", "CREATED", "LAST USED", "NAME"], rows, empty="(no tokens)")
    return 0


def _revoke(args: argparse.Namespace, db: Store) -> int:
    token_id = args.token_id.strip()
    if token_id.startswith("rwt_"):  # a whole token was pasted: take its id, never echo the secret
        token_id = token_id[4:16]
    stored = asyncio.run(_with_store(db, lambda store: store.revoke_token(token_id)))
    print(f"revoked token {stored.token_id} ({stored.scope}{', ' + stored.name if stored.name else ''}) "
          f"at {format_time(stored.revoked_time)}")  # fmt: skip
    return 0
