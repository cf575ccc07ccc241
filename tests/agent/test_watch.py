"""Claims and the watch over dying client processes: real SDK-side processes (the real
`Producer`, or raw frames), killed for real, and a real in-process agent whose collector is the
in-test ingest stand-in."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from runwire.agent import receiver as receiver_module
from runwire.agent.app import Agent, AgentConfig
from runwire.agent.watch import ClaimStore, ExitInfo, start_time, zombie_exit_status
from runwire.v1 import frames_pb2
from tests.agent.agent_testlib import Client, wait_until
from tests.agent.jobs_testlib import JobsCollector
from tests.procs import Cluster, running_cluster, wait_for

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
async def jc():
    c = await JobsCollector().start()
    yield c
    await c.stop()


async def start_agent(tmp, jc: JobsCollector, **kw) -> Agent:
    cfg = {
        "socket_path": tmp / "a.sock",
        "spool_dir": tmp / "spool",
        "collector": jc.target,
        "agent_id": "node-1",
        "batch_delay_s": 0.005,
        "backoff": (0.01, 0.2),
        "stop_grace_s": 2.0,
    }
    cfg.update(kw)
    agent = Agent(AgentConfig(**cfg))
    await agent.start()
    return agent


def spawn(code: str, tmp: Path, **kw) -> subprocess.Popen:
    """A client process. Popen does not reap it until asked, so its exit status stays readable."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "SOCK": str(tmp / "a.sock"), "SPOOL": str(tmp / "sdk-spool")}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, stdout=subprocess.PIPE, text=True, **kw
    )


async def readline(proc: subprocess.Popen) -> str:
    """The client's next output line, read off the event loop (the agent in this process runs there)."""
    return (await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)).strip()


def claims_of(agent: Agent) -> set[str]:
    return {r for c in agent.receiver._connections for r in c.claims}


PRODUCER_CLAIMS = """
    import os, sys, time
    from pathlib import Path
    from runwire._transports.producer import get_producer
    p = get_producer(os.environ["SOCK"], Path(os.environ["SPOOL"]))
    p.claim("run-a")
    p.claim("run-b")
    p.claim("run-a")
    pid = os.fork()
    if pid == 0:
        print("child claims", get_producer(os.environ["SOCK"], Path(os.environ["SPOOL"])).claims, flush=True)
        os._exit(0)
    os.waitpid(pid, 0)
    print("ready", flush=True)
    time.sleep(120)
"""


async def test_a_kill_9d_process_that_claimed_runs_gets_them_reported_failed(tmp, jc):
    agent = await start_agent(tmp, jc)
    proc = spawn(PRODUCER_CLAIMS, tmp)
    try:
        assert await readline(proc) == "child claims []"  # a forked child owns nothing
        await wait_until(lambda: claims_of(agent) == {"run-a", "run-b"}, what="the claims")
        proc.send_signal(signal.SIGKILL)
        await wait_until(lambda: jc.final("run-a") and jc.final("run-b"), what="both runs reported")
        for run_id in ("run-a", "run-b"):
            (s,) = jc.statuses(run_id)
            assert (s.status, s.only_if_active, s.error_code, s.lease_id) == ("Failed", True, "ProcessDied", "")
            assert s.error_message == (
                f"the process that ran this run (pid {proc.pid}) exited without completing it: killed by signal SIGKILL"
            )
            assert s.time > 0
        producers = {b.producer_id for b in jc.batches() if b.statuses}
        assert len(producers) == 1 and next(iter(producers)).startswith("agent-node-1-")
    finally:
        proc.kill()
        proc.wait()


async def test_claims_are_sent_again_to_a_restarted_agent(tmp, jc):
    agent = await start_agent(tmp, jc)
    proc = spawn(PRODUCER_CLAIMS, tmp)
    try:
        await readline(proc)
        await wait_until(lambda: claims_of(agent) == {"run-a", "run-b"}, what="the claims")
        await agent.stop()
        agent = await start_agent(tmp, jc)
        # The process has nothing to log, yet it reconnects because it owns runs.
        await wait_until(lambda: claims_of(agent) == {"run-a", "run-b"}, 15, what="the claims again")
        proc.send_signal(signal.SIGKILL)
        await wait_until(lambda: jc.final("run-a") and jc.final("run-b"), what="both runs reported")
    finally:
        proc.kill()
        proc.wait()
        await agent.stop()


