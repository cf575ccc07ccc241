"""Print a run's log (default `user_logs/std_log.txt`: a submitted script's stdout and stderr).

With -f/--follow it keeps printing new lines as the collector commits them (pushed live, the
way `run.wait_for_completion(show_output=True)` streams) until the run ends, then
prints the final status on stderr and exits 0 (Completed) or 1 (Failed or Canceled). Log lines are
printed as they were written.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from runwire.cli._common import add_endpoint_arguments, endpoint_from_args, fail, safe
from runwire.jobs import STD_LOG_PATH


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_id", metavar="RUN", help="run id")
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until the run ends")
    parser.add_argument(
        "--path", default=STD_LOG_PATH, metavar="PATH", help=f"the log file of the run (default {STD_LOG_PATH})"
    )
    parser.add_argument(
        "--from-line", type=int, default=0, metavar="N", help="start at line N (0-based; default 0: the whole log)"
    )
    add_endpoint_arguments(parser, agent=False)


def print_lines(transport: Any, run_id: str, path: str, from_line: int, write: Callable[[str], Any]) -> int:
    """Write the log's lines from `from_line` on; return the number of the line after the last one."""
    line = from_line
    for chunk in transport.get_log(run_id, path=path, from_line=line):
        for text in chunk.lines:
            write(text + "\n")
        line = max(line, chunk.first_line + len(chunk.lines))
    return line


class _SkipLines:
    """A `write` that drops the first `count` lines it is given (each write is whole lines)."""

    def __init__(self, write: Callable[[str], Any], count: int) -> None:
        self.write = write
        self.count = count

    def __call__(self, text: str) -> None:
        if self.count > 0:
            lines = text.split("\n")  # a captured line never holds "\n" (other breaks are its own)
            dropped = min(self.count, len(lines) - 1)
            self.count -= dropped
            text = "\n".join(lines[dropped:])
        if text:
            self.write(text)


def run(args: argparse.Namespace) -> int:
    from runwire._transports import Transport
    from runwire.exceptions import AzureMLException, RunNotFoundError

    if args.from_line < 0:
        return fail("logs", "--from-line must be 0 or more", 2)
    transport = Transport(endpoint_from_args(args))
    try:
        try:
            record = transport.get_run(args.run_id)
        except RunNotFoundError:
            return fail("logs", f"no run with id {args.run_id!r}")
        write = sys.stdout.write
        if not args.follow:
            if args.path not in record.log_files:
                return fail("logs", _no_log(args.run_id, args.path, record))
            print_lines(transport, args.run_id, args.path, args.from_line, write)
            return 0
        from runwire.log_stream import stream_log

        def write_now(text: str) -> None:
            sys.stdout.write(text)
            sys.stdout.flush()  # live, also into a pipe

        try:
            follow_write = _SkipLines(write_now, args.from_line) if args.from_line else write_now
            status = stream_log(transport, args.run_id, follow_write, follow=True, path=args.path)
        except KeyboardInterrupt:
            sys.stdout.flush()
            return 130
        sys.stdout.flush()
        final = transport.get_run(args.run_id)
        if args.path not in final.log_files:
            print(f"runwire logs: {safe(_no_log(args.run_id, args.path, final))}", file=sys.stderr)
        message = f"Run {safe(args.run_id)} {safe(status)}"
        if final.error and final.error.get("message"):
            message += f": {safe(final.error['message'])}"
        print(message, file=sys.stderr)
        return 0 if status == "Completed" else 1
    except AzureMLException as e:
        return fail("logs", str(e))
    finally:
        transport.close()


def _no_log(run_id: str, path: str, record: Any) -> str:
    from runwire.statuses import TERMINAL_STATUSES

    yet = "" if record.status in TERMINAL_STATUSES else " yet"
    have = ", ".join(record.log_files) or "none"
    return f"run {run_id} ({record.status}) has no log file {path!r}{yet} (its log files: {have})"
