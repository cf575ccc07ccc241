"""Reading one stored metric series for the studio: the store's read path (`read_metrics`, then
`read_chunks` for sealed chunks it did not prefetch), decoded with `runwire.codec` off the event loop."""

from __future__ import annotations

import asyncio

import numpy as np

from runwire import codec
from runwire.server.records import SeriesSnapshot
from runwire.server.store.base import Store
from runwire.server.studio.errors import not_found


async def snapshot(store: Store, run_id: str, name: str) -> SeriesSnapshot:
    """The series `name` of run `run_id` (NotFound for a missing run or metric)."""
    async for s in store.read_metrics(run_id, False, [name]):
        if s.name == name:
            return s
    raise not_found(f"run {run_id} has no metric {name!r}")


async def read_rows(store: Store, s: SeriesSnapshot, start: int = 0, stop: int | None = None) -> codec.DecodedPoints:
    """Rows `start`..`stop` (default: all) of the series, decoded."""
    stop = s.count if stop is None else min(stop, s.count)
    wanted = [i for i, ref in enumerate(s.chunks) if ref.first_row < stop and ref.first_row + ref.row_count > start]
    blobs = [s.blobs[i] for i in wanted]
    missing = [k for k, blob in enumerate(blobs) if blob is None]
    if missing:
        fetched = await store.read_chunks(s.series_id, [s.chunks[wanted[k]].chunk_no for k in missing])
        for k, blob in zip(missing, fetched, strict=True):
            blobs[k] = blob
    first = s.chunks[wanted[0]].first_row if wanted else start
    return await asyncio.to_thread(_decode, blobs, start - first, stop - first)


def _decode(blobs: list[bytes | None], lo: int, hi: int) -> codec.DecodedPoints:
    if not blobs:
        return codec.DecodedPoints(0, np.zeros(0, np.int64), None, {})
    parts = [codec.decode_chunk(b) for b in blobs if b is not None]
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
