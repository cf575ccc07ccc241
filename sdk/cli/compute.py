"""Compute targets: their nodes (agents that joined with `runwire agent --compute-target NAME`) and
the queued and active runs of each.

  runwire compute list [--json]
  runwire compute show TARGET [--json]
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from runwire.cli._common import add_endpoint_arguments, endpoint_from_args, fail, format_time, iso_time, print_table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="compute_command", metavar="ACTION")
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser(
        "list",
        help="compute targets",
        description="Compute targets: nodes (connected/total), slots of connected nodes, queued and active runs.",
        formatter_class=fmt,
    )
    p.add_argument("--json", action="store_true", help="print a JSON array")
    add_endpoint_arguments(p, agent=False)
    p.set_defaults(_action=_list)

    p = sub.add_parser(
        "show",
        help="one target's nodes and runs",
        description="A compute target's nodes (id, host, slots, busy, connected, last seen, runs) and its queued "
        "and active runs (children included), newest first.",
        formatter_class=fmt,
    )
    p.add_argument("target", metavar="TARGET", help="compute target name")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_endpoint_arguments(p, agent=False)
    p.set_defaults(_action=_show)


def run(args: argparse.Namespace) -> int:
    action = getattr(args, "_action", None)
    if action is None:
        return fail("compute", "choose an action: list or show (see runwire compute --help)", 2)
    from runwire._transports import Transport
    from runwire.exceptions import AzureMLException

    transport = Transport(endpoint_from_args(args))
    try:
        return action(args, transport)
    except AzureMLException as e:
        return fail(f"compute {args.compute_command}", str(e))
    finally:
        transport.close()


def _connected(t: Any) -> int:
    return sum(1 for n in t.nodes if n.connected)


def _target_json(t: Any) -> dict[str, Any]:
    return {
        "name": t.name,
        "nodes_connected": _connected(t),
        "nodes": len(t.nodes),
        "slots": t.slots,
        "queued": t.queued,
        "active": t.active,
    }


def _node_json(n: Any) -> dict[str, Any]:
    return {
        "id": n.node_id,
        "host": n.hostname,
        "slots": n.slots,
        "busy": n.busy,
        "connected": n.connected,
        "last_seen": iso_time(n.last_seen),
        "runs": list(n.run_ids),
    }


def _run_json(r: Any) -> dict[str, Any]:
    return {
        "id": r.run_id,
        "experiment": r.experiment_name,
        "status": r.status,
        "node": r.node_id or None,
        "parent": r.parent_run_id or None,
        "type": r.type or None,
        "created": iso_time(r.created_time),
    }


def _list(args: argparse.Namespace, transport: Any) -> int:
    targets = sorted(transport.list_compute_targets(), key=lambda t: t.name)
    if args.json:
        print(json.dumps([_target_json(t) for t in targets], indent=2))
        return 0
    rows = [[t.name, f"{_connected(t)}/{len(t.nodes)}", str(t.slots), str(t.queued), str(t.active)] for t in targets]
    print_table(["TARGET", "NODES", "SLOTS", "QUEUED", "ACTIVE"], rows, empty="(no compute targets)")
    return 0


def _show(args: argparse.Namespace, transport: Any) -> int:
    targets = [t for t in transport.list_compute_targets(args.target) if t.name == args.target]
    if not targets:
        return fail("compute show", f"no compute target named {args.target!r}")
    t = targets[0]
    runs = transport.list_active_runs(args.target)
    if args.json:
        print(json.dumps({**_target_json(t), "nodes": [_node_json(n) for n in t.nodes],
                          "runs": [_run_json(r) for r in runs]}, indent=2))  # fmt: skip
        return 0
    print(f"compute target {t.name}: {_connected(t)}/{len(t.nodes)} nodes connected, {t.slots} slots, "
          f"{t.queued} queued, {t.active} active")  # fmt: skip
    print()
    nodes = [
        [n.node_id, n.hostname or "-", str(n.slots), str(n.busy), "yes" if n.connected else "no",
         format_time(n.last_seen), ", ".join(n.run_ids) or "-"]
        for n in t.nodes
    ]  # fmt: skip
    print_table(["NODE", "HOST", "SLOTS", "BUSY", "CONNECTED", "LAST SEEN", "RUNS"], nodes, empty="(no nodes)")
    print()
    rows = [[r.run_id, r.experiment_name, r.status, r.node_id or "-"] for r in runs]
    print_table(["RUN", "EXPERIMENT", "STATUS", "NODE"], rows, empty="(no queued or active runs)")
    return 0
