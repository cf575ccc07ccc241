"""The live bus: what the collector committed, fanned out to live subscribers.

`LiveBus` is the interface (an in-process implementation here; `bus_nats.NatsBus` carries events
between collector replicas through NATS JetStream and fans out locally through this one):
`publish()` takes events that are already committed (never before the commit) and returns at
once; `subscribe()` gives a `Subscriber` with a bounded queue (of commits: the events one
`publish()` brings are one entry; and of metric points).
Fan-out never blocks or slows the publisher: a subscriber whose queue is full stops receiving
and, at the point of the gap, gets one `lagged` marker saying what it missed (events, points,
runs, and for each metric series the first missed row and the number of rows), so it can
refetch instead of holding anyone up.

Events carry what subscribers filter on (kind, run, metric name) and build their `LiveEvent`
message once, lazily, shared by every subscriber that sends it.
"""

from __future__ import annotations

import asyncio
import fnmatch
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from runwire import codec
from runwire.server import limits as server_limits
from runwire.server.records import CommittedPoints, RunRecord
from runwire.v1 import live_pb2, runs_pb2

METRIC = live_pb2.EVENT_KIND_METRIC
STATUS = live_pb2.EVENT_KIND_STATUS
LOG = live_pb2.EVENT_KIND_LOG
TAG = live_pb2.EVENT_KIND_TAG
FILE = live_pb2.EVENT_KIND_FILE
LAGGED = live_pb2.EVENT_KIND_LAGGED
LIVE = live_pb2.EVENT_KIND_LIVE
DATA_KINDS = frozenset({METRIC, STATUS, LOG, TAG, FILE})
"""The kinds a subscriber may filter on (LAGGED and LIVE are always delivered)."""


# --- events --------------------------------------------------------------------------------------


@dataclass(eq=False)
class BusEvent:
    """One committed event. Metric events hold decoded points and encode them on first use."""

    kind: int
    run_id: str
    time: float
    name: str = ""
    """Metric name (metric events)."""
    first_row: int = 0
    count: int = 0
    """Rows (metric events)."""
    experiment_name: str = ""
    parent_run_id: str = ""
    created: bool = False
    """A status event announcing a new run (subscribers scoped by experiment or parent add it)."""
    points: CommittedPoints | None = None
    body: object | None = None
    """The message of a non-metric event (StatusEvent, LogEvent, TagEvent, FileEvent)."""
    _message: live_pb2.LiveEvent | None = field(default=None, repr=False)
    _metric: live_pb2.MetricEvent | None = field(default=None, repr=False)
    _entry: bytes | None = field(default=None, repr=False)

    def message(self) -> live_pb2.LiveEvent:
        if self._message is None:
            self._message = self._build()
        return self._message

    def metric_message(self) -> live_pb2.MetricEvent:
        """The points of a metric event, encoded once for every subscriber."""
        if self._metric is None:
            assert self.points is not None
            mp = codec.encode_decoded(self.points.points)
            mp.run_id, mp.name, mp.kind = self.run_id, self.name, self.points.kind
            if self.points.description:
                mp.description = self.points.description
            self._metric = live_pb2.MetricEvent(points=mp, first_row=self.first_row)
        return self._metric

    def metric_entry(self) -> bytes:
        """The points as one serialized `LiveEvent.metrics` entry (field tag, length, bytes), made
        once: a subscriber's message is its header's bytes followed by such entries, so fan-out
        to many subscribers serializes nothing per subscriber."""
        if self._entry is None:
            self._entry = live_pb2.LiveEvent(metrics=[self.metric_message()]).SerializeToString()
        return self._entry

    def _build(self) -> live_pb2.LiveEvent:
        ev = live_pb2.LiveEvent(kind=self.kind, run_id=self.run_id, time=self.time)
        if self.kind == METRIC:
            ev.metrics.append(self.metric_message())
        elif self.kind == STATUS:
            ev.status.CopyFrom(self.body)
        elif self.kind == LOG:
            ev.log.CopyFrom(self.body)
        elif self.kind == TAG:
            ev.tag.CopyFrom(self.body)
        elif self.kind == FILE:
            ev.file.CopyFrom(self.body)
        return ev


