"""The live bus between collector replicas: NATS JetStream.

Every replica publishes what it commits to one JetStream stream (subject `<stream>.live`) and
consumes that stream from "new" with an ordered consumer. Its own subscribers are served by an
`InProcessBus` (filters, bounded queues, lag markers): the replica's own commits reach them at
once, the other replicas' commits as they arrive from the stream (a replica skips its own
messages, by the `Rw-Origin` header). Events keep the positions the store gave them (a metric
event's `first_row`, a log event's `first_line`), so a subscriber's history/live seam
(`live.LiveSession`) is exact whichever replica committed them: it subscribes before it reads
the shared store, an event that arrives after the read is already in it and is dropped or cut.

Publishing never blocks the committer: `publish()` queues the commit (bounded by
`NATS_PUBLISH_QUEUE_MAX_COMMITS` and `NATS_PUBLISH_QUEUE_MAX_POINTS`), one task sends the queue in
order, whatever accumulated while the previous message waited for its JetStream ack going out as
the next message (up to the server's max payload; a metric event too large for one is split by
rows). A message carries `Nats-Msg-Id` (origin and counter), so one retried after a lost ack is
stored once. While NATS is unreachable the queue fills; past its bounds commits are dropped and
the other replicas get, in their place, a LAGGED event saying what was dropped (runs, series,
rows), which their subscribers receive as a lag marker.

Reading, a replica checks the stream sequence: a message it already had is skipped (no
duplicates), a jump means messages it will never see (the stream dropped them past its limits
while this replica was away): its subscribers get a lag marker of that many unknown events. After
a reconnect the consumer is created again from the last sequence seen, so nothing that the stream
still holds is missed.

One NATS message: [u32 publishes] then per publish [u32 events] then per event [u32 length]
[`LiveEvent` bytes], big-endian; one publish is one commit (one queue entry per subscriber).

Coordination between replicas' dispatchers (`announce`/`listen`) goes through core NATS on
`<stream>.ctl`: JSON messages, best effort (heartbeats repair what a lost one would have done).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import struct
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import nats
from nats.js import api as js_api
from nats.js.errors import BadRequestError
from prometheus_client import CollectorRegistry, Gauge

from runwire import codec
from runwire.server import limits as server_limits
from runwire.server.bus import (
    DATA_KINDS,
    FILE,
    LAGGED,
    LOG,
    METRIC,
    STATUS,
    TAG,
    BusEvent,
    EventFilter,
    InProcessBus,
    LagMarker,
    LiveBus,
    Subscriber,
)
from runwire.server.records import CommittedPoints
from runwire.v1 import live_pb2, metrics_pb2

log = logging.getLogger(__name__)

ORIGIN_HEADER = "Rw-Origin"
DEFAULT_STREAM = "RUNWIRE"
STREAM_NAME_RE = re.compile(r"[A-Za-z0-9_-]+")
_U32 = struct.Struct(">I")


# --- configuration -------------------------------------------------------------------------------


@dataclass(frozen=True)
class NatsBusConfig:
    url: str
    """nats://host:port (the server's address; several comma-separated are tried in turn)."""
    stream: str = DEFAULT_STREAM
    """The JetStream stream's name, also the subjects' prefix (`<stream>.live`, `<stream>.ctl`)."""

    @property
    def address(self) -> str:
        """The URL without credentials (for logs and errors)."""
        parts = urlsplit(self.url)
        if "@" not in parts.netloc:
            return self.url
        return parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()

    @property
    def live_subject(self) -> str:
        return f"{self.stream}.live"

    @property
    def ctl_subject(self) -> str:
        return f"{self.stream}.ctl"


def check_stream_name(name: str) -> str:
    if not STREAM_NAME_RE.fullmatch(name) or len(name) > server_limits.NATS_STREAM_NAME_MAX_LENGTH:
        raise ValueError(
            f"bus stream name {name!r}: must be 1 to {server_limits.NATS_STREAM_NAME_MAX_LENGTH} letters, "
            "digits, '-' or '_'"
        )
    return name


