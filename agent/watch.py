"""Truthful status for runs whose process died: the watch over claimed runs.

An SDK process claims the runs it starts (`Claim` frames); the receiver knows its pid from
SO_PEERCRED. When a connection with claims closes, `Watch.watch(pid, run_ids)` follows that
process: with a pidfd (`os.pidfd_open` + the event loop's reader) where the kernel has them, else
by polling `/proc/<pid>`. Once the process has exited, each claimed run is reported
`StatusChange(Failed, only_if_active=True)`: the collector applies it only to runs that are not
finished, so a run the process completed is left alone. The exit status comes from
`/proc/<pid>/stat` (field 52, readable while the process is a zombie); when the parent reaped it
first, the message says the exit status is unknown.

A process still alive (it only reconnected) keeps being watched until it exits; claims from all
its closed connections are reported together, once. Reports are added to the batcher after every
batch those connections sent, so the run's metrics are committed before its status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from runwire.agent.reports import Reporter
from runwire.v1 import metrics_pb2

log = logging.getLogger("runwire.agent.watch")

WATCH_POLL_S = 0.5
"""How often `/proc/<pid>` is checked for a watched process when pidfds are not available."""
PROCESS_DIED_ERROR_CODE = "ProcessDied"
"""`error.code` of a run whose process exited without ending it."""
REPORT_RUNS_PER_BATCH = 1000
"""Status changes of one exited process put in one reported batch at most."""


@dataclass
class ExitInfo:
    """What is known of how a process ended."""

    status: int | None  # the wait status (as waitpid gives it); None: unknown

    def describe(self) -> str:
        st = self.status
        if st is None:
            return "its exit status is unknown"
        if os.WIFSIGNALED(st):
            return f"killed by signal {signal_name(os.WTERMSIG(st))}"
        if os.WIFEXITED(st):
            return f"exit code {os.WEXITSTATUS(st)}"
        return f"wait status {st}"


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (field 3, the state, is index 0)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("ascii", "replace")
    except OSError:
        return None
    end = raw.rfind(")")
    if end < 0:
        return None
    return raw[end + 2 :].split()


def start_time(pid: int) -> int | None:
    """The process's start time (field 22, clock ticks after boot): tells a reused pid apart."""
    fields = _stat_fields(pid)
    if fields is None or len(fields) < 20:
        return None
    return int(fields[19])


def zombie_exit_status(pid: int, started: int | None = None) -> int | None:
    """The wait status of an exited, not yet reaped process (field 52 of /proc/<pid>/stat); None
    when it is gone, still running, another process (start time differs) or the field is absent."""
    fields = _stat_fields(pid)
    if fields is None or len(fields) < 50 or fields[0] not in ("Z", "X"):
        return None
    if started is not None and int(fields[19]) != started:
        return None
    return int(fields[49])


def alive(pid: int, started: int | None) -> bool:
    """The process runs (not a zombie) and is the one that was watched."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return False
    return started is None or int(fields[19]) == started


def died_message(pid: int, info: ExitInfo) -> str:
    return f"the process that ran this run (pid {pid}) exited without completing it: {info.describe()}"


@dataclass
class _Watched:
    pid: int
    started: int | None
    run_ids: dict[str, None] = field(default_factory=dict)
    pidfd: int | None = None
    poll_task: asyncio.Task | None = None


class Watch:
    """Follows the processes of closed connections with claims; reports their runs once they exit."""

    def __init__(self, reporter: Reporter, poll_s: float = WATCH_POLL_S, use_pidfd: bool = True) -> None:
        self.reporter = reporter
        self.poll_s = poll_s
        self.use_pidfd = use_pidfd and hasattr(os, "pidfd_open")
        self._watched: dict[int, _Watched] = {}
        self.reported = 0  # runs reported Failed
        self.on_report: Callable[[int, list[str], ExitInfo], None] | None = None  # tests

    @property
    def watching(self) -> int:
        return len(self._watched)

    def watch(self, pid: int, run_ids: list[str]) -> None:
        """Called when a connection of `pid` that claimed `run_ids` closed (on the event loop)."""
        w = self._watched.get(pid)
        if w is not None:
            for run_id in run_ids:
                w.run_ids[run_id] = None
            return
        started = start_time(pid)
        w = _Watched(pid, started, dict.fromkeys(run_ids))
        loop = asyncio.get_running_loop()
        if self.use_pidfd:
            try:
                w.pidfd = os.pidfd_open(pid)
            except ProcessLookupError:
                self._watched[pid] = w
                self._exited(w)  # gone (reaped) already
                return
            except OSError:
                w.pidfd = None  # no pidfds here (e.g. ENOSYS, a seccomp profile): poll instead
        self._watched[pid] = w
        if w.pidfd is not None:
            loop.add_reader(w.pidfd, self._exited, w)
        else:
            w.poll_task = asyncio.create_task(self._poll(w), name=f"watch-{pid}")
        log.info("watching a client process", extra={"fields": {"pid": pid, "runs": len(w.run_ids)}})

    async def _poll(self, w: _Watched) -> None:
        while alive(w.pid, w.started):
            await asyncio.sleep(self.poll_s)  # polling /proc: no pidfd to wait on
        self._exited(w)

    def _exited(self, w: _Watched) -> None:
        if self._watched.get(w.pid) is not w:
            return
        del self._watched[w.pid]
        status = zombie_exit_status(w.pid, w.started)
        self._close(w, cancel_poll=False)
        info = ExitInfo(status)
        message = died_message(w.pid, info)
        run_ids = list(w.run_ids)
        now = time.time()
        for i in range(0, len(run_ids), REPORT_RUNS_PER_BATCH):
            self.reporter.statuses(
                metrics_pb2.StatusChange(
                    run_id=run_id,
                    status="Failed",
                    only_if_active=True,
                    error_code=PROCESS_DIED_ERROR_CODE,
                    error_message=message,
                    time=now,
                )
                for run_id in run_ids[i : i + REPORT_RUNS_PER_BATCH]
            )
        self.reported += len(run_ids)
        log.info(
            "a client process exited; its unfinished runs are reported Failed",
            extra={"fields": {"pid": w.pid, "runs": len(run_ids), "exit": info.describe()}},
        )
        if self.on_report is not None:
            self.on_report(w.pid, run_ids, info)

    def _close(self, w: _Watched, cancel_poll: bool = True) -> None:
        if w.pidfd is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(w.pidfd)
            with contextlib.suppress(OSError):
                os.close(w.pidfd)
            w.pidfd = None
        if cancel_poll and w.poll_task is not None:
            w.poll_task.cancel()

    def close(self) -> None:
        """Stop watching (the agent stops; the runs of processes still alive are not reported)."""
        for w in list(self._watched.values()):
            self._close(w)
        self._watched.clear()
