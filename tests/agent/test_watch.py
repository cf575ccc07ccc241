"""Claims and the watch over dying client processes: real SDK-side processes (the real
`Producer`, or raw frames), killed for real, and a real in-process agent whose collector is the
in-test ingest stand-in."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runwire.agent import receiver as receiver_module
from runwire.agent.app import Agent, AgentConfig
from runwire.agent.watch import ExitInfo, zombie_exit_status
from runwire.v1 import frames_pb2
from tests.agent.agent_testlib import Client, wait_until
from tests.agent.jobs_testlib import JobsCollector

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