def parse_bus(value: str, stream: str | None = None) -> NatsBusConfig | None:
    """`--bus` (and `--bus-stream`): None for the in-process bus (`inprocess`), or a NATS bus for
    `nats://host:port[?stream=NAME]` (`stream` wins over the query parameter)."""
    if value in ("", "inprocess"):
        if stream is not None:
            raise ValueError("--bus-stream needs --bus nats://HOST:PORT")
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("nats", "tls") or not parts.hostname:
        raise ValueError(f"bus {value!r}: must be 'inprocess' or nats://HOST:PORT[?stream=NAME]")
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError as e:
        raise ValueError(f"bus {value!r}: {e}") from None
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = set(query) - {"stream"}
    if unknown:
        raise ValueError(f"bus {value!r}: unknown query parameter(s) {', '.join(sorted(unknown))} (only 'stream')")
    name = stream if stream is not None else query.get("stream", [DEFAULT_STREAM])[-1]
    return NatsBusConfig(parts._replace(query="", fragment="").geturl(), check_stream_name(name))


# --- wire format ---------------------------------------------------------------------------------


def _event_bytes(ev: BusEvent) -> bytes:
    return ev.message().SerializeToString()


def _split_metric(ev: BusEvent, max_bytes: int) -> Iterator[BusEvent]:
    """`ev` in pieces of rows whose encoding stays under `max_bytes` (a row each at least)."""
    assert ev.points is not None
    size = ev.message().ByteSize()
    if size <= max_bytes or ev.count <= 1:
        yield ev
        return
    rows = max(1, int(ev.count * max_bytes / size * 0.9))
    src = ev.points
    for start in range(0, ev.count, rows):
        stop = min(ev.count, start + rows)
        part = CommittedPoints(
            src.run_id,
            src.name,
            src.kind,
            src.description if start == 0 else "",
            src.first_row + start,
            codec.slice_points(src.points, start, stop),
        )
        piece = BusEvent(
            METRIC, ev.run_id, ev.time, name=ev.name, first_row=part.first_row, count=stop - start, points=part
        )
        yield from _split_metric(piece, max_bytes)


def encode_publish(events: Sequence[BusEvent], max_bytes: int) -> list[bytes]:
    """One publish as encoded publishes of at most about `max_bytes` each (one, unless it is big)."""
    out: list[bytes] = []
    parts: list[bytes] = []
    size = 0
    for ev in events:
        for piece in _split_metric(ev, max_bytes) if ev.kind == METRIC else (ev,):
            data = _event_bytes(piece)
            if parts and size + len(data) + 4 > max_bytes:
                out.append(_U32.pack(len(parts)) + b"".join(parts))
                parts, size = [], 0
            parts.append(_U32.pack(len(data)) + data)
            size += len(data) + 4
    if parts:
        out.append(_U32.pack(len(parts)) + b"".join(parts))
    return out


def encode_lost(marker: LagMarker) -> bytes:
    data = marker.message().SerializeToString()
    return _U32.pack(1) + _U32.pack(len(data)) + data


def encode_message(publishes: Sequence[bytes]) -> bytes:
    return _U32.pack(len(publishes)) + b"".join(publishes)


def decode_message(payload: bytes) -> list[list[live_pb2.LiveEvent]]:
    view = memoryview(payload)
    (n,), pos = _U32.unpack_from(view, 0), 4
    out = []
    for _ in range(n):
        (m,) = _U32.unpack_from(view, pos)
        pos += 4
        events = []
        for _ in range(m):
            (length,) = _U32.unpack_from(view, pos)
            pos += 4
            if pos + length > len(view):
                raise ValueError("truncated live bus message")
            events.append(live_pb2.LiveEvent.FromString(view[pos : pos + length]))
            pos += length
        out.append(events)
    if pos != len(view):
        raise ValueError(f"live bus message: {len(view) - pos} bytes after its last publish")
    return out


class ReceivedPoints(CommittedPoints):
    """Points another replica committed, decoded only when something needs them (a gRPC subscriber
    sends the encoded message as it came; the studio's events and a cut at the seam decode it)."""

    def __init__(
        self,
        run_id: str,
        name: str,
        kind: int,
        description: str,
        first_row: int,
        points: codec.DecodedPoints | None = None,
        message: metrics_pb2.MetricPoints | None = None,
    ) -> None:
        self.run_id, self.name, self.kind, self.description = run_id, name, kind, description
        self.first_row = first_row
        self._points = points
        self._message = message

    @property
    def points(self) -> codec.DecodedPoints:  # type: ignore[override]
        if self._points is None:
            assert self._message is not None
            self._points = codec.decode_points_unchecked(self._message)
        return self._points


