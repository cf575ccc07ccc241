"""Reading one stored metric series for the studio: the store's read path (`read_metrics`, then
`read_chunks` for sealed chunks it did not prefetch), decoded with `runwire.codec` off the event loop.

Sealed chunks never change, so their decoded form is kept in a small LRU (`ChunkCache`, bounded by
`STUDIO_CHUNK_CACHE_BYTES`): a chart that zooms or refreshes does not decode them again. The last
chunk of a series (its open tail, which still grows) is always read from the snapshot."""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict

import numpy as np

from runwire import codec
from runwire.server.records import SeriesSnapshot
from runwire.server.store.base import Store
from runwire.server.studio import limits
from runwire.server.studio.errors import not_found


def _nbytes(points: codec.DecodedPoints) -> int:
    size = points.timestamps.nbytes + (0 if points.steps is None else points.steps.nbytes)
    for col in points.columns.values():
        if isinstance(col.values, np.ndarray):
            size += col.values.nbytes
        elif col.values is not None:
            size += sum(len(v) + 49 for v in col.values)
    return size


class ChunkCache:
    """Decoded sealed chunks by (series id, chunk number), least recently used dropped first."""

    def __init__(self, max_bytes: int = limits.STUDIO_CHUNK_CACHE_BYTES) -> None:
        self._max = max_bytes
        self._items: OrderedDict[tuple[int, int], tuple[codec.DecodedPoints, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[int, int]) -> codec.DecodedPoints | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key: tuple[int, int], points: codec.DecodedPoints) -> None:
        size = _nbytes(points)
        if size > self._max // 4:
            return
        with self._lock:
            if key in self._items:
                return
            self._items[key] = (points, size)
            self._bytes += size
            while self._bytes > self._max:
                _, (_, dropped) = self._items.popitem(last=False)
                self._bytes -= dropped


async def snapshot(store: Store, run_id: str, name: str) -> SeriesSnapshot:
    """The series `name` of run `run_id` (NotFound for a missing run or metric)."""
    async for s in store.read_metrics(run_id, False, [name]):
        if s.name == name:
            return s
    raise not_found(f"run {run_id} has no metric {name!r}")


async def read_rows(
    store: Store, s: SeriesSnapshot, start: int = 0, stop: int | None = None, cache: ChunkCache | None = None
) -> codec.DecodedPoints:
    """Rows `start`..`stop` (default: all) of the series, decoded."""
    stop = s.count if stop is None else min(stop, s.count)
    wanted = [i for i, ref in enumerate(s.chunks) if ref.first_row < stop and ref.first_row + ref.row_count > start]
    last = len(s.chunks) - 1
    decoded: list[codec.DecodedPoints | None] = [None] * len(wanted)
    if cache is not None:
        for k, i in enumerate(wanted):
            if i != last:
                decoded[k] = cache.get((s.series_id, s.chunks[i].chunk_no))
    blobs = [s.blobs[i] if decoded[k] is None else None for k, i in enumerate(wanted)]
    missing = [k for k, blob in enumerate(blobs) if blob is None and decoded[k] is None]
    if missing:
        fetched = await store.read_chunks(s.series_id, [s.chunks[wanted[k]].chunk_no for k in missing])
        for k, blob in zip(missing, fetched, strict=True):
            blobs[k] = blob
    first = s.chunks[wanted[0]].first_row if wanted else start

    def work() -> codec.DecodedPoints:
        parts = []
        for k, i in enumerate(wanted):
            points = decoded[k]
            if points is None:
                blob = blobs[k]
                assert blob is not None
                points = codec.decode_chunk(blob)
                if cache is not None and i != last:
                    cache.put((s.series_id, s.chunks[i].chunk_no), points)
            parts.append(points)
        return _join(parts, start - first, stop - first)

    return await asyncio.to_thread(work)


def _join(parts: list[codec.DecodedPoints], lo: int, hi: int) -> codec.DecodedPoints:
    if not parts:
        return codec.DecodedPoints(0, np.zeros(0, np.int64), None, {})
    points = codec.concat(parts) if len(parts) > 1 else parts[0]
    lo = max(lo, 0)
    hi = min(hi, points.count)
    if lo == 0 and hi == points.count:
        return points
    return codec.slice_points(points, lo, hi)


def numeric(col: codec.DecodedColumn | None, count: int) -> np.ndarray:
    """A numeric column as float64 with NaN for None (and for a missing column)."""
    if col is None or col.values is None or col.type not in (codec.FLOAT, codec.INT):
        return np.full(count, np.nan)
    out = np.asarray(col.values, dtype=np.float64)
    if col.nulls is not None:
        out = out.copy()
        out[col.nulls] = np.nan
    return out
