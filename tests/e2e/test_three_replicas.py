"""Three collector processes on one PostgreSQL database and one NATS stream, each with a node agent of
target `race`: a burst of jobs submitted through the first replica is leased by nodes on all three —
every job run exactly once (each job claims a marker file with O_EXCL, so a second run of it would
fail), every run Completed — and a live subscriber on the third replica sees every run's status
changes, whichever replica committed them."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from tests import pgtest
from tests.e2e.test_script_runs import config, source, wait_status
from tests.natsd import NATS_URL, delete_stream_sync, fresh_stream, skip_reason
from tests.procs import Cluster, short_tmpdir, wait_for, workspace_for

JOBS = 12
WAIT_S = 180.0

CLAIM = """
    import os, sys
    from runwire import Run
    run = Run.get_context()
    # a second run of the same job would find the marker and fail (O_EXCL)
    fd = os.open(os.path.join(sys.argv[1], run.id), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    os.write(fd, os.environ.get("RUNWIRE_AGENT_SOCKET", "").encode())
    os.close(fd)
    run.log("claimed", 1)
"""


@pytest.fixture
def three(request) -> Iterator[list[Cluster]]:
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    with pgtest.throwaway_database() as url:
        stream = fresh_stream()
        shared = short_tmpdir("rwshared")
        args = ["--store", url, "--artifacts", str(shared / "artifacts"), "--bus", NATS_URL, "--bus-stream", stream]
        replicas = [
            Cluster(server_args=args, agent_args=["--compute-target", "race", "--slots", "2"]) for _ in range(3)
        ]
        try:
            for r in replicas:
                r.start()
            yield replicas
        finally:
            for r in replicas:
                r.stop()
            rep = getattr(request.node, "rep_call", None)
            if rep is not None and rep.failed:
                for i, r in enumerate(replicas):
                    print(f"=== replica {i} ===\n{r.logs()}")
            for r in replicas:
                shutil.rmtree(r.root, ignore_errors=True)
            shutil.rmtree(shared, ignore_errors=True)
            delete_stream_sync(NATS_URL, stream)


def test_a_burst_of_jobs_is_leased_once_each_across_three_replicas(three, monkeypatch, tmp_path):
    from runwire import Experiment, Run

    first, _, third = three
    markers = tmp_path / "markers"
    markers.mkdir()
    watcher_ws = workspace_for(third, monkeypatch)
    watch = Experiment(watcher_ws, "race").subscribe(kinds=["status"])  # on the third replica
    try:
        ws = workspace_for(first, monkeypatch)
        experiment = Experiment(ws, "race")
        folder = source(tmp_path / "claim", CLAIM)
        runs = [experiment.submit(config(folder, [str(markers)], target="race")) for _ in range(JOBS)]
        for run in runs:
            assert wait_status(run, {"Completed", "Failed", "Canceled"}, WAIT_S) == "Completed", run.get_details()
        completed: set[str] = set()

        def all_completed_seen() -> bool:
            while (ev := watch.next_event(timeout=0.05)) is not None:
                if ev.kind == "status" and ev.status == "Completed":
                    completed.add(ev.run_id)
            return completed >= {r.id for r in runs}

        wait_for(all_completed_seen, WAIT_S, "every run's Completed seen live on the third replica")
    finally:
        watch.close()

    claimed = {p.name: p.read_text() for p in markers.iterdir()}
    assert sorted(claimed) == sorted(r.id for r in runs)  # each job ran once (a second run would have failed)
    nodes = set(claimed.values())
    assert len(nodes) >= 2, f"the jobs all ran on one node: {nodes}"  # the replicas' nodes shared the burst
    for run in runs:
        assert Run(Experiment(watcher_ws, "race"), run.id).get_metrics()["claimed"] == 1