def metric_events(committed: Iterable[CommittedPoints], now: float | None = None) -> list[BusEvent]:
    t = time.time() if now is None else now
    return [
        BusEvent(METRIC, c.run_id, t, name=c.name, first_row=c.first_row, count=c.points.count, points=c)
        for c in committed
    ]


def _kvs(pairs: dict[str, str | None]) -> list[runs_pb2.KeyValue]:
    return [runs_pb2.KeyValue(key=k) if v is None else runs_pb2.KeyValue(key=k, value=v) for k, v in pairs.items()]


def status_event(record: RunRecord, created: bool = False) -> BusEvent:
    body = live_pb2.StatusEvent(
        status=record.status,
        created=created,
        experiment_name=record.experiment_name,
        parent_run_id=record.parent_run_id or "",
        start_time=record.start_time or 0.0,
        end_time=record.end_time or 0.0,
    )
    if record.error is not None:
        body.error.CopyFrom(
            runs_pb2.RunError(
                code=record.error.code, message=record.error.message, details_json=record.error.details_json
            )
        )
    return BusEvent(
        STATUS,
        record.run_id,
        time.time(),
        experiment_name=record.experiment_name,
        parent_run_id=record.parent_run_id or "",
        created=created,
        body=body,
    )


def tag_event(record: RunRecord, set_: dict[str, str | None], removed: Sequence[str]) -> BusEvent:
    body = live_pb2.TagEvent(tags=_kvs(record.tags), set=_kvs(set_), removed=list(removed))
    return BusEvent(TAG, record.run_id, time.time(), body=body)


def log_event(run_id: str, path: str, lines: Sequence[str], first_line: int) -> BusEvent:
    body = live_pb2.LogEvent(path=path, lines=list(lines), first_line=first_line)
    return BusEvent(LOG, run_id, time.time(), body=body)


def file_event(run_id: str, path: str, size: int, content_type: str = "") -> BusEvent:
    body = live_pb2.FileEvent(path=path, size=size, content_type=content_type)
    return BusEvent(FILE, run_id, time.time(), body=body)


# --- filters -----------------------------------------------------------------------------------------


class EventFilter:
    """Which events a subscriber wants: kinds, metric names (exact or glob), and a run scope.

    The scope is an experiment (its runs, children included), a run (with or without its
    descendants) or everything. Runs created after subscribing join the scope through their
    `created` status event (published before any of their points can be committed). While the
    scope is being resolved from the store (`runs is None`), every run matches; the subscriber
    applies the filter again once it is resolved (`resolve`)."""

    def __init__(
        self,
        experiment_name: str = "",
        run_id: str = "",
        include_children: bool = False,
        metrics: Sequence[str] = (),
        kinds: Iterable[int] = (),
    ) -> None:
        self.experiment_name = "" if run_id else experiment_name
        self.run_id = run_id
        self.include_children = include_children
        self.kinds = frozenset(kinds) & DATA_KINDS or DATA_KINDS
        self._exact = {m for m in metrics if not any(c in m for c in "*?[")}
        self._globs = [m for m in metrics if m not in self._exact]
        self._any_metric = not metrics
        self.exact_metrics: tuple[str, ...] | None = tuple(sorted(self._exact)) if metrics and not self._globs else None
        """The metric names wanted when they are all exact (the bus then looks them up directly)."""
        self._names: dict[str, bool] = {}
        self.scoped = bool(self.experiment_name or self.run_id)
        self.runs: set[str] | None = None
        if run_id and not include_children:
            self.runs = {run_id}
        self._joined: set[str] = set()

    @classmethod
    def from_request(cls, r: live_pb2.SubscribeRequest) -> EventFilter:
        return cls(r.experiment_name, r.run_id, r.include_children, list(r.metrics), list(r.kinds))

    @property
    def needs_resolution(self) -> bool:
        return self.scoped and self.runs is None

    def resolve(self, runs: Iterable[str]) -> None:
        self.runs = set(runs) | self._joined
        self._joined.clear()

    def metric_matches(self, name: str) -> bool:
        if self._any_metric:
            return True
        hit = self._names.get(name)
        if hit is None:
            hit = name in self._exact or any(fnmatch.fnmatchcase(name, g) for g in self._globs)
            if len(self._names) < 100_000:
                self._names[name] = hit
        return hit

    def observe(self, ev: BusEvent) -> None:
        """Let a new run join the scope (called for every published event, before `matches`)."""
        if not (ev.created and self.scoped):
            return
        if self.experiment_name:
            joins = ev.experiment_name == self.experiment_name
        else:
            joins = (
                self.include_children
                and bool(ev.parent_run_id)
                and (
                    ev.parent_run_id == self.run_id
                    or (self.runs is not None and ev.parent_run_id in self.runs)
                    or ev.parent_run_id in self._joined
                )
            )
        if joins:
            (self.runs if self.runs is not None else self._joined).add(ev.run_id)

    def matches(self, ev: BusEvent) -> bool:
        if ev.kind not in self.kinds:
            return False
        if ev.kind == METRIC and not self.metric_matches(ev.name):
            return False
        if not self.scoped or self.runs is None:
            return True
        return ev.run_id in self.runs


