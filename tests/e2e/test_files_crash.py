"""Files through crashes and at size: kill -9 of the agent at each stage of an upload, and a 1 GiB
round trip with the agent's, the collector's and the SDK's memory bounded."""

from __future__ import annotations

import hashlib
import io
import os
import textwrap
import threading
from pathlib import Path

import grpc
import pytest

from runwire import Experiment
from runwire.cli.status import agent_status
from runwire.v1.artifacts_pb2 import ListArtifactsRequest
from runwire.v1.artifacts_pb2_grpc import ArtifactsStub
from tests.procs import run_script, wait_for

MIB = 1024 * 1024
RSS_BOUND_MIB = 300
"""Peak RSS any process may reach while moving a file several times that size."""


@pytest.fixture
def experiment(workspace, work):
    return Experiment(workspace, "crash-files")


def make_file(path: Path, size: int) -> str:
    """A file of `size` bytes (each MiB different); returns its sha256."""
    block = os.urandom(MIB)
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        for i in range(0, size, MIB):
            data = (i // MIB).to_bytes(8, "little") + block[8 : min(MIB, size - i)]
            f.write(data)
            digest.update(data)
    return digest.hexdigest()


def file_sha(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while data := f.read(MIB):
            digest.update(data)
    return digest.hexdigest()


def vm_hwm_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def uploads_dir(cluster) -> Path:
    return cluster.root / "spool" / "uploads"


def test_agent_killed_after_ack_resumes_after_restart(experiment, cluster, work):
    """The collector is down when the file is handed over; the agent is killed holding it; the
    restarted agent uploads it. flush() waits across the restart."""
    run = experiment.start_logging(snapshot_directory=None)
    data = os.urandom(3 * MIB + 17)
    cluster.server.kill9()
    run.upload_file("outputs/model.bin", io.BytesIO(data))  # returns: the agent holds it
    assert [p.suffix for p in uploads_dir(cluster).iterdir()].count(".json") == 1
    status = agent_status(cluster.socket)
    assert (status.uploads_pending, status.uploads_bytes) == (1, len(data))
    cluster.agent.kill9()
    cluster.start_server()
    cluster.start_agent()
    run.flush()
    assert run.get_file_names() == ["outputs/model.bin"]
    run.download_file("outputs/model.bin", str(work / "back.bin"), _validate_checksum=True)
    assert (work / "back.bin").read_bytes() == data
    wait_for(lambda: not any(uploads_dir(cluster).iterdir()), 30, "the agent to delete the uploaded file")
    run.complete()


def test_agent_killed_while_receiving(experiment, cluster, work):
    """kill -9 while the SDK streams the file to the agent: upload_file resends it (to the restarted
    agent, or straight to the collector) and the file arrives whole."""
    run = experiment.start_logging(snapshot_directory=None)
    big = work / "big.bin"
    sha = make_file(big, 256 * MIB)
    outcome: dict = {}

    def upload() -> None:
        try:
            outcome["result"] = run.upload_file("big.bin", str(big))
        except BaseException as e:
            outcome["error"] = e

    thread = threading.Thread(target=upload)
    thread.start()

    def receiving() -> bool:
        return any(p.suffix == ".data" and p.stat().st_size > 16 * MIB for p in uploads_dir(cluster).iterdir())

    wait_for(receiving, 120, "the agent to be receiving the file")
    cluster.agent.kill9()
    cluster.start_agent()
    thread.join(300)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["result"].sha256 == sha
    run.flush()
    assert run.get_file_names() == ["big.bin"]
    run.download_file("big.bin", str(work / "back.bin"))
    assert file_sha(work / "back.bin") == sha
    run.complete()


def test_agent_killed_while_uploading_to_the_collector(experiment, cluster, work):
    """kill -9 while the agent streams the file to the collector: the restarted agent resumes (or
    restarts) the upload; nothing half-written is ever visible."""
    run = experiment.start_logging(snapshot_directory=None)
    big = work / "big.bin"
    sha = make_file(big, 256 * MIB)
    run.upload_file("big.bin", str(big))
    partials = cluster.root / "collector" / "artifacts" / "partial"

    def sending_or_done() -> bool:
        if any(p.stat().st_size > 0 for p in partials.glob("*.part")):
            return True
        return not any(uploads_dir(cluster).glob("*.json"))  # already committed

    wait_for(sending_or_done, 120, "the agent to be uploading the file")
    cluster.agent.kill9()
    listed = ArtifactsStub(grpc.insecure_channel(cluster.collector)).List(ListArtifactsRequest(run_id=run.id))
    assert [(a.name, a.size) for a in listed.artifacts] in ([], [("big.bin", 256 * MIB)])  # never a half file
    cluster.start_agent()
    run.flush()
    assert run.get_file_names() == ["big.bin"]
    run.download_file("big.bin", str(work / "back.bin"), _validate_checksum=True)
    assert file_sha(work / "back.bin") == sha
    run.complete()


UPLOADER = textwrap.dedent(
    """
    import sys
    from runwire import Workspace, Experiment

    def peak_mib():
        # VmHWM, not getrusage's ru_maxrss: Linux carries the parent's high-water mark into a child
        # across fork/vfork + exec, so ru_maxrss reported pytest's own peak once the suite had grown
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) // 1024 for line in f if line.startswith("VmHWM:"))

    run = Experiment(Workspace.from_config(), "big").start_logging(snapshot_directory=None)
    run.upload_file("big.bin", sys.argv[1])
    run.flush()
    after_upload = peak_mib()
    run.download_file("big.bin", sys.argv[2])
    run.complete()
    print(run.id, peak_mib(), after_upload)
    """
)


@pytest.mark.slow
def test_one_gib_round_trip_with_bounded_memory(cluster, work, tmp_path):
    size = 1024 * MIB
    big = tmp_path / "big.bin"
    sha = make_file(big, size)
    back = tmp_path / "back.bin"
    proc = run_script(UPLOADER.replace("sys.argv[1]", repr(str(big))).replace("sys.argv[2]", repr(str(back))),
                      cluster.env(), cwd=work)  # fmt: skip
    assert proc.returncode == 0, proc.stderr + cluster.logs()
    _run_id, sdk_mib, sdk_upload_mib = proc.stdout.split()
    assert back.stat().st_size == size and file_sha(back) == sha
    agent_mib, collector_mib = vm_hwm_mib(cluster.agent.pid), vm_hwm_mib(cluster.server.pid)
    print(
        f"peak RSS for a 1 GiB round trip: agent {agent_mib:.0f} MiB, collector {collector_mib:.0f} MiB, "
        f"SDK {sdk_mib} MiB ({sdk_upload_mib} MiB after the upload, before the download)"
    )
    assert agent_mib < RSS_BOUND_MIB and collector_mib < RSS_BOUND_MIB and int(sdk_mib) < RSS_BOUND_MIB
    blob = cluster.root / "collector" / "artifacts" / sha[:2] / sha[2:4] / sha
    assert blob.stat().st_size == size
    assert not any(uploads_dir(cluster).iterdir())  # the agent deleted its copy after the commit
