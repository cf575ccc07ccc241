"""Exactly-once delivery through real processes: concurrency, crashes, restarts, fork, SDK spool."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from runwire import Experiment, Run
from tests.procs import run_script, wait_for

POINTS = 100_000

WRITER = textwrap.dedent(
    """
    import sys
    from runwire import Workspace, Experiment
    ws = Workspace.from_config()
    run = Experiment(ws, "concurrent").start_logging(run_id=sys.argv[1] if len(sys.argv) > 1 else None)
    n = {n}
    for i in range(n):
        run.log("v", i, step=i)
        if i % 1000 == 0:
            run.log("f", i / 7.0)
    run.log_list("list", list(range(1000)))
    run.complete()
    print(run.id)
    """
)


@pytest.mark.both_stores
def test_four_concurrent_runs_exactly_once_in_order(workspace, cluster):
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER.format(n=POINTS)],
            env={**os.environ, **cluster.env()},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    run_ids = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err + cluster.logs()
        run_ids.append(out.strip().splitlines()[-1])
    experiment = Experiment(workspace, "concurrent")
    for run_id in run_ids:
        run = Run(experiment, run_id)
        series = run.get_metric_series("v")
        np.testing.assert_array_equal(series.values, np.arange(POINTS))
        np.testing.assert_array_equal(series.steps, np.arange(POINTS))
        metrics = run.get_metrics()
        assert metrics["v"] == list(range(POINTS)) and all(type(x) is int for x in metrics["v"][:10])
        assert metrics["f"] == [i / 7.0 for i in range(0, POINTS, 1000)]
        assert metrics["list"] == list(range(1000))
        assert run.get_status() == "Completed"


SLOW_WRITER = textwrap.dedent(
    """
    import sys, time
    from runwire import Workspace, Experiment
    run = Experiment(Workspace.from_config(), "restarts").start_logging(run_id=sys.argv[1])
    for i in range({n}):
        run.log("v", i)
        if i % 500 == 0:
            time.sleep(0.01)  # a training step
    run.complete()
    """
)


def _committed(workspace, run_id: str) -> int:
    try:
        return len(Run(Experiment(workspace, "restarts"), run_id).get_metric_series("v"))
    except Exception:
        return 0


@pytest.mark.both_stores
def test_kill9_agent_then_collector_mid_stream(workspace, cluster):
    n = 150_000
    run_id = "restart-run"
    writer = subprocess.Popen(
        [sys.executable, "-c", SLOW_WRITER.format(n=n), run_id],
        env={**os.environ, **cluster.env()},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: _committed(workspace, run_id) > 10_000, 60, "the first points to be committed")
    cluster.agent.kill9()
    cluster.start_agent()
    before = _committed(workspace, run_id)
    wait_for(lambda: _committed(workspace, run_id) > before + 10_000, 60, "points after the agent restart")
    cluster.server.kill9()
    cluster.start_server()
    _, err = writer.communicate(timeout=300)
    assert writer.returncode == 0, err + cluster.logs()
    series = Run(Experiment(workspace, "restarts"), run_id).get_metric_series("v")
    np.testing.assert_array_equal(series.values, np.arange(n))


FORKER = textwrap.dedent(
    """
    import multiprocessing as mp
    from runwire import Workspace, Experiment
    run = Experiment(Workspace.from_config(), "fork").start_logging()
    run.log("parent", 1)
    def work(k):
        for i in range(1000):
            run.log(f"child{k}", i)
    if __name__ == "__main__":
        ctx = mp.get_context("fork")
        procs = [ctx.Process(target=work, args=(k,)) for k in range(3)]
        for p in procs: p.start()
        for p in procs: p.join()
        assert all(p.exitcode == 0 for p in procs)
        run.log("parent", 2)
        run.complete()
        print(run.id)
    """
)


def test_fork_children_get_their_own_connection(workspace, cluster):
    result = run_script(FORKER, cluster.env())
    assert result.returncode == 0, result.stderr + cluster.logs()
    run = Run(Experiment(workspace, "fork"), result.stdout.strip().splitlines()[-1])
    metrics = run.get_metrics()
    assert metrics["parent"] == [1, 2]
    for k in range(3):
        assert metrics[f"child{k}"] == list(range(1000))


SPOOLER = textwrap.dedent(
    """
    from runwire import Workspace, Experiment
    run = Experiment(Workspace.from_config(), "offline-agent").start_logging()
    for i in range(5000):
        run.log("v", i)
    run.complete()
    print(run.id)
    """
)


def test_unreachable_agent_spools_then_runwire_sync_delivers(workspace, cluster, tmp_path):
    env = {**cluster.env(), "RUNWIRE_AGENT_SOCKET": str(tmp_path / "no-agent.sock")}
    result = run_script(SPOOLER, env)
    assert result.returncode == 0, result.stderr
    assert "runwire sync" in result.stderr
    run_id = result.stdout.strip().splitlines()[-1]
    spool = cluster.root / "sdk-spool"
    assert list(spool.glob("*.spool"))
    run = Run(Experiment(workspace, "offline-agent"), run_id)
    assert run.get_metrics() == {}
    sync = subprocess.run(
        [sys.executable, "-m", "runwire.cli.main", "sync"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert sync.returncode == 0, sync.stderr
    assert "delivered" in sync.stdout
    assert run.get_metrics()["v"] == list(range(5000))
    assert not list(spool.glob("*.spool"))
    again = subprocess.run(
        [sys.executable, "-m", "runwire.cli.main", "sync"], env={**os.environ, **env}, capture_output=True, text=True
    )
    assert again.returncode == 0 and "nothing to deliver" in again.stdout


def test_agent_down_while_logging_then_back_delivers_without_sync(workspace, cluster):
    run = Experiment(workspace, "agent-outage").start_logging(snapshot_directory=None)
    run.log("v", -1)
    run.flush()
    cluster.agent.kill9()
    for i in range(20_000):
        run.log("v", i)
    wait_for(lambda: run._producer.stats()["spooled_batches"] > 0, 30, "the SDK to spool while the agent is away")
    cluster.start_agent()
    run.complete()
    assert run.get_metrics()["v"] == [-1, *range(20_000)]
    assert not list((cluster.root / "sdk-spool").glob("*.spool"))
