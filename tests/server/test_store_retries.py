"""A retried write whose earlier attempt committed (its answer lost) succeeds with the same result,
on both stores: run creation and submission by request id, and the calls that are idempotent by
their rules (a status the run already has, the same tags, the same properties, a cancel)."""

from __future__ import annotations

import asyncio
import sqlite3

import psycopg
import pytest

from runwire.server.errors import AlreadyExists, FailedPrecondition
from runwire.server.records import NewRun, RunErrorRecord, RunUpdate
from runwire.server.store import postgres_schema
from runwire.server.store.postgres import PostgresStore
from runwire.server.store.sqlite import SCHEMA_VERSION, SqliteStore
from tests import pgtest


def new(run_id: str, request_id: str = "", **kwargs) -> NewRun:
    kwargs.setdefault("status", "Running")
    return NewRun(experiment_name="exp", run_id=run_id, request_id=request_id, **kwargs)


def script(run_id: str, request_id: str) -> NewRun:
    return NewRun("exp", run_id, "Queued", type="azureml.scriptrun", target="gpu", request_id=request_id)


async def test_a_replayed_create_run_returns_the_same_run(store):
    first = await store.create_run(new("r", "req-1", tags={"a": "1"}, properties={"p": "x"}))
    again = await store.create_run(new("r", "req-1", tags={"a": "1"}, properties={"p": "x"}))
    assert again == first
    assert [h.status for h in await store.status_history("r")] == ["Running"]  # nothing written twice
    assert (await store.create_run(new("next", "req-2"))).number == first.number + 1  # no number used


async def test_another_request_id_or_none_is_still_already_exists(store):
    await store.create_run(new("r", "req-1"))
    with pytest.raises(AlreadyExists, match="run r already exists"):
        await store.create_run(new("r", "req-2"))
    with pytest.raises(AlreadyExists, match="run r already exists"):
        await store.create_run(new("r"))
    await store.create_run(new("anon"))  # created without a request id: no retry can match it
    with pytest.raises(AlreadyExists, match="run anon already exists"):
        await store.create_run(new("anon"))


async def test_a_replay_after_the_run_moved_on_returns_it_as_it_is_now(store):
    await store.create_run(new("r", "req-1"))
    await store.update_run(RunUpdate("r", status="Completed"))
    again = await store.create_run(new("r", "req-1"))
    assert again.status == "Completed"


async def test_concurrent_tries_of_one_create_make_one_run(store):
    results = await asyncio.gather(*(store.create_run(new("r", "req-1")) for _ in range(4)))
    assert len({(r.run_id, r.number) for r in results}) == 1
    assert [h.status for h in await store.status_history("r")] == ["Running"]


async def test_a_replayed_submit_run_returns_the_run_with_its_one_job(store):
    first = await store.submit_run(script("s", "sub-1"), b"def")
    again = await store.submit_run(script("s", "sub-1"), b"def")
    assert (again.run_id, again.number, again.status) == (first.run_id, first.number, "Queued")
    grant = await store.lease_next("gpu", "n1")
    assert grant is not None and grant.job.run_id == "s"
    assert await store.lease_next("gpu", "n1") is None  # one job, leased once
    with pytest.raises(AlreadyExists, match="run s already exists"):
        await store.submit_run(script("s", "sub-2"), b"def")


async def test_retried_updates_tags_properties_and_cancel_succeed(store):
    await store.create_run(new("r", "req-1"))
    error = RunErrorRecord("UserError", "boom")
    done = await store.update_run(RunUpdate("r", status="Failed", error=error, warnings=["w"]))
    again = await store.update_run(RunUpdate("r", status="Failed", error=error, warnings=["w"]))
    assert (again.status, again.end_time, again.error, again.warnings) == (
        "Failed",
        done.end_time,
        done.error,
        ["w"],
    )
    assert [h.status for h in await store.status_history("r")] == ["Running", "Failed"]
    with pytest.raises(FailedPrecondition, match="already Failed"):
        await store.update_run(RunUpdate("r", status="Completed"))  # another outcome is still refused

    await store.create_run(new("t", "req-2"))
    for _ in range(2):
        run = await store.set_tags("t", {"a": "1", "b": None}, ["c"])
        assert run.tags == {"a": "1", "b": None}
        run = await store.add_properties("t", {"p": "x"})
        assert run.properties == {"p": "x"}

    await store.submit_run(script("q", "sub-1"), b"")
    first, _, changed = await store.cancel_run("q")
    assert (first.status, changed) == ("Canceled", True)
    again, _, changed = await store.cancel_run("q")
    assert (again.status, again.end_time, changed) == ("Canceled", first.end_time, False)


async def test_a_v5_sqlite_database_gains_request_ids_in_place(tmp_path):
    path = tmp_path / "store.sqlite3"
    store = SqliteStore(path)
    await store.open()
    await store.create_run(new("old", "ignored"))
    await store.close()
    con = sqlite3.connect(path)  # make it what a v5 collector left: no request_id column, version 5
    con.execute("ALTER TABLE runs DROP COLUMN request_id")
    con.execute("PRAGMA user_version = 5")
    con.commit()
    con.close()

    for opening in range(2):  # the second opening finds nothing left to do
        store = SqliteStore(path)
        await store.open()
        try:
            with pytest.raises(AlreadyExists, match="run old already exists"):
                await store.create_run(new("old", "ignored"))  # an old run is no retry's
            if opening == 0:
                await store.create_run(new("new", "req-1"))
            assert (await store.create_run(new("new", "req-1"))).number == 2  # a replay, in both
        finally:
            await store.close()
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 6
    assert con.execute("SELECT id, request_id FROM runs ORDER BY number").fetchall() == [
        ("old", ""),
        ("new", "req-1"),
    ]
    con.close()


async def test_a_v3_postgresql_database_gains_request_ids(fresh_pg_database):
    async with await psycopg.AsyncConnection.connect(fresh_pg_database, autocommit=True) as conn:
        assert await postgres_schema.upgrade(conn, "test", target=3) == 0  # as a v3 collector left it
        await conn.execute("INSERT INTO experiments (id, name, created_time, next_number) VALUES ('e', 'exp', 1, 2)")
        await conn.execute(
            "INSERT INTO runs (id, experiment_id, number, status, created_time) VALUES ('old', 'e', 1, 'Running', 1.0)"
        )
    store = PostgresStore(fresh_pg_database)
    await store.open()
    try:
        with pytest.raises(AlreadyExists, match="run old already exists"):
            await store.create_run(new("old", "req-0"))
        first = await store.create_run(new("new", "req-1"))
        assert first.number == 2 and (await store.create_run(new("new", "req-1"))) == first
    finally:
        await store.close()
    assert postgres_schema.SCHEMA_VERSION == 4
    assert pgtest.rows(fresh_pg_database, "SELECT version FROM schema_version") == [(4,)]
    rows = pgtest.rows(fresh_pg_database, "SELECT id, request_id FROM runs ORDER BY number")
    assert rows == [("old", ""), ("new", "req-1")]
