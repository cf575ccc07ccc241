"""The `Runs` service: experiments, run lifecycle, tags, properties, metric reads, collector status.

Semantics follow RUN_API.md (§3, §4, §6, §9, §10, §11). Refusals are gRPC status codes with a
message naming what was wrong and the rule (see `runwire.server.errors`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

import grpc

from runwire import limits
from runwire.server import limits as server_limits
from runwire.server import rules
from runwire.server.bus import LiveBus, status_event, tag_event
from runwire.server.errors import CollectorError, refusals
from runwire.server.records import (
    ExperimentRecord,
    NewRun,
    RunErrorRecord,
    RunQuery,
    RunRecord,
    RunUpdate,
    SeriesSnapshot,
)
from runwire.server.store.base import Store
from runwire.v1 import runs_pb2, runs_pb2_grpc

log = logging.getLogger(__name__)


# --- conversions ------------------------------------------------------------------------------------


def key_values(pairs: Iterable[runs_pb2.KeyValue]) -> dict[str, str | None]:
    """KeyValues to a dict; an absent value is None (valueless tag, or "has this key" in filters)."""
    return {kv.key: (kv.value if kv.HasField("value") else None) for kv in pairs}


def _to_key_values(pairs: dict[str, str | None]) -> list[runs_pb2.KeyValue]:
    return [runs_pb2.KeyValue(key=k) if v is None else runs_pb2.KeyValue(key=k, value=v) for k, v in pairs.items()]


def experiment_message(e: ExperimentRecord) -> runs_pb2.Experiment:
    return runs_pb2.Experiment(id=e.id, name=e.name, created_time=e.created_time)


def run_info(r: RunRecord) -> runs_pb2.RunInfo:
    info = runs_pb2.RunInfo(
        run_id=r.run_id,
        experiment_id=r.experiment_id,
        experiment_name=r.experiment_name,
        parent_run_id=r.parent_run_id or "",
        number=r.number,
        name=r.name,
        display_name=r.display_name,
        description=r.description,
        status=r.status,
        type=r.type,
        target=r.target,
        created_time=r.created_time,
        start_time=r.start_time or 0.0,
        end_time=r.end_time or 0.0,
        tags=_to_key_values(r.tags),
        properties=_to_key_values(r.properties),
        warnings=r.warnings,
        log_files=r.log_files,
    )
    if r.error is not None:
        info.error.CopyFrom(
            runs_pb2.RunError(code=r.error.code, message=r.error.message, details_json=r.error.details_json)
        )
    return info


# --- errors -------------------------------------------------------------------------------------------


# --- the service -------------------------------------------------------------------------------------


class RunsService(runs_pb2_grpc.RunsServicer):
    def __init__(
        self, store: Store, status: Callable[[], Awaitable[runs_pb2.CollectorStatus]], live: LiveBus | None = None
    ) -> None:
        self._store = store
        self._status = status
        self._live = live

    @refusals
    async def GetOrCreateExperiment(
        self, request: runs_pb2.GetOrCreateExperimentRequest, context: grpc.aio.ServicerContext
    ) -> runs_pb2.Experiment:
        return experiment_message(await self._store.get_or_create_experiment(request.name))

    @refusals
    async def ListExperiments(
        self, request: runs_pb2.ListExperimentsRequest, context: grpc.aio.ServicerContext
    ) -> runs_pb2.ListExperimentsResponse:
        found = await self._store.list_experiments(request.name)
        return runs_pb2.ListExperimentsResponse(experiments=[experiment_message(e) for e in found])

    @refusals
    async def CreateRun(
        self, request: runs_pb2.CreateRunRequest, context: grpc.aio.ServicerContext
    ) -> runs_pb2.RunInfo:
        new = NewRun(
            experiment_name=request.experiment_name,
            run_id=request.run_id or str(uuid.uuid4()),
            status=request.status or rules.DEFAULT_STATUS,
            parent_run_id=request.parent_run_id or None,
            name=request.name,
            display_name=request.display_name,
            description=request.description,
            type=request.type,
            target=request.target,
            tags=key_values(request.tags),
            properties=key_values(request.properties),
            request_id=request.request_id,
        )
        record = await self._store.create_run(new)
        if self._live is not None:
            self._live.publish([status_event(record, created=True)])
            await self._live.flush()  # every replica hears of the run before any of its points
        log.info(
            "run created",
            extra={"fields": {"run_id": record.run_id, "experiment": record.experiment_name, "status": record.status}},
        )
        return run_info(record)

    @refusals
    async def GetRun(self, request: runs_pb2.GetRunRequest, context: grpc.aio.ServicerContext) -> runs_pb2.RunInfo:
        rules.require_run_id(request.run_id)
        return run_info(await self._store.get_run(request.run_id))

    @refusals
    async def ListRuns(
        self, request: runs_pb2.ListRunsRequest, context: grpc.aio.ServicerContext
    ) -> runs_pb2.ListRunsResponse:
        for status in request.statuses:
            rules.check_status(status)
        query = RunQuery(
            experiment_name=request.experiment_name,
            parent_run_id=request.parent_run_id or None,
            include_children=request.include_children,
            recursive=request.recursive,
            statuses=list(request.statuses),
            type=request.type or None,
            tags=key_values(request.tags),
            properties=key_values(request.properties),
        )
        runs = await self._store.list_runs(query)
        return runs_pb2.ListRunsResponse(runs=[run_info(r) for r in runs])

    @refusals
    async def UpdateRun(
        self, request: runs_pb2.UpdateRunRequest, context: grpc.aio.ServicerContext
    ) -> runs_pb2.RunInfo:
        rules.require_run_id(request.run_id)
        error = None
        if request.HasField("error"):
            e = request.error
            error = RunErrorRecord(code=e.code, message=e.message, details_json=e.details_json)
        update = RunUpdate(
            run_id=request.run_id,
            status=request.status if request.HasField("status") else None,
            display_name=request.display_name if request.HasField("display_name") else None,
            description=request.description if request.HasField("description") else None,
            error=error,
            warnings=list(request.warnings),
        )
        record = await self._store.update_run(update)
        if self._live is not None and update.status is not None:
            self._live.publish([status_event(record)])
        if update.status is not None:
            log.info("run updated", extra={"fields": {"run_id": record.run_id, "status": record.status}})
        return run_info(record)

    @refusals
    async def SetTags(self, request: runs_pb2.SetTagsRequest, context: grpc.aio.ServicerContext) -> runs_pb2.RunInfo:
        rules.require_run_id(request.run_id)
        tags = key_values(request.tags)
        record = await self._store.set_tags(request.run_id, tags, list(request.remove))
        if self._live is not None:
            self._live.publish([tag_event(record, tags, list(request.remove))])
        return run_info(record)

    @refusals
    async def AddProperties(
        self, request: runs_pb2.AddPropertiesRequest, context: grpc.aio.ServicerContext
    ) -> runs_pb2.RunInfo:
        rules.require_run_id(request.run_id)
        return run_info(await self._store.add_properties(request.run_id, key_values(request.properties)))

    async def GetMetrics(
        self, request: runs_pb2.GetMetricsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[runs_pb2.MetricData]:
        try:
            rules.require_run_id(request.run_id)
            async for snapshot in self._store.read_metrics(request.run_id, request.recursive, list(request.names)):
                async for message in self._messages(snapshot):
                    yield message
        except CollectorError as e:
            await context.abort(e.code, str(e))
        except Exception as e:
            log.exception("request failed", extra={"fields": {"rpc": "GetMetrics"}})
            await context.abort(grpc.StatusCode.INTERNAL, f"GetMetrics failed: {type(e).__name__}: {e}")

    async def _messages(self, s: SeriesSnapshot) -> AsyncIterator[runs_pb2.MetricData]:
        """The series as messages of at most about METRIC_DATA_MESSAGE_BYTES of chunks each (at
        least one chunk per message), stored blobs passed through untouched."""
        columns = [runs_pb2.ColumnInfo(name=name, type=vtype) for name, vtype in s.columns]
        budget = limits.METRIC_DATA_MESSAGE_BYTES
        n = len(s.chunks)
        i = 0
        while True:
            j, size = i, 0
            while j < n and (j == i or size + s.chunks[j].nbytes <= budget):
                size += s.chunks[j].nbytes
                j += 1
            blobs = s.blobs[i:j]
            missing = [k for k, blob in enumerate(blobs) if blob is None]
            if missing:
                fetched = await self._store.read_chunks(s.series_id, [s.chunks[i + k].chunk_no for k in missing])
                for k, blob in zip(missing, fetched, strict=True):
                    blobs[k] = blob
            yield runs_pb2.MetricData(
                run_id=s.run_id,
                name=s.name,
                kind=s.kind,
                description=s.description if i == 0 else "",
                count=s.count,
                columns=columns,
                chunks=blobs,
            )
            i = j
            if i >= n:
                break

    async def GetLog(
        self, request: runs_pb2.GetLogRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[runs_pb2.LogChunk]:
        """The lines of one log file as it was when the read started, in messages of at most about
        LOG_MESSAGE_MAX_BYTES of lines (an empty chunk for a file without lines)."""
        try:
            rules.require_run_id(request.run_id)
            async for chunk in read_log_chunks(
                self._store, request.run_id, request.path, request.from_line, request.max_lines
            ):
                yield chunk
        except CollectorError as e:
            await context.abort(e.code, str(e))
        except Exception as e:
            log.exception("request failed", extra={"fields": {"rpc": "GetLog"}})
            await context.abort(grpc.StatusCode.INTERNAL, f"GetLog failed: {type(e).__name__}: {e}")

    async def GetCollectorStatus(
        self, request: runs_pb2.CollectorStatusRequest, context: grpc.aio.ServicerContext
    ) -> runs_pb2.CollectorStatus:
        return await self._status()


async def read_log_chunks(
    store: Store, run_id: str, path: str = "", from_line: int = 0, max_lines: int = 0
) -> AsyncIterator[runs_pb2.LogChunk]:
    """A log file's lines `from_line` .. (at most `max_lines`, 0 = up to the lines stored when the
    read started), read page by page and cut into messages of about LOG_MESSAGE_MAX_BYTES."""
    page = server_limits.LOG_READ_PAGE_LINES
    want = page if max_lines <= 0 else min(page, max_lines)
    read = await store.read_log(run_id, path, from_line, want)
    path, total = read.path, read.total_lines
    end = total if max_lines <= 0 else min(total, from_line + max_lines)
    sent = False
    while True:
        lines = read.lines[: max(0, end - read.first_line)]
        for first, piece in split_lines(read.first_line, lines):
            yield runs_pb2.LogChunk(run_id=run_id, path=path, first_line=first, lines=piece, total_lines=total)
            sent = True
        nxt = read.first_line + len(lines)
        if not lines or nxt >= end:
            break
        read = await store.read_log(run_id, path, nxt, min(page, end - nxt))
    if not sent:
        yield runs_pb2.LogChunk(run_id=run_id, path=path, first_line=from_line, total_lines=total)


def split_lines(first_line: int, lines: list[str]) -> Iterable[tuple[int, list[str]]]:
    """`lines` in consecutive pieces of at most about LOG_MESSAGE_MAX_BYTES characters (at least
    one line each), with the number of each piece's first line."""
    budget = server_limits.LOG_MESSAGE_MAX_BYTES
    i, n = 0, len(lines)
    while i < n:
        j, size = i, 0
        while j < n and (j == i or size + len(lines[j]) + 1 <= budget):
            size += len(lines[j]) + 1
            j += 1
        yield first_line + i, lines[i:j]
        i = j
