"""List, inspect and cancel runs.

runwire runs list [--experiment NAME] [--status S ...] [--target T] [--limit N] [--include-children] [--json]
runwire runs show RUN [--json]
runwire runs cancel RUN [RUN ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from runwire.cli._common import (
    add_endpoint_arguments,
    endpoint_from_args,
    fail,
    format_duration,
    format_time,
    iso_time,
    print_table,
    safe,
)
from runwire.statuses import RUN_STATUSES, TERMINAL_STATUSES

DEFAULT_LIST_LIMIT = 20
"""Runs `runwire runs list` shows without --limit (newest first)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="runs_command", metavar="ACTION")
    fmt = argparse.RawDescriptionHelpFormatter

    p = sub.add_parser("list", help="runs, newest first", description="List runs, newest first.", formatter_class=fmt)
    p.add_argument("--experiment", default="", metavar="NAME", help="only this experiment's runs")
    p.add_argument(
        "--status",
        action="extend",
        nargs="+",
        default=[],
        metavar="STATUS",
        help="only runs with one of these statuses (several, or repeat the flag)",
    )
    p.add_argument("--target", default="", metavar="NAME", help="only runs on this compute target")
    limit_help = f"at most N runs (default {DEFAULT_LIST_LIMIT}; 0 = all)"
    p.add_argument("--limit", type=int, default=DEFAULT_LIST_LIMIT, metavar="N", help=limit_help)
    p.add_argument("--include-children", action="store_true", help="child runs too")
    p.add_argument("--json", action="store_true", help="print a JSON array")
    add_endpoint_arguments(p, agent=False)
    p.set_defaults(_action=_list)

    p = sub.add_parser(
        "show",
        help="one run's details",
        description="A run's details: status, target, times, tags, properties, error, definition, log files, "
        "metrics (last values) and children.",
        formatter_class=fmt,
    )
    p.add_argument("run_id", metavar="RUN", help="run id")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_endpoint_arguments(p, agent=False)
    p.set_defaults(_action=_show)

    p = sub.add_parser(
        "cancel",
        help="cancel runs",
        description="Cancel runs: a queued run ends Canceled at once; a running one goes CancelRequested, its node "
        "stops the process (SIGTERM, then SIGKILL after a grace period) and it ends Canceled.",
        formatter_class=fmt,
    )
    p.add_argument("run_ids", nargs="+", metavar="RUN", help="run id (several allowed)")
    add_endpoint_arguments(p, agent=False)
    p.set_defaults(_action=_cancel)


def run(args: argparse.Namespace) -> int:
    action = getattr(args, "_action", None)
    if action is None:
        return fail("runs", "choose an action: list, show or cancel (see runwire runs --help)", 2)
    return action(args)


def _transport(args: argparse.Namespace) -> Any:
    from runwire._transports import Transport

    return Transport(endpoint_from_args(args))


def _duration(start: float | None, end: float | None, status: str) -> float | None:
    if not start:
        return None
    if end:
        return end - start
    return None if status in TERMINAL_STATUSES else time.time() - start


def _record_json(r: Any) -> dict[str, Any]:
    return {
        "id": r.run_id,
        "experiment": r.experiment_name,
        "status": r.status,
        "target": r.target,
        "type": r.type,
        "parent": r.parent_run_id,
        "display_name": r.display_name,
        "created": iso_time(r.created_time),
        "start": iso_time(r.start_time),
        "end": iso_time(r.end_time),
        "duration_s": _duration(r.start_time, r.end_time, r.status),
        "tags": r.tags,
    }


def _list(args: argparse.Namespace) -> int:
    from runwire.exceptions import AzureMLException

    unknown = [s for s in args.status if s not in RUN_STATUSES]
    if unknown:
        return fail("runs list", f"unknown status {unknown[0]!r} (one of: {', '.join(RUN_STATUSES)})", 2)
    if args.limit < 0:
        return fail("runs list", "--limit must be 0 or more", 2)
    transport = _transport(args)
    try:
        runs = transport.list_runs(
            args.experiment, include_children=args.include_children, statuses=list(args.status) or None
        )
    except AzureMLException as e:
        return fail("runs list", str(e))
    finally:
        transport.close()
    if args.target:
        runs = [r for r in runs if r.target == args.target]
    runs.sort(key=lambda r: r.start_time or r.created_time or 0, reverse=True)
    if args.limit:
        runs = runs[: args.limit]
    if args.json:
        print(json.dumps([_record_json(r) for r in runs], indent=2))
        return 0
    rows = [
        [r.run_id, r.experiment_name, r.status, r.target or "-", format_time(r.start_time),
         format_duration(_duration(r.start_time, r.end_time, r.status)), r.type or "-"]
        for r in runs
    ]  # fmt: skip
    print_table(["RUN", "EXPERIMENT", "STATUS", "TARGET", "START", "DURATION", "TYPE"], rows, empty="(no runs)")
    return 0


