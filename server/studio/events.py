"""`GET /api/v1/events`: the studio's server-sent events (the contract: /work/notes/studio.md
"Server-sent events").

A stream is one `LiveSession` (the same machinery as the gRPC `Live` service): it registers with the
live bus, resolves its run scope (404 for an unknown run), sends the stored history when asked
(`from_start=1`), then `event: live`, then what the collector commits, with the history/live seam
applied (no gap, no duplicate). Live metric points are coalesced: a series goes out at most once
per `SSE_COALESCE_S` (its first points at once, what follows within the interval in one message at
its end). A client that stops reading stops draining its bounded bus queue, which then drops
events and tells it with `event: lagged` (ingest never waits for a subscriber). A comment line
`: ping` goes out after `SSE_KEEPALIVE_S` without an event, and a client that disconnects is
noticed within `SSE_DISCONNECT_CHECK_S` and unsubscribed.

Metric values are JSON numbers; NaN and ±infinity, which JSON cannot hold, are the strings "NaN",
"Infinity" and "-Infinity"; a missing value is null.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from aiohttp import web
from multidict import MultiMapping

from runwire import codec, limits
from runwire.server import limits as server_limits
from runwire.server.bus import (
    FILE,
    LAGGED,
    LIVE,
    LOG,
    METRIC,
    STATUS,
    TAG,
    BusEvent,
    EventFilter,
    LiveBus,
)
from runwire.server.errors import CollectorError, NotFound
from runwire.server.live import LiveSession
from runwire.server.store.base import Store
from runwire.server.studio.errors import ApiError, bad_param, error_response
from runwire.server.studio.params import parse_bool, text
from runwire.v1 import live_pb2

log = logging.getLogger(__name__)

EVENTS_PATH = "/api/v1/events"

SSE_COALESCE_S = 0.1
"""Seconds between two messages of one metric series at least: a series' first points go out at
once, the points committed within this interval after them go out together at its end."""

SSE_KEEPALIVE_S = 15.0
"""Seconds without an event after which a stream sends the comment line `: ping` (keeps proxies
and the browser from timing the connection out)."""

SSE_DISCONNECT_CHECK_S = 0.25
"""Seconds between two checks whether an idle stream's client has gone (its subscription is then
removed): aiohttp does not wake a handler when its client disconnects."""

SSE_MAX_METRIC_FILTERS = 100
"""`metrics` parameters (names or globs) one events request may repeat at most."""

SSE_MESSAGE_MAX_POINTS = server_limits.LIVE_MESSAGE_MAX_POINTS
"""Points of one series one `metric` event carries at most when coalescing (a single larger
commit still goes out whole)."""

KIND_NAMES = {METRIC: "metric", STATUS: "status", LOG: "log", TAG: "tag", FILE: "file", LAGGED: "lagged", LIVE: "live"}
KINDS_BY_NAME = {name: kind for kind, name in KIND_NAMES.items() if kind not in (LAGGED, LIVE)}

_PING = b": ping\n\n"


# --- JSON encoding -------------------------------------------------------------------------------


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def frame(kind: str, data: str) -> bytes:
    """One SSE message: `event: <kind>`, `data: <JSON>`, a blank line. JSON has no raw line ends."""
    return f"event: {kind}\ndata: {data}\n\n".encode("utf-8", "surrogatepass")


def _non_finite(v: float) -> str:
    return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")


def column_json(col: codec.DecodedColumn | None, count: int) -> str:
    """The values of a column as the inside of a JSON array (no brackets): numbers as numbers,
    NaN/±inf as strings, None (absent column, null rows) as null."""
    if count == 0:
        return ""
    if col is None or col.type == codec.NONE or col.values is None:
        return ",".join(["null"] * count)
    values = col.values
    if col.type == codec.FLOAT:
        arr = np.asarray(values)
        finite = np.isfinite(arr)
        if finite.all():
            out = arr.tolist()
        else:
            out = arr.tolist()
            for i in np.flatnonzero(~finite).tolist():
                out[i] = _non_finite(out[i])
    elif col.type == codec.BOOL:
        out = np.asarray(values).astype(bool).tolist()
    elif col.type == codec.INT:
        out = np.asarray(values).tolist()
    else:
        out = list(values)
    if col.nulls is not None:
        for i in np.flatnonzero(col.nulls).tolist():
            out[i] = None
    return _dumps(out)[1:-1]


def _has_all_steps(points: codec.DecodedPoints) -> bool:
    return points.steps is not None and not bool((points.steps == codec.NO_STEP).any())


@dataclass
class _Fragments:
    """The JSON pieces of one event's points, made once and shared by every stream that sends it."""

    steps: str | None = None
    index: str | None = None
    columns: dict[str, str] = field(default_factory=dict)