# --- subscribers -------------------------------------------------------------------------------------

HELD_WHILE_RESOLVING_MAX_EVENTS = 100_000
"""Events a new subscriber holds, unfiltered, while the collector looks up which runs its scope
covers (a few milliseconds); beyond it they go to its bounded queue unfiltered."""


@dataclass
class LagMarker:
    """Events a subscriber missed while its queue was full (it takes the place of the gap)."""

    events: int = 0
    points: int = 0
    run_ids: dict[str, None] = field(default_factory=dict)
    series: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    kinds: set[int] = field(default_factory=set)

    def add(self, ev: BusEvent) -> None:
        self.events += 1
        self.kinds.add(ev.kind)
        self.run_ids[ev.run_id] = None
        if ev.kind == METRIC:
            self.points += ev.count
            span = self.series.get((ev.run_id, ev.name))
            if span is None:
                self.series[(ev.run_id, ev.name)] = [ev.first_row, ev.count]
            else:
                span[1] += ev.count

    def message(self) -> live_pb2.LiveEvent:
        lagged = live_pb2.LaggedEvent(
            events=self.events,
            points=self.points,
            run_ids=list(self.run_ids),
            series=[
                live_pb2.LaggedSeries(run_id=r, name=n, first_row=first, rows=rows)
                for (r, n), (first, rows) in self.series.items()
            ],
            kinds=sorted(self.kinds),
        )
        return live_pb2.LiveEvent(kind=LAGGED, time=time.time(), lagged=lagged)


