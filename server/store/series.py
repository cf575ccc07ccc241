"""Backend-neutral logic for a metric series stored as compressed chunks.

A series is a sequence of rows kept as chunks of at most `limits.STORE_CHUNK_ROWS` rows (and
about `STORE_CHUNK_MAX_BYTES` uncompressed), each blob being `codec.encode_chunk(...)`. Only the
last chunk may be short: it is the open *tail* (under `STORE_TAIL_MAX_ROWS` rows), merged with
the next appended rows and rewritten. Every other chunk is *sealed* and never changes. A backend keeps one `SeriesState`
per series it writes to (the decoded tail included, so appending never reads the database back)
and persists what `append_rows` returns.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from runwire import codec, limits
from runwire.codec import DecodedColumn, DecodedPoints
from runwire.server import limits as server_limits
from runwire.server.records import ChunkRef, SeriesSnapshot

_FIXED_BYTES = {codec.FLOAT: 8, codec.INT: 8, codec.BOOL: 1, codec.NONE: 0}


@dataclass
class ChunkWrite:
    """A chunk to insert, or to replace when `chunk_no` is the current tail's number."""

    chunk_no: int
    first_row: int
    row_count: int
    blob: bytes


@dataclass
class SeriesState:
    id: int
    run_id: str
    name: str
    kind: int
    description: str = ""
    count: int = 0
    columns: dict[str, int] = field(default_factory=dict)
    """Column name -> value type, in insertion order, with int->float promotion applied."""
    last: float | None = None
    min: float | None = None
    max: float | None = None
    next_chunk_no: int = 0
    """Number of the chunk after the last stored one."""
    tail_rows: int = 0
    """Rows of the open tail (the last stored chunk, `next_chunk_no - 1`); 0 = no open tail."""
    tail_first_row: int = 0
    tail: DecodedPoints | None = None
    """The open tail decoded; None while not loaded (load it before `append_rows`)."""
    tail_nbytes: int = 0

    @property
    def needs_tail(self) -> bool:
        return self.tail_rows > 0 and self.tail is None

    def columns_json(self) -> str:
        return json.dumps([[name, vtype] for name, vtype in self.columns.items()])


def columns_from_json(text: str) -> dict[str, int]:
    return {name: int(vtype) for name, vtype in json.loads(text)}


@dataclass
class PendingAppend:
    """Rows admitted to one series in the current transaction, appended at its end."""

    state: SeriesState
    parts: list[DecodedPoints] = field(default_factory=list)
    rows: int = 0


def snapshot(series_id: int, row: tuple, refs: list[ChunkRef], blobs: dict[int, bytes]) -> SeriesSnapshot:
    """A `SeriesSnapshot` from a series row (run_id, name, kind, description, row_count, columns), its
    chunk index and the blobs read of it (by chunk number)."""
    return SeriesSnapshot(
        series_id=series_id,
        run_id=row[0],
        name=row[1],
        kind=row[2],
        description=row[3],
        count=row[4],
        columns=list(columns_from_json(row[5]).items()),
        chunks=refs,
        blobs=[blobs.get(ref.chunk_no) for ref in refs],
    )


# --- admission ----------------------------------------------------------------------------------


def conflict(state: SeriesState, kind: int, points: DecodedPoints) -> str | None:
    """The rule `points` break when appended to the series, or None when they fit."""
    if kind != state.kind:
        return (
            f"kind {codec.KIND_NAMES.get(kind, kind)} differs from the series' first kind "
            f"{codec.KIND_NAMES[state.kind]} (first kind wins)"
        )
    for name, col in points.columns.items():
        stored = state.columns.get(name)
        if stored is not None and codec.promote(stored, col.type) is None:
            what = f"column {name!r}: " if name else ""
            return (
                f"{what}{codec.TYPE_NAMES[col.type]} values cannot join the stored "
                f"{codec.TYPE_NAMES[stored]} values (only int and float mix, None joins anything)"
            )
    return None


def absorb(state: SeriesState, points: DecodedPoints, description: str) -> None:
    """Record the columns (promoting types) and the first non-empty description."""
    for name, col in points.columns.items():
        stored = state.columns.get(name)
        state.columns[name] = col.type if stored is None else codec.promote(stored, col.type)
    if description and not state.description:
        state.description = description


def _update_stats(state: SeriesState, points: DecodedPoints, start: int) -> None:
    """Fold rows `start:` of a scalar or list series into its last/min/max (NaN and None skipped)."""
    col = points.columns.get("")
    if state.kind not in (codec.SCALAR, codec.LIST) or col is None or col.type not in (codec.FLOAT, codec.INT):
        return
    values = col.values[start:]
    if col.type == codec.FLOAT:
        valid = ~np.isnan(values)
        if col.nulls is not None:
            valid &= ~col.nulls[start:]
    elif col.nulls is not None:
        valid = ~col.nulls[start:]
    else:
        valid = None
    if valid is not None:
        idx = np.flatnonzero(valid)
        if not idx.size:
            return
        last, values = values[idx[-1]], values[idx]
    else:
        last = values[-1]
    lo, hi = float(values.min()), float(values.max())
    state.last = float(last)
    state.min = lo if state.min is None else min(state.min, lo)
    state.max = hi if state.max is None else max(state.max, hi)


# --- appending ----------------------------------------------------------------------------------


def estimate_row_bytes(points: DecodedPoints) -> np.ndarray | int:
    """Uncompressed bytes per row: an int when every row has the same size, else an array."""
    fixed = 8 + (8 if points.steps is not None else 0)
    strings = []
    for col in points.columns.values():
        if col.type == codec.STRING:
            strings.append(col.values)
        else:
            fixed += _FIXED_BYTES[col.type]
    if not strings:
        return fixed
    sizes = np.full(points.count, fixed, dtype=np.int64)
    for values in strings:
        sizes += np.fromiter(map(len, values), dtype=np.int64, count=points.count)
    return sizes


