"""The agent's disk spool: an append-only, checksummed log of records, in segment files.

A record is one bundle of SDK batches as it will be sent to the collector (a serialized
`IngestRequest`), plus the list of (producer_id, seq) SDK batches it holds, so that flushes can
be answered after a restart. On disk, in `<dir>/seg-<first seq>.log`::

    magic "RWS1" | body length u32 | crc32 u32 | seq u64 | created f64 | index length u32 | index | payload

(big-endian). The CRC covers the body length, everything after the CRC field, the index and the
payload. The index is `count u32` then, per batch, `len u16 | producer_id utf-8 | seq u64`.

Segments rotate once they reach `segment_bytes`; a segment file is deleted when every record in it
is acknowledged by the collector. The acknowledged watermark (every record up to it is committed)
and the next record number live in `<dir>/state.json`, atomically replaced, so a restart neither
resends what is known committed nor reuses a record number. On open, the segments are scanned:
a truncated tail of the newest segment (a crash in the middle of a write: that record was never
acknowledged to its SDK, which sends it again) is cut off with a warning; anything else that fails
its checksum or is cut short (a bit flip, a segment truncated in the middle, garbage) is corruption:
logged at error level with its segment and offset, counted (`on_corrupt`; `spool_corrupt_records`
in the agent's status, metrics and report), skipped, and the records after it are delivered. Each
record's checksum is checked again when it is read for sending, so damage after the reload is caught
the same way. A segment that held corrupt data is moved to `corrupt/` rather than deleted. Appends
after a restart go to a new segment.

The size bound: once unacknowledged records reach `max_bytes` the spool is *full* and the receiver
stops reading SDK sockets until acks bring it below the bound (the SDKs keep their points meanwhile);
`full_count`, `full_seconds` and `peak_bytes` say how often, how long and how high.

Writes use `os.write` before the SDK is acked, which survives `kill -9` of the agent (the data is
in the page cache). `fsync` is `always` (before the ack), `interval` (every `fsync_interval_s`,
in a thread) or `never`.

Everything here runs on the event loop thread; only fsyncs run in worker threads, on duplicated
file descriptors.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import struct
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from runwire.limits import MAX_GRPC_MESSAGE_BYTES, SPOOL_SEGMENT_BYTES

log = logging.getLogger("runwire.agent.spool")

SPOOL_MAX_BYTES_DEFAULT = 10 * 1024**3
"""Default `--spool-max-bytes`: unacknowledged record bytes at which the agent stops reading from SDK sockets."""
FSYNC_INTERVAL_S = 1.0
"""How often `--fsync interval` flushes written spool data to stable storage."""
STATE_SAVE_INTERVAL_S = 1.0
"""How often the acknowledged watermark is persisted when it moved (it is also saved before deletions and on close)."""
MAX_RECORD_BODY_BYTES = MAX_GRPC_MESSAGE_BYTES + 16 * 1024 * 1024
"""Largest record body (index + payload) the reload accepts; a larger length field means corruption."""

FSYNC_MODES = ("always", "interval", "never")
MAGIC = b"RWS1"
HEADER = struct.Struct(">4sIIQdI")  # magic, body length, crc32, seq, created, index length
_CRC_TAIL = slice(12, HEADER.size)  # the header bytes after the CRC field
_LEN = slice(4, 8)
_ENTRY_HEAD = struct.Struct(">H")
_ENTRY_SEQ = struct.Struct(">Q")
_COUNT = struct.Struct(">I")
STATE_FILE = "state.json"
REJECTED_DIR = "rejected"
CORRUPT_DIR = "corrupt"


class SpoolError(RuntimeError):
    """The spool cannot be used (directory, state file or write failure)."""


# --- index of (producer_id, seq) ------------------------------------------------------------------


def encode_index(producers: Iterable[tuple[str, int]]) -> bytes:
    parts = []
    n = 0
    for producer_id, seq in producers:
        raw = producer_id.encode()
        parts.append(_ENTRY_HEAD.pack(len(raw)))
        parts.append(raw)
        parts.append(_ENTRY_SEQ.pack(seq))
        n += 1
    return _COUNT.pack(n) + b"".join(parts)


def decode_index(data: bytes | memoryview) -> list[tuple[str, int]]:
    (n,) = _COUNT.unpack_from(data, 0)
    off = _COUNT.size
    out = []
    for _ in range(n):
        (length,) = _ENTRY_HEAD.unpack_from(data, off)
        off += _ENTRY_HEAD.size
        producer_id = bytes(data[off : off + length]).decode()
        off += length
        (seq,) = _ENTRY_SEQ.unpack_from(data, off)
        off += _ENTRY_SEQ.size
        out.append((producer_id, seq))
    if off != len(data):
        raise ValueError("index length mismatch")
    return out


def frame_record(seq: int, created: float, index: bytes, payload: bytes) -> bytes:
    """The on-disk bytes of one record."""
    body_len = len(index) + len(payload)
    head = HEADER.pack(MAGIC, body_len, 0, seq, created, len(index))
    crc = zlib.crc32(head[_LEN])
    crc = zlib.crc32(head[_CRC_TAIL], crc)
    crc = zlib.crc32(index, crc)
    crc = zlib.crc32(payload, crc)
    return HEADER.pack(MAGIC, body_len, crc, seq, created, len(index)) + index + payload


# --- records and segments -------------------------------------------------------------------------


@dataclass
class Segment:
    path: Path
    first_seq: int
    fd: int
    size: int = 0
    live: int = 0  # records in it not acknowledged yet
    max_seq: int = 0
    corrupt: bool = False
    dirty: bool = False  # written since the last fsync


@dataclass
class Record:
    seq: int
    segment: Segment
    start: int  # of the record (its header) in the segment file
    offset: int  # of the payload in the segment file
    length: int  # of the payload
    nbytes: int  # of the whole record on disk
    created: float
    producers: list[tuple[str, int]]


@dataclass
class LoadReport:
    segments: int = 0
    records: int = 0  # not yet acknowledged, to be sent
    skipped_acked: int = 0
    corrupt: list[tuple[str, int, str]] = field(default_factory=list)  # (segment, offset, what)
    truncated: list[tuple[str, int, int]] = field(default_factory=list)  # (segment, offset, bytes cut)


@dataclass
class _Waiter:
    upto: int
    future: asyncio.Future


class Spool:
    """See the module docstring. Call `open()` (sync) then `await start()`; `await close()` at the end."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        segment_bytes: int = SPOOL_SEGMENT_BYTES,
        max_bytes: int = SPOOL_MAX_BYTES_DEFAULT,
        fsync: str = "interval",
        fsync_interval_s: float = FSYNC_INTERVAL_S,
        on_corrupt: Callable[[], None] | None = None,
    ) -> None:
        if fsync not in FSYNC_MODES:
            raise ValueError(f"fsync must be one of {FSYNC_MODES}, got {fsync!r}")
        self.dir = Path(directory)
        self.segment_bytes = segment_bytes
        self.max_bytes = max_bytes
        self.fsync = fsync
        self.fsync_interval_s = fsync_interval_s
        self._on_corrupt = on_corrupt
        self._segments: dict[int, Segment] = {}  # by first seq, in order
        self._active: Segment | None = None
        self._records: dict[int, Record] = {}  # unacknowledged, in seq order
        self._by_producer: dict[str, dict[int, None]] = {}  # producer -> unacked record seqs, in order
        self._waiters: dict[str, list[_Waiter]] = {}
        self.next_seq = 1
        self.pending_bytes = 0
        self._saved_watermark = -1
        self._listeners: list[Callable[[Record], None]] = []
        self._writable = asyncio.Event()
        self._empty = asyncio.Event()
        self._backpressure = False
        self.full_count = 0  # times the spool reached max_bytes
        self._full_since: float | None = None  # monotonic time it last became full, while full
        self._full_total = 0.0  # seconds full, finished stretches
        self.peak_bytes = 0  # most pending_bytes seen
        self._full_listeners: list[Callable[[bool], None]] = []
        self._task: asyncio.Task | None = None
        self._opened = False

    # --- open / reload ----------------------------------------------------------------------------

    def open(self) -> LoadReport:
        """Create the directory or reload what is in it. Synchronous; call before the loop gets busy."""
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        state = self._read_state()
        watermark = int(state.get("acked_through", 0))
        next_seq = max(int(state.get("next_seq", 1)), watermark + 1)
        report = LoadReport()
        paths = sorted(self.dir.glob("seg-*.log"), key=_first_seq_of)
        last_seen = 0
        for i, path in enumerate(paths):
            is_last = i == len(paths) - 1
            last_seen = self._load_segment(path, is_last, watermark, last_seen, report)
        self.next_seq = max(next_seq, last_seen + 1)
        self._saved_watermark = watermark
        for seg in list(self._segments.values()):
            if seg.live == 0:
                self._retire(seg)
        report.segments = len(self._segments)
        report.records = len(self._records)
        self._update_events()
        self._opened = True
        if report.records or report.corrupt or report.truncated:
            log.info(
                "spool reloaded",
                extra={
                    "fields": {
                        "dir": str(self.dir),
                        "records": report.records,
                        "bytes": self.pending_bytes,
                        "segments": report.segments,
                        "already_acked": report.skipped_acked,
                        "corrupt": len(report.corrupt),
                        "truncated": len(report.truncated),
                        "next_seq": self.next_seq,
                    }
                },
            )
        return report

    def _read_state(self) -> dict:
        path = self.dir / STATE_FILE
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            # Losing the watermark only means resending (the collector deduplicates); losing
            # next_seq is covered by the segments unless all were deleted, so say it loudly.
            log.error("spool state file unreadable; resending everything spooled", extra={"fields": {"error": str(e)}})
            return {}

    def _load_segment(self, path: Path, is_last: bool, watermark: int, last_seen: int, report: LoadReport) -> int:
        data = path.read_bytes()
        seg = Segment(path=path, first_seq=_first_seq_of(path), fd=os.open(path, os.O_RDONLY), size=len(data))
        self._segments[seg.first_seq] = seg
        view = memoryview(data)
        off = 0
        end = len(data)
        while off < end:
            parsed = _parse_at(view, off)
            if parsed is not None:
                seq, created, index_len, body_len = parsed
                rec_len = HEADER.size + body_len
                if seq <= last_seen:
                    self._report_corrupt(report, seg, off, f"record number {seq} out of order after {last_seen}")
                elif seq <= watermark:
                    report.skipped_acked += 1
                    last_seen = seq
                else:
                    try:
                        producers = decode_index(view[off + HEADER.size : off + HEADER.size + index_len])
                    except (ValueError, struct.error, UnicodeDecodeError) as e:
                        self._report_corrupt(report, seg, off, f"bad batch index: {e}")
                    else:
                        self._index(
                            Record(
                                seq=seq,
                                segment=seg,
                                start=off,
                                offset=off + HEADER.size + index_len,
                                length=body_len - index_len,
                                nbytes=rec_len,
                                created=created,
                                producers=producers,
                            )
                        )
                    last_seen = seq
                seg.max_seq = max(seg.max_seq, seq)
                off += rec_len
                continue
            # Not a valid record here: find the next one.
            nxt = _resync(view, off + 1)
            if nxt is not None:
                self._report_corrupt(report, seg, off, f"{nxt - off} bytes of corrupt data skipped")
                off = nxt
                continue
            what = _describe_tail(view, off)
            if is_last:
                if what == "checksum mismatch":  # a whole record is there but damaged: not a torn write
                    self._report_corrupt(report, seg, off, f"last record of the segment: {what}")
                else:
                    log.warning(
                        f"spool segment {path} has a truncated tail at offset {off} (crash during a write): "
                        f"cutting {end - off} bytes off ({what})",
                        extra={"fields": {"segment": str(path), "offset": off, "bytes": end - off, "what": what}},
                    )
                    report.truncated.append((str(path), off, end - off))
                    with open(path, "r+b") as f:
                        f.truncate(off)
                    seg.size = off
            else:
                self._report_corrupt(report, seg, off, f"{end - off} bytes at the end of the segment: {what}")
            break
        return last_seen

    def _report_corrupt(self, report: LoadReport, seg: Segment, offset: int, what: str) -> None:
        seg.corrupt = True
        report.corrupt.append((str(seg.path), offset, what))
        log.error(
            f"CORRUPT SPOOL RECORD in {seg.path} at offset {offset} skipped ({what}): "
            "its batches will not be delivered",
            extra={"fields": {"segment": str(seg.path), "offset": offset, "what": what}},
        )
        if self._on_corrupt is not None:
            self._on_corrupt()

    # --- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        if not self._opened:
            self.open()
        self._task = asyncio.create_task(self._housekeeping(), name="spool-housekeeping")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.fsync != "never":
            await self._fsync_dirty()
        active = self._active
        if active is not None and active.live == 0:
            self._active = None
            self._retire(active)
        self._save_state(force=True)
        for seg in self._segments.values():
            with contextlib.suppress(OSError):
                os.close(seg.fd)
        self._segments.clear()
        self._active = None
        for waiters in self._waiters.values():
            for w in waiters:
                if not w.future.done():
                    w.future.cancel()
        self._waiters.clear()

    async def _housekeeping(self) -> None:
        interval = self.fsync_interval_s if self.fsync == "interval" else STATE_SAVE_INTERVAL_S
        while True:
            await asyncio.sleep(interval)
            try:
                if self.fsync == "interval":
                    await self._fsync_dirty()
                self._save_state()
            except Exception:
                log.exception("spool housekeeping failed")

    async def _fsync_dirty(self) -> None:
        dirty = [seg for seg in self._segments.values() if seg.dirty]
        if not dirty:
            return
        fds = []
        for seg in dirty:
            seg.dirty = False
            fds.append(os.dup(seg.fd))

        def sync_all() -> None:
            for fd in fds:
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)

        await asyncio.to_thread(sync_all)

    # --- writing ----------------------------------------------------------------------------------

    def append(self, seq: int, payload: bytes, producers: list[tuple[str, int]]) -> Record:
        """Write one record. `seq` must be `next_seq` (the caller puts it inside the payload)."""
        if seq != self.next_seq:
            raise SpoolError(f"record number {seq} out of order (expected {self.next_seq})")
        index = encode_index(producers)
        created = time.time()
        data = frame_record(seq, created, index, payload)
        seg = self._active
        if seg is None or seg.size >= self.segment_bytes:
            seg = self._new_segment(seq)
        offset = seg.size
        try:
            _write_all(seg.fd, data)
        except OSError:
            # Leave no partial record behind: the next append must start on a record boundary.
            with contextlib.suppress(OSError):
                os.ftruncate(seg.fd, offset)
            raise
        seg.size += len(data)
        seg.max_seq = seq
        seg.dirty = True
        self.next_seq = seq + 1
        rec = Record(
            seq=seq,
            segment=seg,
            start=offset,
            offset=offset + HEADER.size + len(index),
            length=len(payload),
            nbytes=len(data),
            created=created,
            producers=producers,
        )
        self._index(rec)
        self._update_events()
        for listener in self._listeners:
            listener(rec)
        return rec

    async def commit(self) -> None:
        """With `--fsync always`, wait until what was appended is on stable storage."""
        if self.fsync == "always":
            await self._fsync_dirty()

    def _new_segment(self, first_seq: int) -> Segment:
        if self._active is not None:
            old = self._active
            self._active = None
            if old.live == 0:
                self._retire(old)
        path = self.dir / f"seg-{first_seq:020d}.log"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC, 0o600)
        seg = Segment(path=path, first_seq=first_seq, fd=fd)
        self._segments[first_seq] = seg
        self._active = seg
        if self.fsync == "always":
            _fsync_dir(self.dir)
        return seg

    def _index(self, rec: Record) -> None:
        self._records[rec.seq] = rec
        rec.segment.live += 1
        self.pending_bytes += rec.nbytes
        if self.pending_bytes > self.peak_bytes:
            self.peak_bytes = self.pending_bytes
        for producer_id, _ in rec.producers:
            self._by_producer.setdefault(producer_id, {})[rec.seq] = None

    # --- reading ----------------------------------------------------------------------------------

    def read(self, seq: int) -> bytes | None:
        """The payload of an unacknowledged record, or None when it is acknowledged. Raises
        SpoolError when the record on disk is cut short or fails its checksum."""
        rec = self._records.get(seq)
        if rec is None:
            return None
        data = os.pread(rec.segment.fd, rec.nbytes, rec.start)
        if len(data) != rec.nbytes:
            raise SpoolError(f"record {seq} in {rec.segment.path} at offset {rec.start} is cut short")
        if _parse_at(memoryview(data), 0) is None:
            raise SpoolError(f"record {seq} in {rec.segment.path} at offset {rec.start} fails its checksum")
        return data[rec.offset - rec.start :]

    def drop_unreadable(self, seq: int, error: str) -> bool:
        """A record that cannot be read back (damaged on disk): report it loudly, count it, keep its
        segment for inspection, and treat it as acknowledged so the records after it go on."""
        rec = self._records.get(seq)
        if rec is None:
            return False
        rec.segment.corrupt = True
        log.error(
            f"CORRUPT SPOOL RECORD {seq} in {rec.segment.path} at offset {rec.start} dropped ({error}): "
            f"its {len(rec.producers)} batches will not be delivered",
            extra={"fields": {"seq": seq, "segment": str(rec.segment.path), "offset": rec.start, "error": error}},
        )
        if self._on_corrupt is not None:
            self._on_corrupt()
        return self.ack(seq)

    def unacked_seqs(self) -> list[int]:
        return list(self._records)

    def get(self, seq: int) -> Record | None:
        return self._records.get(seq)

    def add_listener(self, listener: Callable[[Record], None]) -> None:
        """Call `listener(record)` after each append."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[Record], None]) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    # --- acknowledgements -------------------------------------------------------------------------

    def ack(self, seq: int) -> bool:
        """Mark a record committed at the collector. False when it was not pending."""
        rec = self._records.pop(seq, None)
        if rec is None:
            return False
        self.pending_bytes -= rec.nbytes
        seg = rec.segment
        seg.live -= 1
        for producer_id in {p for p, _ in rec.producers}:
            seqs = self._by_producer.get(producer_id)
            if seqs is not None:
                seqs.pop(seq, None)
                if not seqs:
                    del self._by_producer[producer_id]
            self._wake(producer_id)
        if seg.live == 0 and seg is not self._active:
            self._retire(seg)
        self._update_events()
        return True

    def reject(self, seq: int, reason: str) -> bool:
        """Set a record the collector can never store aside in `rejected/`, then treat it as acked."""
        rec = self._records.get(seq)
        if rec is None:
            return False
        payload = self.read(seq) or b""
        target = self.dir / REJECTED_DIR
        target.mkdir(exist_ok=True)
        (target / f"{seq:020d}.ingest").write_bytes(payload)
        info = {"seq": seq, "reason": reason, "created": rec.created, "rejected": time.time(), "batches": rec.producers}
        (target / f"{seq:020d}.json").write_text(json.dumps(info))
        log.error(
            f"RECORD {seq} REJECTED by the collector, set aside in {target}: {reason}",
            extra={"fields": {"seq": seq, "reason": reason, "batches": len(rec.producers), "path": str(target)}},
        )
        return self.ack(seq)

    def watermark(self) -> int:
        """Every record up to this number is acknowledged."""
        for seq in self._records:
            return seq - 1
        return self.next_seq - 1

    def _retire(self, seg: Segment) -> None:
        """Delete (or, when it held corrupt data, move aside) a segment with nothing pending."""
        self._save_state(force=True)  # the watermark must cover the segment before it disappears
        self._segments.pop(seg.first_seq, None)
        with contextlib.suppress(OSError):
            os.close(seg.fd)
        try:
            if seg.corrupt:
                (self.dir / CORRUPT_DIR).mkdir(exist_ok=True)
                os.replace(seg.path, self.dir / CORRUPT_DIR / seg.path.name)
                log.warning(
                    f"spool segment with corrupt data kept for inspection in {self.dir / CORRUPT_DIR}",
                    extra={"fields": {"path": str(seg.path)}},
                )
            else:
                os.unlink(seg.path)
        except FileNotFoundError:
            pass

    def _save_state(self, force: bool = False) -> None:
        watermark = self.watermark()
        if not force and watermark == self._saved_watermark:
            return
        path = self.dir / STATE_FILE
        tmp = self.dir / f"{STATE_FILE}.tmp"
        data = json.dumps({"acked_through": watermark, "next_seq": self.next_seq}).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _write_all(fd, data)
            if self.fsync == "always":
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        self._saved_watermark = watermark

    # --- flush waiters ----------------------------------------------------------------------------

    def producer_pending(self, producer_id: str, upto: int) -> bool:
        """Whether an unacknowledged record numbered <= `upto` holds a batch of `producer_id`."""
        seqs = self._by_producer.get(producer_id)
        if not seqs:
            return False
        return next(iter(seqs)) <= upto

    async def wait_committed(self, producer_id: str, upto: int) -> None:
        """Wait until no unacknowledged record numbered <= `upto` holds a batch of `producer_id`."""
        if not self.producer_pending(producer_id, upto):
            return
        fut = asyncio.get_running_loop().create_future()
        waiter = _Waiter(upto, fut)
        self._waiters.setdefault(producer_id, []).append(waiter)
        try:
            await fut
        finally:
            waiters = self._waiters.get(producer_id)
            if waiters is not None:
                with contextlib.suppress(ValueError):
                    waiters.remove(waiter)
                if not waiters:
                    del self._waiters[producer_id]

    def _wake(self, producer_id: str) -> None:
        waiters = self._waiters.get(producer_id)
        if not waiters:
            return
        for w in waiters:
            if not w.future.done() and not self.producer_pending(producer_id, w.upto):
                w.future.set_result(None)

    # --- size bound -------------------------------------------------------------------------------

    def _update_events(self) -> None:
        if self._records:
            self._empty.clear()
        else:
            self._empty.set()
        full = self.pending_bytes >= self.max_bytes
        if full and not self._backpressure:
            self._backpressure = True
            self._writable.clear()
            self.full_count += 1
            self._full_since = time.monotonic()
            log.warning(
                f"spool full ({self.pending_bytes} unacknowledged bytes, bound {self.max_bytes}): no longer "
                "reading from SDK sockets until the collector acknowledges records; SDKs keep their points "
                "in their own spool meanwhile (nothing is dropped)",
                extra={
                    "fields": {
                        "pending_bytes": self.pending_bytes,
                        "max_bytes": self.max_bytes,
                        "times": self.full_count,
                    }
                },
            )
            self._tell_full(True)
        elif not full and (self._backpressure or not self._writable.is_set()):
            was_full = self._backpressure
            if was_full and self._full_since is not None:
                stretch = time.monotonic() - self._full_since
                self._full_total += stretch
                self._full_since = None
                log.info(
                    f"spool below its bound again after {stretch:.1f} s: reading from SDK sockets",
                    extra={"fields": {"full_seconds": round(stretch, 3), "pending_bytes": self.pending_bytes}},
                )
            self._backpressure = False
            self._writable.set()
            if was_full:
                self._tell_full(False)

    def _tell_full(self, full: bool) -> None:
        for listener in self._full_listeners:
            try:
                listener(full)
            except Exception:
                log.exception("spool full-state listener failed")

    def add_full_listener(self, listener: Callable[[bool], None]) -> None:
        """Call `listener(full)` when the spool reaches its bound and when it drops below it."""
        self._full_listeners.append(listener)

    @property
    def full_seconds(self) -> float:
        """Total time spent at the bound, the current stretch included."""
        current = time.monotonic() - self._full_since if self._full_since is not None else 0.0
        return self._full_total + current

    @property
    def full(self) -> bool:
        return self._backpressure

    async def wait_writable(self) -> None:
        if not self._backpressure:
            return
        await self._writable.wait()

    async def wait_empty(self) -> None:
        """Wait until every record is acknowledged."""
        await self._empty.wait()

    # --- figures ----------------------------------------------------------------------------------

    @property
    def pending_records(self) -> int:
        return len(self._records)

    @property
    def segment_count(self) -> int:
        return len(self._segments)

    @property
    def disk_bytes(self) -> int:
        return sum(seg.size for seg in self._segments.values())

    def oldest_unacked_age(self) -> float:
        for rec in self._records.values():
            return max(0.0, time.time() - rec.created)
        return 0.0

    def segment_paths(self) -> list[Path]:
        return [seg.path for seg in self._segments.values()]


# --- helpers --------------------------------------------------------------------------------------


def _first_seq_of(path: Path) -> int:
    try:
        return int(path.stem.split("-", 1)[1])
    except (IndexError, ValueError):
        return 0


def _parse_at(view: memoryview, off: int) -> tuple[int, float, int, int] | None:
    """(seq, created, index length, body length) of a valid record at `off`, else None."""
    end = len(view)
    if end - off < HEADER.size:
        return None
    magic, body_len, crc, seq, created, index_len = HEADER.unpack_from(view, off)
    if magic != MAGIC or body_len > MAX_RECORD_BODY_BYTES or index_len > body_len:
        return None
    body_end = off + HEADER.size + body_len
    if body_end > end:
        return None
    actual = zlib.crc32(view[off + 4 : off + 8])
    actual = zlib.crc32(view[off + 12 : body_end], actual)
    if actual != crc:
        return None
    return seq, created, index_len, body_len


def _resync(view: memoryview, start: int) -> int | None:
    """Offset of the next valid record at or after `start`."""
    data = view.obj if isinstance(view.obj, bytes) else bytes(view)
    pos = start
    while True:
        pos = data.find(MAGIC, pos)
        if pos < 0:
            return None
        if _parse_at(view, pos) is not None:
            return pos
        pos += 1


def _describe_tail(view: memoryview, off: int) -> str:
    rest = len(view) - off
    if rest < HEADER.size:
        return f"partial header ({rest} bytes)"
    magic, body_len, *_ = HEADER.unpack_from(view, off)
    if magic != MAGIC:
        return "no record header"
    if off + HEADER.size + body_len > len(view):
        return f"record of {body_len} bytes cut after {rest - HEADER.size}"
    return "checksum mismatch"


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
