"""The transport under the public API: the `Run`, `Experiment` and `Workspace` classes only see
`Transport`'s methods and the plain records below, never gRPC, sockets or protobuf."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runwire import codec
from runwire.config import Endpoint
from runwire.v1 import compute_pb2, runs_pb2

from .channel import ClientSecurity
from .collector import CollectorClient
from .compute import ComputeClient
from .producer import Producer, get_producer


@dataclass
class RunRecord:
    run_id: str
    experiment_id: str
    experiment_name: str
    parent_run_id: str | None
    number: int
    name: str | None
    display_name: str | None
    description: str | None
    status: str
    type: str | None
    target: str
    created_time: float
    start_time: float | None
    end_time: float | None
    tags: dict[str, str | None] = field(default_factory=dict)
    properties: dict[str, str | None] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    log_files: list[str] = field(default_factory=list)


@dataclass
class ExperimentRecord:
    id: str
    name: str
    created_time: float


@dataclass
class SeriesData:
    """One metric series of one run, decoded."""

    run_id: str
    name: str
    kind: int
    description: str
    points: codec.DecodedPoints


def _kv(items: dict[str, Any] | None) -> list[runs_pb2.KeyValue]:
    out = []
    for key, value in (items or {}).items():
        out.append(runs_pb2.KeyValue(key=key) if value is None else runs_pb2.KeyValue(key=key, value=value))
    return out


def _kv_dict(items: Any) -> dict[str, str | None]:
    return {kv.key: (kv.value if kv.HasField("value") else None) for kv in items}


def _record(info: runs_pb2.RunInfo) -> RunRecord:
    error = None
    if info.HasField("error") and (info.error.code or info.error.message):
        error = {"code": info.error.code, "message": info.error.message}
        if info.error.details_json:
            error["details"] = info.error.details_json
    return RunRecord(
        run_id=info.run_id,
        experiment_id=info.experiment_id,
        experiment_name=info.experiment_name,
        parent_run_id=info.parent_run_id or None,
        number=info.number,
        name=info.name or None,
        display_name=info.display_name or None,
        description=info.description or None,
        status=info.status,
        type=info.type or None,
        target=info.target,
        created_time=info.created_time,
        start_time=info.start_time or None,
        end_time=info.end_time or None,
        tags=_kv_dict(info.tags),
        properties=_kv_dict(info.properties),
        error=error,
        warnings=list(info.warnings),
        log_files=list(info.log_files),
    )


def _apply_column_types(points: codec.DecodedPoints, columns) -> None:
    """Give every column the series' type (older chunks may hold ints of a column since promoted to
    float) and add the columns a chunk never had (their rows are None)."""
    for info in columns:
        col = points.columns.get(info.name)
        if col is None:
            points.columns[info.name] = codec.DecodedColumn(info.name, codec.NONE, None, None)
        elif col.type == codec.INT and info.type == codec.FLOAT:
            col.values = col.values.astype("<f8")
            col.type = codec.FLOAT


class Transport:
    """Talks to one runwire deployment: lifecycle and queries to the collector, points via the agent."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.collector = CollectorClient(endpoint.collector, security=ClientSecurity.from_endpoint(endpoint))
        self.compute = ComputeClient(self.collector)

    @property
    def producer(self) -> Producer:
        return get_producer(self.endpoint.agent_socket, Path(self.endpoint.spool_dir()))

    # experiments
    def get_or_create_experiment(self, name: str) -> ExperimentRecord:
        e = self.collector.call("GetOrCreateExperiment", runs_pb2.GetOrCreateExperimentRequest(name=name))
        return ExperimentRecord(e.id, e.name, e.created_time)

    def list_experiments(self, name: str = "") -> list[ExperimentRecord]:
        r = self.collector.call("ListExperiments", runs_pb2.ListExperimentsRequest(name=name))
        return [ExperimentRecord(e.id, e.name, e.created_time) for e in r.experiments]

    # runs
    def create_run(
        self,
        experiment_name: str,
        run_id: str,
        *,
        status: str,
        parent_run_id: str | None = None,
        name: str | None = None,
        display_name: str | None = None,
        description: str | None = None,
        run_type: str | None = None,
        target: str = "local",
        tags: dict[str, str | None] | None = None,
        properties: dict[str, str | None] | None = None,
    ) -> RunRecord:
        request = runs_pb2.CreateRunRequest(
            experiment_name=experiment_name,
            run_id=run_id,
            parent_run_id=parent_run_id or "",
            name=name or "",
            display_name=display_name or "",
            description=description or "",
            status=status,
            type=run_type or "",
            target=target,
            tags=_kv(tags),
            properties=_kv(properties),
            request_id=str(uuid.uuid4()),  # every retry of this call sends it: its own run is no conflict
        )
        return _record(self.collector.call("CreateRun", request))

    def get_run(self, run_id: str) -> RunRecord:
        return _record(self.collector.call("GetRun", runs_pb2.GetRunRequest(run_id=run_id)))

    def list_runs(
        self,
        experiment_name: str = "",
        parent_run_id: str | None = None,
        *,
        include_children: bool = False,
        recursive: bool = False,
        statuses: list[str] | None = None,
        run_type: str | None = None,
        tags: dict[str, str | None] | None = None,
        properties: dict[str, str | None] | None = None,
    ) -> list[RunRecord]:
        request = runs_pb2.ListRunsRequest(
            experiment_name=experiment_name,
            parent_run_id=parent_run_id or "",
            include_children=include_children,
            recursive=recursive,
            statuses=statuses or [],
            type=run_type or "",
            tags=_kv(tags),
            properties=_kv(properties),
        )
        return [_record(r) for r in self.collector.call("ListRuns", request).runs]

    def update_run(
        self,
        run_id: str,
        *,
        status: str | None = None,
        display_name: str | None = None,
        description: str | None = None,
        error: dict[str, str] | None = None,
        warnings: list[str] | None = None,
    ) -> RunRecord:
        request = runs_pb2.UpdateRunRequest(run_id=run_id, warnings=warnings or [])
        if status is not None:
            request.status = status
        if display_name is not None:
            request.display_name = display_name
        if description is not None:
            request.description = description
        if error is not None:
            request.error.CopyFrom(
                runs_pb2.RunError(
                    code=error.get("code", ""), message=error.get("message", ""), details_json=error.get("details", "")
                )
            )
        return _record(self.collector.call("UpdateRun", request))

    def set_tags(self, run_id: str, tags: dict[str, str | None], remove: list[str] | None = None) -> RunRecord:
        request = runs_pb2.SetTagsRequest(run_id=run_id, tags=_kv(tags), remove=remove or [])
        return _record(self.collector.call("SetTags", request))

    def add_properties(self, run_id: str, properties: dict[str, str | None]) -> RunRecord:
        request = runs_pb2.AddPropertiesRequest(run_id=run_id, properties=_kv(properties))
        return _record(self.collector.call("AddProperties", request))

    # metrics
    def get_metrics(self, run_id: str, recursive: bool = False, names: list[str] | None = None) -> list[SeriesData]:
        request = runs_pb2.GetMetricsRequest(run_id=run_id, recursive=recursive, names=names or [])
        order: list[tuple[str, str]] = []
        meta: dict[tuple[str, str], runs_pb2.MetricData] = {}
        chunks: dict[tuple[str, str], list[codec.DecodedPoints]] = {}
        for msg in self.collector.stream("GetMetrics", request):
            key = (msg.run_id, msg.name)
            if key not in meta:
                order.append(key)
                meta[key] = msg
                chunks[key] = []
            chunks[key].extend(codec.decode_chunk(blob) for blob in msg.chunks)
        out = []
        for key in order:
            m = meta[key]
            parts = chunks[key]
            if not parts:
                continue
            points = codec.concat(parts)
            _apply_column_types(points, m.columns)
            out.append(SeriesData(m.run_id, m.name, m.kind, m.description, points))
        return out

    # script runs on compute targets (RUN_API.md §13, §15)
    def submit_run(
        self,
        experiment_name: str,
        run_id: str,
        *,
        target: str,
        definition: compute_pb2.JobDefinition,
        parent_run_id: str | None = None,
        display_name: str | None = None,
        description: str | None = None,
        tags: dict[str, str | None] | None = None,
        properties: dict[str, str | None] | None = None,
    ) -> RunRecord:
        """Create a script run `Queued` for `target` with its job (the collector sets status and type)."""
        run = runs_pb2.CreateRunRequest(
            experiment_name=experiment_name,
            run_id=run_id,
            parent_run_id=parent_run_id or "",
            display_name=display_name or "",
            description=description or "",
            target=target,
            tags=_kv(tags),
            properties=_kv(properties),
            request_id=str(uuid.uuid4()),  # as in create_run
        )
        request = compute_pb2.SubmitRunRequest(run=run, definition=definition)
        return _record(self.compute.submit_run(request))

    def get_job(self, run_id: str) -> compute_pb2.JobInfo:
        return self.compute.get_job(run_id)

    def cancel_run(self, run_id: str) -> RunRecord:
        """Queued: Canceled at once; leased: CancelRequested (its node ends it Canceled)."""
        return _record(self.compute.cancel_run(run_id))

    def list_compute_targets(self, name: str = "") -> list[compute_pb2.ComputeTargetInfo]:
        return self.compute.list_compute_targets(name)

    def list_active_runs(self, target: str, statuses: list[str] | None = None) -> list[compute_pb2.ActiveRun]:
        """Unfinished runs of `target`, children included, newest first (statuses: "Running", "Queued")."""
        return self.compute.list_active_runs(target, statuses)

    def get_log(
        self, run_id: str, path: str = "", from_line: int = 0, max_lines: int = 0
    ) -> Iterator[runs_pb2.LogChunk]:
        """Lines of one of the run's log files ("" = its first), from `from_line` (0-based); 0 = all."""
        return self.compute.get_log(run_id, path, from_line, max_lines)

    # live
    def subscribe(self, *, timeout: float | None = None, **filters: Any):
        """A live `runwire.live.Subscription` (filters: see `runwire.live.build_request`)."""
        from runwire.live import Subscription, build_request

        request = build_request(**filters)
        return Subscription(self.collector.channel, request, timeout=timeout)

    def close(self) -> None:
        self.collector.close()