RAW_CLIENT = """
    import os, socket, sys
    sys.path.insert(0, os.environ["PYTHONPATH"])
    from runwire.frames import pack
    from runwire.limits import PROTOCOL_VERSION
    from runwire.v1 import frames_pb2
    from tests.agent.agent_testlib import make_batch
    s = socket.socket(socket.AF_UNIX)
    s.connect(os.environ["SOCK"])
    hello = frames_pb2.Hello(protocol_version=PROTOCOL_VERSION, producer_id="p-raw", pid=os.getpid(), client="t")
    s.sendall(pack(frames_pb2.ClientFrame(hello=hello)))
    s.sendall(pack(frames_pb2.ClientFrame(batch=make_batch("p-raw", 1, run_id="run-r"))))
    s.sendall(pack(frames_pb2.ClientFrame(claim=frames_pb2.Claim(run_ids=["run-r"]))))
    s.recv(1 << 16)
    MODE
"""


async def test_the_status_follows_every_batch_the_process_sent(tmp, jc):
    agent = await start_agent(tmp, jc)
    proc = spawn(RAW_CLIENT.replace("MODE", "os.kill(os.getpid(), 9)"), tmp)
    try:
        await wait_until(lambda: jc.final("run-r") is not None, what="the run reported")
        req_of = {}
        for i, req in enumerate(jc.servicer.requests):
            req_of.setdefault(req.seq, i)
        committed = jc.servicer.committed
        assert ("p-raw", 1) in committed
        status_key = next(k for k, b in committed.items() if b.statuses)
        assert status_key[0].startswith("agent-")
        # The metrics batch travelled in an earlier (or the same) spool record than the status.
        metric_record = next(r.seq for r in jc.servicer.requests if _holds(r, "p-raw", 1))
        status_record = next(r.seq for r in jc.servicer.requests if _holds(r, *status_key))
        assert metric_record <= status_record
    finally:
        proc.wait()
        await agent.stop()


def _holds(request, producer: str, seq: int) -> bool:
    from runwire import codec
    from runwire.v1 import metrics_pb2

    bundle = metrics_pb2.BatchBundle.FromString(codec.decompress(request.payload, 1 << 30))
    return any(b.producer_id == producer and b.seq == seq for b in bundle.batches)


@pytest.mark.parametrize("pidfd", [True, False])
async def test_a_process_still_alive_is_watched_until_it_exits(tmp, jc, pidfd):
    agent = await start_agent(tmp, jc)
    agent.watch.use_pidfd = pidfd
    agent.watch.poll_s = 0.02
    code = RAW_CLIENT.replace("MODE", "s.close(); print('closed', flush=True); sys.stdin.readline(); sys.exit(3)")
    proc = spawn(code, tmp, stdin=subprocess.PIPE)
    try:
        assert await readline(proc) == "closed"
        await wait_until(lambda: agent.watch.watching == 1, what="the process to be watched")
        assert jc.final("run-r") is None  # it only closed its connection
        proc.stdin.write("go\n")
        proc.stdin.flush()
        await wait_until(lambda: jc.final("run-r") is not None, what="the run reported")
        assert jc.final("run-r").error_message.endswith("exited without completing it: exit code 3")
        assert agent.watch.watching == 0
    finally:
        proc.kill()
        proc.wait()
        await agent.stop()


async def test_a_process_already_reaped_has_an_unknown_exit_status(tmp, jc):
    agent = await start_agent(tmp, jc)
    try:
        proc = subprocess.Popen([sys.executable, "-c", "pass"])
        proc.wait()
        agent.watch.watch(proc.pid, ["run-z"])
        await wait_until(lambda: jc.final("run-z") is not None, what="the run reported")
        assert jc.final("run-z").error_message.endswith(": its exit status is unknown")
    finally:
        await agent.stop()


def test_exit_status_of_a_zombie_and_its_description():
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(7)"])
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: a zombie
    status = zombie_exit_status(proc.pid)
    assert ExitInfo(status).describe() == "exit code 7"
    proc.wait()
    assert zombie_exit_status(proc.pid) is None
    assert ExitInfo(signal.SIGTERM).describe() == "killed by signal SIGTERM"


