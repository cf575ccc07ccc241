"""Streams spool records to the collector over one gRPC bidi stream and applies its acks.

Records go out in spool order with a bounded in-flight window (records and bytes). An
`IngestAck{COMMITTED}` acknowledges the record in the spool (which may delete a segment); a
`REJECTED` one sets the record aside in `<spool>/rejected/` with the reason and counts as
acknowledged. When the stream breaks, the sender reconnects with jittered exponential backoff
and resends every unacknowledged record (the collector deduplicates SDK batches by
(producer_id, seq), so a resend stores nothing twice). Authorization failures are logged and
retried with the same backoff. Payloads are already zstd: no gRPC compression.

On the same stream the sender also writes the agent's health (`IngestRequest.report`, an
`AgentReport` from `report_fn`): when the stream comes up, every `report_interval_s`, and at once
when `request_report()` is called (the spool filled or drained). Reports are not records: the
collector keeps the last one per agent and acks nothing for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import OrderedDict, deque
from collections.abc import Callable

import grpc
from google.protobuf.message import DecodeError

from runwire._transports.channel import ClientSecurity, ClientSecurityError, unreachable_hint
from runwire.agent.collectors import CREDENTIAL_FAILURES, CollectorLink, Collectors, channel_factory
from runwire.agent.metrics import AgentStats
from runwire.agent.spool import Record, Spool, SpoolError
from runwire.limits import MAX_GRPC_MESSAGE_BYTES
from runwire.v1 import ingest_pb2, ingest_pb2_grpc

log = logging.getLogger("runwire.agent.sender")

SENDER_MAX_IN_FLIGHT_RECORDS = 64
"""Spool records sent to the collector and not yet acknowledged, at most."""
SENDER_MAX_IN_FLIGHT_BYTES = 128 * 1024 * 1024
"""Bytes of spool records sent and not yet acknowledged, at most (one record may exceed it alone)."""
RECONNECT_BACKOFF_MIN_S = 0.05
"""First delay before reconnecting to the collector; it doubles per failure up to the maximum."""
RECONNECT_BACKOFF_MAX_S = 5.0
"""Longest delay between reconnection attempts."""

SESSION_STABLE_S = 1.0
"""An ingest stream that stayed up this long resets the reconnection backoff when it ends."""
SENDER_ACK_TIMEOUT_S = 30.0
"""A stream with records in flight and no acknowledgement for this long is abandoned (a hung
collector: stopped, or stuck, with its connections still open) and the agent moves to the next
replica, resending what was not acknowledged (`runwire agent --ack-timeout`)."""
KEEPALIVE_TIME_MS = 300_000
"""Interval of HTTP/2 keepalive pings on the ingest channel."""


class Backoff:
    """Exponential backoff with full jitter between `low/2` and the current bound."""

    def __init__(self, low: float = RECONNECT_BACKOFF_MIN_S, high: float = RECONNECT_BACKOFF_MAX_S) -> None:
        self.low = low
        self.high = high
        self._bound = low

    def reset(self) -> None:
        self._bound = self.low

    def next(self) -> float:
        delay = random.uniform(self.low / 2, self._bound)
        self._bound = min(self.high, self._bound * 2)
        return delay


class _StreamEnded(Exception):
    """The collector closed the ingest stream without an error."""


class _AckTimeout(Exception):
    def __init__(self, waited: float, in_flight: int) -> None:
        super().__init__(f"no ack for {waited:.1f} s")
        self.waited = waited
        self.in_flight = in_flight


def channel_options() -> list[tuple[str, int]]:
    return [
        ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_BYTES),
        # Detect a dead collector on an idle stream. Not more often than gRPC servers accept by
        # default (5 minutes); a shorter interval gets the stream closed for "too many pings".
        ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", 20_000),
    ]


class Sender:
    """`await start()` runs the connection loop in a task; `await stop()` ends it."""

    def __init__(
        self,
        spool: Spool,
        target: str,
        *,
        security: ClientSecurity | None = None,
        stats: AgentStats | None = None,
        max_in_flight: int = SENDER_MAX_IN_FLIGHT_RECORDS,
        max_in_flight_bytes: int = SENDER_MAX_IN_FLIGHT_BYTES,
        backoff: Backoff | None = None,
        report_fn: Callable[[], ingest_pb2.AgentReport] | None = None,
        report_interval_s: float = 5.0,
        link: CollectorLink | None = None,
        ack_timeout_s: float = SENDER_ACK_TIMEOUT_S,
    ) -> None:
        self.spool = spool
        self.ack_timeout_s = ack_timeout_s
        self._progress = 0.0  # monotonic time of the last ack, or of a send while nothing was in flight
        self.report_fn = report_fn
        self.report_interval_s = report_interval_s
        self._report_due = False
        self._next_report = 0.0
        self.connected_since: float | None = None  # unix time the current stream came up
        self.down_since: float | None = time.monotonic()  # unreachable (or not yet connected) since
        self.last_outage_s = 0.0  # how long the collector was unreachable before the current stream
        self.target = target
        self.security = security if security is not None else ClientSecurity()
        # Which collector replica the stream uses, and failover to the next (agent/collectors.py).
        self.link = link or CollectorLink(
            Collectors.parse(target), "ingest", "", channel_factory(self.security, channel_options())
        )
        self.stats = stats if stats is not None else AgentStats()
        self.max_in_flight = max_in_flight
        self.max_in_flight_bytes = max_in_flight_bytes
        self.backoff = backoff or Backoff()
        self.connected = False
        self._unreachable_logged = False
        self._task: asyncio.Task | None = None
        self._queue: deque[int] | None = None  # record numbers to send on the current stream
        self._wakeup = asyncio.Event()  # new record to send, or window room
        self._stopping = asyncio.Event()
        spool.add_listener(self._on_append)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="sender")

    async def stop(self) -> None:
        self._stopping.set()
        self.spool.remove_listener(self._on_append)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.link.close()
        self.connected = False

    async def drain(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the collector to acknowledge every spooled record."""
        try:
            await asyncio.wait_for(self.spool.wait_empty(), timeout)
            return True
        except TimeoutError:
            return False

    def request_report(self) -> None:
        """Send a health report on the stream as soon as possible."""
        self._report_due = True
        self._wakeup.set()

    def down_seconds(self) -> float:
        """How long the collector has been unreachable (0 while connected)."""
        if self.connected or self.down_since is None:
            return 0.0
        return time.monotonic() - self.down_since

    def _on_append(self, record: Record) -> None:
        if self._queue is not None:
            self._queue.append(record.seq)
            self._wakeup.set()

    # --- connection loop --------------------------------------------------------------------------

    async def _run(self) -> None:
        first = True
        while not self._stopping.is_set():
            if not first:
                self.stats.reconnects += 1
            first = False
            channel = None
            began = time.monotonic()
            try:
                channel = await self.link.channel()
                self.target = self.link.address
                await self._session(channel)
            except asyncio.CancelledError:
                raise
            except ClientSecurityError as e:  # a TLS file became unreadable (e.g. replaced just now)
                log.error(f"cannot connect to {self.target}: {e}; retrying", extra={"fields": {"error": str(e)}})
            except grpc.aio.AioRpcError as e:
                fields = {"collector": self.target, "code": e.code().name, "details": e.details() or ""}
                if e.code() in CREDENTIAL_FAILURES:
                    log.error(
                        f"collector {self.target} refused the agent's credentials ({e.code().name}); retrying",
                        extra={"fields": fields},
                    )
                elif self.connected:
                    log.warning(
                        f"ingest stream to {self.target} broke ({e.code().name}); reconnecting",
                        extra={"fields": fields},
                    )
                elif not self._unreachable_logged:
                    self._unreachable_logged = True
                    hint = unreachable_hint(self.security, e.details())
                    log.warning(
                        f"collector {self.target} unreachable ({e.code().name}); "
                        + (f"{hint}; " if hint else "")
                        + "retrying with backoff",
                        extra={"fields": fields},
                    )
                else:
                    log.debug("collector still unreachable", extra={"fields": fields})
            except _StreamEnded:
                log.warning("collector closed the ingest stream; reconnecting", extra={"fields": {}})
            except _AckTimeout as e:
                self.stats.ack_timeouts += 1
                log.error(
                    f"collector {self.target} acknowledged nothing for {e.waited:.1f} s with {e.in_flight} "
                    "records in flight (hung?); abandoning the stream and resending them elsewhere",
                    extra={"fields": {"collector": self.target, "in_flight": e.in_flight}},
                )
            except Exception:
                log.exception("ingest stream failed; reconnecting", extra={"fields": {"collector": self.target}})
            finally:
                if self.connected and time.monotonic() - began >= SESSION_STABLE_S:
                    self.backoff.reset()  # a stream that was up a while: reconnect quickly
                if self.connected:
                    self.down_since = time.monotonic()
                self.connected = False
                self.connected_since = None
                self._queue = None
                self.link.failed(channel)  # the next attempt goes to the next replica
            delay = self.backoff.next()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

    async def _session(self, channel: grpc.aio.Channel) -> None:
        call = ingest_pb2_grpc.IngestStub(channel).Ingest()  # the channel adds the token
        # Resend everything not acknowledged, then whatever the spool gets next.
        self._queue = deque(self.spool.unacked_seqs())
        in_flight: OrderedDict[int, int] = OrderedDict()
        writer = asyncio.create_task(self._write_loop(call, in_flight), name="sender-write")
        reader = asyncio.create_task(self._read_loop(call, in_flight), name="sender-read")
        watchdog = asyncio.create_task(self._ack_watchdog(in_flight), name="sender-ack-watchdog")
        tasks = (writer, reader, watchdog)
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                t.result()  # raise what ended it
            raise _StreamEnded()
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            call.cancel()

    async def _write_loop(self, call, in_flight: OrderedDict[int, int]) -> None:
        await call.wait_for_connection()
        if not self.connected:
            self._mark_connected()
        queue = self._queue
        spool = self.spool
        in_flight_bytes = 0
        self._report_due = self.report_fn is not None
        while True:
            if self.report_fn is not None:
                if time.monotonic() >= self._next_report:
                    self._report_due = True
                if self._report_due:
                    self._report_due = False
                    self._next_report = time.monotonic() + self.report_interval_s
                    await call.write(ingest_pb2.IngestRequest(report=self.report_fn()))
            if (
                not queue
                or len(in_flight) >= self.max_in_flight
                or (in_flight and in_flight_bytes >= self.max_in_flight_bytes)
            ):
                self._wakeup.clear()
                if self.report_fn is None:
                    await self._wakeup.wait()
                else:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wakeup.wait(), max(0.0, self._next_report - time.monotonic()))
                in_flight_bytes = sum(in_flight.values())
                continue
            seq = queue.popleft()
            try:
                data = spool.read(seq)
                if data is None:
                    continue  # acknowledged meanwhile
                request = ingest_pb2.IngestRequest.FromString(data)
            except (OSError, SpoolError, DecodeError) as e:
                # Retrying cannot help and would stall every record behind it: drop it, loudly.
                spool.drop_unreadable(seq, str(e))
                continue
            if not in_flight:
                self._progress = time.monotonic()  # the ack clock starts with the first record in flight
            in_flight[seq] = len(data)
            in_flight_bytes += len(data)
            await call.write(request)
            self.stats.records_sent += 1

    def _mark_connected(self) -> None:
        self.connected = True
        self._unreachable_logged = False
        self.connected_since = time.time()
        if self.down_since is not None:
            self.last_outage_s = time.monotonic() - self.down_since
            self.down_since = None
        log.info(
            "connected to the collector",
            extra={
                "fields": {
                    "collector": self.target,
                    "resending": len(self._queue or ()),
                    "unreachable_for_s": round(self.last_outage_s, 3),
                }
            },
        )

    async def _ack_watchdog(self, in_flight: OrderedDict[int, int]) -> None:
        """Raise _AckTimeout when records are in flight and no ack came for `ack_timeout_s`."""
        while True:
            await asyncio.sleep(self.ack_timeout_s / 4)
            waited = time.monotonic() - self._progress
            if in_flight and waited > self.ack_timeout_s:
                raise _AckTimeout(waited, len(in_flight))

    async def _read_loop(self, call, in_flight: OrderedDict[int, int]) -> None:
        spool = self.spool
        while True:
            ack = await call.read()
            if ack is grpc.aio.EOF:
                return
            if not self.connected:
                self._mark_connected()
            self.backoff.reset()
            self._progress = time.monotonic()
            in_flight.pop(ack.seq, None)
            if ack.status == ingest_pb2.ACK_STATUS_REJECTED:
                if spool.reject(ack.seq, ack.reason or "(no reason given)"):
                    self.stats.records_rejected += 1
                    self.stats.records_acked += 1
            elif spool.ack(ack.seq):
                self.stats.records_acked += 1
            if ack.warnings:
                log.warning(
                    "collector refused some points",
                    extra={"fields": {"seq": ack.seq, "warnings": "; ".join(ack.warnings)[:2000]}},
                )
            self._wakeup.set()