class Subscriber:
    """A bounded queue of events for one subscription. `offer` (publisher side) never blocks.

    The queue holds entries: the events one publish (one store commit) brought that match, as one
    batch, or a `LagMarker` standing for events dropped. `max_events` bounds the entries (commits
    waiting), so one commit touching thousands of series does not overflow a subscriber that
    reads as fast as it can; `max_points` bounds the metric points of all queued events (memory),
    so a commit whose matching points alone exceed it still makes the subscriber lag (one event
    bigger than it is accepted alone, into an empty queue). The consumer side (`get`,
    `get_nowait`, `next_metric`) hands out the queued events one at a time, in order."""

    def __init__(
        self,
        flt: EventFilter,
        max_events: int = server_limits.LIVE_QUEUE_MAX_EVENTS,
        max_points: int = server_limits.LIVE_QUEUE_MAX_POINTS,
    ) -> None:
        self.filter = flt
        self.max_events = max_events
        self.max_points = max_points
        self._queue: deque[deque[BusEvent] | LagMarker] = deque()
        self._held: list[list[BusEvent]] = []
        self._held_events = 0
        self._points = 0
        self._wakeup = asyncio.Event()
        self.closed = False
        self.lagged_events = 0
        """Events dropped over the subscription's life."""

    def offer(self, ev: BusEvent) -> None:
        """One published event (a publish of its own)."""
        self.offer_many((ev,))

    def offer_many(self, events: Iterable[BusEvent]) -> None:
        """The events of one publish, in order: those that match are queued as one entry."""
        flt = self.filter
        q = self._queue
        max_events, max_points = self.max_events, self.max_points
        batch: deque[BusEvent] | None = None
        """This publish's entry while it is the last one queued."""
        held: list[BusEvent] | None = None
        woke = False
        for ev in events:
            flt.observe(ev)
            if flt.needs_resolution and self._held_events < HELD_WHILE_RESOLVING_MAX_EVENTS:
                # which runs match is not known yet: decide in `release()`
                if held is None:
                    held = []
                    self._held.append(held)
                held.append(ev)
                self._held_events += 1
                continue
            if not flt.matches(ev):
                continue
            if batch is not None:
                # the same commit: only the points bound applies (the queue holds at least `batch`)
                if self._points + ev.count <= max_points:
                    batch.append(ev)
                    self._points += ev.count
                    continue
                batch = None
                marker = LagMarker()
                marker.add(ev)
                q.append(marker)
                self.lagged_events += 1
                woke = True
                continue
            if q and isinstance(q[-1], LagMarker):
                # still lagging: keep dropping until the subscriber has made room
                if len(q) > max_events or (self._points and self._points + ev.count > max_points):
                    q[-1].add(ev)
                    self.lagged_events += 1
                    continue
            elif len(q) >= max_events or (q and self._points + ev.count > max_points):
                marker = LagMarker()
                marker.add(ev)
                q.append(marker)
                self.lagged_events += 1
                woke = True
                continue
            batch = deque((ev,))
            q.append(batch)
            self._points += ev.count
            woke = True
        if woke:
            self._wakeup.set()

    def missed(self, events: Iterable[BusEvent] = (), unknown: int = 0) -> int:
        """Events lost before they reached this subscriber (between collector replicas): those of
        `events` that match (they may carry no points, only their rows), and `unknown` events whose
        content nobody knows any more, go into a lag marker at this point of the queue. Returns
        the events it was told of."""
        flt = self.filter
        q = self._queue
        marker = q[-1] if q and isinstance(q[-1], LagMarker) else None
        n = 0
        for ev in events:
            if flt.needs_resolution or flt.matches(ev):
                if marker is None:
                    marker = LagMarker()
                    q.append(marker)
                marker.add(ev)
                n += 1
        if unknown:
            if marker is None:
                marker = LagMarker()
                q.append(marker)
            marker.events += unknown
            marker.kinds |= flt.kinds
            n += unknown
        if n:
            self.lagged_events += n
            self._wakeup.set()
        return n

    def release(self) -> None:
        """Once the filter's scope is resolved: queue the events held meanwhile that match (each
        publish's as one entry, as if published now)."""
        held, self._held, self._held_events = self._held, [], 0
        for evs in held:
            self.offer_many(evs)

    def _pop(self) -> BusEvent | LagMarker:
        q = self._queue
        head = q[0]
        if isinstance(head, LagMarker):
            q.popleft()
            return head
        ev = head.popleft()
        if not head:
            q.popleft()
        self._points -= ev.count
        return ev

    async def get(self) -> BusEvent | LagMarker:
        while not self._queue:
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._pop()

    def next_metric(self) -> BusEvent | None:
        """The next queued event if it is a metric event (to send several in one message)."""
        if not self._queue:
            return None
        head = self._queue[0]
        if isinstance(head, LagMarker) or head[0].kind != METRIC:
            return None
        item = self._pop()
        assert isinstance(item, BusEvent)
        return item

    def get_nowait(self) -> BusEvent | LagMarker | None:
        if not self._queue:
            return None
        return self._pop()

    def __len__(self) -> int:
        """Queue entries (batches of one publish each, and lag markers)."""
        return len(self._queue)

    @property
    def queued_points(self) -> int:
        """Metric points of the queued events (bounded by `max_points`)."""
        return self._points


