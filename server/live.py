"""The `Live` service: `Subscribe(filter) returns (stream LiveEvent)`.

A subscription registers with the bus first (events are buffered in its bounded queue), then
resolves its run scope from the store, then (with `from_start`) sends the history of the
matching runs from the store, then a LIVE marker, then the buffered and later events. Every
published metric event says which rows of its series it holds (`first_row`, `count`) and history
is read per series as one consistent snapshot of `count` rows, so at the seam buffered rows that
the history already covered are dropped (or cut) exactly: no gap, no duplicate. Log lines work the
same way: every log event says its first line number, the history of each log file is read up to
the lines stored when it started, and buffered lines it covered are dropped or cut.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc

from runwire import codec, limits
from runwire.server import limits as server_limits
from runwire.server.bus import (
    LAGGED,
    LIVE,
    LOG,
    METRIC,
    STATUS,
    TAG,
    BusEvent,
    EventFilter,
    LagMarker,
    LiveBus,
    Subscriber,
    status_event,
    tag_event,
)
from runwire.server.errors import CollectorError, NotFound
from runwire.server.query import read_log_chunks
from runwire.server.records import RunQuery, RunRecord
from runwire.server.store.base import Store
from runwire.v1 import live_pb2, live_pb2_grpc, metrics_pb2

log = logging.getLogger(__name__)

LIVE_MESSAGE_MAX_SERIES = 4_096
"""Metric series' pieces sent in one `LiveEvent` at most (see `LIVE_MESSAGE_MAX_POINTS`)."""


LiveItem = live_pb2.LiveEvent | list[BusEvent]
"""What a `LiveSession` hands its transport: a whole message, or consecutive metric events (each
cut to the rows the history did not already send) that go out together."""


