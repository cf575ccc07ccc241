"""Records to the studio API's JSON shapes (user strings carried verbatim; non-finite numbers as null)."""

from __future__ import annotations

import math
import time
from urllib.parse import quote

from runwire.server.records import (
    ActiveRunRecord,
    ExperimentSummary,
    MetricSummary,
    NodeRecord,
    RunRecord,
    TargetRecord,
)

SNAPSHOT_PROPERTY = "ContentSnapshotId"
"""The run property holding the id of the run's snapshot (as the SDK sets it)."""


def num(value: float | None) -> float | None:
    """A number JSON can carry: NaN and infinities become null."""
    if value is None or not math.isfinite(value):
        return None
    return value


def experiment_json(s: ExperimentSummary) -> dict:
    e = s.experiment
    return {
        "name": e.name,
        "id": e.id,
        "created_time": e.created_time,
        "runs": s.runs,
        "last_activity": s.last_activity,
        "status_counts": dict(s.status_counts),
    }


def summary_json(m: MetricSummary) -> dict:
    return {"last": num(m.last), "min": num(m.min), "max": num(m.max), "count": m.count}


def duration(r: RunRecord, now: float | None = None) -> float | None:
    """Seconds from start to end (to now while the run is unfinished); None when it never started."""
    if r.start_time is None:
        return None
    end = r.end_time if r.end_time is not None else (time.time() if now is None else now)
    return max(0.0, end - r.start_time)


def run_row(r: RunRecord, metrics: dict[str, MetricSummary] | None = None) -> dict:
    return {
        "run_id": r.run_id,
        "number": r.number,
        "display_name": r.display_name,
        "status": r.status,
        "type": r.type,
        "target": r.target,
        "parent_run_id": r.parent_run_id,
        "created_time": r.created_time,
        "start_time": r.start_time,
        "end_time": r.end_time,
        "duration": duration(r),
        "tags": dict(r.tags),
        "metrics": {name: summary_json(m) for name, m in (metrics or {}).items()},
    }


def run_detail(r: RunRecord, metrics: dict[str, MetricSummary], origin: str) -> dict:
    out = run_row(r, metrics)
    out.update(
        {
            "experiment_name": r.experiment_name,
            "description": r.description,
            "properties": dict(r.properties),
            "error": None if r.error is None else {"code": r.error.code, "message": r.error.message},
            "warnings": list(r.warnings),
            "log_files": list(r.log_files),
            "snapshot_id": r.properties.get(SNAPSHOT_PROPERTY) or None,
            "portal_url": f"{origin}/runs/{quote(r.run_id, safe='')}",
        }
    )
    return out


def run_ref(r: RunRecord) -> dict:
    return {
        "run_id": r.run_id,
        "display_name": r.display_name,
        "status": r.status,
        "start_time": r.start_time,
        "end_time": r.end_time,
    }


def node_json(n: NodeRecord) -> dict:
    return {
        "node_id": n.node_id,
        "hostname": n.hostname,
        "slots": n.slots,
        "busy": n.busy,
        "connected": n.connected,
        "last_seen": n.last_seen,
        "run_ids": list(n.run_ids),
    }


def active_run_json(a: ActiveRunRecord) -> dict:
    r = a.run
    return {
        "run_id": r.run_id,
        "status": r.status,
        "experiment_name": r.experiment_name,
        "node_id": a.node_id,
        "created_time": r.created_time,
        "parent_run_id": r.parent_run_id,
        "type": r.type,
    }


def target_json(t: TargetRecord, active: list[ActiveRunRecord]) -> dict:
    return {
        "name": t.name,
        "slots": sum(n.slots for n in t.nodes),
        "queued": t.queued,
        "active": t.active,
        "nodes": [node_json(n) for n in t.nodes],
        "runs": [active_run_json(a) for a in active],
    }
