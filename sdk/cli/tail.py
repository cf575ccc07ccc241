"""Follow runs live in the terminal: per metric the latest value, min/max, a sparkline, the runs'
status and their new log lines, updated as the collector commits them. Works over SSH (a plain
terminal is enough); Ctrl-C exits. `--once` (or a non-terminal stdout with --once) prints one
snapshot of what is stored and exits."""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from runwire._transports import Transport
from runwire.cli._common import add_endpoint_arguments, endpoint_from_args

SPARK_POINTS = 40
"""Values of each metric the sparkline of `runwire tail` shows (the most recent ones)."""

TAIL_LOG_LINES = 12
"""Log lines `runwire tail` keeps on screen."""

TAIL_REFRESH_PER_S = 8
"""Screen refreshes per second of `runwire tail` at most."""

_BARS = "▁▂▃▄▅▆▇█"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--experiment", default="", help="follow every run of this experiment")
    parser.add_argument("--run", default="", help="follow this run (id)")
    parser.add_argument("--children", action="store_true", help="with --run: its child runs too")
    parser.add_argument(
        "--metric", action="append", default=[], metavar="PATTERN", help="metric name or glob (repeatable)"
    )
    parser.add_argument("--no-history", action="store_true", help="start from now instead of what is stored")
    parser.add_argument("--once", action="store_true", help="print one snapshot of what is stored and exit")
    add_endpoint_arguments(parser, agent=False)


def sparkline(values: Any) -> str:
    nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
    if not nums:
        return ""
    lo, hi = min(nums), max(nums)
    span = hi - lo
    if span == 0:
        return _BARS[3] * len(nums)
    return "".join(_BARS[min(7, int((v - lo) / span * 8))] for v in nums)


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


def fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, dict):
        return ", ".join(f"{k}={fmt(x)}" for k, x in v.items())
    return str(v)


@dataclass
class MetricState:
    run_id: str
    name: str
    count: int = 0
    latest: Any = None
    step: int | None = None
    min: float | None = None
    max: float | None = None
    recent: deque = field(default_factory=lambda: deque(maxlen=SPARK_POINTS))

    def add(self, value: Any, step: int | None) -> None:
        self.count += 1
        self.latest, self.step = value, step
        if isinstance(value, dict):  # a table row: its first two columns, charted as y = second
            cols = list(value.values())
            value = cols[1] if len(cols) > 1 else (cols[0] if cols else None)
        n = _number(value)
        if n is not None and not math.isnan(n):
            self.min = n if self.min is None else min(self.min, n)
            self.max = n if self.max is None else max(self.max, n)
        self.recent.append(n)


@dataclass
class TailState:
    """What the view shows, folded from live events."""

    metrics: dict[tuple[str, str], MetricState] = field(default_factory=dict)
    status: dict[str, str] = field(default_factory=dict)
    logs: deque = field(default_factory=lambda: deque(maxlen=TAIL_LOG_LINES))
    events: int = 0
    lagged: int = 0
    notes: deque = field(default_factory=lambda: deque(maxlen=3))

    def apply(self, ev: Any) -> None:
        self.events += 1
        kind = ev.kind
        if kind == "metric":
            key = (ev.run_id, ev.name)
            m = self.metrics.get(key)
            if m is None:
                m = self.metrics[key] = MetricState(ev.run_id, ev.name)
            m.add(ev.value, ev.step)
        elif kind == "status":
            self.status[ev.run_id] = ev.status
        elif kind == "log":
            for line in ev.lines:
                self.logs.append((ev.run_id, ev.path, line))
        elif kind == "lagged":
            self.lagged += ev.events
            self.notes.append(f"fell behind: {ev.events} events ({ev.points} points) skipped")
        elif kind == "tag":
            self.notes.append(f"{ev.run_id[:8]} tags: {fmt(ev.tags)}")
        elif kind == "file":
            self.notes.append(f"{ev.run_id[:8]} file: {ev.path}")


def render(state: TailState, title: str) -> Any:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    runs = Table(expand=False, box=None, pad_edge=False, header_style="bold")
    runs.add_column("run")
    runs.add_column("status")
    for run_id, status in state.status.items():
        runs.add_row(run_id, status)
    table = Table(box=None, pad_edge=False, header_style="bold")
    for col in ("run", "metric", "latest", "step", "min", "max", "n", "trend"):
        table.add_column(col, justify="right" if col in ("latest", "step", "min", "max", "n") else "left")
    for (run_id, name), m in sorted(state.metrics.items()):
        table.add_row(
            run_id[:8],
            name,
            fmt(m.latest),
            "" if m.step is None else str(m.step),
            "" if m.min is None else fmt(m.min),
            "" if m.max is None else fmt(m.max),
            str(m.count),
            sparkline(m.recent),
        )
    parts: list[Any] = [Text(title, style="bold"), runs, table]
    if state.logs:
        parts.append(Text("log", style="bold"))
        parts.extend(Text(f"{run_id[:8]} {path}: {line}") for run_id, path, line in state.logs)
    for note in state.notes:
        parts.append(Text(note, style="yellow"))
    if not state.metrics and not state.status:
        parts.append(Text("(nothing yet)", style="dim"))
    return Group(*parts)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.live import Live

    if args.children and not args.run:
        print("runwire tail: --children needs --run", file=sys.stderr)
        return 2
    transport = Transport(endpoint_from_args(args))
    what = f"run {args.run}" if args.run else (f"experiment {args.experiment}" if args.experiment else "all runs")
    try:
        sub = transport.subscribe(
            experiment_name=args.experiment,
            run_id=args.run,
            include_children=args.children,
            metrics=args.metric or None,
            from_start=not args.no_history or args.once,
        )
    except Exception as e:
        print(f"runwire tail: {e}", file=sys.stderr)
        return 1
    state = TailState()
    console = Console()
    try:
        if args.once:
            for ev in sub.read_history(timeout=60):
                state.apply(ev)
            console.print(render(state, f"runwire tail: {what}"))
            return 0
        if not console.is_terminal:
            # not a terminal (a pipe, a log file): one line per event
            for ev in sub:
                state.apply(ev)
                print(_line(ev), flush=True)
            return 0
        with Live(render(state, what), console=console, refresh_per_second=TAIL_REFRESH_PER_S) as live:
            last = 0.0
            while True:
                ev = sub.next_event(1.0 / TAIL_REFRESH_PER_S)
                if ev is not None:
                    state.apply(ev)
                now = time.monotonic()
                if now - last >= 1.0 / TAIL_REFRESH_PER_S:
                    live.update(render(state, f"runwire tail: {what} (Ctrl-C to quit)"))
                    last = now
    except KeyboardInterrupt:
        return 0
    except StopIteration:
        return 0
    finally:
        sub.close()
        transport.close()


def _line(ev: Any) -> str:
    if ev.kind == "metric":
        step = "" if ev.step is None else f" step={ev.step}"
        return f"{ev.run_id} metric {ev.name}={fmt(ev.value)}{step}"
    if ev.kind == "status":
        return f"{ev.run_id} status {ev.status}"
    if ev.kind == "log":
        return "\n".join(f"{ev.run_id} log {ev.path}: {line}" for line in ev.lines)
    if ev.kind == "tag":
        return f"{ev.run_id} tags {fmt(ev.tags)}"
    if ev.kind == "file":
        return f"{ev.run_id} file {ev.path} ({ev.size} bytes)"
    if ev.kind == "lagged":
        return f"lagged: {ev.events} events ({ev.points} points) skipped"
    return str(ev)