class LiveSession:
    """One subscription, whatever carries it (the gRPC `Live` service, the studio's server-sent
    events): `open()` registers with the bus and resolves the run scope (raising `NotFound` for an
    unknown run), `history()` yields the store's history when asked (`from_start`), then `get()` /
    `poll()` give the live items, with the history/live seam applied; `close()` unsubscribes."""

    def __init__(self, store: Store, bus: LiveBus, flt: EventFilter) -> None:
        self._store = store
        self._bus = bus
        self.filter = flt
        self.sub: Subscriber | None = None
        self.runs: list[RunRecord] = []
        """The runs in scope when `open()` resolved it, oldest first ([] for an unscoped one)."""
        self._seen: dict[tuple[str, str], int] = {}
        self._seen_logs: dict[tuple[str, str], int] = {}
        self._statuses: dict[str, str] = {}

    async def open(self) -> None:
        flt = self.filter
        self.sub = sub = self._bus.subscribe(flt)
        try:
            self.runs = await self._scope()
        except BaseException:
            self.close()
            raise
        if flt.needs_resolution:
            flt.resolve(r.run_id for r in self.runs)
        sub.release()

    def close(self) -> None:
        if self.sub is not None and not self.sub.closed:
            self._bus.unsubscribe(self.sub)

    async def _scope(self) -> list[RunRecord]:
        """The runs in scope now, oldest first ([] for an unscoped subscription)."""
        flt = self.filter
        if flt.run_id:
            runs = [await self._store.get_run(flt.run_id)]
            if flt.include_children:
                runs += await self._store.list_runs(RunQuery(parent_run_id=flt.run_id, recursive=True))
        elif flt.experiment_name:
            # an experiment that does not exist yet has no runs; those created later join
            runs = await self._store.list_runs(RunQuery(experiment_name=flt.experiment_name, include_children=True))
        else:
            return []
        runs.sort(key=lambda r: (r.created_time, r.number))
        return runs

    async def history(self) -> AsyncIterator[live_pb2.LiveEvent]:
        """The stored history of the matching runs (call once, after `open()`, before `get()`)."""
        flt = self.filter
        seen, seen_logs = self._seen, self._seen_logs
        runs = self.runs
        if not runs and not flt.scoped:
            runs = await self._store.list_runs(RunQuery(include_children=True))
            runs.sort(key=lambda r: (r.created_time, r.number))
        for run in runs:
            if LOG in flt.kinds:
                for path in run.log_files:
                    try:
                        async for chunk in read_log_chunks(self._store, run.run_id, path):
                            seen_logs[(run.run_id, path)] = chunk.total_lines
                            if chunk.lines:
                                yield live_pb2.LiveEvent(
                                    kind=LOG,
                                    run_id=run.run_id,
                                    log=live_pb2.LogEvent(path=path, lines=chunk.lines, first_line=chunk.first_line),
                                )
                    except NotFound:
                        break  # deleted meanwhile
            if STATUS in flt.kinds:  # after the log: a finished run's final status ends a log reader
                message = status_event(run).message()
                self._statuses[run.run_id] = message.status.status
                yield message
            if TAG in flt.kinds and run.tags:
                yield tag_event(run, {}, []).message()
            if METRIC not in flt.kinds:
                continue
            try:
                async for snap in self._store.read_metrics(run.run_id):
                    if not flt.metric_matches(snap.name):
                        continue
                    seen[(snap.run_id, snap.name)] = snap.count
                    for i, ref in enumerate(snap.chunks):
                        blob = snap.blobs[i]
                        if blob is None:
                            (blob,) = await self._store.read_chunks(snap.series_id, [ref.chunk_no])
                        mp = metrics_pb2.MetricPoints.FromString(
                            await asyncio.to_thread(codec.decompress, blob, limits.MAX_GRPC_MESSAGE_BYTES)
                        )
                        mp.run_id, mp.name, mp.kind = snap.run_id, snap.name, snap.kind
                        if i == 0 and snap.description:
                            mp.description = snap.description
                        yield live_pb2.LiveEvent(
                            kind=METRIC,
                            run_id=snap.run_id,
                            metrics=[live_pb2.MetricEvent(points=mp, first_row=ref.first_row, history=True)],
                        )
            except NotFound:
                continue  # deleted meanwhile

    async def get(self) -> LiveItem:
        """The next live item (waits for one)."""
        assert self.sub is not None
        while True:
            out = self._process(await self.sub.get())
            if out is not None:
                return out

    def poll(self) -> LiveItem | None:
        """The next live item already queued, or None."""
        assert self.sub is not None
        while (item := self.sub.get_nowait()) is not None:
            out = self._process(item)
            if out is not None:
                return out
        return None

    def _process(self, item: BusEvent | LagMarker) -> LiveItem | None:
        if isinstance(item, LagMarker):
            return item.message()
        flt, seen, statuses = self.filter, self._seen, self._statuses
        if item.kind != METRIC:
            message = _seam(item, flt, seen, self._seen_logs)
            if (
                message is not None
                and item.kind == STATUS
                and statuses
                and statuses.pop(item.run_id, None) == message.status.status
                and not item.created
            ):
                return None  # the history already said so (a change committed while it was read)
            return message
        # consecutive metric events go out together, up to a budget of points
        assert self.sub is not None
        parts: list[BusEvent] = []
        points, ev = 0, item
        while ev is not None:
            part = _seam(ev, flt, seen)
            if part is not None:
                parts.append(part)
                points += part.count
            if points >= server_limits.LIVE_MESSAGE_MAX_POINTS or len(parts) >= LIVE_MESSAGE_MAX_SERIES:
                break
            ev = self.sub.next_metric()
        return parts or None


