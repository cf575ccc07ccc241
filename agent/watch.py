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

Claims outlive the agent: `ClaimStore` keeps them in `<spool>/claims/<pid>-<starttime>.json`
(starttime: field 22 of `/proc/<pid>/stat`, so that a reused pid is not taken for the process),
one file per client process holding every run id it claimed on any connection, rewritten
atomically (tmp + `os.replace`, no fsync) shortly after its claims change (at most every
`CLAIMS_WRITE_INTERVAL_S`), and removed once that process's runs are reported and the report is
in the spool. `Watch.restore()` (at agent start, before the socket accepts connections) loads
them: a process that is gone (or whose start time differs) has its runs reported Failed at once
("... exited without completing it while the agent was down or restarting; ..."); one still alive
is watched like a closed connection (it reconnects and claims again; when it exits its runs are
reported as usual). At most `MAX_CLAIM_FILES` files are kept; beyond it the oldest are deleted
with a warning (their processes are then watched only while this agent runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from runwire.agent.reports import Reporter
from runwire.v1 import metrics_pb2

log = logging.getLogger("runwire.agent.watch")

WATCH_POLL_S = 0.5
"""How often `/proc/<pid>` is checked for a watched process when pidfds are not available."""
PROCESS_DIED_ERROR_CODE = "ProcessDied"
"""`error.code` of a run whose process exited without ending it."""
REPORT_RUNS_PER_BATCH = 1000
"""Status changes of one exited process put in one reported batch at most."""
CLAIMS_DIR = "claims"
"""Folder of the spool folder holding one claims file per client process with claims."""
MAX_CLAIM_FILES = 4096
"""Claims files kept at most; beyond it the oldest are deleted (with a warning), and the runs of
those processes are reported only if they exit while this agent runs."""
CLAIMS_WRITE_INTERVAL_S = 0.05
"""Claims files are rewritten at most this often (claims arriving meanwhile are written together)."""


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


def died_while_down_message(pid: int, info: ExitInfo) -> str:
    return (
        f"the process that ran this run (pid {pid}) exited without completing it while the agent was down "
        f"or restarting; {info.describe()}"
    )


@dataclass
class Claims:
    """The runs one client process claimed; `started` 0: its start time could not be read."""

    pid: int
    started: int
    run_ids: dict[str, None] = field(default_factory=dict)
    persisted: bool = True  # False once dropped beyond MAX_CLAIM_FILES

    @property
    def key(self) -> tuple[int, int]:
        return (self.pid, self.started)

    @property
    def file_name(self) -> str:
        return f"{self.pid}-{self.started}.json"


class ClaimStore:
    """Claims of client processes, kept in memory and as one file per process in `folder`."""

    def __init__(
        self, folder: Path, max_files: int = MAX_CLAIM_FILES, write_interval_s: float = CLAIMS_WRITE_INTERVAL_S
    ) -> None:
        self.folder = Path(folder)
        self.max_files = max_files
        self.write_interval_s = write_interval_s
        self._claims: dict[tuple[int, int], Claims] = {}  # oldest first
        self._dirty: dict[tuple[int, int], None] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._last_write = 0.0
        self.writes = 0
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._claims)

    def of_pid(self, pid: int) -> list[Claims]:
        return [c for c in self._claims.values() if c.pid == pid]

    def load(self) -> list[Claims]:
        """Read every claims file (at agent start); returns what they hold, oldest first."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        files = []
        for path in self.folder.iterdir():
            if path.name.endswith(".tmp"):  # a write cut short by a kill: the previous file stands
                with contextlib.suppress(OSError):
                    path.unlink()
            elif path.suffix == ".json":
                with contextlib.suppress(OSError):
                    files.append((path.stat().st_mtime, path.name, path))
        files.sort()
        if len(files) > self.max_files:
            dropped = files[: len(files) - self.max_files]
            files = files[len(dropped) :]
            for _, _, path in dropped:
                with contextlib.suppress(OSError):
                    path.unlink()
            self.dropped += len(dropped)
            log.warning(
                f"more than {self.max_files} claims files (MAX_CLAIM_FILES); the oldest are dropped",
                extra={"fields": {"dropped": len(dropped), "folder": str(self.folder)}},
            )
        loaded = []
        for _, _, path in files:
            try:
                doc = json.loads(path.read_bytes())
                claims = Claims(int(doc["pid"]), int(doc["started"] or 0), dict.fromkeys(map(str, doc["run_ids"])))
            except (OSError, ValueError, KeyError, TypeError) as e:
                log.warning("unreadable claims file removed", extra={"fields": {"file": str(path), "error": str(e)}})
                with contextlib.suppress(OSError):
                    path.unlink()
                continue
            if path.name != claims.file_name:
                with contextlib.suppress(OSError):
                    path.unlink()
                self._dirty[claims.key] = None  # written again under its own name
            old = self._claims.get(claims.key)
            if old is not None:
                old.run_ids.update(claims.run_ids)
            else:
                self._claims[claims.key] = claims
                loaded.append(claims)
        self.flush()
        return loaded

    def add(self, pid: int, run_ids: Iterable[str]) -> tuple[int, int]:
        """`pid` claimed `run_ids` (on the event loop); its file is written soon. Returns its key."""
        started = start_time(pid) or 0
        key = (pid, started)
        claims = self._claims.get(key)
        if claims is None:
            claims = self._claims[key] = Claims(pid, started)
            self._limit()
        before = len(claims.run_ids)
        for run_id in run_ids:
            claims.run_ids[run_id] = None
        if len(claims.run_ids) != before and claims.persisted:
            self._dirty[key] = None
            self._schedule()
        return key

    def _limit(self) -> None:
        persisted = [c for c in self._claims.values() if c.persisted]
        for claims in persisted[: max(0, len(persisted) - self.max_files)]:
            claims.persisted = False
            self._dirty.pop(claims.key, None)
            self._unlink(claims)
            self.dropped += 1
            log.warning(
                f"more than {self.max_files} client processes with claims (MAX_CLAIM_FILES); the oldest one's "
                "claims file is dropped: its runs are reported only if it exits while this agent runs",
                extra={"fields": {"pid": claims.pid, "runs": len(claims.run_ids)}},
            )

    def remove(self, key: tuple[int, int]) -> None:
        """Forget a process's claims and delete its file (its runs are reported)."""
        claims = self._claims.pop(key, None)
        self._dirty.pop(key, None)
        if claims is not None and claims.persisted:
            self._unlink(claims)

    def _schedule(self) -> None:
        if self._timer is not None:
            return
        delay = max(0.0, self._last_write + self.write_interval_s - time.monotonic())
        self._timer = asyncio.get_running_loop().call_later(delay, self.flush)

    def flush(self) -> None:
        """Write every claims file whose claims changed."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._last_write = time.monotonic()
        dirty, self._dirty = self._dirty, {}
        for key in dirty:
            claims = self._claims.get(key)
            if claims is not None and claims.persisted:
                self._write(claims)

    def _write(self, claims: Claims) -> None:
        path = self.folder / claims.file_name
        tmp = self.folder / f"{claims.file_name}.{os.getpid()}.tmp"
        doc = {"pid": claims.pid, "started": claims.started, "run_ids": list(claims.run_ids)}
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            with open(tmp, "w") as f:
                json.dump(doc, f, separators=(",", ":"))
            os.replace(tmp, path)
            self.writes += 1
        except OSError as e:
            with contextlib.suppress(OSError):
                tmp.unlink()
            log.warning(
                "could not write a claims file; its runs are reported only if the process exits while this agent runs",
                extra={"fields": {"file": str(path), "error": str(e)}},
            )

    def _unlink(self, claims: Claims) -> None:
        try:
            (self.folder / claims.file_name).unlink(missing_ok=True)
        except OSError as e:
            log.warning("could not remove a claims file", extra={"fields": {"file": claims.file_name, "error": str(e)}})

    def close(self) -> None:
        self.flush()


@dataclass
class _Watched:
    pid: int
    started: int | None
    run_ids: dict[str, None] = field(default_factory=dict)
    pidfd: int | None = None
    poll_task: asyncio.Task | None = None


class Watch:
    """Follows the processes of closed connections with claims; reports their runs once they exit.
    With a `ClaimStore`, claims are also kept on disk for the next start of the agent."""

    def __init__(
        self,
        reporter: Reporter,
        poll_s: float = WATCH_POLL_S,
        use_pidfd: bool = True,
        claims: ClaimStore | None = None,
    ) -> None:
        self.reporter = reporter
        self.poll_s = poll_s
        self.use_pidfd = use_pidfd and hasattr(os, "pidfd_open")
        self.claims = claims
        self._watched: dict[int, _Watched] = {}
        self._forgetting: set[asyncio.Task] = set()
        self.reported = 0  # runs reported Failed
        self.on_report: Callable[[int, list[str], ExitInfo], None] | None = None  # tests

    @property
    def watching(self) -> int:
        return len(self._watched)

    def claimed(self, pid: int, run_ids: list[str]) -> None:
        """`pid` claimed `run_ids` on a connection (on the event loop): kept in the claims store."""
        if self.claims is None:
            return
        key = self.claims.add(pid, run_ids)
        w = self._watched.get(pid)
        if w is not None and w.started == key[1]:
            # It reconnected: its connections carry its claims now (the store keeps them all), and
            # the watch starts again when they close.
            del self._watched[pid]
            self._close(w)

    def restore(self) -> None:
        """Load the claims files left by the previous start of the agent (before accepting clients):
        the runs of processes that are gone are reported Failed now, the others are watched."""
        if self.claims is None:
            return
        for claims in self.claims.load():
            if claims.started and alive(claims.pid, claims.started):
                self.watch(claims.pid, list(claims.run_ids), started=claims.started)
                continue
            info = ExitInfo(zombie_exit_status(claims.pid, claims.started) if claims.started else None)
            run_ids = list(claims.run_ids)
            self._report(claims.pid, run_ids, died_while_down_message(claims.pid, info))
            self._forget_when_spooled([claims.key])
            log.info(
                "a client process exited while the agent was down; its unfinished runs are reported Failed",
                extra={"fields": {"pid": claims.pid, "runs": len(run_ids), "exit": info.describe()}},
            )
            if self.on_report is not None:
                self.on_report(claims.pid, run_ids, info)

    def watch(self, pid: int, run_ids: list[str], started: int | None = None) -> None:
        """Called when a connection of `pid` that claimed `run_ids` closed (on the event loop).
        `started`: the start time the process is known by (a restored claims file)."""
        w = self._watched.get(pid)
        if w is not None:
            for run_id in run_ids:
                w.run_ids[run_id] = None
            return
        if started is None:
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
        if w.pidfd is not None and started is not None and start_time(pid) != started:
            self._exited(w)  # the pid is another process's now: the one watched is gone
            return
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
        # Every run this process claimed on any connection (its claims files), unless the pid is
        # already another process's.
        done = []
        if self.claims is not None:
            for claims in self.claims.of_pid(w.pid):
                if not alive(claims.pid, claims.started or None):
                    w.run_ids.update(claims.run_ids)
                    done.append(claims.key)
        run_ids = list(w.run_ids)
        self._report(w.pid, run_ids, message)
        self._forget_when_spooled(done)
        log.info(
            "a client process exited; its unfinished runs are reported Failed",
            extra={"fields": {"pid": w.pid, "runs": len(run_ids), "exit": info.describe()}},
        )
        if self.on_report is not None:
            self.on_report(w.pid, run_ids, info)

    def _report(self, pid: int, run_ids: list[str], message: str) -> None:
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

    def _forget_when_spooled(self, keys: list[tuple[int, int]]) -> None:
        """Delete these claims files once the report just made is in the spool."""
        if self.claims is None or not keys:
            return
        batcher = self.reporter.batcher
        spooled = batcher.cut()  # the open bundle holds the report (None: cut already)
        task = asyncio.create_task(self._forget(keys, spooled), name="claims-forget")
        self._forgetting.add(task)
        task.add_done_callback(self._forgetting.discard)

    async def _forget(self, keys: list[tuple[int, int]], spooled: asyncio.Future | None) -> None:
        if spooled is None:
            await self.reporter.batcher.wait_idle()
        else:
            await asyncio.wait((spooled,))
            if spooled.cancelled() or spooled.exception() is not None:
                log.warning("a report could not be spooled; its claims files stay for the next start")
                return
        for key in keys:
            self.claims.remove(key)

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
        """Stop watching (the agent stops; the runs of processes still alive are not reported, their
        claims files stay for the next start)."""
        for w in list(self._watched.values()):
            self._close(w)
        self._watched.clear()
        if self.claims is not None:
            self.claims.close()