async def test_claim_frames_out_of_protocol_close_the_connection(tmp, jc, monkeypatch):
    agent = await start_agent(tmp, jc)
    try:
        early = await Client.connect(agent.config.socket_path, hello=False)
        await early.send(frames_pb2.ClientFrame(claim=frames_pb2.Claim(run_ids=["x"])))
        frame, _ = await early.recv_until("error")
        assert "claim before hello" in frame.error.reason
        monkeypatch.setattr(receiver_module, "MAX_CLAIMS_PER_CONNECTION", 3)
        many = await Client.connect(agent.config.socket_path)
        await many.send(frames_pb2.ClientFrame(claim=frames_pb2.Claim(run_ids=["a", "b"])))
        await many.send(frames_pb2.ClientFrame(claim=frames_pb2.Claim(run_ids=["b", "c"])))  # 3 distinct: fine
        await many.status()
        await many.send(frames_pb2.ClientFrame(claim=frames_pb2.Claim(run_ids=["d"])))
        frame, _ = await many.recv_until("error")
        assert "more than 3 runs claimed" in frame.error.reason
    finally:
        await agent.stop()


async def test_a_claim_made_just_before_exiting_still_reaches_the_agent(tmp, jc):
    agent = await start_agent(tmp, jc)
    code = """
        import os
        from pathlib import Path
        from runwire._transports.producer import get_producer
        get_producer(os.environ["SOCK"], Path(os.environ["SPOOL"])).claim("run-q")
        raise SystemExit(5)
    """
    proc = spawn(code, tmp)
    try:
        await wait_until(lambda: jc.final("run-q") is not None, 30, what="the run reported")
        assert jc.final("run-q").error_message.endswith("exited without completing it: exit code 5")
    finally:
        proc.wait()
        await agent.stop()


# --- claims kept across agent restarts: real collector and agent processes, real SDK processes --------


@pytest.fixture
def cluster(request, monkeypatch):
    with running_cluster(request) as c:
        for key, value in c.env().items():
            monkeypatch.setenv(key, value)
        yield c


START_RUN = """
    import os, sys, time
    from runwire import Workspace, Experiment
    run = Experiment(Workspace.from_config(), "claims").start_logging(snapshot_directory=None, outputs=False)
    run.log("x", 1)
    run.flush()
    if sys.argv[1:] == ["complete"]:
        run.complete()
    print(run.id, os.getpid(), flush=True)
    if sys.argv[1:] != ["complete"]:
        time.sleep(600)
"""


def start_run(cluster: Cluster, cwd: Path, *args: str) -> tuple[subprocess.Popen, str, int]:
    """A training process that starts (and claims) a run; Popen does not reap it until asked."""
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(START_RUN), *args],
        env={**os.environ, **cluster.env()},
        stdout=subprocess.PIPE,
        text=True,
        cwd=cwd,
    )
    line = proc.stdout.readline().split()
    assert len(line) == 2, f"the training process printed {line!r}\n{cluster.logs()}"
    return proc, line[0], int(line[1])


def claim_files(cluster: Cluster) -> dict[str, list[str]]:
    """The agent's claims files: name -> run ids."""
    folder = cluster.root / "spool" / "claims"
    out = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            out[path.name] = json.loads(path.read_text())["run_ids"]
        except (OSError, ValueError):  # replaced or removed meanwhile: read again
            return claim_files(cluster)
    return out


def the_run(run_id: str):
    from runwire import Experiment, Run, Workspace

    return Run(Experiment(Workspace.from_config(), "claims"), run_id)


def final_status(run, timeout: float = 30) -> str:
    terminal = {"Completed", "Failed", "Canceled"}
    return wait_for(lambda: (s := run.get_status()) in terminal and s, timeout, f"run {run.id} to end", 0.05)


def error_message(run) -> str:
    return run.get_details()["error"]["error"]["message"]


def wait_claimed(cluster: Cluster, pid: int, run_id: str) -> str:
    name = f"{pid}-{start_time(pid)}.json"
    wait_for(lambda: claim_files(cluster).get(name) == [run_id], 10, f"the claims file {name}")
    return name


DOWN = "exited without completing it while the agent was down or restarting"


