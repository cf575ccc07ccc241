"""The job runner: runs the script runs leased to this node (`runwire agent --compute-target`).

For each `Lease` the runner, once one of its `slots` is free:
1. makes a fresh working folder `<spool>/jobs/<run>-<lease[:8]>` and unpacks the run's snapshot into
   it (the source folder on the submitting machine is never touched), with an empty `./outputs`;
2. starts `interpreter script args` (or the job's `command`) there: stdin from /dev/null, stdout and
   stderr into one pipe, its own process group, `PR_SET_PDEATHSIG=SIGKILL` (the job dies with a
   kill -9'd agent), and the environment `Run.get_context()` reads (`runwire.jobs`); reports
   `Running`;
3. captures the output line by line: kept in `<spool>/jobs/_logs/` and sent live as `LogLines` of
   `user_logs/std_log.txt` (a batch per ~1000 lines / 256 KiB or per batch delay);
4. after exit reports `Finalizing`, uploads every file of `./outputs` (as `outputs/<path>`) and the
   log (as `user_logs/std_log.txt`) through the agent's uploads, waits until they are committed,
   then reports `Completed` / `Failed` (with "User program failed with ..." from the traceback, the
   exit code or the signal) / `Canceled`.

Every report carries the lease id (the collector ignores reports of a lease that is no longer the
job's). A lease stays listed in the node's heartbeats until its final status is committed at the
collector. `CancelLease(canceled=True)` stops the process group (SIGTERM, SIGKILL after a grace
period) and ends the run `Canceled`; `canceled=False` (the lease is stale) kills it and reports
nothing. Stopping the agent stops its jobs the same way and reports them `Failed`.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from runwire import jobs
from runwire._transports.channel import ClientSecurity
from runwire.agent.reports import Reporter
from runwire.agent.watch import signal_name
from runwire.limits import JOB_CANCEL_GRACE_S, MAX_ARTIFACT_BYTES, MAX_LOG_LINE_LENGTH
from runwire.v1 import compute_pb2

if TYPE_CHECKING:
    from runwire.agent.metrics import AgentStats
    from runwire.agent.uploads import Uploads

log = logging.getLogger("runwire.agent.runner")

JOBS_DIR = "jobs"
"""Folder (in the agent's spool folder) holding the working folders of jobs."""
LOGS_DIR = "_logs"
"""Folder (in the jobs folder, outside every working folder) holding the local copies of job logs."""
LOG_BATCH_MAX_LINES = 1000
"""Captured log lines sent in one `LogLines` batch at most."""
LOG_BATCH_MAX_BYTES = 256 * 1024
"""Characters of captured log lines sent in one `LogLines` batch (about; a batch is cut beyond it)."""
PIPE_READ_BYTES = 256 * 1024
"""Bytes read from a job's output pipe at a time."""
OUTPUT_DRAIN_AFTER_EXIT_S = 5.0
"""How long the log capture goes on after the job's process exited while something it started
still holds the output pipe open (its process group is killed first)."""
TRACEBACK_TAIL_LINES = 200
"""Last output lines kept to find a Python traceback's final line in."""
FINAL_COMMIT_WAIT_S = 3600.0
"""How long a finished job's lease stays held (listed in heartbeats) waiting for its final status to
be committed at the collector."""
USER_ERROR_CODE = "UserError"
"""`error.code` of a run whose program failed."""
TIMEOUT_ERROR_CODE = "MaxRunDurationExceeded"
"""`error.code` of a run stopped for exceeding its max_run_duration_seconds."""
AGENT_ERROR_CODE = "AgentError"
"""`error.code` of a run the agent could not prepare or was stopped while running."""
EXIT_POLL_S = 0.05
"""How often a job's process is checked for exit when pidfds are not available."""

# A job's process starts as this small launcher, which asks the kernel to SIGKILL it when the agent
# dies (PR_SET_PDEATHSIG), exits if the agent is already gone, then execs the job's command (same
# pid). No Python code runs between fork and exec in the agent: a `preexec_fn` there would run the
# at-fork hooks of gRPC and of every library loaded in the agent in a half-copied process.
LAUNCHER = """\
import os, sys
try:
    import ctypes
    ctypes.CDLL(None).prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGKILL
except Exception:
    pass
if os.getppid() != int(sys.argv[1]):
    os._exit(137)
try:
    os.execvp(sys.argv[2], sys.argv[2:])
except OSError as e:
    print(f"runwire: cannot start {sys.argv[2]!r}: {e}", file=sys.stderr, flush=True)
    os._exit(127)
"""


def launch_argv(argv: list[str], agent_pid: int) -> list[str]:
    """The command line that runs `argv` through the launcher."""
    return [sys.executable, "-I", "-S", "-c", LAUNCHER, str(agent_pid), *argv]


def find_program(program: str, env: dict[str, str], cwd: Path) -> str | None:
    """Where `program` (argv[0]) is, with the job's PATH and working folder; None when it cannot be run."""
    if os.sep in program:
        path = cwd / program
        return str(path) if path.is_file() and os.access(path, os.X_OK) else None
    return shutil.which(program, path=env.get("PATH", os.defpath))


# --- output capture --------------------------------------------------------------------------------


class LineSplitter:
    """Bytes in, lines out: split on `\\n`, decoded as UTF-8 (bad bytes replaced, characters split
    across reads kept together), a trailing `\\r` dropped, lines longer than `max_length` cut into
    pieces of `max_length` characters. `finish()` returns a last line without a newline."""

    def __init__(self, max_length: int = MAX_LOG_LINE_LENGTH) -> None:
        self.max_length = max_length
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""

    def feed(self, data: bytes) -> list[str]:
        text = self._partial + self._decoder.decode(data)
        parts = text.split("\n")
        self._partial = parts.pop()
        out: list[str] = []
        for line in parts:
            self._emit(line.removesuffix("\r"), out)
        if len(self._partial) >= self.max_length:  # a very long line: send its full pieces now
            cut = len(self._partial) - len(self._partial) % self.max_length
            self._emit(self._partial[:cut], out)
            self._partial = self._partial[cut:]
        return out

    def finish(self) -> list[str]:
        rest = self._partial + self._decoder.decode(b"", final=True)
        self._partial = ""
        out: list[str] = []
        if rest:
            self._emit(rest.removesuffix("\r"), out)
        return out

    def _emit(self, line: str, out: list[str]) -> None:
        n = self.max_length
        if len(line) <= n:
            out.append(line)
        else:
            out.extend(line[i : i + n] for i in range(0, len(line), n))


_TRACEBACK = "Traceback (most recent call last):"
_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*)(?::\s?(.*))?$")


