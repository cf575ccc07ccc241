"""Bundles validated SDK batches from every connection into spool records.

A bundle is cut when its size reaches `max_bytes` (`AGENT_BATCH_MAX_BYTES`), when its oldest batch
is `max_delay_s` old (`--batch-delay-ms`), or on demand (a flush, shutdown). A cut bundle is
compressed (in a worker thread when it is big) and written to the spool as one serialized
`IngestRequest{agent_id, seq, CODEC_ZSTD, zstd(BatchBundle), batch_count, point_count}`.

The SDK's `Batch` bytes are never re-encoded: `BatchBundle` is `repeated Batch batches = 1`, so its
serialization is each batch's bytes behind a field tag and a length, and the receiver hands over
the batch bytes exactly as they arrived (see `bundle_part`). Bundles are written to the spool in
the order they were cut, so acknowledgements on a connection come back in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from runwire import codec
from runwire.agent.metrics import AgentStats
from runwire.agent.spool import Spool
from runwire.limits import AGENT_BATCH_MAX_BYTES, AGENT_BATCH_MAX_DELAY_S
from runwire.v1 import ingest_pb2

log = logging.getLogger("runwire.agent.batcher")

COMPRESS_INLINE_MAX_BYTES = 64 * 1024
"""Bundles up to this size are compressed on the event loop; bigger ones in a worker thread."""
COMPRESS_THREADS = 2
"""Worker threads compressing big bundles (zstd releases the GIL)."""
BATCHER_MAX_PENDING_BYTES = 64 * 1024 * 1024
"""Uncompressed bytes of cut bundles waiting for compression and the spool write; beyond it the
receiver stops reading from SDK sockets until the spool catches up."""

_BUNDLE_TAG = b"\x0a"  # BatchBundle.batches: field 1, length-delimited


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def bundle_part(batch_bytes: bytes | memoryview) -> list[bytes | memoryview]:
    """The pieces that put one serialized `Batch` into a serialized `BatchBundle`."""
    return [_BUNDLE_TAG + _varint(len(batch_bytes)), batch_bytes]


@dataclass
class Bundle:
    parts: list[bytes | memoryview] = field(default_factory=list)
    producers: list[tuple[str, int]] = field(default_factory=list)
    nbytes: int = 0
    batch_count: int = 0
    point_count: int = 0
    started: float = 0.0  # monotonic time of its first batch
    spooled: asyncio.Future | None = None  # resolves to the record number once written


class Batcher:
    """`add()` batches, get a future per bundle that resolves to its spool record number."""

    def __init__(
        self,
        spool: Spool,
        agent_id: str,
        *,
        max_bytes: int = AGENT_BATCH_MAX_BYTES,
        max_delay_s: float = AGENT_BATCH_MAX_DELAY_S,
        max_pending_bytes: int = BATCHER_MAX_PENDING_BYTES,
        stats: AgentStats | None = None,
        compress: Callable[[bytes], bytes] = codec.compress,
    ) -> None:
        self.spool = spool
        self.agent_id = agent_id
        self.max_bytes = max_bytes
        self.max_delay_s = max_delay_s
        self.max_pending_bytes = max_pending_bytes
        self.stats = stats if stats is not None else AgentStats()
        self._compress = compress
        self._current: Bundle | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._queue: deque[tuple[Bundle, asyncio.Future]] = deque()  # cut, waiting for the spool
        self._queued = asyncio.Event()
        self._pending_bytes = 0
        self._room = asyncio.Event()
        self._room.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._executor: ThreadPoolExecutor | None = None
        self._task: asyncio.Task | None = None
        self._last_future: asyncio.Future | None = None

    async def start(self) -> None:
        self._executor = ThreadPoolExecutor(COMPRESS_THREADS, thread_name_prefix="runwire-compress")
        self._task = asyncio.create_task(self._writer(), name="batcher-writer")

    async def close(self) -> None:
        """Cut the open bundle, write everything cut to the spool, stop."""
        self.cut()
        await self.wait_idle()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    # --- adding and cutting -----------------------------------------------------------------------

    def add(self, batch_bytes: bytes | memoryview, producer_id: str, seq: int, points: int) -> asyncio.Future:
        """Add one serialized, validated `Batch`. The future resolves once it is in the spool."""
        size = len(batch_bytes)
        bundle = self._current
        if bundle is not None and bundle.nbytes and bundle.nbytes + size > self.max_bytes:
            self.cut()
            bundle = None
        if bundle is None:
            bundle = self._current = Bundle(started=time.monotonic())
            bundle.spooled = asyncio.get_running_loop().create_future()
            self._timer = asyncio.get_running_loop().call_later(self.max_delay_s, self._on_timer, bundle)
        bundle.parts.extend(bundle_part(batch_bytes))
        bundle.producers.append((producer_id, seq))
        bundle.nbytes += size
        bundle.batch_count += 1
        bundle.point_count += points
        fut = bundle.spooled
        if bundle.nbytes >= self.max_bytes:
            self.cut()
        return fut

    def _on_timer(self, bundle: Bundle) -> None:
        if self._current is bundle:
            self._timer = None
            self.cut()

    def cut(self) -> asyncio.Future | None:
        """Close the open bundle now. Returns its future (None when nothing was open)."""
        bundle = self._current
        if bundle is None:
            return None
        self._current = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.stats.bundles_cut += 1
        data = b"".join(bundle.parts)
        bundle.parts = []
        loop = asyncio.get_running_loop()
        if len(data) <= COMPRESS_INLINE_MAX_BYTES or self._executor is None:
            compressed = loop.create_future()
            try:
                compressed.set_result(self._compress(data))
            except Exception as e:
                compressed.set_exception(e)
        else:
            compressed = loop.run_in_executor(self._executor, self._compress, data)
        self._pending_bytes += bundle.nbytes
        if self._pending_bytes >= self.max_pending_bytes:
            self._room.clear()
        self._idle.clear()
        self._queue.append((bundle, compressed))
        self._queued.set()
        self._last_future = bundle.spooled
        return bundle.spooled

    @property
    def open_batches(self) -> int:
        return self._current.batch_count if self._current is not None else 0

    # --- flow control -----------------------------------------------------------------------------

    async def wait_room(self) -> None:
        """Wait while too much is cut and not yet spooled, or while the spool is full."""
        while not self._room.is_set() or self.spool.full:
            if not self._room.is_set():
                await self._room.wait()
            if self.spool.full:
                await self.spool.wait_writable()

    async def wait_idle(self) -> None:
        """Wait until every cut bundle is in the spool (or failed)."""
        await self._idle.wait()

    # --- the spool writer -------------------------------------------------------------------------

    async def _writer(self) -> None:
        while True:
            if not self._queue:
                self._idle.set()
                self._queued.clear()
                await self._queued.wait()
                continue
            bundle, compressed = self._queue[0]
            try:
                payload = await compressed
                seq = self.spool.next_seq
                request = ingest_pb2.IngestRequest(
                    agent_id=self.agent_id,
                    seq=seq,
                    codec=ingest_pb2.CODEC_ZSTD,
                    payload=payload,
                    batch_count=bundle.batch_count,
                    point_count=bundle.point_count,
                )
                record = self.spool.append(seq, request.SerializeToString(), bundle.producers)
                await self.spool.commit()
            except asyncio.CancelledError:
                bundle.spooled.cancel()
                raise
            except Exception as e:
                log.exception(
                    "could not spool a bundle; its batches stay unacknowledged with the SDK",
                    extra={"fields": {"batches": bundle.batch_count, "bytes": bundle.nbytes}},
                )
                if not bundle.spooled.done():
                    bundle.spooled.set_exception(e)
                    bundle.spooled.exception()  # retrieved: connections may be gone
            else:
                self.stats.records_spooled += 1
                self.stats.spool_bytes_written += record.nbytes
                if not bundle.spooled.done():
                    bundle.spooled.set_result(seq)
            finally:
                self._queue.popleft()
                self._pending_bytes -= bundle.nbytes
                if self._pending_bytes < self.max_pending_bytes:
                    self._room.set()