def _last_values(transport: Any, run_id: str) -> dict[str, dict[str, Any]]:
    """Each metric's row count and last value (Azure's shape for one row)."""
    from runwire import codec
    from runwire.series import azure_value

    out: dict[str, dict[str, Any]] = {}
    for s in transport.get_metrics(run_id):
        n = s.points.count
        last = s.points if s.kind == codec.IMAGE or n <= 1 else codec.slice_points(s.points, n - 1, n)
        out[s.name] = {"kind": codec.KIND_NAMES.get(s.kind, str(s.kind)), "count": n, "last": azure_value(s.kind, last)}
    return out


def _show(args: argparse.Namespace) -> int:
    from runwire import Run, Workspace
    from runwire.exceptions import AzureMLException

    try:
        ws = Workspace(_endpoint=endpoint_from_args(args))
        transport = ws._transport
        run_obj = Run.get(ws, args.run_id)
        details = run_obj.get_details()
        record = transport.get_run(args.run_id)
        metrics = _last_values(transport, args.run_id)
        children = len(transport.list_runs(parent_run_id=args.run_id))
    except AzureMLException as e:
        return fail("runs show", _not_found(args.run_id, e))
    view = {
        **details,
        "experiment": record.experiment_name,
        "displayName": record.display_name,
        "type": record.type,
        "parentRunId": record.parent_run_id,
        "createdTimeUtc": iso_time(record.created_time),
        "tags": record.tags,
        "metrics": metrics,
        "children": children,
    }
    if args.json:
        print(json.dumps(view, indent=2, default=str))
        return 0
    _print_show(view, record)
    return 0


def _cell(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return "" if value is None else str(value)


def _print_show(view: dict[str, Any], record: Any) -> None:
    def line(label: str, value: Any) -> None:
        print(f"{label:<11} {safe(_cell(value))}")

    line("Run", record.run_id)
    line("Experiment", record.experiment_name)
    if record.display_name:
        line("Name", record.display_name)
    line("Type", record.type or "-")
    line("Status", record.status)
    line("Target", view.get("target") or record.target or "-")
    if record.parent_run_id:
        line("Parent", record.parent_run_id)
    line("Created", format_time(record.created_time))
    line("Started", format_time(record.start_time))
    line("Ended", format_time(record.end_time))
    line("Duration", format_duration(_duration(record.start_time, record.end_time, record.status)))
    if view.get("submittedBy"):
        line("By", view["submittedBy"])
    error = (view.get("error") or {}).get("error")
    if error:
        line("Error", f"{error.get('code') or 'Error'}: {error.get('message', '')}")
    for w in view.get("warnings") or []:
        line("Warning", w.get("message") if isinstance(w, dict) else w)
    _section("Tags", {k: ("" if v is None else v) for k, v in (record.tags or {}).items()})
    _section("Properties", view.get("properties") or {})
    _section("Definition", _flatten(view.get("runDefinition") or {}))
    logs = view.get("logFiles") or {}
    _section("Log files", {name: "" for name in logs})
    metrics = view.get("metrics") or {}
    _section("Metrics", {name: f"{_cell(m['last'])}  ({_rows(m['count'])})" for name, m in metrics.items()})
    line("Children", view.get("children", 0))


def _flatten(items: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as `outer.inner` keys; empty values left out."""
    out: dict[str, Any] = {}
    for key, value in items.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        elif value not in (None, "", [], {}):
            out[f"{prefix}{key}"] = value
    return out


def _section(title: str, items: dict[str, Any]) -> None:
    if not items:
        print(f"{title:<11} -")
        return
    print(title)
    width = min(40, max(len(safe(k)) for k in items))
    for key, value in items.items():
        print(f"  {safe(key):<{width}}  {safe(_cell(value))}".rstrip())


def _not_found(run_id: str, e: Exception) -> str:
    from runwire.exceptions import RunNotFoundError

    if isinstance(e, RunNotFoundError):
        return f"no run with id {run_id!r}"
    return str(e)


def _cancel(args: argparse.Namespace) -> int:
    from runwire.exceptions import AzureMLException

    transport = _transport(args)
    status = 0
    try:
        for run_id in args.run_ids:
            try:
                record = transport.cancel_run(run_id)
            except AzureMLException as e:
                status = fail("runs cancel", f"{safe(run_id)}: {_not_found(run_id, e)}")
                continue
            print(f"{safe(run_id)}  {safe(record.status)}", flush=True)
    finally:
        transport.close()
    sys.stdout.flush()
    return status


def _rows(n: int) -> str:
    return "1 row" if n == 1 else f"{n} rows"
