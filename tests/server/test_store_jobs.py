"""The store's jobs, leases, nodes, log lines and reported status changes (issue 4), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import threading

import pytest
from collector_helpers import batch, request
from store_sql import rows

from runwire.server.batches import decode_request
from runwire.server.errors import InvalidArgument, NotFound
from runwire.server.records import JOB_DONE, JOB_LEASED, JOB_QUEUED, CommittedLog, NewRun, NodeRecord, RunRecord
from runwire.server.store.base import Store
from runwire.server.store.factory import make_store
from runwire.server.store.sqlite import SqliteStore
from runwire.v1 import metrics_pb2


def script_run(run_id: str, target: str = "gpu", experiment: str = "exp", parent: str | None = None) -> NewRun:
    return NewRun(
        experiment_name=experiment,
        run_id=run_id,
        status="Queued",
        type="azureml.scriptrun",
        target=target,
        parent_run_id=parent,
    )


def log_batch(producer: str, seq: int, run_id: str, first: int, lines: list[str], path: str = "std.txt"):
    b = metrics_pb2.Batch(producer_id=producer, seq=seq)
    b.logs.append(metrics_pb2.LogLines(run_id=run_id, path=path, first_line=first, lines=lines))
    return b


def status_batch(producer: str, seq: int, run_id: str, status: str, lease_id: str = "", **kwargs):
    b = metrics_pb2.Batch(producer_id=producer, seq=seq)
    b.statuses.append(metrics_pb2.StatusChange(run_id=run_id, status=status, lease_id=lease_id, **kwargs))
    return b


async def commit(store: Store, *batches: metrics_pb2.Batch):
    (out,) = await store.commit([decode_request(request(1, *batches))])
    return out


async def test_submit_lease_in_order_and_run_preparing(store):
    for i in range(3):
        run = await store.submit_run(script_run(f"r{i}"), b"def")
        assert (run.status, run.type, run.target) == ("Queued", "azureml.scriptrun", "gpu")
    job = await store.get_job("r0")
    assert (job.state, job.target, job.definition, job.attempts) == (JOB_QUEUED, "gpu", b"def", 0)
    assert await store.lease_next("cpu", "n1") is None
    grant = await store.lease_next("gpu", "n1")
    assert grant is not None and grant.job.run_id == "r0" and grant.run.status == "Preparing"
    assert (grant.job.state, grant.job.node_id, grant.job.lease_id, grant.job.attempts) == (
        JOB_LEASED,
        "n1",
        grant.lease_id,
        1,
    )
    assert [(await store.lease_next("gpu", "n2")).job.run_id for _ in range(2)] == ["r1", "r2"]
    assert await store.lease_next("gpu", "n2") is None
    with pytest.raises(NotFound):
        await store.get_job("nope")


async def test_concurrent_lease_next_never_leases_a_job_twice(store, store_url, tmp_path):
    n_jobs = 60
    for i in range(n_jobs):
        await store.submit_run(script_run(f"r{i}"), b"")
    # a second store on the same database plays a second collector process
    other = make_store(store_url, tmp_path)
    await other.open()
    try:
        grants = await asyncio.gather(
            *(s.lease_next("gpu", f"n{i}") for i in range(n_jobs + 20) for s in ((store, other)[i % 2],))
        )
    finally:
        await other.close()
    leased = [g.job.run_id for g in grants if g is not None]
    assert sorted(leased) == sorted(f"r{i}" for i in range(n_jobs))
    assert len({g.lease_id for g in grants if g is not None}) == n_jobs

    # and from plain threads, each with its own store (own writer connection)
    for i in range(n_jobs):
        await store.submit_run(script_run(f"t{i}", target="t"), b"")
    results: list[str] = []
    lock = threading.Lock()

    def worker(k: int) -> None:
        async def go() -> None:
            s = make_store(store_url, tmp_path)
            await s.open()
            try:
                while (g := await s.lease_next("t", f"w{k}")) is not None:
                    with lock:
                        results.append(g.job.run_id)
            finally:
                await s.close()

        asyncio.run(go())

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(results) == sorted(f"t{i}" for i in range(n_jobs))


async def test_release_lease_requeues_a_preparing_job_and_fails_a_running_one(store):
    await store.upsert_node(NodeRecord("n1", "gpu", 2, hostname="host-ab12", connected=True))
    await store.submit_run(script_run("a"), b"")
    await store.submit_run(script_run("b"), b"")
    ga = await store.lease_next("gpu", "n1")
    gb = await store.lease_next("gpu", "n1")
    out = await commit(store, status_batch("agent", 1, "b", "Running", gb.lease_id))
    assert [r.status for r in out.events if isinstance(r, RunRecord)] == ["Running"]
    assert {j.run_id for j in await store.jobs_of_node("n1")} == {"a", "b"}

    back = await store.release_lease(ga.lease_id, "stopped answering")
    assert back.requeued and back.run.status == "Queued" and back.job.state == JOB_QUEUED
    failed = await store.release_lease(gb.lease_id, "stopped answering while running this job")
    assert not failed.requeued and failed.run.status == "Failed" and failed.job.state == JOB_DONE
    assert failed.run.error.code == "NodeLost"
    assert "host-ab12" in failed.run.error.message and "stopped answering" in failed.run.error.message
    assert failed.run.end_time is not None
    assert await store.release_lease(gb.lease_id, "again") is None  # not current any more

    again = await store.lease_next("gpu", "n2")  # the requeued job is leased again, with a new lease
    assert again.job.run_id == "a" and again.job.attempts == 2 and again.lease_id != ga.lease_id
    # the old lease's reports are stale now
    out = await commit(store, status_batch("agent", 2, "a", "Running", ga.lease_id))
    assert out.events == [] and (await store.get_run("a")).status == "Preparing"


async def test_status_changes_follow_the_rules(store):
    await store.submit_run(script_run("j"), b"")
    grant = await store.lease_next("gpu", "n1")
    out = await commit(store, status_batch("p", 1, "j", "Running", grant.lease_id))
    run = await store.get_run("j")
    assert run.status == "Running" and run.start_time is not None
    out = await commit(
        store,
        status_batch(
            "p", 2, "j", "Failed", grant.lease_id, error_code="UserError", error_message="User program failed with X"
        ),
    )
    assert [e.lease_id for e in out.ended_leases] == [grant.lease_id]
    run = await store.get_run("j")
    assert (run.status, run.error.code, run.error.message) == ("Failed", "UserError", "User program failed with X")
    assert (await store.get_job("j")).state == JOB_DONE
    # terminal statuses are never left; only_if_active is ignored on a finished run
    out = await commit(store, status_batch("p", 3, "j", "Completed", grant.lease_id))
    out2 = await commit(store, status_batch("p", 4, "j", "Failed", only_if_active=True, error_message="died"))
    assert out.events == [] and out2.events == []
    assert (await store.get_run("j")).error.message == "User program failed with X"

    # only_if_active on an active (interactive) run applies
    await store.create_run(NewRun(experiment_name="exp", run_id="i", status="Running"))
    out = await commit(
        store, status_batch("p", 5, "i", "Failed", only_if_active=True, error_message="killed by SIGKILL")
    )
    assert [(r.run_id, r.status) for r in out.events] == [("i", "Failed")]
    # unknown status: dropped with a warning, the batch goes on
    out = await commit(store, status_batch("p", 6, "i", "Exploded"))
    assert out.batches_committed == 1 and "unknown status" in out.warnings[0]


async def test_cancel_semantics(store):
    await store.submit_run(script_run("q"), b"")
    await store.submit_run(script_run("l"), b"")
    run, job, changed = await store.cancel_run("q")
    assert (run.status, job.state, changed) == ("Canceled", JOB_DONE, True)
    grant = await store.lease_next("gpu", "n1")
    assert grant.job.run_id == "l"  # the canceled one is never leased
    run, job, changed = await store.cancel_run("l")
    assert (run.status, job.state, job.cancel_requested, job.lease_id, changed) == (
        "CancelRequested",
        JOB_LEASED,
        True,
        grant.lease_id,
        True,
    )
    # a cancel in progress is only left for a final status
    await commit(store, status_batch("p", 1, "l", "Running", grant.lease_id))
    assert (await store.get_run("l")).status == "CancelRequested"
    out = await commit(store, status_batch("p", 2, "l", "Canceled", grant.lease_id))
    assert (await store.get_run("l")).status == "Canceled" and len(out.ended_leases) == 1
    run, _, changed = await store.cancel_run("l")  # finished: unchanged, no error
    assert run.status == "Canceled" and not changed

    await store.create_run(NewRun(experiment_name="exp", run_id="plain", status="Running"))
    run, job, changed = await store.cancel_run("plain")
    assert (run.status, job, changed) == ("Canceled", None, True)
    with pytest.raises(NotFound):
        await store.cancel_run("missing")

    # a canceled leased job whose node is lost ends Canceled
    await store.submit_run(script_run("c"), b"")
    g = await store.lease_next("gpu", "n1")
    await store.cancel_run("c")
    released = await store.release_lease(g.lease_id, "stopped answering")
    assert released.run.status == "Canceled"


async def test_logs_append_skip_overlaps_and_read_back(store):
    await store.create_run(NewRun(experiment_name="exp", run_id="r", status="Running"))
    out = await commit(store, log_batch("p", 1, "r", 0, ["a", "b", "c"]))
    assert out.events == [CommittedLog("r", "std.txt", 0, ["a", "b", "c"])]
    # a resent batch stores nothing; an overlapping item only its new lines
    out = await commit(store, log_batch("p", 1, "r", 0, ["a", "b", "c"]))
    assert out.duplicate_batches == 1 and out.events == []
    out = await commit(store, log_batch("p", 2, "r", 1, ["b", "c", "d"]), log_batch("p", 3, "r", 4, ["e"]))
    assert out.events == [CommittedLog("r", "std.txt", 3, ["d"]), CommittedLog("r", "std.txt", 4, ["e"])]
    await commit(store, log_batch("p", 4, "r", 0, ["other"], path="second.txt"))
    got = await store.read_log("r")
    assert (got.path, got.lines, got.total_lines, got.first_line) == ("std.txt", ["a", "b", "c", "d", "e"], 5, 0)
    got = await store.read_log("r", "std.txt", 2, 2)
    assert got.lines == ["c", "d"]
    assert (await store.read_log("r", "second.txt")).lines == ["other"]
    assert (await store.read_log("r", "none.txt")).total_lines == 0
    assert (await store.get_run("r")).log_files == ["std.txt", "second.txt"]
    with pytest.raises(NotFound):
        await store.read_log("missing")
    # a too long line drops its item (not the batch), with a warning
    from runwire import limits

    out = await commit(
        store, log_batch("p", 5, "r", 5, ["x" * (limits.MAX_LOG_LINE_LENGTH + 1)]), log_batch("p", 6, "r", 5, ["f"])
    )
    assert out.batches_committed == 2 and "MAX_LOG_LINE_LENGTH" in out.warnings[0]
    assert (await store.read_log("r", from_line=5)).lines == ["f"]


async def test_nodes_targets_and_active_runs(store):
    await store.upsert_node(NodeRecord("n1", "gpu", 2, hostname="h1", pid=10, connected=True))
    await store.upsert_node(NodeRecord("n2", "cpu", 1, hostname="h2", connected=True))
    await store.submit_run(script_run("a"), b"")
    await store.submit_run(script_run("b"), b"")
    await store.submit_run(script_run("z", target="nowhere"), b"")
    grant = await store.lease_next("gpu", "n1")
    await commit(store, status_batch("p", 1, "a", "Running", grant.lease_id))
    await store.create_run(NewRun(experiment_name="exp", run_id="a.child", status="Running", parent_run_id="a"))
    await store.create_run(NewRun(experiment_name="exp", run_id="other", status="Running"))
    await store.set_node_connected("n2", False)

    targets = {t.name: t for t in await store.list_compute_targets()}
    assert set(targets) == {"gpu", "cpu", "nowhere"}
    gpu = targets["gpu"]
    assert (gpu.queued, gpu.active) == (1, 1)
    (n1,) = gpu.nodes
    assert (n1.slots, n1.busy, n1.run_ids, n1.connected, n1.hostname) == (2, 1, ["a"], True, "h1")
    assert targets["cpu"].nodes[0].connected is False
    assert [t.name for t in await store.list_compute_targets("cpu")] == ["cpu"]

    active = await store.list_active_runs("gpu")
    assert [(a.run.run_id, a.node_id) for a in active] == [("a.child", ""), ("b", ""), ("a", "n1")]
    assert [a.run.run_id for a in await store.list_active_runs("gpu", ["Queued"])] == ["b"]
    assert [a.run.run_id for a in await store.list_active_runs("gpu", ["Running"])] == ["a.child", "a"]
    with pytest.raises(InvalidArgument, match="Running' or 'Queued"):
        await store.list_active_runs("gpu", ["Completed"])

    expired = await store.expired_leases(seen_before=1e12)
    assert [j.lease_id for j in expired] == [grant.lease_id]
    assert await store.expired_leases(seen_before=0) == []


V2_TABLES = (
    "experiments",
    "runs",
    "tags",
    "properties",
    "series",
    "chunks",
    "dedup",
    "producers",
    "artifacts",
    "snapshots",
)


async def test_schema_v2_database_is_upgraded_in_place(tmp_path):
    """A database written by the v2 code (taken from git history) opens with the v3 code, keeps its
    runs, and gains jobs, nodes and logs."""
    path = tmp_path / "v2.sqlite3"
    v2 = subprocess.run(
        ["git", "show", "bf44261:server/store/sqlite.py"], capture_output=True, text=True, cwd=_repo_root()
    )
    if v2.returncode != 0:
        pytest.skip("git history not available")
    schema = v2.stdout.split('_SCHEMA = """', 1)[1].split('"""', 1)[0]
    con = sqlite3.connect(path)
    con.executescript(schema)
    con.execute("PRAGMA user_version = 2")
    con.execute("INSERT INTO experiments (id, name, created_time) VALUES ('e1', 'exp', 1.0)")
    con.execute(
        "INSERT INTO runs (id, experiment_id, number, status, created_time) VALUES ('old', 'e1', 1, 'Completed', 1.0)"
    )
    con.execute("UPDATE experiments SET next_number = 2")
    con.commit()
    assert {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")} == set(V2_TABLES)
    con.close()

    s = SqliteStore(path)
    await s.open()
    try:
        old = await s.get_run("old")
        assert old.status == "Completed" and old.log_files == []
        run = await s.submit_run(script_run("new"), b"def")
        assert run.number == 2
        grant = await s.lease_next("gpu", "n1")
        assert grant.job.run_id == "new"
        await commit(s, log_batch("p", 1, "new", 0, ["hello"]))
        assert (await s.read_log("new")).lines == ["hello"]
    finally:
        await s.close()
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == 6  # and on to the current version (6: request ids)
    con.close()


def _repo_root():
    from pathlib import Path

    return Path(__file__).resolve().parents[2]


async def test_node_lost_unused_commit_helper_keeps_batch_api(store):
    """A batch mixing metrics, logs and statuses is stored together (one transaction)."""
    from collector_helpers import points

    await store.submit_run(script_run("m"), b"")
    g = await store.lease_next("gpu", "n")
    b = batch("p", 1, points("m", "loss", [1.0]))
    b.logs.append(metrics_pb2.LogLines(run_id="m", path="std.txt", first_line=0, lines=["x"]))
    b.statuses.append(metrics_pb2.StatusChange(run_id="m", status="Running", lease_id=g.lease_id))
    out = await commit(store, b)
    assert out.points_committed == 1 and len(out.events) == 2
    assert (await store.get_run("m")).status == "Running"


async def test_log_lines_trickling_in_are_merged_into_few_chunks(store):
    await store.create_run(NewRun(experiment_name="exp", run_id="r", status="Running"))
    expected = [f"line {i}" for i in range(2500)]
    seq = 0
    for i in range(0, 2300, 1):
        seq += 1
        await commit(store, log_batch("p", seq, "r", i, expected[i : i + 1]))
    await store.close()
    await store.open()  # a fresh writer: no cached tail, the next lines start a new chunk
    for i in range(2300, 2500, 50):
        seq += 1
        await commit(store, log_batch("p", seq, "r", i, expected[i : i + 50]))
    assert (await store.read_log("r")).lines == expected
    assert (await store.read_log("r", from_line=995, max_lines=10)).lines == expected[995:1005]
    stored = rows(store, "SELECT first_line, line_count FROM logs ORDER BY first_line")
    if isinstance(store, SqliteStore):  # its writer merges only into a chunk it wrote itself
        assert stored == [(0, 1000), (1000, 1000), (2000, 300), (2300, 200)]
    else:  # PostgreSQL reads the last chunk back (another replica may have written it)
        assert stored == [(0, 1000), (1000, 1000), (2000, 500)]
