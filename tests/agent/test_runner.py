"""The job runner: log line splitting, error messages, and real job processes run by a real
in-process agent whose collector is the in-test stand-in (ingest, Compute.Work, Artifacts)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
import time

import pytest

from runwire import jobs
from runwire.agent.app import Agent, AgentConfig
from runwire.agent.runner import LineSplitter, failure_message, traceback_error
from runwire.limits import MAX_LOG_LINE_LENGTH
from runwire.v1 import compute_pb2
from tests.agent.agent_testlib import wait_until
from tests.agent.jobs_testlib import JobsCollector

# --- line splitting ----------------------------------------------------------------------------------


def test_lines_are_split_on_newlines_across_reads_with_a_last_partial_line():
    s = LineSplitter()
    assert s.feed(b"a\nb") == ["a"]
    assert s.feed(b"c\r\n\nd") == ["bc", ""]
    assert s.finish() == ["d"]
    assert s.finish() == []


def test_utf8_characters_split_between_reads_stay_whole_and_bad_bytes_are_replaced():
    s = LineSplitter()
    data = "é€😀\n".encode()
    out = []
    for i in range(len(data)):
        out += s.feed(data[i : i + 1])
    assert out == ["é€😀"]
    assert s.feed(b"\xff\xfeok\n") == ["\ufffd\ufffdok"]


def test_long_lines_are_cut_into_pieces_of_the_limit():
    s = LineSplitter(max_length=4)
    assert s.feed(b"abcdefghij\nxy\n") == ["abcd", "efgh", "ij", "xy"]
    # A long line without a newline yet: its full pieces go at once, the rest waits.
    assert s.feed(b"0123456") == ["0123"]
    assert s.finish() == ["456"]
    big = LineSplitter()
    assert [len(x) for x in big.feed(b"x" * (MAX_LOG_LINE_LENGTH + 5) + b"\n")] == [MAX_LOG_LINE_LENGTH, 5]


# --- error messages ----------------------------------------------------------------------------------

TRACEBACK = """\
starting
Traceback (most recent call last):
  File "train.py", line 3, in <module>
    main()
    ^^^^^^
  File "train.py", line 2, in main
    raise ValueError("bad alpha: 0.5")