_fragments: weakref.WeakKeyDictionary[object, _Fragments] = weakref.WeakKeyDictionary()


@dataclass
class Piece:
    """Rows `first_row` .. `first_row + points.count - 1` of a series, with a cache key for its JSON."""

    first_row: int
    points: codec.DecodedPoints
    key: object | None = None
    """An object whose life bounds the cached JSON of these points (the bus event), or None."""

    def _frags(self) -> _Fragments:
        if self.key is None:
            return _Fragments()
        frags = _fragments.get(self.key)
        if frags is None:
            frags = _fragments[self.key] = _Fragments()
        return frags

    def x_json(self, use_steps: bool) -> str:
        frags, n = self._frags(), self.points.count
        if use_steps:
            if frags.steps is None:
                assert self.points.steps is not None
                frags.steps = _dumps(self.points.steps.tolist())[1:-1] if n else ""
            return frags.steps
        if frags.index is None:
            frags.index = _dumps(list(range(self.first_row, self.first_row + n)))[1:-1] if n else ""
        return frags.index

    def column_json(self, name: str) -> str:
        frags = self._frags()
        out = frags.columns.get(name)
        if out is None:
            out = frags.columns[name] = column_json(self.points.columns.get(name), self.points.count)
        return out


def _join(parts: Iterable[str]) -> str:
    return "[" + ",".join(p for p in parts if p) + "]"


def metric_json(run_id: str, name: str, kind: int, pieces: Sequence[Piece]) -> str:
    """The `metric` event of consecutive pieces of one series: x/y for scalars, lists and images;
    columns for tables."""
    first_row = pieces[0].first_row
    count = sum(p.points.count for p in pieces)
    head = (
        f'{{"run_id":{_dumps(run_id)},"name":{_dumps(name)},"kind":{_dumps(codec.KIND_NAMES.get(kind, "scalar"))},'
        f'"first_row":{first_row},"count":{count},'
    )
    if kind == codec.TABLE:
        names: list[str] = []
        for p in pieces:
            names.extend(n for n in p.points.columns if n not in names)
        cols = ",".join(f"{_dumps(n)}:{_join(p.column_json(n) for p in pieces)}" for n in names)
        return head + f'"columns":{{{cols}}}}}'
    use_steps = all(_has_all_steps(p.points) for p in pieces)
    x = _join(p.x_json(use_steps) for p in pieces)
    y = _join(p.column_json("") for p in pieces)
    return head + f'"x":{x},"y":{y}}}'


def _opt_time(t: float) -> float | None:
    return t if t else None


def message_frames(ev: live_pb2.LiveEvent) -> list[bytes]:
    """The SSE messages of a `LiveEvent` (history, or a live non-metric event)."""
    kind = ev.kind
    if kind == METRIC:
        out = []
        for m in ev.metrics:
            mp = m.points
            points = codec.decode_points_unchecked(mp)
            out.append(frame("metric", metric_json(mp.run_id, mp.name, mp.kind, [Piece(m.first_row, points)])))
        return out
    if kind == STATUS:
        s = ev.status
        data = {
            "run_id": ev.run_id,
            "status": s.status,
            "created": s.created,
            "experiment_name": s.experiment_name,
            "parent_run_id": s.parent_run_id or None,
            "start_time": _opt_time(s.start_time),
            "end_time": _opt_time(s.end_time),
            "error": {"code": s.error.code, "message": s.error.message} if s.HasField("error") else None,
        }
    elif kind == LOG:
        data = {"run_id": ev.run_id, "path": ev.log.path, "first_line": ev.log.first_line, "lines": list(ev.log.lines)}
    elif kind == TAG:
        data = {
            "run_id": ev.run_id,
            "tags": {kv.key: kv.value if kv.HasField("value") else None for kv in ev.tag.tags},
        }
    elif kind == FILE:
        data = {"run_id": ev.run_id, "name": ev.file.path, "size": ev.file.size}
    elif kind == LAGGED:
        g = ev.lagged
        data = {
            "events": g.events,
            "points": g.points,
            "run_ids": list(g.run_ids),
            "series": [
                {"run_id": s.run_id, "name": s.name, "first_row": s.first_row, "rows": s.rows} for s in g.series
            ],
            "kinds": [KIND_NAMES.get(k, str(k)) for k in g.kinds],
        }
    elif kind == LIVE:
        data = {}
    else:
        return []
    return [frame(KIND_NAMES[kind], _dumps(data))]


# --- coalescing ----------------------------------------------------------------------------------


@dataclass
class _Pending:
    run_id: str
    name: str
    kind: int
    pieces: list[Piece]
    count: int
    due: float

    @property
    def next_row(self) -> int:
        return self.pieces[-1].first_row + self.pieces[-1].points.count