class LiveService(live_pb2_grpc.LiveServicer):
    def __init__(self, store: Store, bus: LiveBus) -> None:
        self._store = store
        self._bus = bus

    async def Subscribe(
        self, request: live_pb2.SubscribeRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[live_pb2.LiveEvent | bytes]:
        session = LiveSession(self._store, self._bus, EventFilter.from_request(request))
        peer = context.peer()
        try:
            await session.open()
        except CollectorError as e:
            await context.abort(e.code, str(e))
            return
        assert session.sub is not None
        log.info(
            "subscriber joined",
            extra={
                "fields": {
                    "peer": peer,
                    "experiment": request.experiment_name,
                    "run_id": request.run_id,
                    "from_start": request.from_start,
                    "subscribers": self._bus.subscriber_count,
                }
            },
        )
        try:
            if request.from_start:
                async for message in session.history():
                    yield message
            yield live_pb2.LiveEvent(kind=LIVE)
            while True:
                item = await session.get()
                if not isinstance(item, list):
                    yield item
                    continue
                # the header's bytes followed by each event's pre-serialized entry
                run_ids = {ev.run_id for ev in item}
                header = live_pb2.LiveEvent(
                    kind=METRIC, run_id=run_ids.pop() if len(run_ids) == 1 else "", time=item[0].time
                )
                yield header.SerializeToString() + b"".join(ev.metric_entry() for ev in item)
        finally:
            session.close()
            log.info(
                "subscriber left",
                extra={"fields": {"peer": peer, "lagged_events": session.sub.lagged_events}},
            )


def _seam(
    ev: BusEvent,
    flt: EventFilter,
    seen: dict[tuple[str, str], int],
    seen_logs: dict[tuple[str, str], int] | None = None,
) -> Any:
    """The message for a queued event (for a metric event: the event itself), or None when the
    filter (now resolved) or the history already covers it; a metric or log event the history
    covers in part is cut to its new rows or lines."""
    if not flt.matches(ev):
        return None
    if ev.kind == LOG and seen_logs:
        return _log_seam(ev, seen_logs)
    if ev.kind != METRIC:
        return ev.message()
    covered = seen.get((ev.run_id, ev.name)) if seen else None
    if covered is None or ev.first_row >= covered:
        return ev
    end = ev.first_row + ev.count
    if end <= covered:
        return None
    assert ev.points is not None
    skip = covered - ev.first_row
    cut = ev.points.points
    part = BusEvent(
        METRIC,
        ev.run_id,
        ev.time,
        name=ev.name,
        first_row=covered,
        count=end - covered,
        points=type(ev.points)(
            ev.run_id,
            ev.name,
            ev.points.kind,
            ev.points.description,
            covered,
            codec.slice_points(cut, skip, cut.count),
        ),
    )
    return part


def _log_seam(ev: BusEvent, seen_logs: dict[tuple[str, str], int]) -> live_pb2.LiveEvent | None:
    """A log event without the lines the history already sent (`seen_logs`: lines per file)."""
    body = ev.body
    assert isinstance(body, live_pb2.LogEvent)
    covered = seen_logs.get((ev.run_id, body.path))
    first, n = body.first_line, len(body.lines)
    if covered is None or first >= covered:
        return ev.message()
    if first + n <= covered:
        return None
    skip = covered - first
    return live_pb2.LiveEvent(
        kind=LOG,
        run_id=ev.run_id,
        time=ev.time,
        log=live_pb2.LogEvent(path=body.path, lines=body.lines[skip:], first_line=covered),
    )


def _serialize(message: live_pb2.LiveEvent | bytes) -> bytes:
    return message if isinstance(message, bytes) else message.SerializeToString()


def add_live_service(service: LiveService, server: grpc.aio.Server) -> None:
    """Register `service` like `live_pb2_grpc.add_LiveServicer_to_server`, except that responses
    may also be bytes already serialized (shared by every subscriber)."""
    handler = grpc.unary_stream_rpc_method_handler(
        service.Subscribe,
        request_deserializer=live_pb2.SubscribeRequest.FromString,
        response_serializer=_serialize,
    )
    name = live_pb2.DESCRIPTOR.services_by_name["Live"].full_name
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, {"Subscribe": handler}),))


__all__ = ["LAGGED", "LIVE", "LiveItem", "LiveService", "LiveSession", "add_live_service"]
