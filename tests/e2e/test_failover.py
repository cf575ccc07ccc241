"""Failover between collector replicas, as real processes: two collectors on one PostgreSQL database
(a fresh one per test).

- An agent with `--collector A,B` streams a training script's points; the replica its ingest stream
  uses is killed with SIGKILL mid-stream; the agent moves to the other one and every point is stored
  exactly once, in order (read back through the survivor).
- Artifacts in one S3 bucket (moto's server): a file uploaded through one collector downloads
  through the other.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from tests import pgtest
from tests.procs import Proc, short_tmpdir, wait_for
from tests.s3_server import S3_ENV, moto_s3, new_bucket


@pytest.fixture
def pg_url():
    """A fresh, empty PostgreSQL database for this test, dropped afterwards."""
    with pgtest.throwaway_database() as url:
        yield url


class Replicas:
    """Collectors sharing one database (and, optionally, one S3 bucket), and an agent."""

    def __init__(self, root: Path, store: str, server_args: list[str] | None = None, env: dict | None = None) -> None:
        self.root = root
        self.store = store
        self.server_args = server_args or []
        self.env = env or {}
        self.collectors: dict[str, Proc] = {}
        self.agent: Proc | None = None

    @property
    def socket(self) -> str:
        return str(self.root / "agent.sock")

    def start_collector(self, name: str) -> Proc:
        proc = Proc(
            f"collector-{name}",
            ["runwire.server", "--data-dir", str(self.root / name), "--grpc-listen", "127.0.0.1:0",
             "--http-listen", "127.0.0.1:0", "--store", self.store, "--auth", "off", "--log-level", "debug",
             *self.server_args],
            self.root / f"{name}.json",
            self.root / f"{name}.log",
            env=self.env,
        ).start()  # fmt: skip
        self.collectors[name] = proc
        return proc

    def address(self, name: str) -> str:
        return self.collectors[name].info["grpc"]

    def start_agent(self, collectors: list[str], *args: str) -> Proc:
        self.agent = Proc(
            "agent",
            ["runwire.agent", "--socket", self.socket, "--collector", ",".join(self.address(n) for n in collectors),
             "--spool-dir", str(self.root / "spool"), "--batch-delay-ms", "20", "--log-level", "debug", *args],
            self.root / "agent.json",
            self.root / "agent.log",
        ).start()  # fmt: skip
        return self.agent

    def client_env(self, collector: str) -> dict[str, str]:
        """What a training process needs: the agent's socket, and `collector` for its direct calls."""
        return {
            "RUNWIRE_COLLECTOR": self.address(collector),
            "RUNWIRE_AGENT_SOCKET": self.socket,
            "RUNWIRE_HOME": str(self.root / "home"),
            "RUNWIRE_SDK_SPOOL": str(self.root / "sdk-spool"),
        }

    def stop(self) -> None:
        for proc in (self.agent, *self.collectors.values()):
            if proc is not None:
                proc.stop()

    def logs(self) -> str:
        procs = (*self.collectors.values(), self.agent)
        return "\n".join(f"--- {p.name} ---\n{p.log_tail(6000)}" for p in procs if p is not None)


@pytest.fixture
def replicas_root(request):
    root = short_tmpdir()
    made: list[Replicas] = []
    yield root, made
    for r in made:
        r.stop()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for r in made:
            print(r.logs())
    shutil.rmtree(root, ignore_errors=True)


def _agent_status(socket_path: str):
    from runwire.cli._common import agent_status

    return agent_status(socket_path)


def _workspace(env: dict[str, str], monkeypatch):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    from runwire import Workspace

    return Workspace.from_config()


WRITER = textwrap.dedent(
    """
    import sys, time
    from runwire import Workspace, Experiment
    run = Experiment(Workspace.from_config(), "failover").start_logging(run_id=sys.argv[1], snapshot_directory=None)
    for i in range({n}):
        run.log("v", i)
        if i % 500 == 0:
            time.sleep(0.01)  # a training step
    run.complete()
    """
)