def bus_event(message: live_pb2.LiveEvent) -> BusEvent:
    """The `BusEvent` a replica published as `message` (its metric message kept, points decoded lazily)."""
    kind = message.kind
    if kind == METRIC:
        (me,) = message.metrics
        mp = me.points
        committed = ReceivedPoints(message.run_id, mp.name, mp.kind, mp.description, me.first_row, message=mp)
        ev = BusEvent(
            METRIC, message.run_id, message.time, name=mp.name, first_row=me.first_row, count=mp.count, points=committed
        )
        ev._metric = me  # sent on as it came: encoded once, by the replica that committed it
        return ev
    if kind == STATUS:
        s = message.status
        return BusEvent(
            STATUS,
            message.run_id,
            message.time,
            experiment_name=s.experiment_name,
            parent_run_id=s.parent_run_id,
            created=s.created,
            body=s,
        )
    body = {LOG: message.log, TAG: message.tag, FILE: message.file}.get(kind)
    if body is None:
        raise ValueError(f"live bus message: unexpected event kind {kind}")
    return BusEvent(kind, message.run_id, message.time, body=body)


def lost_events(lagged: live_pb2.LaggedEvent) -> list[BusEvent]:
    """What another replica lost, as point-less events a subscriber's filter can judge."""
    out = [BusEvent(METRIC, s.run_id, 0.0, name=s.name, first_row=s.first_row, count=s.rows) for s in lagged.series]
    other = [k for k in lagged.kinds if k in DATA_KINDS and k != METRIC]
    out += [BusEvent(k, run_id, 0.0) for run_id in lagged.run_ids for k in other]
    return out


# --- the bus -------------------------------------------------------------------------------------


