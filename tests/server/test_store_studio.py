"""Store reads for the studio (SQLite and PostgreSQL): status history (schema v4, upgraded in place from v3),
experiment summaries, the runs-table query and metric info."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import numpy as np
import pytest

from runwire.server.errors import NotFound
from runwire.server.records import NewRun, RunTableQuery, RunUpdate
from runwire.server.store.base import Store
from runwire.server.store.sqlite import SCHEMA_VERSION, SqliteStore
from tests.server.big_series import store_scalars

V3_COMMIT = "88c6304"
"""A commit whose server/store/sqlite.py writes schema version 3."""


def _history(entries) -> list[str]:
    return [e.status for e in entries]


async def test_every_status_a_run_enters_is_recorded(store: Store):
    await store.create_run(NewRun("exp", "r1", "NotStarted"))
    await store.update_run(RunUpdate("r1", status="Running"))
    await store.update_run(RunUpdate("r1", status="Running"))  # no change: not recorded again
    await store.update_run(RunUpdate("r1", status="Completed"))
    hist = await store.status_history("r1")
    assert _history(hist) == ["NotStarted", "Running", "Completed"]
    assert [h.time for h in hist] == sorted(h.time for h in hist)
    assert hist[-1].time == (await store.get_run("r1")).end_time
    with pytest.raises(NotFound):
        await store.status_history("nope")


async def test_jobs_leases_and_cancel_are_recorded(store: Store):
    new = NewRun("exp", "job", "Queued", type="azureml.scriptrun", target="gpu")
    await store.submit_run(new, b"def")
    grant = await store.lease_next("gpu", "n1")
    await store.release_lease(grant.lease_id, "stopped answering")  # never ran: queued again
    grant = await store.lease_next("gpu", "n1")
    await store.cancel_run("job")  # leased: CancelRequested
    await store.release_lease(grant.lease_id, "stopped answering")  # canceled
    assert _history(await store.status_history("job")) == [
        "Queued",
        "Preparing",
        "Queued",
        "Preparing",
        "CancelRequested",
        "Canceled",
    ]
    await store.submit_run(NewRun("exp", "job2", "Queued", type="azureml.scriptrun", target="gpu"), b"def")
    grant = await store.lease_next("gpu", "n1")
    from tests.server.test_store_jobs import commit, status_batch

    await commit(store, status_batch("agent", 1, "job2", "Running", grant.lease_id))
    await store.release_lease(grant.lease_id, "stopped answering")
    assert _history(await store.status_history("job2")) == ["Queued", "Preparing", "Running", "Failed"]


async def test_schema_v3_database_is_upgraded_in_place(tmp_path: Path):
    old = subprocess.run(
        ["git", "show", f"{V3_COMMIT}:server/store/sqlite.py"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    if old.returncode != 0:
        pytest.skip("git history not available")
    schema = old.stdout.split('_SCHEMA = """', 1)[1].split('"""', 1)[0]
    path = tmp_path / "v3.sqlite3"
    con = sqlite3.connect(path)
    con.executescript(schema)
    con.execute("PRAGMA user_version = 3")
    con.execute("INSERT INTO experiments (id, name, created_time, next_number) VALUES ('e1', 'exp', 1.0, 3)")
    con.execute(
        "INSERT INTO runs (id, experiment_id, number, status, created_time, start_time, end_time) "
        "VALUES ('done', 'e1', 1, 'Completed', 1.0, 2.0, 5.0)"
    )
    con.execute(
        "INSERT INTO runs (id, experiment_id, number, status, created_time) VALUES ('new', 'e1', 2, 'Queued', 3.0)"
    )
    con.commit()
    assert "status_history" not in {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
    con.close()
    s = SqliteStore(path)
    await s.open()
    try:
        assert [(h.status, h.time) for h in await s.status_history("done")] == [("Completed", 5.0)]
        assert [(h.status, h.time) for h in await s.status_history("new")] == [("Queued", 3.0)]
        await s.update_run(RunUpdate("new", status="Running"))
        assert _history(await s.status_history("new")) == ["Queued", "Running"]
    finally:
        await s.close()
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 6
    con.close()
    s = SqliteStore(path)  # opening again does not add history twice
    await s.open()
    try:
        assert _history(await s.status_history("new")) == ["Queued", "Running"]
    finally:
        await s.close()


async def test_experiment_summaries(store: Store):
    await store.get_or_create_experiment("empty")
    await store.create_run(NewRun("exp", "a", "Running"))
    await store.create_run(NewRun("exp", "b", "Completed", parent_run_id="a"))
    found = {s.experiment.name: s for s in await store.experiment_summaries()}
    assert found["empty"].runs == 0 and found["empty"].last_activity is None and found["empty"].status_counts == {}
    assert found["exp"].runs == 2 and found["exp"].status_counts == {"Running": 1, "Completed": 1}
    b = await store.get_run("b")
    assert found["exp"].last_activity == b.end_time
    assert [s.experiment.name for s in await store.experiment_summaries("exp")] == ["exp"]
    assert await store.experiment_summaries("nope") == []


async def test_run_table_query(store: Store):
    for i in range(10):
        await store.create_run(
            NewRun("exp", f"r{i}", "Completed" if i % 2 else "Running", display_name=f"Run {i}", tags={"k": str(i % 3)})
        )
        await store_scalars(store, f"r{i}", "loss", np.array([10.0 - i, 5.0 + (i * 7) % 10]), producer=f"p{i}")
    page = await store.query_run_table(
        RunTableQuery(
            "exp",
            statuses=["Completed"],
            sort="metric",
            sort_metric="loss",
            sort_stat="last",
            limit=3,
            metrics=["loss"],
        )
    )
    assert page.total == 5
    lasts = [page.metrics[r.run_id]["loss"].last for r in page.runs]
    assert lasts == sorted(lasts, reverse=True) and len(lasts) == 3
    assert page.metric_names == ["loss"]
    assert all(page.metrics[r.run_id]["loss"].count == 2 for r in page.runs)
    asc = await store.query_run_table(
        RunTableQuery("exp", sort="metric", sort_metric="loss", sort_stat="min", descending=False)
    )
    mins = [min(10.0 - int(r.run_id[1:]), 5.0 + (int(r.run_id[1:]) * 7) % 10) for r in asc.runs]
    assert mins == sorted(mins)
    assert (await store.query_run_table(RunTableQuery("exp", tags={"k": "1"}))).total == 3
    assert (await store.query_run_table(RunTableQuery("exp", tags={"k": None}))).total == 10
    assert (await store.query_run_table(RunTableQuery("exp", text="run 7"))).total == 1
    numbers = [
        r.number
        for r in (
            await store.query_run_table(RunTableQuery("exp", sort="number", descending=False, offset=2, limit=3))
        ).runs
    ]
    assert numbers == [3, 4, 5]
    with pytest.raises(NotFound):
        await store.query_run_table(RunTableQuery("nope"))


async def test_metric_info(store: Store):
    await store.create_run(NewRun("exp", "m", "Running"))
    assert await store.list_metric_info("m") == []
    await store_scalars(store, "m", "acc", np.array([0.5, 0.75, np.nan]))
    (info,) = await store.list_metric_info("m")
    assert (info.name, info.count, info.last, info.min, info.max) == ("acc", 3, 0.75, 0.5, 0.75)
    with pytest.raises(NotFound):
        await store.list_metric_info("nope")