class LiveBus(ABC):
    """Publish committed events; subscribe with a bounded queue."""

    @abstractmethod
    def publish(self, events: Sequence[BusEvent]) -> None:
        """Hand committed events to every matching subscriber. Never blocks; call it after the
        commit that made them durable, in commit order, from the collector's event loop."""

    @abstractmethod
    def subscribe(self, flt: EventFilter) -> Subscriber:
        """A subscriber receiving every event published from now on that `flt` matches."""

    @abstractmethod
    def unsubscribe(self, sub: Subscriber) -> None: ...

    @property
    @abstractmethod
    def subscriber_count(self) -> int: ...

    async def start(self) -> None:  # noqa: B027 - nothing to do for most buses
        """Connect (a bus between replicas); the collector calls it before serving."""

    async def stop(self) -> None:  # noqa: B027
        """Send what is still queued and disconnect; the collector calls it after its last commit."""

    async def flush(self) -> None:  # noqa: B027 - an in-process publish is delivered already
        """Return once what was published so far is on its way to every replica's subscribers (the
        NATS bus: acked by JetStream), or after a bounded wait. A new run's `created` event is
        flushed before its id goes back to the client, so that no replica sees its points first."""

    def describe(self) -> str:
        return "in-process"

    @property
    def wants_events(self) -> bool:
        """Whether committed events are worth building: a local subscriber, or (for a bus between
        replicas) always, since other replicas' subscribers are not counted here."""
        return self.subscriber_count > 0

    # publish helpers for the services (issues 3/4 publish log lines and files through these)
    def publish_log(self, run_id: str, path: str, lines: Sequence[str], first_line: int) -> None:
        """New lines of a run's log file, once stored."""
        self.publish([log_event(run_id, path, lines, first_line)])

    def publish_file(self, run_id: str, path: str, size: int, content_type: str = "") -> None:
        """A file (artifact) of a run, once stored."""
        self.publish([file_event(run_id, path, size, content_type)])


class InProcessBus(LiveBus):
    """Fan-out inside one collector process (the embedded `runwire up` deployment)."""

    def __init__(self, on_lag: Callable[[int], None] | None = None) -> None:
        self._subs: list[Subscriber] = []
        self._on_lag = on_lag

    def publish(self, events: Sequence[BusEvent]) -> None:
        if not self._subs or not events:
            return
        # A subscriber scoped to known runs only looks at the events of those runs (a commit may
        # hold thousands of series of other runs); new runs (`created`) are shown to everyone.
        by_run: dict[str, list[BusEvent]] = {}
        any_created = False
        all_metric = True
        for ev in events:
            by_run.setdefault(ev.run_id, []).append(ev)
            any_created = any_created or ev.created
            all_metric = all_metric and ev.kind == METRIC
        by_series: dict[tuple[str, str], list[BusEvent]] | None = None
        for sub in self._subs:
            before = sub.lagged_events
            flt = sub.filter
            runs = flt.runs if flt.scoped else None
            # each subscriber gets this publish's matching events as one queue entry (one commit,
            # however many series it touched); each series' events stay in publish order
            if runs is not None and all_metric and flt.exact_metrics is not None:
                # e.g. dashboards watching "loss" of a run that logs thousands of series
                if METRIC in flt.kinds:
                    if by_series is None:
                        by_series = {}
                        for ev in events:
                            by_series.setdefault((ev.run_id, ev.name), []).append(ev)
                    mine: list[BusEvent] = []
                    for run_id in by_run:
                        if run_id in runs:
                            for name in flt.exact_metrics:
                                mine += by_series.get((run_id, name), ())
                    if mine:
                        sub.offer_many(mine)
            elif runs is not None and not any_created:
                if len(by_run) == 1:
                    ((run_id, evs),) = by_run.items()
                    if run_id in runs:
                        sub.offer_many(evs)
                else:
                    sub.offer_many([ev for run_id, evs in by_run.items() if run_id in runs for ev in evs])
            else:
                sub.offer_many(events)
            if self._on_lag is not None and sub.lagged_events != before:
                self._on_lag(sub.lagged_events - before)

    def missed(self, events: Sequence[BusEvent] = (), unknown: int = 0) -> None:
        """Tell every subscriber of events lost on their way to this process (`Subscriber.missed`)."""
        for sub in self._subs:
            n = sub.missed(events, unknown)
            if n and self._on_lag is not None:
                self._on_lag(n)

    def subscribe(self, flt: EventFilter) -> Subscriber:
        sub = Subscriber(flt)
        self._subs = [*self._subs, sub]
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        sub.closed = True
        self._subs = [s for s in self._subs if s is not sub]

    @property
    def subscriber_count(self) -> int:
        return len(self._subs)
