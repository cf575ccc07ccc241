"""Following a run as it goes: its status and its log, pushed live by the collector.

`stream_log` writes a run's log lines as they are committed (what is stored first, then live,
each line once) until the run ends; `wait_for_status` waits for a status without polling. Both
ride a live subscription (`runwire.live`); the store is read again only to fill a gap (a lagged
subscriber, a collector that restarted) and, with the run ended, to take the log's last lines.
`Run.wait_for_completion`, `runwire submit` and `runwire logs -f` use them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from runwire.exceptions import ServiceUnavailableError, UserErrorException
from runwire.jobs import STD_LOG_PATH
from runwire.statuses import TERMINAL_STATUSES

if TYPE_CHECKING:
    from runwire._transports import Transport
    from runwire.live import Subscription

STATUS_RECHECK_S = 10.0
"""Seconds without any live event after which a follower reads the run's status from the store
again (a safety net under the subscription, which normally pushes every change)."""

RESUBSCRIBE_ATTEMPTS = 5
"""Times in a row a follower subscribes again after its subscription ended (a collector restart)."""


def stream_title(path: str = STD_LOG_PATH) -> str:
    """The block Azure ML prints before a streamed log: a blank line, `Streaming <path>`, a rule."""
    title = f"Streaming {path}"
    return f"\n{title}\n{'=' * len(title)}\n\n"


class _LogCursor:
    """Writes each line of one log file once, in order, whatever order the pieces arrive in."""

    def __init__(
        self, transport: Transport, run_id: str, path: str, write: Callable[[str], object], title: bool
    ) -> None:
        self.transport = transport
        self.run_id = run_id
        self.path = path
        self.write = write
        self.next_line = 0
        self.title = title

    def started(self) -> None:
        """The log exists: write the title once, if asked."""
        if self.title:
            self.title = False
            self.write(stream_title(self.path))

    def finish(self) -> None:
        """An empty log still gets its title (when the run has that log at all)."""
        if self.title and self.path in self.transport.get_run(self.run_id).log_files:
            self.started()

    def feed(self, first_line: int, lines: list[str]) -> None:
        if first_line > self.next_line:
            self.fill(first_line - self.next_line)  # lines this follower missed
        self._emit(first_line, lines)

    def _emit(self, first_line: int, lines: list[str]) -> None:
        """Write the lines not written yet (a gap the store could not fill is left a gap)."""
        skip = self.next_line - first_line
        if skip >= len(lines):
            return
        self.started()
        self.write("".join(line + "\n" for line in lines[max(0, skip) :]))
        self.next_line = first_line + len(lines)

    def fill(self, max_lines: int = 0) -> None:
        """Read lines from the store from `next_line` on (`max_lines` of them; 0 = all there are)."""
        try:
            for chunk in self.transport.get_log(self.run_id, self.path, self.next_line, max_lines):
                self._emit(chunk.first_line, list(chunk.lines))
        except (UserErrorException, ServiceUnavailableError):
            pass  # no log stored (yet): nothing to fill


def stream_log(
    transport: Transport,
    run_id: str,
    write: Callable[[str], object],
    *,
    follow: bool = True,
    path: str = STD_LOG_PATH,
    title: bool = False,
) -> str:
    """Write the run's log (`path`) with `write`, one `line + "\\n"` at a time; returns the run's
    final status. `follow=True`: what is stored, then every line as it is committed, until the run
    reaches a terminal status (through `Finalizing`); `follow=False`: what is stored now, and the
    current status. `title=True`: write `stream_title(path)` before the first line (or at the end
    for a log without lines; not at all for a run without that log)."""
    cursor = _LogCursor(transport, run_id, path, write, title)
    if not follow:
        status = transport.get_run(run_id).status
        cursor.fill()
        cursor.finish()
        return status
    status = _follow(transport, run_id, cursor)
    cursor.fill()  # the last lines: committed before the final status, maybe not yet delivered
    cursor.finish()
    return status


def _subscribe(transport: Transport, run_id: str, kinds: list[str]) -> Subscription:
    return transport.subscribe(run_id=run_id, kinds=kinds, from_start=True)


def _follow(transport: Transport, run_id: str, cursor: _LogCursor) -> str:
    status = ""
    failures = 0

    def handle(ev) -> None:
        nonlocal status
        if ev.kind == "status" and ev.run_id == run_id:
            status = ev.status
        elif ev.kind == "log" and ev.run_id == run_id and ev.path == cursor.path:
            cursor.feed(ev.first_line, ev.lines)
        elif ev.kind == "lagged":
            status = transport.get_run(run_id).status  # log gaps are filled by the next log event

    while True:
        sub = _subscribe(transport, run_id, ["status", "log"])
        try:
            for ev in sub.read_history():
                handle(ev)
            if not status:
                status = transport.get_run(run_id).status
            while status not in TERMINAL_STATUSES:
                ev = sub.next_event(STATUS_RECHECK_S)
                if ev is None:
                    status = transport.get_run(run_id).status
                    cursor.fill()
                else:
                    handle(ev)
                failures = 0
            return status
        except (StopIteration, ServiceUnavailableError):
            failures += 1  # the subscription ended (the collector went away): subscribe again
            if failures >= RESUBSCRIBE_ATTEMPTS:
                raise
            status = transport.get_run(run_id).status
            if status in TERMINAL_STATUSES:
                return status
        finally:
            sub.close()


def wait_for_status(transport: Transport, run_id: str, done: Callable[[str], bool]) -> str:
    """Wait (on a live subscription, not by polling) until `done(status)`; returns that status."""
    failures = 0
    status = ""
    while True:
        sub = _subscribe(transport, run_id, ["status"])
        try:
            for ev in sub.read_history():
                if ev.kind == "status" and ev.run_id == run_id:
                    status = ev.status
            if not status:
                status = transport.get_run(run_id).status
            while not done(status):
                ev = sub.next_event(STATUS_RECHECK_S)
                if ev is None or ev.kind == "lagged":
                    status = transport.get_run(run_id).status
                elif ev.kind == "status" and ev.run_id == run_id:
                    status = ev.status
                failures = 0
            return status
        except (StopIteration, ServiceUnavailableError):
            failures += 1
            if failures >= RESUBSCRIBE_ATTEMPTS:
                raise
            status = transport.get_run(run_id).status
            if done(status):
                return status
        finally:
            sub.close()


__all__ = ["stream_log", "stream_title", "wait_for_status"]