class NatsBus(LiveBus):
    """A `LiveBus` shared by collector replicas through NATS JetStream: `await start()` first."""

    def __init__(self, config: NatsBusConfig, on_lag: Callable[[int], None] | None = None) -> None:
        self.config = config
        self.origin = uuid.uuid4().hex
        """This replica's id on the bus (its own messages come back to it and are skipped)."""
        self._local = InProcessBus(on_lag=on_lag)
        self._nc: nats.NATS | None = None
        self._js: nats.js.JetStreamContext | None = None
        self._sub: object | None = None
        self._out: deque[list[BusEvent] | LagMarker] = deque()
        self._out_points = 0
        self._encoded: deque[tuple[bytes, int | None]] = deque()
        """Encoded publishes waiting to go out, each with the ordinal of the commit it completes."""
        self._wake = asyncio.Event()
        self._connected = asyncio.Event()
        self._publisher: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._counter = 0
        self._sending = False
        self._queued_total = 0
        """Commits ever queued for NATS (and lag markers standing for dropped ones)."""
        self._taken_total = 0
        """Of those, how many were taken into messages."""
        self._acked_total = 0
        """Of those, how many JetStream has acked entirely."""
        self._acked = asyncio.Event()
        self._last_seq: int | None = None
        self._closing = False
        self._listeners: list[Callable[[dict], None]] = []
        # counters (tests, logs)
        self.messages_sent = 0
        self.messages_received = 0
        self.events_lost = 0
        """Events this replica dropped before NATS took them (told to the others as LAGGED)."""
        self.messages_missed = 0
        """Stream messages this replica never received (its subscribers were told they lagged)."""

    def describe(self) -> str:
        return f"{self.config.address} stream {self.config.stream}"

    # --- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> None:
        cfg = self.config
        try:
            # the first connection is bounded (a reconnect later is not): a wrong --bus fails the start
            self._nc = await asyncio.wait_for(
                nats.connect(
                    cfg.url,
                    name=f"runwire-collector-{self.origin[:8]}",
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=server_limits.NATS_RECONNECT_WAIT_S,
                    connect_timeout=server_limits.NATS_CONNECT_TIMEOUT_S,
                    ping_interval=server_limits.NATS_PING_INTERVAL_S,
                    max_outstanding_pings=2,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                    error_cb=self._on_error,
                ),
                server_limits.NATS_CONNECT_TIMEOUT_S,
            )
        except TimeoutError:
            raise OSError(
                f"cannot reach the live bus at {cfg.address} within {server_limits.NATS_CONNECT_TIMEOUT_S} s"
            ) from None
        except Exception as e:
            raise OSError(f"cannot reach the live bus at {cfg.address}: {e or type(e).__name__}") from None
        self._connected.set()
        self._js = self._nc.jetstream(timeout=server_limits.NATS_PUBLISH_TIMEOUT_S)
        try:
            await self._ensure_stream()
            await self._subscribe_stream()
            await self._nc.subscribe(cfg.ctl_subject, cb=self._on_ctl)
        except Exception as e:
            await self._nc.close()
            why = str(e) or type(e).__name__
            raise OSError(f"live bus {cfg.address}: cannot set up stream {cfg.stream}: {why}") from None
        self._publisher = asyncio.create_task(self._publish_forever(), name="runwire-bus-publisher")
        log.info("live bus connected", extra={"fields": {"bus": self.describe(), "origin": self.origin}})

    async def _ensure_stream(self) -> None:
        assert self._js is not None
        cfg = js_api.StreamConfig(
            name=self.config.stream,
            subjects=[self.config.live_subject],
            retention=js_api.RetentionPolicy.LIMITS,
            storage=js_api.StorageType.FILE,
            discard=js_api.DiscardPolicy.OLD,
            max_age=server_limits.NATS_STREAM_MAX_AGE_S,
            max_bytes=server_limits.NATS_STREAM_MAX_BYTES,
            duplicate_window=server_limits.NATS_DUPLICATE_WINDOW_S,
        )
        try:
            await self._js.add_stream(cfg)
        except BadRequestError:
            await self._js.update_stream(cfg)  # made by another version with other limits

    async def _subscribe_stream(self) -> None:
        assert self._js is not None
        old, self._sub = self._sub, None
        if old is not None:
            try:
                await old.unsubscribe()  # type: ignore[attr-defined]
            except Exception:
                pass
        if self._last_seq is None:
            consumer = js_api.ConsumerConfig(deliver_policy=js_api.DeliverPolicy.NEW)
        else:
            consumer = js_api.ConsumerConfig(
                deliver_policy=js_api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=self._last_seq + 1
            )
        self._sub = await self._js.subscribe(
            self.config.live_subject,
            cb=self._on_message,
            stream=self.config.stream,
            ordered_consumer=True,
            idle_heartbeat=server_limits.NATS_HEARTBEAT_S,
            config=consumer,
        )

    async def stop(self) -> None:
        """Send what is queued (for up to `NATS_PUBLISH_TIMEOUT_S`), then disconnect."""
        if self._closing:
            return
        self._closing = True
        self._wake.set()
        if self._publisher is not None:
            try:
                await asyncio.wait_for(self._publisher, server_limits.NATS_PUBLISH_TIMEOUT_S)
            except (TimeoutError, asyncio.CancelledError):
                pass
            if self._out or self._encoded:
                log.warning("live bus: stopped with commits not sent to the other replicas")
        for task in list(self._tasks):
            task.cancel()
        if self._nc is not None:
            try:
                await self._nc.close()
            except Exception:
                pass
        log.info(
            "live bus closed",
            extra={
                "fields": {"sent": self.messages_sent, "received": self.messages_received, "lost": self.events_lost}
            },
        )

    async def _on_disconnected(self) -> None:
        self._connected.clear()
        if not self._closing:
            log.warning("live bus disconnected; reconnecting", extra={"fields": {"bus": self.config.address}})

    async def _on_reconnected(self) -> None:
        log.info("live bus reconnected", extra={"fields": {"bus": self.config.address, "after_seq": self._last_seq}})
        self._connected.set()
        self._wake.set()
        try:
            await self._ensure_stream()
            await self._subscribe_stream()
        except Exception as e:
            log.warning("live bus: cannot resume the stream after reconnecting", extra={"fields": {"error": str(e)}})
            self._spawn(self._retry_subscribe())

    async def _retry_subscribe(self) -> None:
        while not self._closing:
            await asyncio.sleep(server_limits.NATS_RECONNECT_WAIT_S)
            await self._connected.wait()
            try:
                await self._ensure_stream()
                await self._subscribe_stream()
                return
            except Exception as e:
                log.debug("live bus: resubscribe failed", extra={"fields": {"error": str(e)}})

    async def _on_error(self, e: Exception) -> None:
        log.debug("live bus error", extra={"fields": {"error": f"{type(e).__name__}: {e}"}})

    # --- LiveBus ---------------------------------------------------------------------------------------

    def publish(self, events: Sequence[BusEvent]) -> None:
        if not events:
            return
        self._local.publish(events)
        if self._closing or self._publisher is None:
            return
        q = self._out
        points = sum(ev.count for ev in events)
        full = len(q) >= server_limits.NATS_PUBLISH_QUEUE_MAX_COMMITS or (
            bool(q) and self._out_points + points > server_limits.NATS_PUBLISH_QUEUE_MAX_POINTS
        )
        if full:
            marker = q[-1] if isinstance(q[-1], LagMarker) else None
            if marker is None:
                marker = LagMarker()
                q.append(marker)
                self._queued_total += 1
            for ev in events:
                marker.add(ev)
            self.events_lost += len(events)
        else:
            q.append(list(events))
            self._out_points += points
            self._queued_total += 1
        self._wake.set()

    def subscribe(self, flt: EventFilter) -> Subscriber:
        return self._local.subscribe(flt)

    def unsubscribe(self, sub: Subscriber) -> None:
        self._local.unsubscribe(sub)

    @property
    def subscriber_count(self) -> int:
        return self._local.subscriber_count

    @property
    def wants_events(self) -> bool:
        return True  # the other replicas' subscribers are not counted here

    # --- sending -------------------------------------------------------------------------------------

    def _max_bytes(self) -> int:
        assert self._nc is not None
        server_max = self._nc.max_payload or server_limits.NATS_MESSAGE_MAX_BYTES
        return max(4096, min(server_max, server_limits.NATS_MESSAGE_MAX_BYTES) - 1024)

    async def _publish_forever(self) -> None:
        while True:
            if not self._out and not self._encoded:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            max_bytes = self._max_bytes()
            size = sum(len(part) for part, _ in self._encoded)
            while self._out and size < max_bytes:
                item = self._out.popleft()
                self._taken_total += 1
                if isinstance(item, LagMarker):
                    parts = [encode_lost(item)]
                else:
                    self._out_points -= sum(ev.count for ev in item)
                    parts = encode_publish(item, max_bytes)
                # the last part of a commit says which commit it completes (for `flush`)
                self._encoded.extend((part, None) for part in parts[:-1])
                self._encoded.append((parts[-1], self._taken_total))
                size += sum(map(len, parts))
            batch: list[bytes] = []
            completes = 0
            size = 0
            while self._encoded and (not batch or size + len(self._encoded[0][0]) <= max_bytes):
                part, ordinal = self._encoded.popleft()
                batch.append(part)
                completes = ordinal or completes
                size += len(part)
            self._counter += 1
            self._sending = True
            try:
                if not await self._send(encode_message(batch), f"{self.origin}-{self._counter}"):
                    return
            finally:
                self._sending = False
            if completes:
                self._acked_total = completes
                self._acked.set()

    async def flush(self, timeout: float = server_limits.NATS_PUBLISH_TIMEOUT_S) -> None:
        target = self._queued_total
        deadline = asyncio.get_running_loop().time() + timeout
        while self._acked_total < target and not self._closing and self._publisher is not None:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                log.warning("live bus: flush timed out (NATS slow or away); going on")
                return
            self._acked.clear()
            try:
                await asyncio.wait_for(self._acked.wait(), remaining)
            except TimeoutError:
                pass

    @property
    def unsent(self) -> int:
        """Commits (and parts of commits) not yet taken by NATS."""
        return len(self._out) + len(self._encoded) + self._sending

    async def _send(self, payload: bytes, msg_id: str) -> bool:
        """Publish one message until JetStream acks it; False when stopping made it give up."""
        assert self._js is not None
        headers = {"Nats-Msg-Id": msg_id, ORIGIN_HEADER: self.origin}
        warned = False
        while True:
            try:
                await self._js.publish(
                    self.config.live_subject,
                    payload,
                    timeout=server_limits.NATS_PUBLISH_TIMEOUT_S,
                    stream=self.config.stream,
                    headers=headers,
                )
                self.messages_sent += 1
                if warned:
                    log.info("live bus: publishing again", extra={"fields": {"bus": self.config.address}})
                return True
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if self._closing:
                    return False
                if not warned:
                    log.warning(
                        "live bus: publish failed; retrying (commits queue meanwhile, up to the queue's bounds)",
                        extra={"fields": {"error": f"{type(e).__name__}: {e}"}},
                    )
                    warned = True
                if self._connected.is_set():
                    await asyncio.sleep(server_limits.NATS_RECONNECT_WAIT_S)
                else:
                    await self._connected.wait()

    # --- receiving -----------------------------------------------------------------------------------

    async def _on_message(self, msg: nats.aio.msg.Msg) -> None:
        try:
            seq = msg.metadata.sequence.stream
        except Exception:
            log.warning("live bus: a message without JetStream metadata was ignored")
            return
        last = self._last_seq
        if last is not None:
            if seq <= last:
                return  # delivered already (a consumer recreated after a reconnect)
            if seq > last + 1:
                missed = seq - last - 1
                self.messages_missed += missed
                self._local.missed(unknown=missed)
                log.warning(
                    "live bus: messages missed (no longer in the stream); subscribers told they lagged",
                    extra={"fields": {"messages": missed, "from_seq": last + 1}},
                )
        self._last_seq = seq
        self.messages_received += 1
        if msg.headers and msg.headers.get(ORIGIN_HEADER) == self.origin:
            return  # this replica's own commits reached its subscribers already
        if not self._local.subscriber_count:
            return  # nobody here to tell (a subscriber that comes later wants only later events)
        try:
            publishes = decode_message(msg.data)
        except Exception as e:
            log.warning("live bus: a malformed message was skipped", extra={"fields": {"seq": seq, "error": str(e)}})
            self._local.missed(unknown=1)
            return
        for messages in publishes:
            events: list[BusEvent] = []
            for message in messages:
                if message.kind == LAGGED:
                    if events:
                        self._local.publish(events)
                        events = []
                    self._local.missed(lost_events(message.lagged))
                    continue
                try:
                    events.append(bus_event(message))
                except Exception as e:
                    log.warning("live bus: a malformed event was skipped", extra={"fields": {"error": str(e)}})
                    self._local.missed(unknown=1)
            if events:
                self._local.publish(events)

    def register_metrics(self, registry: CollectorRegistry) -> None:
        """The bus's figures on the collector's `/metrics`."""
        figures: list[tuple[str, str, Callable[[], float]]] = [
            ("runwire_collector_bus_connected", "1 while the live bus is connected to NATS", self._connected.is_set),
            ("runwire_collector_bus_messages_sent", "Live bus messages sent and acked", lambda: self.messages_sent),
            (
                "runwire_collector_bus_messages_received",
                "Live bus stream messages read (every replica's, this one's too)",
                lambda: self.messages_received,
            ),
            (
                "runwire_collector_bus_messages_missed",
                "Live bus stream messages never received (subscribers were told they lagged)",
                lambda: self.messages_missed,
            ),
            (
                "runwire_collector_bus_events_lost",
                "Committed events not sent to the other replicas (queue full; they were told)",
                lambda: self.events_lost,
            ),
            ("runwire_collector_bus_unsent", "Commits waiting to be published to NATS", lambda: self.unsent),
        ]
        for name, doc, figure in figures:
            Gauge(name, doc, registry=registry).set_function(figure)

    # --- coordination between replicas ------------------------------------------------------------

    def announce(self, message: dict) -> None:
        """Tell the other replicas (`listen`) something, best effort (core NATS, not the stream)."""
        if self._nc is None or self._closing:
            return
        data = json.dumps({**message, "origin": self.origin, "time": time.time()}).encode()
        self._spawn(self._nc.publish(self.config.ctl_subject, data))

    def listen(self, callback: Callable[[dict], None]) -> None:
        """Call `callback` with each message another replica `announce`d."""
        self._listeners.append(callback)

    async def _on_ctl(self, msg: nats.aio.msg.Msg) -> None:
        try:
            message = json.loads(msg.data)
        except ValueError:
            return
        if not isinstance(message, dict) or message.get("origin") == self.origin:
            return
        for callback in self._listeners:
            try:
                callback(message)
            except Exception:
                log.exception("live bus: a coordination message failed", extra={"fields": {"message": message}})

    def _spawn(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def make_bus(url: str | None, stream: str | None = None, on_lag: Callable[[int], None] | None = None) -> LiveBus:
    """The live bus `--bus URL` names (in-process when None)."""
    config = parse_bus(url or "", stream)
    return InProcessBus(on_lag=on_lag) if config is None else NatsBus(config, on_lag=on_lag)