class Coalescer:
    """Live metric points of one stream, sent at most once per `interval` per series (times are the
    caller's monotonic clock)."""

    def __init__(self, interval: float = SSE_COALESCE_S, max_points: int = SSE_MESSAGE_MAX_POINTS) -> None:
        self.interval = interval
        self.max_points = max_points
        self._pending: dict[tuple[str, str], _Pending] = {}
        self._last_sent: dict[tuple[str, str], float] = {}

    def add(self, ev: BusEvent, now: float) -> list[bytes]:
        """Take one metric event; returns what goes out now."""
        assert ev.points is not None
        key = (ev.run_id, ev.name)
        piece = Piece(ev.first_row, ev.points.points, ev)
        out: list[bytes] = []
        held = self._pending.get(key)
        if held is not None:
            if held.next_row == ev.first_row and held.count + ev.count <= self.max_points:
                held.pieces.append(piece)
                held.count += ev.count
                return out
            out.append(self._emit(self._pending.pop(key), now))  # a gap or a full message: send what is held
        last = self._last_sent.get(key)
        if held is None and (last is None or now - last >= self.interval):
            self._last_sent[key] = now
            out.append(frame("metric", metric_json(ev.run_id, ev.name, ev.points.kind, [piece])))
            return out
        due = now + self.interval if held is not None else last + self.interval  # type: ignore[operator]
        self._pending[key] = _Pending(ev.run_id, ev.name, ev.points.kind, [piece], ev.count, due)
        return out

    def _emit(self, p: _Pending, now: float) -> bytes:
        self._last_sent[(p.run_id, p.name)] = now
        return frame("metric", metric_json(p.run_id, p.name, p.kind, p.pieces))

    def next_due(self) -> float | None:
        return min((p.due for p in self._pending.values()), default=None)

    def due(self, now: float) -> list[bytes]:
        """The held series whose interval has passed."""
        ready = [k for k, p in self._pending.items() if p.due <= now]
        out = [self._emit(self._pending.pop(k), now) for k in ready]
        if len(self._last_sent) > 10_000:  # forget series that no longer hold anything back
            horizon = now - self.interval
            self._last_sent = {k: t for k, t in self._last_sent.items() if t > horizon}
        return out

    def flush(self, now: float, run_id: str | None = None) -> list[bytes]:
        """Everything held (of one run), e.g. before that run's status event or a lagged event."""
        keys = [k for k in self._pending if run_id is None or k[0] == run_id]
        return [self._emit(self._pending.pop(k), now) for k in keys]

    def __len__(self) -> int:
        return len(self._pending)


# --- parameters ----------------------------------------------------------------------------------


@dataclass
class EventsQuery:
    experiment: str = ""
    run: str = ""
    include_children: bool = False
    kinds: list[int] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    from_start: bool = False

    def filter(self) -> EventFilter:
        return EventFilter(self.experiment, self.run, self.include_children, self.metrics, self.kinds)


def _text(name: str, value: str, max_length: int) -> str:
    """`params.text` (valid UTF-8), plus no NUL and at most `max_length` characters: these name a
    live-bus filter, not a stored value."""
    if "\x00" in value:
        raise bad_param(name, "must not contain NUL characters")
    text(value, name)
    if len(value) > max_length:
        raise bad_param(name, f"must be at most {max_length} characters long")
    return value


def parse_query(query: MultiMapping[str]) -> EventsQuery:
    """The request's query parameters, checked (the ApiError names the first bad one)."""
    q = EventsQuery()
    q.experiment = _text("experiment", query.get("experiment", ""), limits.MAX_EXPERIMENT_NAME_LENGTH)
    q.run = _text("run", query.get("run", ""), limits.MAX_RUN_ID_LENGTH)
    q.include_children = parse_bool("include_children", query.get("include_children"))
    q.from_start = parse_bool("from_start", query.get("from_start"))
    for raw in query.getall("kinds", []):
        for part in raw.split(","):
            name = part.strip()
            if not name:
                continue
            kind = KINDS_BY_NAME.get(name)
            if kind is None:
                raise bad_param("kinds", f"each kind must be one of {', '.join(KINDS_BY_NAME)}", name)
            if kind not in q.kinds:
                q.kinds.append(kind)
    metrics = query.getall("metrics", [])
    if len(metrics) > SSE_MAX_METRIC_FILTERS:
        raise bad_param("metrics", f"at most {SSE_MAX_METRIC_FILTERS} names or globs", len(metrics))
    for m in metrics:
        if not m:
            raise bad_param("metrics", "must be a metric name or glob, not empty")
        q.metrics.append(_text("metrics", m, limits.MAX_NAME_LENGTH))
    return q


