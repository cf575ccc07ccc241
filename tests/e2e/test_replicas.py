"""Two collector processes sharing one PostgreSQL store, one artifact folder and one NATS JetStream
stream (issue 8): a live subscriber on collector A follows a training script that writes through an
agent connected to collector B, every point once and in order, with the history/live seam exact
when it subscribes mid-run; a job submitted on A runs on a node connected to B, and a cancel issued
on A stops it there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from tests import pgtest
from tests.e2e.test_live import collect
from tests.e2e.test_script_runs import HOLD, TRAIN, config, source, wait_log, wait_status
from tests.natsd import NATS_URL, delete_stream_sync, fresh_stream, skip_reason
from tests.procs import Cluster, short_tmpdir, wait_for, workspace_for

WAIT_S = 120.0


@pytest.fixture
def replicas(request) -> Iterator[tuple[Cluster, Cluster]]:
    """Collector A (no agent) and collector B with an agent that is a node of target `rep`."""
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    with pgtest.throwaway_database() as url:
        stream = fresh_stream()
        shared = short_tmpdir("rwshared")
        args = ["--store", url, "--artifacts", str(shared / "artifacts"), "--bus", NATS_URL, "--bus-stream", stream]
        a = Cluster(server_args=args)
        b = Cluster(server_args=args, agent_args=["--compute-target", "rep", "--slots", "1"])
        try:
            a.start_server()
            b.start()
            yield a, b
        finally:
            for c in (b, a):
                c.stop()
            rep = getattr(request.node, "rep_call", None)
            if rep is not None and rep.failed:
                print("=== collector A ===\n" + a.logs() + "\n=== collector B ===\n" + b.logs())
            for c in (a, b):
                shutil.rmtree(c.root, ignore_errors=True)
            shutil.rmtree(shared, ignore_errors=True)
            delete_stream_sync(NATS_URL, stream)


WRITER = """
    import os, sys, time
    from runwire import Experiment, Workspace

    flag, go, blob = sys.argv[1:4]
    run = Experiment(Workspace.from_config(), "replicas-live").start_logging(snapshot_directory=None)
    n_first, n_during, n_after = 5_000, 10_000, 1_000
    for i in range(n_first):
        run.log("loss", float(i), step=i)
    run.flush()
    with open(flag + ".tmp", "w") as f:
        f.write(run.id)
    os.replace(flag + ".tmp", flag)
    # while the subscriber reads the history: many small commits
    for i in range(n_first, n_first + n_during):
        run.log("loss", float(i), step=i)
        if i % 25 == 0:
            time.sleep(0.002)
    while not os.path.exists(go):  # the test has subscribed: what follows is live for sure
        time.sleep(0.01)
    for i in range(n_first + n_during, n_first + n_during + n_after):
        run.log("loss", float(i), step=i)
    run.upload_file("outputs/blob.bin", blob)
    run.complete()
"""
TOTAL = 16_000


def test_subscriber_on_a_follows_a_script_writing_through_b_exactly(replicas, monkeypatch, tmp_path):
    from runwire import Run

    a, b = replicas
    flag, go, blob = tmp_path / "run_id", tmp_path / "go", tmp_path / "blob.bin"
    blob.write_bytes(b"\x01" * 4321)
    script = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(WRITER), str(flag), str(go), str(blob)],
        env={**os.environ, **b.env()},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(lambda: flag.exists() or script.poll() is not None, WAIT_S, "the script to start its run")
        assert flag.exists(), script.communicate()[0]
        ws = workspace_for(a, monkeypatch)  # everything below talks to collector A only
        run = Run.get(ws, flag.read_text())
        metrics = run.subscribe(metrics="loss", kinds="metric", from_start=True)
        files = run.subscribe(kinds=["file", "status"])
        go.write_text("")
        events = collect(metrics, lambda ev: len(ev) >= TOTAL, timeout=WAIT_S)
        done = collect(files, lambda ev: any(e.kind == "status" and e.status == "Completed" for e in ev))
        metrics.close()
        files.close()
        assert script.wait(WAIT_S) == 0, script.communicate()[0]
    finally:
        if script.poll() is None:
            script.kill()
            script.wait()
    assert not [e for e in events if e.kind == "lagged"]
    assert [e.row for e in events] == list(range(TOTAL)), "a gap or a duplicate across replicas"
    assert [e.value for e in events] == [float(i) for i in range(TOTAL)]
    assert events[0].history and not events[-1].history
    (file_event,) = [e for e in done if e.kind == "file"]
    assert (file_event.path, file_event.size) == ("outputs/blob.bin", 4321)
    # the runs' own collector agrees with what A's subscriber saw
    assert run.get_metrics()["loss"] == [float(i) for i in range(TOTAL)]


def test_a_job_submitted_on_a_runs_on_a_node_of_b_and_a_cancel_from_a_stops_it(replicas, monkeypatch, tmp_path):
    from runwire import Experiment

    a, _ = replicas  # B's agent is the only node of target `rep`
    ws = workspace_for(a, monkeypatch)
    experiment = Experiment(ws, "replicas-jobs")
    run = experiment.submit(config(source(tmp_path / "train", TRAIN), ["0.25"], target="rep"))
    assert wait_status(run, {"Completed", "Failed", "Canceled"}) == "Completed"
    metrics = run.get_metrics()
    assert metrics["alpha"] == 0.25 and len(metrics["loss"]) == 5
    assert "argv ['0.25']" in run.get_details_with_logs()["logFiles"]["user_logs/std_log.txt"]

    held = experiment.submit(config(source(tmp_path / "hold", HOLD), [str(tmp_path / "never")], target="rep"))
    wait_log(held, r"pid (\d+)")
    held.cancel()  # on A; the node's Work stream is on B
    assert wait_status(held, {"Canceled", "Failed", "Completed"}) == "Canceled"