def traceback_error(lines: list[str] | deque[str]) -> tuple[str, str] | None:
    """(exception type, message) from the last Python traceback in `lines`, or None."""
    lines = list(lines)
    start = None
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith(_TRACEBACK):
            start = i
            break
    if start is None:
        return None
    for line in lines[start + 1 :]:
        if not line or line[0] in " \t":
            continue  # a frame, its source line, or a caret line
        m = _EXCEPTION_LINE.match(line)
        if m is None:
            return None
        return m.group(1), (m.group(2) or "")
    return None


def failure_message(returncode: int, tail: list[str] | deque[str]) -> str:
    """The run's error message for a program that ended with `returncode` (Popen's: -N = signal N)."""
    if returncode < 0:
        return f"User program failed: killed by signal {signal_name(-returncode)}"
    error = traceback_error(tail)
    if error is not None:
        exc_type, message = error
        return f"User program failed with {exc_type}: {message}" if message else f"User program failed with {exc_type}"
    return f"User program failed with exit code {returncode}"


# --- configuration and jobs ------------------------------------------------------------------------


@dataclass
class RunnerConfig:
    target: str
    slots: int
    spool_dir: Path
    collector: str
    socket_path: Path
    security: ClientSecurity = field(default_factory=ClientSecurity)
    """The agent's token and TLS files, for its snapshot client and its jobs (RUNWIRE_TOKEN, RUNWIRE_TLS_*)."""
    keep_job_dirs: bool = False
    cancel_grace_s: float = JOB_CANCEL_GRACE_S
    log_batch_delay_s: float = 0.01

    @property
    def jobs_dir(self) -> Path:
        return self.spool_dir / JOBS_DIR


_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