def chunk_bounds(points: DecodedPoints, max_rows: int, max_bytes: int) -> list[tuple[int, int, int]]:
    """`(start, stop, estimated bytes)` of consecutive chunks covering `points`."""
    n = points.count
    sizes = estimate_row_bytes(points)
    if isinstance(sizes, int):
        per = max(1, min(max_rows, max_bytes // max(sizes, 1)))
        return [(a, min(a + per, n), (min(a + per, n) - a) * sizes) for a in range(0, n, per)]
    cum = np.cumsum(sizes)
    out = []
    start, base = 0, 0
    while start < n:
        stop = int(np.searchsorted(cum, base + max_bytes, side="right"))
        stop = max(start + 1, min(stop, start + max_rows, n))
        total = int(cum[stop - 1])
        out.append((start, stop, total - base))
        start, base = stop, total
    return out


def set_tail(state: SeriesState, points: DecodedPoints | None, first_row: int, nbytes: int | None = None) -> None:
    """Make `points` (the last stored chunk, decoded) the open tail, or seal it when full."""
    if points is None:
        state.tail, state.tail_rows, state.tail_nbytes = None, 0, 0
        return
    if nbytes is None:
        sizes = estimate_row_bytes(points)
        nbytes = sizes * points.count if isinstance(sizes, int) else int(sizes.sum())
    if is_open(points.count, nbytes):
        state.tail, state.tail_rows, state.tail_first_row, state.tail_nbytes = points, points.count, first_row, nbytes
    else:
        state.tail, state.tail_rows, state.tail_nbytes = None, 0, 0


def restore_tail(state: SeriesState, chunk_no: int | None, first_row: int, row_count: int) -> None:
    """Set up `state` read back from a database whose last stored chunk of the series is
    `chunk_no` (None: no chunk yet): the chunk after it, and that chunk as the open tail (not
    loaded) when it may still take rows."""
    if chunk_no is None:
        return
    state.next_chunk_no = chunk_no + 1
    if row_count < limits.STORE_CHUNK_ROWS:
        state.tail_rows, state.tail_first_row = row_count, first_row


def prefetch_upto(refs: list, budget: int) -> int:
    """The last of the leading chunks `refs` (`ChunkRef`s, in order, the last one left out: it is
    always loaded, being the only one that may still change) whose blobs fit in `budget` bytes
    together; -1 for none."""
    upto = -1
    for ref in refs[:-1]:
        if ref.nbytes > budget:
            break
        budget -= ref.nbytes
        upto = ref.chunk_no
    return upto


STORE_TAIL_MAX_ROWS = 4096
"""An open tail is rewritten on every append, so it is sealed once it reaches this many rows
(large appends still make chunks of `STORE_CHUNK_ROWS`): a series that grows a few rows at a time
costs at most a 4,096-row re-encode per append instead of one of up to `STORE_CHUNK_ROWS` rows."""


def is_open(rows: int, nbytes: int) -> bool:
    """Whether a last chunk of `rows` rows and about `nbytes` bytes still takes more rows."""
    max_rows = min(limits.STORE_CHUNK_ROWS, STORE_TAIL_MAX_ROWS)
    return rows < max_rows and nbytes < server_limits.STORE_CHUNK_MAX_BYTES


def append_rows(state: SeriesState, parts: list[DecodedPoints]) -> list[ChunkWrite]:
    """Append `parts` (already admitted and absorbed) to the series: merge them with the open
    tail, split into chunks, and return the chunks to write. Updates `state`."""
    if state.needs_tail:
        raise RuntimeError(f"series {state.id}: the open tail must be loaded before appending")
    added = sum(p.count for p in parts)
    if state.tail_rows:
        first_chunk, first_row = state.next_chunk_no - 1, state.tail_first_row
        merged = codec.concat([state.tail, *parts])
    else:
        first_chunk, first_row = state.next_chunk_no, state.count
        merged = codec.concat(parts)
    _update_stats(state, merged, merged.count - added)
    bounds = chunk_bounds(merged, limits.STORE_CHUNK_ROWS, server_limits.STORE_CHUNK_MAX_BYTES)
    writes = []
    piece = merged
    for i, (start, stop, _) in enumerate(bounds):
        piece = merged if len(bounds) == 1 else codec.slice_points(merged, start, stop)
        writes.append(ChunkWrite(first_chunk + i, first_row + start, stop - start, codec.encode_chunk(piece)))
    start, stop, nbytes = bounds[-1]
    if is_open(stop - start, nbytes):
        state.tail, state.tail_rows, state.tail_first_row = _own(piece), stop - start, first_row + start
        state.tail_nbytes = nbytes
    else:
        state.tail, state.tail_rows, state.tail_nbytes = None, 0, 0
    state.next_chunk_no = first_chunk + len(bounds)
    state.count += added
    return writes


def _own(points: DecodedPoints) -> DecodedPoints:
    """A copy not sharing memory with a (possibly much larger) merged batch."""
    cols = {}
    for name, col in points.columns.items():
        values = col.values
        if isinstance(values, np.ndarray):
            values = values.copy()
        elif values is not None:
            values = list(values)
        nulls = None if col.nulls is None else col.nulls.copy()
        cols[name] = DecodedColumn(col.name, col.type, values, nulls)
    steps = None if points.steps is None else points.steps.copy()
    return DecodedPoints(points.count, points.timestamps.copy(), steps, cols)