def test_a_process_killed_while_the_agent_is_down_has_its_run_failed_by_the_next_agent(cluster, tmp_path):
    proc, run_id, pid = start_run(cluster, tmp_path)
    try:
        wait_claimed(cluster, pid, run_id)
        run = the_run(run_id)
        assert run.get_status() == "Running"
        cluster.agent.kill9()
        proc.kill()
        proc.wait()  # reaped: nobody can tell its exit status any more
        cluster.start_agent()
        assert final_status(run) == "Failed"
        assert error_message(run) == (f"the process that ran this run (pid {pid}) {DOWN}; its exit status is unknown")
        assert run.get_metrics()["x"] == 1
        wait_for(lambda: claim_files(cluster) == {}, 10, "the claims file to be removed")
    finally:
        proc.kill()
        proc.wait()


def test_a_process_killed_after_the_agent_restarted_before_it_claimed_again(cluster, tmp_path):
    proc, run_id, pid = start_run(cluster, tmp_path)
    try:
        wait_claimed(cluster, pid, run_id)
        os.kill(pid, signal.SIGSTOP)  # it cannot reconnect (and claim again) before it dies
        cluster.agent.kill9()
        cluster.start_agent()  # ready: the claims files are loaded, the process is watched
        assert claim_files(cluster) == {f"{pid}-{start_time(pid)}.json": [run_id]}
        proc.kill()  # not reaped: its exit status stays readable
        run = the_run(run_id)
        assert final_status(run) == "Failed"
        assert error_message(run) == (
            f"the process that ran this run (pid {pid}) exited without completing it: killed by signal SIGKILL"
        )
        wait_for(lambda: claim_files(cluster) == {}, 10, "the claims file to be removed")
        assert "while the agent was down" not in cluster.agent.log_tail(1 << 20)
    finally:
        proc.kill()
        proc.wait()


def test_a_process_that_completed_its_run_leaves_no_claims_file_and_its_run_completed(cluster, tmp_path):
    proc, run_id, _ = start_run(cluster, tmp_path, "complete")
    assert proc.wait(60) == 0
    run = the_run(run_id)
    assert final_status(run) == "Completed"
    # Removed once the agent's (ignored) report is in its spool ...
    wait_for(lambda: claim_files(cluster) == {}, 10, "the claims file to be removed")
    # ... and committed before a later flush is answered: the run stays Completed.
    other, other_id, _ = start_run(cluster, tmp_path, "complete")
    assert other.wait(60) == 0
    assert final_status(the_run(other_id)) == "Completed"
    assert run.get_status() == "Completed"
    assert "error" not in run.get_details() or not run.get_details()["error"]


def test_a_claims_file_of_a_reused_pid_is_taken_for_a_process_that_is_gone(cluster, tmp_path):
    proc, run_id, pid = start_run(cluster, tmp_path)
    try:
        name = wait_claimed(cluster, pid, run_id)
        os.kill(pid, signal.SIGSTOP)  # alive, but it does not reconnect to the restarted agent
        cluster.agent.kill9()
        folder = cluster.root / "spool" / "claims"
        started = start_time(pid) + 1  # the pid is now another (later) process's
        (folder / name).unlink()
        (folder / f"{pid}-{started}.json").write_text(json.dumps({"pid": pid, "started": started, "run_ids": [run_id]}))
        cluster.start_agent()
        run = the_run(run_id)
        assert final_status(run) == "Failed"
        assert error_message(run) == f"the process that ran this run (pid {pid}) {DOWN}; its exit status is unknown"
        assert proc.poll() is None  # the process with that pid still runs
        wait_for(lambda: claim_files(cluster) == {}, 10, "the claims file to be removed")
    finally:
        proc.kill()
        proc.wait()


def test_claims_files_are_bounded_and_torn_writes_are_ignored(tmp):
    folder = tmp / "claims"
    folder.mkdir()
    for i, pid in enumerate((101, 102, 103)):
        path = folder / f"{pid}-5.json"
        path.write_text(json.dumps({"pid": pid, "started": 5, "run_ids": [f"run-{pid}"]}))
        os.utime(path, (time.time() - 100 + i, time.time() - 100 + i))
    (folder / "104-5.json.77.tmp").write_text('{"pid": 104, "sta')  # a write cut short
    store = ClaimStore(folder, max_files=2)
    loaded = store.load()
    assert [(c.pid, c.started, list(c.run_ids)) for c in loaded] == [(102, 5, ["run-102"]), (103, 5, ["run-103"])]
    assert sorted(p.name for p in folder.iterdir()) == ["102-5.json", "103-5.json"]  # the oldest dropped
    assert store.dropped == 1