class Job:
    """One leased run on this node, from the lease to its final status."""

    def __init__(self, runner: Runner, lease: compute_pb2.Lease) -> None:
        self.runner = runner
        self.lease = lease
        self.lease_id = lease.lease_id
        self.run_id = lease.run_id
        name = f"{_SAFE.sub('_', lease.run_id)[:120]}-{_SAFE.sub('_', lease.lease_id)[:8]}"
        self.folder = runner.config.jobs_dir / name
        self.log_path = runner.config.jobs_dir / LOGS_DIR / f"{name}.txt"
        self.proc: subprocess.Popen | None = None
        self.ending: str | None = None  # why the job is being stopped: canceled, stale, agent, timeout
        self.state = "waiting"
        self.task: asyncio.Task | None = None
        self._kill_timer: asyncio.TimerHandle | None = None
        self._pending: list[str] = []
        self._pending_chars = 0
        self._flush_timer: asyncio.TimerHandle | None = None
        self.lines = 0  # lines captured (the next line's number)
        self.tail: deque[str] = deque(maxlen=TRACEBACK_TAIL_LINES)
        self._log_file = None
        self._splitter = LineSplitter()

    # --- reporting ---------------------------------------------------------------------------------

    def report(self, status: str, *, error_code: str = "", error_message: str = "") -> int:
        log.info(
            "job status",
            extra={"fields": {"run": self.run_id, "lease": self.lease_id, "status": status, "error": error_message}},
        )
        return self.runner.reporter.status(
            self.run_id, status, lease_id=self.lease_id, error_code=error_code, error_message=error_message
        )

    # --- stopping ----------------------------------------------------------------------------------

    def stop(self, reason: str) -> None:
        """Stop the job: `canceled` (report Canceled), `stale` (kill, report nothing), `agent` (the
        agent stops: report Failed), `timeout` (max_run_duration_seconds: report Failed)."""
        if self.ending is not None:
            if reason == "stale" and self.ending != "stale":
                self.ending = "stale"
                self._signal(signal.SIGKILL)
            return
        self.ending = reason
        if self.proc is None or self.proc.returncode is not None:
            return
        if reason == "stale":
            self._signal(signal.SIGKILL)
            return
        self._signal(signal.SIGTERM)
        loop = asyncio.get_running_loop()
        self._kill_timer = loop.call_later(self.runner.config.cancel_grace_s, self._signal, signal.SIGKILL)

    def _signal(self, sig: int) -> None:
        proc = self.proc
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)  # the process group: the script and what it started

    # --- the job -----------------------------------------------------------------------------------

    async def run(self) -> None:
        runner = self.runner
        final_seq = 0
        try:
            async with runner.slots:
                final_seq = await self._run()
        except asyncio.CancelledError:
            self._kill_now()
            raise
        except Exception as e:
            log.exception("job failed inside the agent", extra={"fields": {"run": self.run_id}})
            self._kill_now()
            if self.ending != "stale":
                final_seq = self.report(
                    "Failed", error_code=AGENT_ERROR_CODE, error_message=f"the agent failed running this job: {e!r}"
                )
        finally:
            self._close_log()
            if not runner.config.keep_job_dirs:
                await asyncio.to_thread(self._remove_files)
        if final_seq and self.ending != "agent" and not runner.stopping:
            # The lease stays held (listed in heartbeats) until the collector has the final status.
            self.state = "reported"
            await runner.reporter.wait_committed(final_seq, FINAL_COMMIT_WAIT_S)

    def _kill_now(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self._signal(signal.SIGKILL)

    async def _run(self) -> int:
        """Returns the seq of the final status report (0: none)."""
        runner = self.runner
        if self.ending is not None:
            return self._report_end_before_start()
        self.state = "preparing"
        try:
            await asyncio.to_thread(self._prepare)
        except Exception as e:
            log.warning("could not prepare a job", extra={"fields": {"run": self.run_id, "error": repr(e)}})
            if self.ending is not None:
                return self._report_end_before_start()
            return self.report("Failed", error_code=AGENT_ERROR_CODE, error_message=f"could not prepare the job: {e}")
        if self.ending is not None:
            return self._report_end_before_start()
        argv, env = self._command()
        if find_program(argv[0], env, self.folder) is None:
            return self.report(
                "Failed",
                error_code=USER_ERROR_CODE,
                error_message=f"User program could not be started: {argv[0]!r} is not an executable program",
            )
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log_path, "w", encoding="utf-8", newline="\n")  # noqa: SIM115 - closed in run()
        read_fd, write_fd = os.pipe()
        try:
            self.proc = subprocess.Popen(
                launch_argv(argv, os.getpid()),
                cwd=self.folder,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=write_fd,
                stderr=write_fd,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as e:
            os.close(read_fd)
            return self.report(
                "Failed", error_code=USER_ERROR_CODE, error_message=f"User program could not be started: {e}"
            )
        finally:
            os.close(write_fd)
        runner.stats.jobs_started += 1
        runner.running += 1
        self.state = "running"
        self.report("Running")
        started = time.monotonic()
        max_s = self.lease.definition.max_run_duration_seconds
        timer = asyncio.get_running_loop().call_later(max_s, self.stop, "timeout") if max_s > 0 else None
        try:
            returncode = await self._capture_until_exit(read_fd)
        finally:
            runner.running -= 1
            if timer is not None:
                timer.cancel()
            if self._kill_timer is not None:
                self._kill_timer.cancel()
        runner.stats.jobs_finished += 1
        log.info(
            "job process exited",
            extra={
                "fields": {
                    "run": self.run_id,
                    "returncode": returncode,
                    "seconds": round(time.monotonic() - started, 3),
                    "lines": self.lines,
                }
            },
        )
        return await self._finish(returncode, max_s)

    def _report_end_before_start(self) -> int:
        if self.ending == "canceled":
            return self.report("Canceled")
        if self.ending == "agent":
            return self.report(
                "Failed", error_code=AGENT_ERROR_CODE, error_message="the agent was stopped before the job started"
            )
        return 0  # stale: the lease is not ours any more

    async def _finish(self, returncode: int, max_s: int) -> int:
        ending = self.ending
        if ending == "stale":
            return 0
        if ending == "agent":
            # The agent is stopping: the files go to its uploads area (sent now or by its next
            # start), the status does not wait for them.
            await self._upload_files(wait=False)
            return self.report(
                "Failed",
                error_code=AGENT_ERROR_CODE,
                error_message="the agent was stopped while the job ran "
                f"(its process ended with {describe_returncode(returncode)})",
            )
        if ending != "canceled":
            self.state = "finalizing"
            self.report("Finalizing")
        await self._upload_files(wait=True)
        if ending == "canceled":
            return self.report("Canceled")
        if ending == "timeout":
            return self.report(
                "Failed",
                error_code=TIMEOUT_ERROR_CODE,
                error_message=f"the run exceeded its max_run_duration_seconds ({max_s} s) and was stopped",
            )
        if returncode == 0:
            return self.report("Completed")
        return self.report("Failed", error_code=USER_ERROR_CODE, error_message=failure_message(returncode, self.tail))

    def _prepare(self) -> None:
        """In a thread: a fresh working folder with the snapshot's files and an empty ./outputs."""
        if self.folder.exists():
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True)
        snapshot_id = self.lease.definition.snapshot_id
        if snapshot_id:
            from runwire.snapshot import unpack

            unpack(self.runner.collector_client(), snapshot_id, self.folder)
        (self.folder / jobs.OUTPUTS_DIR).mkdir(exist_ok=True)

    def _command(self) -> tuple[list[str], dict[str, str]]:
        d = self.lease.definition
        cfg = self.runner.config
        if d.command:
            argv = list(d.command)
        elif d.script:
            interpreter = d.interpreter_path if d.user_managed_dependencies and d.interpreter_path else sys.executable
            argv = [interpreter, d.script, *d.arguments]
        else:
            raise ValueError("the job has neither a script nor a command")
        env = dict(os.environ)
        env.update(d.environment_variables)
        outputs = f"./{jobs.OUTPUTS_DIR}"
        env.update(
            {
                jobs.ENV_RUN_ID: self.run_id,
                jobs.ENV_EXPERIMENT: self.lease.experiment_name,
                jobs.ENV_COLLECTOR: cfg.collector,
                jobs.ENV_AGENT_SOCKET: str(cfg.socket_path),
                jobs.ENV_OUTPUT_DIRECTORY: outputs,
                jobs.ENV_TARGET: cfg.target,
                jobs.AZUREML_ENV_RUN_ID: self.run_id,
                jobs.AZUREML_ENV_EXPERIMENT: self.lease.experiment_name,
                jobs.AZUREML_ENV_OUTPUT_DIRECTORY: outputs,
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(cfg.security.env())
        return argv, env

    # --- output ------------------------------------------------------------------------------------

    async def _capture_until_exit(self, read_fd: int) -> int:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=PIPE_READ_BYTES)
        pipe = os.fdopen(read_fd, "rb", buffering=0)
        transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
        capture = asyncio.create_task(self._capture(reader), name=f"capture-{self.run_id}")
        try:
            returncode = await self._wait_exit()
            # Whatever the script left running in its process group goes with it.
            self._signal(signal.SIGKILL)
            try:
                await asyncio.wait_for(asyncio.shield(capture), OUTPUT_DRAIN_AFTER_EXIT_S)
            except TimeoutError:
                log.warning(
                    "a process outside the job's group holds its output open; capture stopped",
                    extra={"fields": {"run": self.run_id}},
                )
                capture.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await capture
                self._add_lines(self._splitter.finish())
        finally:
            if not capture.done():
                capture.cancel()
            transport.close()
        self._flush_logs()
        return returncode

    async def _wait_exit(self) -> int:
        proc = self.proc
        assert proc is not None
        try:
            fd = os.pidfd_open(proc.pid)
        except (AttributeError, OSError):
            fd = None
        if fd is not None:
            loop = asyncio.get_running_loop()
            exited = loop.create_future()
            loop.add_reader(fd, lambda: exited.done() or exited.set_result(None))
            try:
                await exited
            finally:
                loop.remove_reader(fd)
                os.close(fd)
            return proc.wait()
        while proc.poll() is None:
            await asyncio.sleep(EXIT_POLL_S)  # no pidfd to wait on: poll the child
        return proc.returncode

    async def _capture(self, reader: asyncio.StreamReader) -> None:
        batcher = self.runner.reporter.batcher
        while True:
            await batcher.wait_room()  # a full spool: the pipe fills and the job waits
            data = await reader.read(PIPE_READ_BYTES)
            if not data:
                break
            self._add_lines(self._splitter.feed(data))
        self._add_lines(self._splitter.finish())

    def _add_lines(self, lines: list[str]) -> None:
        if not lines:
            return
        if self._log_file is not None:
            self._log_file.write("\n".join(lines))
            self._log_file.write("\n")
        self.tail.extend(lines)
        for line in lines:
            self._pending.append(line)
            self._pending_chars += len(line) + 1
            if len(self._pending) >= LOG_BATCH_MAX_LINES or self._pending_chars >= LOG_BATCH_MAX_BYTES:
                self._flush_logs()
        if self._pending and self._flush_timer is None:
            delay = self.runner.config.log_batch_delay_s
            self._flush_timer = asyncio.get_running_loop().call_later(delay, self._flush_logs)

    def _flush_logs(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        if not self._pending:
            return
        lines, self._pending = self._pending, []
        self._pending_chars = 0
        self.runner.reporter.logs(self.run_id, jobs.STD_LOG_PATH, self.lines, lines)
        self.lines += len(lines)

    def _close_log(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        if self._log_file is not None:
            with contextlib.suppress(OSError):
                self._log_file.close()
            self._log_file = None

    # --- files -------------------------------------------------------------------------------------

    def _outputs(self) -> list[tuple[str, Path]]:
        root = self.folder / jobs.OUTPUTS_DIR
        files = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for filename in sorted(filenames):
                path = Path(dirpath) / filename
                if not path.is_file():
                    continue  # a socket, a fifo, a dangling link
                rel = path.relative_to(root).as_posix()
                files.append((f"{jobs.OUTPUTS_DIR}/{rel}", path))
        return files

    async def _upload_files(self, wait: bool) -> None:
        uploads = self.runner.uploads
        if uploads is None:
            return
        self._flush_logs()
        self._close_log()
        files = await asyncio.to_thread(self._outputs) if self.folder.exists() else []
        if self.log_path.exists():
            files.append((jobs.STD_LOG_PATH, self.log_path))
        files = [(n, p) for n, p in files if _size(p) <= MAX_ARTIFACT_BYTES]
        if not files:
            return
        try:
            ids = await uploads.add_local_many(self.run_id, files)
        except Exception as e:
            log.warning(
                "could not hand a job's files to the uploads", extra={"fields": {"run": self.run_id, "error": repr(e)}}
            )
            return
        if not wait:
            return
        results = await uploads.wait_done([i for i in ids if i])
        for upload_id, (error, conflict) in results.items():
            if error and not conflict:
                log.warning(
                    "a job file was not uploaded",
                    extra={"fields": {"run": self.run_id, "upload": upload_id, "error": error}},
                )

    def _remove_files(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.log_path.unlink()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def describe_returncode(returncode: int) -> str:
    if returncode < 0:
        return f"signal {signal_name(-returncode)}"
    return f"exit code {returncode}"


class Runner:
    """Runs leased jobs, at most `slots` at once."""

    def __init__(self, config: RunnerConfig, reporter: Reporter, uploads: Uploads | None, stats: AgentStats) -> None:
        if config.slots < 1:
            raise ValueError("slots must be at least 1")
        self.config = config
        self.reporter = reporter
        self.uploads = uploads
        self.stats = stats
        self.slots = asyncio.Semaphore(config.slots)
        self.jobs: dict[str, Job] = {}  # lease id -> job, until its final status is committed
        self.running = 0  # jobs whose process runs
        self.stopping = False
        self._client = None

    def collector_client(self):
        """A synchronous collector client (used in threads, for snapshots)."""
        if self._client is None:
            from runwire._transports.collector import CollectorClient

            self._client = CollectorClient(self.config.collector, security=self.config.security)
        return self._client

    def start(self) -> None:
        """Remove working folders left by an earlier agent on this spool (their jobs died with it)."""
        jobs_dir = self.config.jobs_dir
        if jobs_dir.exists() and not self.config.keep_job_dirs:
            for child in jobs_dir.iterdir():
                if child.name == LOGS_DIR:
                    for f in child.iterdir():
                        f.unlink(missing_ok=True)
                else:
                    shutil.rmtree(child, ignore_errors=True)
        jobs_dir.mkdir(parents=True, exist_ok=True)

    @property
    def running_leases(self) -> list[str]:
        return list(self.jobs)

    def on_lease(self, lease: compute_pb2.Lease) -> None:
        if self.stopping:
            return  # not listed in heartbeats: the collector gives it to another node
        if lease.lease_id in self.jobs:
            return
        job = Job(self, lease)
        self.jobs[lease.lease_id] = job
        log.info("lease received", extra={"fields": {"run": lease.run_id, "lease": lease.lease_id}})
        job.task = asyncio.create_task(self._run_job(job), name=f"job-{lease.run_id}")

    async def _run_job(self, job: Job) -> None:
        try:
            await job.run()
        finally:
            self.jobs.pop(job.lease_id, None)

    def on_cancel(self, cancel: compute_pb2.CancelLease) -> None:
        job = self.jobs.get(cancel.lease_id)
        if job is None:
            return
        log.info(
            "lease canceled",
            extra={
                "fields": {
                    "run": job.run_id,
                    "lease": job.lease_id,
                    "canceled": cancel.canceled,
                    "reason": cancel.reason,
                }
            },
        )
        if job.state == "reported":
            return  # done; only waiting for the collector to have its final status
        job.stop("canceled" if cancel.canceled else "stale")

    async def stop(self) -> None:
        """Stop every job (SIGTERM, grace, SIGKILL), report them Failed, wait for the reports."""
        self.stopping = True
        tasks = []
        for job in list(self.jobs.values()):
            if job.state == "reported":
                if job.task is not None:
                    job.task.cancel()  # its final status is spooled; the next start sends it
                continue
            job.stop("agent")
            if job.task is not None:
                tasks.append(job.task)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.config.cancel_grace_s + OUTPUT_DRAIN_AFTER_EXIT_S + 5)
            for t in pending:
                t.cancel()
            for t in pending:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
        if self._client is not None:
            self._client.close()