@pytest.mark.parametrize("fault", ["kill -9", "SIGSTOP"])
def test_agent_moves_to_the_other_replica_when_its_collector_dies_or_hangs(fault, pg_url, replicas_root, monkeypatch):
    """kill -9: the stream breaks at once. SIGSTOP: the connections stay open and nothing is
    acknowledged; the agent's ack timeout (5 s here) abandons the stream."""
    root, made = replicas_root
    r = Replicas(root, pg_url)
    made.append(r)
    r.start_collector("a")
    r.start_collector("b")
    # SIGSTOP: a short ack timeout, but not so short that a loaded machine's slow commits on the
    # surviving replica trip it too (that is allowed, and only moves the stream once more)
    r.start_agent(["a", "b"], "--ack-timeout", "5")
    status = wait_for(lambda: (s := _agent_status(r.socket)).collector_connected and s, 30, "the ingest stream")
    assert list(status.collectors) == [r.address("a"), r.address("b")]
    assert {link.role for link in status.collector_links} == {"ingest", "uploads"}
    victim = "a" if status.collector == r.address("a") else "b"
    survivor = "b" if victim == "a" else "a"
    assert status.collector == r.address(victim)

    n = 150_000
    run_id = "failover-run"
    env = r.client_env(survivor)
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER.format(n=n), run_id],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    from runwire import Experiment, Run

    experiment = Experiment(_workspace(env, monkeypatch), "failover")

    def committed() -> int:
        try:
            return len(Run(experiment, run_id).get_metric_series("v"))
        except Exception:  # the run is not created yet
            return 0

    wait_for(lambda: committed() > 10_000, 60, "the first points committed through the first replica")
    if fault == "kill -9":
        r.collectors[victim].kill9()
    else:
        os.kill(r.collectors[victim].pid, signal.SIGSTOP)
    killed = time.monotonic()
    at_kill = committed()
    moved = wait_for(
        lambda: (s := _agent_status(r.socket)).collector == r.address(survivor) and s.collector_connected and s,
        30,
        "the agent's ingest stream on the surviving replica",
    )
    switched = time.monotonic() - killed
    wait_for(lambda: committed() > at_kill, 30, "points committed through the surviving replica")
    streaming = time.monotonic() - killed
    ingest = next(link for link in moved.collector_links if link.role == "ingest")
    assert ingest.failovers >= 1 and ingest.address == r.address(survivor)
    if fault == "kill -9":
        assert ingest.failovers == 1  # a dead replica is refused at once: no second move

    shown = subprocess.run(
        [sys.executable, "-m", "runwire.cli.main", "status", "--json"],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    agent = json.loads(shown.stdout)["agent"]
    assert agent["collectors"] == [r.address("a"), r.address("b")], shown.stdout
    shown_ingest = agent["streams"]["ingest"]
    assert shown_ingest["failovers"] >= 1
    if fault == "kill -9":
        assert shown_ingest == {"collector": r.address(survivor), "connected": True, "failovers": 1}

    _, err = writer.communicate(timeout=300)
    assert writer.returncode == 0, err + r.logs()
    if fault == "SIGSTOP":
        # The hung replica wakes up and commits what it still held: the shared dedup keeps it once.
        os.kill(r.collectors[victim].pid, signal.SIGCONT)
        assert "acknowledged nothing for" in r.agent.log_tail(200_000)
    run = Run(experiment, run_id)
    series = run.get_metric_series("v")
    np.testing.assert_array_equal(series.values, np.arange(n))  # every point once, in order
    assert run.get_status() == "Completed"
    print(
        f"\nFAILOVER {fault} -> ingest connected to the other replica {switched * 1000:.0f} ms, "
        f"-> new points committed {streaming * 1000:.0f} ms; {at_kill} of {n} points committed at the kill, "
        f"{n} checked (exactly once, in order)"
    )


UPLOADER = textwrap.dedent(
    """
    import sys
    from runwire import Workspace, Experiment
    run = Experiment(Workspace.from_config(), "s3").start_logging(snapshot_directory=None)
    run.upload_file("outputs/weights.bin", sys.argv[1])
    run.upload_file("notes.txt", sys.argv[2])
    run.complete()
    print(run.id)
    """
)


def test_artifacts_in_s3_are_shared_by_the_replicas(pg_url, replicas_root, monkeypatch, tmp_path):
    root, made = replicas_root
    with moto_s3() as endpoint:
        for key, value in S3_ENV.items():
            monkeypatch.setenv(key, value)
        bucket = new_bucket(endpoint)
        r = Replicas(root, pg_url, ["--artifacts", f"s3://{bucket}/runwire", "--s3-endpoint", endpoint], env=S3_ENV)
        made.append(r)
        r.start_collector("a")
        r.start_collector("b")
        r.start_agent(["a"])  # uploads go through A
        big = tmp_path / "weights.bin"
        big.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
        small = tmp_path / "notes.txt"
        small.write_text("hello from replica a\n")
        result = subprocess.run(
            [sys.executable, "-c", UPLOADER, str(big), str(small)],
            env={**os.environ, **r.client_env("a")},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr + r.logs()
        run_id = result.stdout.strip().splitlines()[-1]

        import boto3

        keys = [
            o["Key"]
            for o in boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
            .list_objects_v2(Bucket=bucket)
            .get("Contents", [])
        ]
        assert len(keys) == 2 and all(k.startswith("runwire/") for k in keys)
        assert not any((root / "a").rglob("artifacts/*/*/*"))  # no local blob on the replica

        from runwire import Experiment, Run

        run = Run(Experiment(_workspace(r.client_env("b"), monkeypatch), "s3"), run_id)  # read through B
        assert sorted(run.get_file_names()) == ["notes.txt", "outputs/weights.bin"]
        out = tmp_path / "back.bin"
        run.download_file("outputs/weights.bin", str(out))
        assert out.read_bytes() == big.read_bytes()
        run.download_file("notes.txt", str(tmp_path / "notes-back.txt"))
        assert (tmp_path / "notes-back.txt").read_text() == "hello from replica a\n"


def test_uploads_move_to_the_other_replica(pg_url, replicas_root, monkeypatch, tmp_path):
    root, made = replicas_root
    r = Replicas(root, pg_url)
    made.append(r)
    r.start_collector("a")
    r.start_collector("b")
    r.start_agent(["a", "b"])
    status = wait_for(lambda: (s := _agent_status(r.socket)).collector_connected and s, 30, "the ingest stream")
    uploads = next(link for link in status.collector_links if link.role == "uploads")
    assert uploads.address in (r.address("a"), r.address("b"))
    assert uploads.address != status.collector  # two replicas: the agent's streams use both
    victim = "a" if uploads.address == r.address("a") else "b"
    survivor = "b" if victim == "a" else "a"
    env = r.client_env(survivor)
    data = tmp_path / "before.bin"
    data.write_bytes(os.urandom(200_000))
    first = subprocess.run(
        [sys.executable, "-c", UPLOADER, str(data), str(data)], env={**os.environ, **env}, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert first.returncode == 0, first.stderr + r.logs()
    link = next(link for link in _agent_status(r.socket).collector_links if link.role == "uploads")
    assert link.address == r.address(victim) and link.connected  # the first file went through the victim
    r.collectors[victim].kill9()
    second = subprocess.run(
        [sys.executable, "-c", UPLOADER, str(data), str(data)], env={**os.environ, **env}, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert second.returncode == 0, second.stderr + r.logs()
    from runwire import Experiment, Run

    run = Run(Experiment(_workspace(env, monkeypatch), "s3"), second.stdout.strip().splitlines()[-1])
    run.download_file("outputs/weights.bin", str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == data.read_bytes()
    moved = _agent_status(r.socket)
    link = next(link for link in moved.collector_links if link.role == "uploads")
    assert link.address == r.address(survivor) and link.failovers == 1
