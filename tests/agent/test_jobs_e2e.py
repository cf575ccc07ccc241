"""Script runs end to end through real processes: a collector, an agent that joined compute target
`t1`, jobs submitted with a plain gRPC client to `Compute.SubmitRun` (snapshot taken with
`runwire.snapshot.take`), and a kill -9'd SDK process whose claimed run ends Failed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from runwire import jobs, snapshot
from runwire._transports.collector import CollectorClient
from runwire.v1 import artifacts_pb2, artifacts_pb2_grpc, compute_pb2, compute_pb2_grpc, runs_pb2, runs_pb2_grpc
from tests.procs import Cluster, running_cluster, wait_for

TERMINAL = ("Completed", "Failed", "Canceled")


@pytest.fixture
def cluster(request):
    with running_cluster(
        request, batch_delay_ms=5, agent_args=["--compute-target", "t1", "--slots", "2", "--job-cancel-grace", "1"]
    ) as c:
        yield c


class Api:
    def __init__(self, cluster: Cluster) -> None:
        self.client = CollectorClient(cluster.collector)
        channel = self.client.channel
        self.compute = compute_pb2_grpc.ComputeStub(channel)
        self.runs = runs_pb2_grpc.RunsStub(channel)
        self.artifacts = artifacts_pb2_grpc.ArtifactsStub(channel)

    def submit(self, folder: Path, script: str, *args: str, run_id: str = "", **definition) -> str:
        snapshot_id = snapshot.take(self.client, folder)
        request = compute_pb2.SubmitRunRequest(
            run=runs_pb2.CreateRunRequest(experiment_name="exp", run_id=run_id, target="t1"),
            definition=compute_pb2.JobDefinition(
                script=script, arguments=list(args), snapshot_id=snapshot_id, source_directory=str(folder), **definition
            ),
        )
        return self.compute.SubmitRun(request, timeout=30).run_id

    def run(self, run_id: str) -> runs_pb2.RunInfo:
        return self.runs.GetRun(runs_pb2.GetRunRequest(run_id=run_id), timeout=30)

    def wait(self, run_id: str, statuses=TERMINAL, timeout: float = 60) -> runs_pb2.RunInfo:
        def done():
            info = self.run(run_id)
            return info if info.status in statuses else None

        return wait_for(done, timeout, f"run {run_id} to be {statuses}")

    def log(self, run_id: str) -> list[str]:
        lines = []
        for chunk in self.runs.GetLog(runs_pb2.GetLogRequest(run_id=run_id, path=jobs.STD_LOG_PATH), timeout=30):
            lines.extend(chunk.lines)
        return lines

    def artifact_names(self, run_id: str) -> set[str]:
        reply = self.artifacts.List(artifacts_pb2.ListArtifactsRequest(run_id=run_id), timeout=30)
        return {a.name for a in reply.artifacts}


def write(folder: Path, name: str, code: str) -> None:
    (folder / name).parent.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(textwrap.dedent(code))


def test_a_submitted_script_runs_from_its_snapshot_and_completes(cluster, tmp_path):
    api = Api(cluster)
    src = tmp_path / "src"
    write(src, "train.py", """
        import os, sys
        from helper import VALUE
        print("args", sys.argv[1:])
        print("value", VALUE)
        print("run", os.environ["RUNWIRE_RUN_ID"], os.environ["AZUREML_ARM_PROJECT_NAME"])
        os.makedirs("outputs", exist_ok=True)
        open("outputs/result.txt", "w").write("42")
        open("written-in-the-working-folder.txt", "w").write("x")
    """)  # fmt: skip
    write(src, "helper.py", "VALUE = 'from the snapshot'\n")
    before = sorted(p.name for p in src.iterdir())
    run_id = api.submit(src, "train.py", "--alpha", "0.5")
    info = api.wait(run_id)
    assert info.status == "Completed", (info, cluster.logs())
    lines = api.log(run_id)
    assert "args ['--alpha', '0.5']" in lines and "value from the snapshot" in lines
    assert f"run {run_id} exp" in lines
    names = api.artifact_names(run_id)
    assert {"outputs/result.txt", jobs.STD_LOG_PATH} <= names
    assert sorted(p.name for p in src.iterdir()) == before  # the source folder is never written


def test_a_failing_script_ends_failed_with_the_exception(cluster, tmp_path):
    api = Api(cluster)
    src = tmp_path / "src"
    write(src, "train.py", "print('about to fail')\nraise RuntimeError('the data is bad')\n")
    run_id = api.submit(src, "train.py")
    info = api.wait(run_id)
    assert info.status == "Failed"
    assert info.error.code == "UserError"
    assert info.error.message == "User program failed with RuntimeError: the data is bad"
    assert "about to fail" in api.log(run_id)


def test_a_running_script_is_canceled(cluster, tmp_path):
    api = Api(cluster)
    src = tmp_path / "src"
    write(src, "train.py", "import time\nprint('started', flush=True)\ntime.sleep(120)\n")
    run_id = api.submit(src, "train.py")
    api.wait(run_id, ("Running",))
    wait_for(lambda: "started" in api.log(run_id), 30, "the script's first line")
    api.compute.CancelRun(compute_pb2.CancelRunRequest(run_id=run_id), timeout=30)
    info = api.wait(run_id)
    assert info.status == "Canceled"


def test_more_submissions_than_slots_all_run_once(cluster, tmp_path):
    api = Api(cluster)
    src = tmp_path / "src"
    write(src, "train.py", "import time\ntime.sleep(0.2)\nprint('done')\n")
    run_ids = [api.submit(src, "train.py") for _ in range(5)]
    for run_id in run_ids:
        assert api.wait(run_id).status == "Completed"
        assert api.log(run_id) == ["done"]


def test_submission_to_running_latency(cluster, tmp_path):
    """Not a benchmark gate: prints the figure (seconds from SubmitRun to Running)."""
    api = Api(cluster)
    src = tmp_path / "src"
    write(src, "train.py", "print('hi')\n")
    began = time.monotonic()
    run_id = api.submit(src, "train.py")
    api.wait(run_id, ("Running", *TERMINAL))
    print(f"submit -> Running: {time.monotonic() - began:.3f} s")
    assert api.wait(run_id).status == "Completed"


CLAIMER = """
import os, sys, time
from pathlib import Path
from runwire._transports.collector import CollectorClient
from runwire._transports.producer import get_producer
from runwire.v1 import runs_pb2
client = CollectorClient(os.environ["RUNWIRE_COLLECTOR"])
run_id = "claimed-" + str(os.getpid())
client.call("CreateRun", runs_pb2.CreateRunRequest(experiment_name="exp", run_id=run_id, status="Running"))
get_producer(os.environ["RUNWIRE_AGENT_SOCKET"], Path(os.environ["RUNWIRE_SDK_SPOOL"])).claim(run_id)
print(run_id, flush=True)
time.sleep(120)
"""


def test_a_kill_9d_process_leaves_its_claimed_run_failed_not_running(cluster):
    api = Api(cluster)
    proc = subprocess.Popen(
        [sys.executable, "-c", CLAIMER], env={**os.environ, **cluster.env()}, stdout=subprocess.PIPE, text=True
    )
    try:
        run_id = proc.stdout.readline().strip()
        assert api.run(run_id).status == "Running"
        # The claim reaches the agent on the process's sender thread; the kill must come after it.
        wait_for(lambda: _agent_has_claim(cluster, proc.pid), 30, "the claim to reach the agent")
        proc.send_signal(signal.SIGKILL)
        info = api.wait(run_id)
        assert info.status == "Failed"
        assert info.error.message == (
            f"the process that ran this run (pid {proc.pid}) exited without completing it: killed by signal SIGKILL"
        )
    finally:
        proc.kill()
        proc.wait()


def _agent_has_claim(cluster: Cluster, pid: int) -> bool:
    """The agent logs each claim it takes (debug level): the test's condition."""
    return f"claim_pid={pid} " in cluster.agent.log_tail(1 << 20)


def test_slots_must_be_at_least_one(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "runwire.agent", "--compute-target", "t1", "--slots", "0",
         "--socket", str(tmp_path / "s.sock"), "--spool-dir", str(tmp_path / "spool")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2 and "--slots must be at least 1" in out.stderr
