"""Live subscriptions: `run.subscribe(...)` and `experiment.subscribe(...)`.

A `Subscription` is an iterator of events pushed by the collector as it commits them:
`MetricEvent` (one per point, expanded from the columnar messages), `StatusEvent`, `LogEvent`,
`TagEvent`, `FileEvent` and `LaggedEvent` (this subscriber fell behind and missed what it says;
refetch with `get_metrics()` / `get_metric_series()`). Every event has `.kind`.

The subscription is registered on the collector before `subscribe()` returns, so a point logged
afterwards is always delivered. Closing it (`close()`, or leaving a `with` block) ends it.
A reader thread takes messages off the gRPC stream into a small bounded buffer: a consumer that
does not keep up slows the stream, and the collector then reports a `LaggedEvent` rather than
holding up anyone else.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from runwire import codec
from runwire.exceptions import UserErrorException
from runwire.v1 import live_pb2, live_pb2_grpc

SUBSCRIBE_READY_TIMEOUT_S = 30.0
"""How long `subscribe()` waits for the collector to confirm the subscription (and send the
history, with `from_start=True`) before raising."""

SUBSCRIPTION_BUFFER_MESSAGES = 256
"""Messages a subscription's reader thread holds for the consumer; when full, the stream waits
(and the collector reports a lag if the consumer stays behind)."""

KINDS = {
    "metric": live_pb2.EVENT_KIND_METRIC,
    "status": live_pb2.EVENT_KIND_STATUS,
    "log": live_pb2.EVENT_KIND_LOG,
    "tag": live_pb2.EVENT_KIND_TAG,
    "file": live_pb2.EVENT_KIND_FILE,
}
_KIND_NAMES = {v: k for k, v in KINDS.items()} | {live_pb2.EVENT_KIND_LAGGED: "lagged"}


@dataclass(frozen=True, slots=True)
class MetricEvent:
    """One committed point. `value` is the value (for a table row: `{column: value}`);
    `step` is None when the point was logged without one; `timestamp` is seconds since the epoch;
    `row` is the point's row number in its series; `history` is True for points sent from the
    store by a `from_start` subscription."""

    run_id: str
    name: str
    value: Any
    step: int | None
    timestamp: float
    row: int
    metric_kind: str
    history: bool = False
    kind: str = "metric"


@dataclass(frozen=True, slots=True)
class StatusEvent:
    run_id: str
    status: str
    created: bool = False
    experiment_name: str = ""
    parent_run_id: str | None = None
    error: dict[str, str] | None = None
    timestamp: float = 0.0
    kind: str = "status"


@dataclass(frozen=True, slots=True)
class LogEvent:
    run_id: str
    path: str
    lines: list[str]
    first_line: int = 0
    timestamp: float = 0.0
    kind: str = "log"


@dataclass(frozen=True, slots=True)
class TagEvent:
    run_id: str
    tags: dict[str, str | None]
    set: dict[str, str | None] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    timestamp: float = 0.0
    kind: str = "tag"


@dataclass(frozen=True, slots=True)
class FileEvent:
    run_id: str
    path: str
    size: int = 0
    timestamp: float = 0.0
    kind: str = "file"


@dataclass(frozen=True, slots=True)
class LaggedSeries:
    run_id: str
    name: str
    first_row: int
    rows: int


@dataclass(frozen=True, slots=True)
class LaggedEvent:
    """The subscriber fell behind; these events were dropped (refetch them from the store)."""

    events: int
    points: int
    run_ids: list[str]
    series: list[LaggedSeries]
    kinds: list[str]
    timestamp: float = 0.0
    run_id: str = ""
    kind: str = "lagged"


Event = MetricEvent | StatusEvent | LogEvent | TagEvent | FileEvent | LaggedEvent


def _kv(items: Any) -> dict[str, str | None]:
    return {kv.key: (kv.value if kv.HasField("value") else None) for kv in items}


def _points(m: live_pb2.MetricEvent) -> list[MetricEvent]:
    mp = m.points
    points = codec.decode_points(mp)
    n = points.count
    ts = (points.timestamps / 1e6).tolist()
    steps = [None if s == codec.NO_STEP else s for s in points.steps.tolist()] if points.steps is not None else None
    kind_name = codec.KIND_NAMES.get(mp.kind, "unknown")
    if mp.kind == codec.TABLE:
        cols = {name: col.to_python(n) for name, col in points.columns.items()}
        values: list[Any] = [{name: vals[i] for name, vals in cols.items()} for i in range(n)]
    else:
        values = next(iter(points.columns.values())).to_python(n)
    first = m.first_row
    run_id, name, hist = mp.run_id, mp.name, m.history
    if steps is None:
        return [MetricEvent(run_id, name, values[i], None, ts[i], first + i, kind_name, hist) for i in range(n)]
    return [MetricEvent(run_id, name, values[i], steps[i], ts[i], first + i, kind_name, hist) for i in range(n)]


def expand(message: live_pb2.LiveEvent) -> list[Event]:
    """The SDK events of one `LiveEvent` (a metric message holds many points)."""
    k = message.kind
    t = message.time
    if k == live_pb2.EVENT_KIND_METRIC:
        out: list[Event] = []
        for m in message.metrics:
            out.extend(_points(m))
        return out
    if k == live_pb2.EVENT_KIND_STATUS:
        s = message.status
        error = {"code": s.error.code, "message": s.error.message} if s.error.code or s.error.message else None
        return [StatusEvent(message.run_id, s.status, s.created, s.experiment_name, s.parent_run_id or None, error, t)]
    if k == live_pb2.EVENT_KIND_LOG:
        lg = message.log
        return [LogEvent(message.run_id, lg.path, list(lg.lines), lg.first_line, t)]
    if k == live_pb2.EVENT_KIND_TAG:
        tg = message.tag
        return [TagEvent(message.run_id, _kv(tg.tags), _kv(tg.set), list(tg.removed), t)]
    if k == live_pb2.EVENT_KIND_FILE:
        f = message.file
        return [FileEvent(message.run_id, f.path, f.size, t)]
    if k == live_pb2.EVENT_KIND_LAGGED:
        lg = message.lagged
        return [
            LaggedEvent(
                lg.events,
                lg.points,
                list(lg.run_ids),
                [LaggedSeries(s.run_id, s.name, s.first_row, s.rows) for s in lg.series],
                [_KIND_NAMES.get(x, str(x)) for x in lg.kinds],
                t,
            )
        ]
    return []


def build_request(
    *,
    experiment_name: str = "",
    run_id: str = "",
    include_children: bool = False,
    metrics: str | Sequence[str] | None = None,
    kinds: str | Sequence[str] | None = None,
    from_start: bool = False,
) -> live_pb2.SubscribeRequest:
    if isinstance(metrics, str):
        metrics = [metrics]
    if isinstance(kinds, str):
        kinds = [kinds]
    codes = []
    for kind in kinds or ():
        if kind not in KINDS:
            raise ValueError(f"unknown event kind {kind!r}; expected one of {sorted(KINDS)}")
        codes.append(KINDS[kind])
    for m in metrics or ():
        if not isinstance(m, str) or not m:
            raise ValueError(f"metric filters must be non-empty strings (exact names or globs), got {m!r}")
    return live_pb2.SubscribeRequest(
        experiment_name=experiment_name,
        run_id=run_id,
        include_children=include_children,
        metrics=list(metrics or ()),
        kinds=codes,
        from_start=from_start,
    )


_END = object()
_LIVE = object()


class Subscription:
    """An iterator of live events. `timeout`: seconds without any event after which iteration
    raises `TimeoutError` (None: wait for ever). Use `next_event(timeout)` for one event or None."""

    def __init__(
        self,
        channel: grpc.Channel,
        request: live_pb2.SubscribeRequest,
        metadata: tuple = (),
        timeout: float | None = None,
        ready_timeout: float = SUBSCRIBE_READY_TIMEOUT_S,
    ) -> None:
        self.timeout = timeout
        self._buffer: queue.Queue[Any] = queue.Queue(SUBSCRIPTION_BUFFER_MESSAGES)
        self._pending: list[Event] = []
        self._pos = 0
        self._closed = threading.Event()
        self._live = threading.Event()
        self._error: BaseException | None = None
        self._stop_at_live = False
        self.caught_up = False
        """True once every event sent before the subscription went live (its history) was read."""
        self._call = live_pb2_grpc.LiveStub(channel).Subscribe(request, metadata=metadata)
        self._thread = threading.Thread(target=self._read, name="runwire-subscription", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + ready_timeout
        # Registered once LIVE arrives; a long history may fill the buffer first (the consumer
        # then reads it, and `read_history()` tells where it ends).
        while not self._live.wait(0.05) and not self._buffer.full():
            if self._error is not None or not self._thread.is_alive():
                self.close()
                raise self._error or UserErrorException("the subscription ended before it started")
            if time.monotonic() > deadline:
                self.close()
                raise TimeoutError(f"the collector did not confirm the subscription within {ready_timeout} s")

    @property
    def live(self) -> bool:
        """True once the collector has registered the subscription (and sent any history)."""
        return self._live.is_set()

    def _read(self) -> None:
        try:
            for message in self._call:
                if message.kind == live_pb2.EVENT_KIND_LIVE:
                    self._live.set()
                    message = _LIVE
                while not self._closed.is_set():
                    try:
                        self._buffer.put(message, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._closed.is_set():
                    return
        except grpc.RpcError as e:
            if not self._closed.is_set() and e.code() != grpc.StatusCode.CANCELLED:
                self._error = _translate(e)
        except BaseException as e:  # pragma: no cover - a bug; surface it to the consumer
            self._error = e
        finally:
            while True:
                try:
                    self._buffer.put(_END, timeout=0.1)
                    break
                except queue.Full:
                    if self._closed.is_set():
                        break

    def next_event(self, timeout: float | None = None) -> Event | None:
        """The next event, or None when none arrives within `timeout` seconds. Raises
        StopIteration once the subscription has ended (closed, or the collector went away —
        then the error is raised instead)."""
        if self._closed.is_set():
            raise StopIteration
        if self._pos < len(self._pending):
            ev = self._pending[self._pos]
            self._pos += 1
            return ev
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                message = self._buffer.get(timeout=remaining)
            except queue.Empty:
                return None
            if message is _LIVE:
                self.caught_up = True
                if self._stop_at_live:
                    return None
                continue
            if message is _END:
                self._buffer.put_nowait(_END)
                if self._error is not None and not self._closed.is_set():
                    raise self._error
                raise StopIteration
            events = expand(message)
            if events:
                self._pending, self._pos = events, 1
                return events[0]

    def read_history(self, timeout: float | None = None) -> list[Event]:
        """The events sent before the subscription went live (with `from_start`: the history
        of the matching runs; events committed meanwhile may be among them), then returns."""
        out: list[Event] = []
        self._stop_at_live = True
        try:
            while not self.caught_up:
                ev = self.next_event(timeout)
                if ev is None:
                    if not self.caught_up:
                        raise TimeoutError(f"the history did not arrive within {timeout} s")
                    break
                out.append(ev)
            while self._pos < len(self._pending):
                out.append(self._pending[self._pos])
                self._pos += 1
        finally:
            self._stop_at_live = False
        return out

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        ev = self.next_event(self.timeout)
        if ev is None:
            raise TimeoutError(f"no live event within {self.timeout} s")
        return ev

    def close(self) -> None:
        """End the subscription (idempotent)."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._call.cancel()
        try:
            self._buffer.put_nowait(_END)
        except queue.Full:
            pass
        if threading.current_thread() is not self._thread:
            self._thread.join(5)

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


def _translate(e: grpc.RpcError) -> Exception:
    from runwire.exceptions import RunNotFoundError, ServiceUnavailableError

    code = e.code()
    details = e.details() or str(e)
    if code == grpc.StatusCode.NOT_FOUND:
        return RunNotFoundError(details)
    if code == grpc.StatusCode.UNAVAILABLE:
        return ServiceUnavailableError(f"the live subscription to the collector ended: {details}")
    return UserErrorException(details)