ValueError: bad alpha: 0.5
""".splitlines()


def test_the_last_traceback_line_gives_the_error():
    assert traceback_error(TRACEBACK) == ("ValueError", "bad alpha: 0.5")
    assert failure_message(1, TRACEBACK) == "User program failed with ValueError: bad alpha: 0.5"
    custom = ["Traceback (most recent call last):", '  File "x.py", line 1', "mypkg.errors.DataError"]
    assert failure_message(1, custom) == "User program failed with mypkg.errors.DataError"
    chained = [
        *TRACEBACK,
        "",
        "During handling of the above exception, another exception occurred:",
        "",
        *TRACEBACK[1:-1],
        "KeyError: 'k'",
    ]
    assert failure_message(1, chained) == "User program failed with KeyError: 'k'"


def test_without_a_traceback_the_exit_code_or_signal_is_the_error():
    assert failure_message(3, ["some output"]) == "User program failed with exit code 3"
    assert failure_message(-signal.SIGKILL, TRACEBACK) == "User program failed: killed by signal SIGKILL"
    assert traceback_error(["Traceback (most recent call last):", "  File 'x'"]) is None


# --- real jobs ---------------------------------------------------------------------------------------


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
        "compute_target": "t1",
        "slots": 1,
        "job_cancel_grace_s": 0.5,
        "heartbeat_s": 0.05,
    }
    cfg.update(kw)
    agent = Agent(AgentConfig(**cfg))
    await agent.start()
    await wait_until(lambda: jc.compute.hellos, what="the node's hello")
    return agent


def lease_for(run_id: str, code: str = "", *, lease_id: str | None = None, **definition) -> compute_pb2.Lease:
    if code:
        definition.setdefault("command", [sys.executable, "-c", textwrap.dedent(code)])
    return compute_pb2.Lease(
        lease_id=lease_id or f"lease-{run_id}",
        run_id=run_id,
        experiment_name="exp",
        definition=compute_pb2.JobDefinition(**definition),
    )


async def wait_final(jc: JobsCollector, run_id: str, timeout: float = 30.0):
    await wait_until(lambda: jc.final(run_id) is not None, timeout, what=f"a final status of {run_id}")
    return jc.final(run_id)


async def test_hello_names_the_node_and_its_target(tmp, jc):
    agent = await start_agent(tmp, jc, slots=3)
    try:
        hello = jc.compute.hellos[0]
        assert (hello.node_id, hello.target, hello.slots, hello.pid) == ("node-1", "t1", 3, os.getpid())
        assert list(hello.running_leases) == []
        await wait_until(
            lambda: any(m.WhichOneof("body") == "heartbeat" for m in jc.compute.messages), what="a heartbeat"
        )
    finally:
        await agent.stop()


async def test_a_successful_job_reports_running_finalizing_completed_with_its_log_and_outputs(tmp, jc):
    agent = await start_agent(tmp, jc)
    code = """
        import os, sys
        print("hello from the job")
        print("to stderr", file=sys.stderr)
        os.makedirs("outputs/sub", exist_ok=True)
        open("outputs/sub/model.txt", "w").write("weights")
        for k in ("RUNWIRE_RUN_ID", "AZUREML_RUN_ID", "RUNWIRE_EXPERIMENT", "RUNWIRE_COMPUTE_TARGET",
                  "RUNWIRE_OUTPUT_DIRECTORY", "PYTHONUNBUFFERED", "MY_VAR"):
            print(k, os.environ.get(k))
        print(os.path.isdir("outputs"), sys.stdin.read() == "")
        print("no newline at the end", end="")
    """
    try:
        jc.compute.lease(lease_for("r1", code, environment_variables={"MY_VAR": "42"}))
        final = await wait_final(jc, "r1")
        assert final.status == "Completed", final
        assert jc.status_names("r1") == ["Running", "Finalizing", "Completed"]
        assert {s.lease_id for s in jc.statuses("r1")} == {"lease-r1"}
        lines = jc.log_lines("r1")
        assert lines[0] == "hello from the job" and "to stderr" in lines
        for expected in ("RUNWIRE_RUN_ID r1", "AZUREML_RUN_ID r1", "RUNWIRE_EXPERIMENT exp",
                         "RUNWIRE_COMPUTE_TARGET t1", "RUNWIRE_OUTPUT_DIRECTORY ./outputs",
                         "PYTHONUNBUFFERED 1", "MY_VAR 42", "True True"):  # fmt: skip
            assert expected in lines
        assert lines[-1] == "no newline at the end"
        files = jc.artifacts.files
        assert files[("r1", "outputs/sub/model.txt")] == b"weights"
        assert files[("r1", jobs.STD_LOG_PATH)].decode() == "\n".join(lines) + "\n"
        # The lease is listed until its final status is committed, then no more; the folder is gone.
        await wait_until(lambda: jc.compute.last_leases() == [] and not agent.runner.jobs, what="lease dropped")
        assert [p.name for p in (tmp / "spool" / "jobs").iterdir()] == ["_logs"]
        assert agent.stats.jobs_started == 1 and agent.stats.jobs_finished == 1
    finally:
        await agent.stop()


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("raise ValueError('bad alpha')", "User program failed with ValueError: bad alpha"),
        ("import sys; sys.exit(3)", "User program failed with exit code 3"),
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", "User program failed: killed by signal SIGKILL"),
        ("import sys; sys.exit(0)", None),
    ],
)
async def test_the_exit_decides_the_final_status(tmp, jc, code, message):
    agent = await start_agent(tmp, jc)
    try:
        jc.compute.lease(lease_for("r1", code))
        final = await wait_final(jc, "r1")
        if message is None:
            assert final.status == "Completed"
        else:
            assert (final.status, final.error_code, final.error_message) == ("Failed", "UserError", message)
    finally:
        await agent.stop()


async def test_a_missing_interpreter_fails_the_run(tmp, jc):
    agent = await start_agent(tmp, jc)
    try:
        jc.compute.lease(lease_for("r1", command=["/nonexistent/python", "x.py"]))
        final = await wait_final(jc, "r1")
        assert final.status == "Failed" and "could not be started" in final.error_message
    finally:
        await agent.stop()


async def test_cancel_sigterms_then_sigkills_the_process_group_and_reports_canceled(tmp, jc):
    agent = await start_agent(tmp, jc, job_cancel_grace_s=0.3)
    pidfile = tmp / "child.pid"
    code = f"""
        import os, signal, subprocess, sys, time
        signal.signal(signal.SIGTERM, lambda *a: print("got SIGTERM, ignoring it"))
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        open({str(pidfile)!r}, "w").write(str(child.pid))
        open("outputs/partial.txt", "w").write("half")
        print("ready")
        while True:
            time.sleep(0.05)
    """
    try:
        jc.compute.lease(lease_for("r1", code))
        await wait_until(lambda: "ready" in jc.log_lines("r1"), 30, what="the job to start")
        jc.compute.cancel("lease-r1", "r1")
        final = await wait_final(jc, "r1")
        assert final.status == "Canceled"
        assert jc.status_names("r1") == ["Running", "Canceled"]
        assert "got SIGTERM, ignoring it" in jc.log_lines("r1")
        assert jc.artifacts.files[("r1", "outputs/partial.txt")] == b"half"
        grandchild = int(pidfile.read_text())
        await wait_until(lambda: not _alive(grandchild), 5, what="the job's child to be killed too")
    finally:
        await agent.stop()


async def test_a_stale_lease_is_killed_and_nothing_is_reported(tmp, jc):
    agent = await start_agent(tmp, jc)
    try:
        jc.compute.lease(lease_for("r1", "import time; print('ready'); time.sleep(60)"))
        await wait_until(lambda: "ready" in jc.log_lines("r1"), 30, what="the job to start")
        jc.compute.cancel("lease-r1", "r1", canceled=False)
        await wait_until(lambda: not agent.runner.jobs, 10, what="the job to be dropped")
        await wait_until(lambda: jc.compute.last_leases() == [], what="a heartbeat without the lease")
        assert jc.status_names("r1") == ["Running"]
    finally:
        await agent.stop()


async def test_max_run_duration_stops_the_run(tmp, jc):
    agent = await start_agent(tmp, jc)
    try:
        jc.compute.lease(lease_for("r1", "import time; time.sleep(60)", max_run_duration_seconds=1))
        final = await wait_final(jc, "r1")
        assert final.status == "Failed" and final.error_code == "MaxRunDurationExceeded"
        assert "max_run_duration_seconds (1 s)" in final.error_message
    finally:
        await agent.stop()


async def test_no_more_jobs_than_slots_run_at_once(tmp, jc):
    agent = await start_agent(tmp, jc, slots=2)
    marker = tmp / "running"
    marker.mkdir()
    code = f"""
        import os, time
        me = os.path.join({str(marker)!r}, os.environ["RUNWIRE_RUN_ID"])
        open(me, "w").close()
        print("together", len(os.listdir({str(marker)!r})))
        time.sleep(0.3)
        os.unlink(me)
    """
    try:
        for i in range(5):
            jc.compute.lease(lease_for(f"r{i}", code))
        await wait_until(lambda: len(agent.runner.jobs) == 5, what="5 leases held")
        for i in range(5):
            assert (await wait_final(jc, f"r{i}")).status == "Completed"
        for i in range(5):
            (line,) = [x for x in jc.log_lines(f"r{i}") if x.startswith("together")]
            assert int(line.split()[1]) <= 2
        assert agent.stats.jobs_started == 5
    finally:
        await agent.stop()


async def test_stopping_the_agent_stops_its_jobs_and_reports_them_failed(tmp, jc):
    agent = await start_agent(tmp, jc)
    stopped = False
    try:
        jc.compute.lease(lease_for("r1", "import time; print('ready'); time.sleep(60)"))
        await wait_until(lambda: "ready" in jc.log_lines("r1"), 30, what="the job to start")
        pid = agent.runner.jobs["lease-r1"].proc.pid
        began = time.monotonic()
        await agent.stop()
        stopped = True
        assert time.monotonic() - began < 10
        assert not _alive(pid)
        final = jc.final("r1")
        assert final is not None and final.status == "Failed", jc.statuses("r1")
        assert "the agent was stopped" in final.error_message
    finally:
        if not stopped:
            await agent.stop()


async def test_log_capture_keeps_every_line_of_a_loud_job(tmp, jc):
    agent = await start_agent(tmp, jc)
    n = 100_000
    try:
        jc.compute.lease(lease_for("r1", f"for i in range({n}): print('line', i)"))
        final = await wait_final(jc, "r1", 120)
        assert final.status == "Completed"
        lines = jc.log_lines("r1")
        assert len(lines) == n and lines[0] == "line 0" and lines[-1] == f"line {n - 1}"
        sizes = [len(ll.lines) for b in jc.batches() for ll in b.logs]
        assert max(sizes) <= 1000 and len(sizes) < n / 50  # batched, not a batch per line
    finally:
        await agent.stop()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


async def test_the_job_dies_with_a_kill_9d_agent(tmp, jc):
    """PR_SET_PDEATHSIG: a real agent process, killed with SIGKILL, takes its job along."""
    pidfile = tmp / "job.pid"
    code = f"import os, time; open({str(pidfile)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "runwire.agent", "--socket", str(tmp / "b.sock"), "--collector", jc.target,
        "--spool-dir", str(tmp / "spool2"), "--compute-target", "t1", "--log-level", "warning",
    )  # fmt: skip
    try:
        await wait_until(lambda: jc.compute.hellos, 30, what="the agent's hello")
        jc.compute.lease(lease_for("r1", code))
        await wait_until(lambda: pidfile.exists() and pidfile.read_text(), 30, what="the job to start")
        job_pid = int(pidfile.read_text())
        assert _alive(job_pid)
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        await wait_until(lambda: not _alive(job_pid), 10, what="the job to die with its agent")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_the_node_rejoins_after_the_collector_restarts_listing_its_running_job(tmp, jc):
    agent = await start_agent(tmp, jc)
    try:
        jc.compute.lease(lease_for("r1", "import time; print('ready'); time.sleep(60)"))
        await wait_until(lambda: "ready" in jc.log_lines("r1"), 30, what="the job to start")
        await jc.stop()
        await jc.start()  # same port
        await wait_until(lambda: len(jc.compute.hellos) >= 2, 30, what="a second hello")
        assert list(jc.compute.hellos[-1].running_leases) == ["lease-r1"]
        jc.compute.cancel("lease-r1", "r1")
        assert (await wait_final(jc, "r1")).status == "Canceled"
    finally:
        await agent.stop()


async def test_job_counters_are_in_the_prometheus_metrics(tmp, jc):
    from prometheus_client import generate_latest

    agent = await start_agent(tmp, jc)
    try:
        jc.compute.lease(lease_for("r1", "print('x')"))
        await wait_final(jc, "r1")
        text = generate_latest(agent.registry).decode()
        assert "runwire_agent_jobs_started_total 1.0" in text
        assert "runwire_agent_jobs_finished_total 1.0" in text
        assert "runwire_agent_jobs_running 0.0" in text
    finally:
        await agent.stop()


async def test_a_relative_command_is_looked_up_in_the_working_folder(tmp, jc):
    agent = await start_agent(tmp, jc)
    try:
        jc.compute.lease(lease_for("r1", command=["./missing.sh"]))
        final = await wait_final(jc, "r1")
        assert final.status == "Failed" and "'./missing.sh' is not an executable program" in final.error_message
        jc.compute.lease(lease_for("r2", command=["sh", "-c", "echo from a shell $0 $1", "a", "b"]))
        final = await wait_final(jc, "r2")
        assert final.status == "Completed" and jc.log_lines("r2") == ["from a shell a b"]
    finally:
        await agent.stop()
