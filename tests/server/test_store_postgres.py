"""What only the PostgreSQL store has to prove: several replicas (two stores, two pools, one database)
writing at once, schema migrations of an existing database, and its URL handling. The behaviour both
backends share is tested on both by the other store suites."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import psycopg
import pytest
from collector_helpers import batch, column_values, decode_blobs, points, request

from runwire import limits
from runwire.server.batches import decode_request
from runwire.server.errors import AlreadyExists, FailedPrecondition
from runwire.server.records import NewRun, RunUpdate
from runwire.server.store import postgres_schema
from runwire.server.store.factory import make_store
from runwire.server.store.postgres import PostgresStore, redact
from runwire.server.store.sqlite import SqliteStore
from tests import pgtest

ROUNDS = 40


@pytest.fixture
async def replicas(pg_database) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    """Two stores on one (emptied) database, as two collector replicas have."""
    pgtest.truncate(pg_database)
    a, b = PostgresStore(pg_database), PostgresStore(pg_database)
    await a.open()
    await b.open()
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def series_values(store: PostgresStore, run_id: str, name: str) -> list:
    async for snap in store.read_metrics(run_id, names=[name]):
        blobs = list(snap.blobs)
        missing = [i for i, blob in enumerate(blobs) if blob is None]
        fetched = await store.read_chunks(snap.series_id, [snap.chunks[i].chunk_no for i in missing])
        for i, blob in zip(missing, fetched, strict=True):
            blobs[i] = blob
        rows = [(c.first_row, c.row_count) for c in snap.chunks]
        assert [first for first, _ in rows] == [sum(n for _, n in rows[:i]) for i in range(len(rows))], rows
        return column_values(decode_blobs(blobs))
    return []


async def test_a_batch_racing_to_two_replicas_is_stored_once(replicas):
    a, b = replicas
    await a.create_run(NewRun("exp", "r", "Running"))
    # seqs out of order too, so that both the floor and the keys above it are raced for
    order = [1, 3, 2, 5, 4, *range(6, ROUNDS + 1)]
    for seq in order:
        unit_a = decode_request(request(seq, batch("prod", seq, points("r", "m", [float(seq)]))))
        unit_b = decode_request(request(seq, batch("prod", seq, points("r", "m", [float(seq)]))))
        (out_a,), (out_b,) = await asyncio.gather(a.commit([unit_a]), b.commit([unit_b]))
        assert sorted([out_a.batches_committed, out_b.batches_committed]) == [0, 1], seq
        assert out_a.duplicate_batches + out_b.duplicate_batches == 1
    assert await series_values(a, "r", "m") == [float(s) for s in order]
    assert pgtest.rows(a.url, "SELECT floor FROM producers WHERE producer_id = 'prod'") == [(ROUNDS,)]
    assert pgtest.rows(a.url, "SELECT count(*) FROM dedup") == [(0,)]


async def test_one_queued_job_raced_for_by_two_replicas_is_leased_once(replicas):
    a, b = replicas
    for i in range(ROUNDS):
        await a.submit_run(NewRun("exp", f"job{i}", "Queued", type="azureml.scriptrun", target="gpu"), b"def")
        grants = await asyncio.gather(a.lease_next("gpu", "node-a"), b.lease_next("gpu", "node-b"))
        won = [g for g in grants if g is not None]
        assert len(won) == 1, (i, grants)
        assert won[0].job.run_id == f"job{i}" and won[0].job.attempts == 1
        assert (await b.get_run(f"job{i}")).status == "Preparing"
    assert [h.status for h in await a.status_history("job0")] == ["Queued", "Preparing"]


async def test_appends_to_one_series_from_two_replicas_keep_every_point_once(replicas, monkeypatch):
    monkeypatch.setattr(limits, "STORE_CHUNK_ROWS", 8)  # the open tail is rewritten by both, and sealed
    a, b = replicas
    await a.create_run(NewRun("exp", "r", "Running"))
    n = 3

    async def replica(store: PostgresStore, producer: str, base: float) -> None:
        for seq in range(1, ROUNDS + 1):
            values = [base + seq + i / 10 for i in range(n)]
            await store.commit([decode_request(request(seq, batch(producer, seq, points("r", "m", values))))])

    await asyncio.gather(replica(a, "pa", 1000.0), replica(b, "pb", 2000.0))
    for store in (a, b):  # each replica reads the same series
        got = await series_values(store, "r", "m")
        assert len(got) == 2 * n * ROUNDS
        for base in (1000.0, 2000.0):
            mine = [v for v in got if base < v < base + 1000]
            assert mine == [base + seq + i / 10 for seq in range(1, ROUNDS + 1) for i in range(n)]
    # and a replica whose cached tail went stale appends after the other's rows, not over them
    await a.commit([decode_request(request(99, batch("pa", ROUNDS + 1, points("r", "m", [-1.0]))))])
    await b.commit([decode_request(request(99, batch("pb", ROUNDS + 1, points("r", "m", [-2.0]))))])
    await a.commit([decode_request(request(99, batch("pa", ROUNDS + 2, points("r", "m", [-3.0]))))])
    assert (await series_values(b, "r", "m"))[-3:] == [-1.0, -2.0, -3.0]


async def test_replicas_race_for_a_run_id_and_a_final_status(replicas):
    a, b = replicas
    results = await asyncio.gather(
        a.create_run(NewRun("exp", "same", "Running")), b.create_run(NewRun("exp", "same", "Running")),
        return_exceptions=True,
    )  # fmt: skip
    assert sorted(type(r).__name__ for r in results) == ["AlreadyExists", "RunRecord"]
    numbers = await asyncio.gather(*(s.create_run(NewRun("exp", f"n{i}", "Running")) for i, s in enumerate([a, b] * 5)))
    assert sorted(r.number for r in numbers) == list(range(2, 12))  # per-experiment numbers never repeat
    results = await asyncio.gather(
        a.update_run(RunUpdate("same", status="Completed")), b.update_run(RunUpdate("same", status="Failed")),
        return_exceptions=True,
    )  # fmt: skip
    assert sum(isinstance(r, FailedPrecondition) for r in results) == 1
    final = (await a.get_run("same")).status
    assert final in ("Completed", "Failed")
    assert [h.status for h in await b.status_history("same")] == ["Running", final]
    with pytest.raises(AlreadyExists):
        await b.create_run(NewRun("exp", "same", "Running"))


async def test_an_older_schema_is_upgraded_in_place(fresh_pg_database):
    async with await psycopg.AsyncConnection.connect(fresh_pg_database, autocommit=True) as conn:
        assert await postgres_schema.upgrade(conn, "test", target=1) == 0  # a v1 database, as v1 code left it
        assert await postgres_schema.version_of(conn) == 1
        await conn.execute("INSERT INTO experiments (id, name, created_time, next_number) VALUES ('e', 'exp', 1, 3)")
        await conn.execute(
            "INSERT INTO runs (id, experiment_id, number, status, created_time, start_time, end_time) VALUES "
            "('done', 'e', 1, 'Completed', 1.0, 2.0, 5.0), ('new', 'e', 2, 'Queued', 3.0, NULL, NULL)"
        )
    store = PostgresStore(fresh_pg_database)
    await store.open()
    try:
        assert [(h.status, h.time) for h in await store.status_history("done")] == [("Completed", 5.0)]
        assert [(h.status, h.time) for h in await store.status_history("new")] == [("Queued", 3.0)]
        await store.update_run(RunUpdate("new", status="Running"))
        assert (await store.create_run(NewRun("exp", "third", "Running"))).number == 3
        assert await store.list_tokens() == []  # v3
    finally:
        await store.close()
    assert pgtest.rows(fresh_pg_database, "SELECT version FROM schema_version") == [(postgres_schema.SCHEMA_VERSION,)]
    again = PostgresStore(fresh_pg_database)  # opening again changes nothing
    await again.open()
    try:
        assert [h.status for h in await again.status_history("new")] == ["Queued", "Running"]
    finally:
        await again.close()


async def test_replicas_starting_at_once_migrate_once(fresh_pg_database):
    stores = [PostgresStore(fresh_pg_database) for _ in range(4)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        await stores[0].create_run(NewRun("exp", "r", "Running"))
        assert (await stores[3].get_run("r")).number == 1
    finally:
        await asyncio.gather(*(s.close() for s in stores))
    assert pgtest.rows(fresh_pg_database, "SELECT count(*) FROM schema_version") == [(1,)]


async def test_a_newer_schema_is_refused(fresh_pg_database):
    store = PostgresStore(fresh_pg_database)
    await store.open()
    await store.close()
    with psycopg.connect(fresh_pg_database, autocommit=True) as conn:
        conn.execute("UPDATE schema_version SET version = version + 1")
    with pytest.raises(RuntimeError, match="newer than this collector"):
        await PostgresStore(fresh_pg_database).open()


async def test_an_unreachable_server_or_unknown_user_is_a_clear_error_at_once(pg_database):
    started = time.monotonic()
    store = PostgresStore("postgresql://nobody:hunter2@127.0.0.1:1/nowhere")
    with pytest.raises(OSError, match="cannot connect to PostgreSQL at postgresql://nobody@127.0.0.1:1/nowhere: ") as e:
        await store.open()
    assert "hunter2" not in str(e.value)
    unknown = pg_database.replace("postgres@", "nobody_here:hunter2@")
    with pytest.raises(OSError, match='role "nobody_here" does not exist') as e:
        await PostgresStore(unknown).open()
    assert "hunter2" not in str(e.value)
    assert time.monotonic() - started < 5  # told at once, not after PG_CONNECT_TIMEOUT_S of retries


def test_describe_never_shows_a_password():
    assert redact("postgresql://alice:s3cret@db.internal:6543/runs") == "postgresql://alice@db.internal:6543/runs"
    assert "s3cret" not in redact("host=db user=alice password=s3cret dbname=runs")
    assert PostgresStore("postgres://bob:pw@h/d").describe() == "postgresql://bob@h/d"


def test_store_urls(tmp_path):
    assert isinstance(make_store(None, tmp_path), SqliteStore)
    assert make_store(None, tmp_path).path == tmp_path / "runwire.sqlite3"
    assert make_store(f"sqlite://{tmp_path}/x.db", tmp_path).path == tmp_path / "x.db"
    assert str(make_store("sqlite:rel/x.db", tmp_path).path) == "rel/x.db"
    assert isinstance(make_store("postgresql://u@h/d", tmp_path), PostgresStore)
    for bad in ("mysql://u@h/d", "sqlite://host/x.db", "sqlite:", "/plain/path"):
        with pytest.raises(ValueError, match="postgresql://USER@HOST"):
            make_store(bad, tmp_path)


def test_token_cli_on_a_postgresql_store(fresh_pg_database):
    def token(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "runwire.cli.main", "token", *args, "--store", fresh_pg_database],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    created = token("create", "--scope", "write", "--name", "ci")
    assert created.returncode == 0, created.stderr
    text = created.stdout.strip().splitlines()[-1]
    token_id = text.split("_")[1]
    assert "postgresql://postgres@" in created.stderr and token_id in created.stderr
    listed = token("list")
    assert token_id in listed.stdout and "active" in listed.stdout
    assert token("revoke", token_id).returncode == 0
    assert "revoked" in token("list").stdout
    bad = subprocess.run(
        [sys.executable, "-m", "runwire.cli.main", "token", "list", "--store", "mysql://x"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2 and "postgresql://USER@HOST" in bad.stderr


def test_runwire_server_with_an_unreachable_store_exits_1_saying_why(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "runwire.server", "--store", "postgresql://nobody:hunter2@127.0.0.1:1/x",
         "--data-dir", str(tmp_path), "--grpc-listen", "127.0.0.1:0", "--http-listen", "off", "--auth", "off"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "cannot connect to PostgreSQL at postgresql://nobody@127.0.0.1:1/x" in done.stderr
    assert "hunter2" not in done.stderr + done.stdout


async def test_a_replica_stuck_inside_a_transaction_does_not_block_the_others(pg_database, monkeypatch):
    """A replica stopped mid-commit holds the producer's row lock; PostgreSQL ends its session after
    PG_IDLE_IN_TRANSACTION_TIMEOUT_S and the other replica's commit goes through."""
    from runwire.server import limits as server_limits

    monkeypatch.setattr(server_limits, "PG_IDLE_IN_TRANSACTION_TIMEOUT_S", 1)
    pgtest.truncate(pg_database)
    a, b = PostgresStore(pg_database), PostgresStore(pg_database)
    await a.open()
    await b.open()
    try:
        await a.create_run(NewRun("exp", "r", "Running"))
        await a.commit([decode_request(request(1, batch("prod", 1, points("r", "m", [1.0]))))])
        with pytest.raises(psycopg.Error, match="idle-in-transaction"):
            async with a._pool.connection() as stuck:
                await stuck.execute("BEGIN")
                await stuck.execute("SELECT floor FROM producers WHERE producer_id = 'prod' FOR UPDATE")
                # ... and A hangs here. B commits the next batch of the same producer:
                (out,) = await asyncio.wait_for(
                    b.commit([decode_request(request(2, batch("prod", 2, points("r", "m", [2.0]))))]), 30
                )
                assert out.batches_committed == 1
                await stuck.execute("SELECT 1")  # A wakes up: its session was ended
        assert await series_values(b, "r", "m") == [1.0, 2.0]
    finally:
        await a.close()
        await b.close()