# --- the stream ----------------------------------------------------------------------------------


class EventStreams:
    """The `/api/v1/events` handler, with the streams it has open (ended when the app shuts down)."""

    def __init__(self, store: Store, bus: LiveBus) -> None:
        self._store = store
        self._bus = bus
        self._closing = asyncio.Event()
        self._open: set[asyncio.Transport] = set()
        """The connections of the open streams."""

    async def on_shutdown(self, app: web.Application) -> None:
        """End every stream now: idle ones see `_closing` and end their response; a client that is
        not reading would hold its stream in a blocked write (and the collector's shutdown with it),
        so such a connection is aborted."""
        self._closing.set()
        for transport in list(self._open):
            if transport.get_write_buffer_size() > 0:
                transport.abort()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            q = parse_query(request.query)
        except ApiError as e:
            return error_response(e.status, e.code, e.message)
        session = LiveSession(self._store, self._bus, q.filter())
        try:
            await session.open()
        except NotFound as e:
            return error_response(404, "NotFound", str(e))
        except CollectorError as e:
            return error_response(400, "InvalidArgument", str(e))
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache, no-transform",
                "X-Accel-Buffering": "no",
                "X-Content-Type-Options": "nosniff",
            }
        )
        transport = request.transport
        if transport is None:  # gone already
            session.close()
            return resp
        self._open.add(transport)  # type: ignore[arg-type]  (a uvloop or asyncio TCP transport)
        peer = request.remote
        log.info(
            "studio events stream opened",
            extra={
                "fields": {
                    "peer": peer,
                    "experiment": q.experiment,
                    "run_id": q.run,
                    "from_start": q.from_start,
                    "subscribers": self._bus.subscriber_count,
                }
            },
        )
        try:
            await resp.prepare(request)
            await self._stream(request, resp, session, q.from_start)
        except ConnectionError:
            pass  # the client went away
        finally:
            self._open.discard(transport)
            session.close()
            lagged = session.sub.lagged_events if session.sub is not None else 0
            log.info("studio events stream closed", extra={"fields": {"peer": peer, "lagged_events": lagged}})
        return resp

    async def _stream(
        self, request: web.Request, resp: web.StreamResponse, session: LiveSession, from_start: bool
    ) -> None:
        loop = asyncio.get_running_loop()
        if from_start:
            async with contextlib.aclosing(session.history()) as history:
                async for message in history:
                    if _gone(request) or self._closing.is_set():
                        return
                    for f in message_frames(message):
                        await resp.write(f)
        await resp.write(frame("live", "{}"))
        coalescer = Coalescer()
        ping_at = loop.time() + SSE_KEEPALIVE_S
        closing = asyncio.ensure_future(self._closing.wait())
        getter: asyncio.Future | None = None
        try:
            while not self._closing.is_set():
                if _gone(request):
                    return
                now = loop.time()
                wake = min(ping_at, now + SSE_DISCONNECT_CHECK_S)
                due = coalescer.next_due()
                if due is not None:
                    wake = min(wake, due)
                if getter is None:
                    getter = asyncio.ensure_future(session.get())
                if wake > now:
                    await asyncio.wait((getter, closing), timeout=wake - now, return_when=asyncio.FIRST_COMPLETED)
                now = loop.time()
                out: list[bytes] = []
                if getter.done():
                    item = getter.result()
                    getter = None
                    self._take(item, coalescer, now, out)
                    while len(out) < 256 and (item := session.poll()) is not None:
                        self._take(item, coalescer, now, out)
                out.extend(coalescer.due(now))
                if out:
                    await resp.write(b"".join(out))
                    ping_at = loop.time() + SSE_KEEPALIVE_S
                elif now >= ping_at:
                    await resp.write(_PING)
                    ping_at = now + SSE_KEEPALIVE_S
        finally:
            closing.cancel()
            if getter is not None:
                getter.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await getter

    @staticmethod
    def _take(item: object, coalescer: Coalescer, now: float, out: list[bytes]) -> None:
        if isinstance(item, list):
            for ev in item:
                out.extend(coalescer.add(ev, now))
            return
        assert isinstance(item, live_pb2.LiveEvent)
        if item.kind == LAGGED:
            out.extend(coalescer.flush(now))
        elif item.kind == STATUS and len(coalescer):
            out.extend(coalescer.flush(now, item.run_id))  # a run's points before its new status
        out.extend(message_frames(item))


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def add_event_routes(app: web.Application, store: Store, bus: LiveBus) -> EventStreams:
    """Mount `GET /api/v1/events` on `app`."""
    streams = EventStreams(store, bus)
    app.router.add_get(EVENTS_PATH, streams.handle, allow_head=False)
    app.on_shutdown.append(streams.on_shutdown)
    return streams
