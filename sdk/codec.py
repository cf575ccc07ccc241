"""Columnar encoding of metric points, shared by the SDK, the agent and the collector.

A `MetricPoints` message holds `count` rows of one metric: timestamps and steps as delta-encoded
int64, and one `Column` per value column. Fixed-width values are little-endian and byte-shuffled
(all first bytes, then all second bytes, ...), which lets zstd compress the sign/exponent bytes of
a float series and the high bytes of deltas to almost nothing. The same message, zstd-compressed,
is the collector's stored chunk format, so a read streams chunks straight from disk to the client.

`DecodedPoints` is the in-memory form: numpy arrays, plus a None mask per column.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import zstandard

from runwire.v1 import metrics_pb2 as pb

NO_STEP = -(2**63)

NONE = pb.VALUE_TYPE_NONE
FLOAT = pb.VALUE_TYPE_FLOAT
INT = pb.VALUE_TYPE_INT
BOOL = pb.VALUE_TYPE_BOOL
STRING = pb.VALUE_TYPE_STRING

SCALAR = pb.METRIC_KIND_SCALAR
LIST = pb.METRIC_KIND_LIST
TABLE = pb.METRIC_KIND_TABLE
IMAGE = pb.METRIC_KIND_IMAGE

_DTYPES = {FLOAT: np.dtype("<f8"), INT: np.dtype("<i8"), BOOL: np.dtype("u1")}
TYPE_NAMES = {NONE: "none", FLOAT: "float", INT: "int", BOOL: "bool", STRING: "string"}
KIND_NAMES = {SCALAR: "scalar", LIST: "list", TABLE: "table", IMAGE: "image"}


class CodecError(ValueError):
    """Encoded points that do not decode (wrong sizes, unknown types, bad compression)."""


# --- byte shuffling and deltas --------------------------------------------------------------------


def shuffle(arr: np.ndarray) -> bytes:
    """Little-endian bytes of `arr`, byte-shuffled."""
    if arr.dtype.itemsize == 1:
        return arr.tobytes()
    return np.ascontiguousarray(arr).view(np.uint8).reshape(-1, arr.dtype.itemsize).T.tobytes()


def unshuffle(data: bytes, dtype: np.dtype, count: int) -> np.ndarray:
    size = dtype.itemsize
    if len(data) != size * count:
        raise CodecError(f"expected {size * count} bytes for {count} values of {dtype}, got {len(data)}")
    raw = np.frombuffer(data, np.uint8)
    if size == 1:
        return raw.view(dtype)
    return raw.reshape(size, count).T.copy().view(dtype).reshape(count)


def encode_deltas(values: np.ndarray) -> bytes:
    values = np.asarray(values, dtype=np.int64)
    if values.size == 0:
        return b""
    deltas = np.empty_like(values)
    deltas[0] = values[0]
    with np.errstate(over="ignore"):
        np.subtract(values[1:], values[:-1], out=deltas[1:])
    return shuffle(deltas)


def decode_deltas(data: bytes, count: int) -> np.ndarray:
    with np.errstate(over="ignore"):
        return np.cumsum(unshuffle(data, _DTYPES[INT], count), dtype=np.int64)


# --- decoded form ---------------------------------------------------------------------------------


@dataclass
class DecodedColumn:
    name: str
    type: int
    values: np.ndarray | list[str] | None  # None for a NONE column
    nulls: np.ndarray | None = None  # bool mask, None when no value is None

    def to_python(self, count: int) -> list:
        if self.type == NONE:
            return [None] * count
        out = self.values.tolist() if isinstance(self.values, np.ndarray) else list(self.values)
        if self.type == BOOL:
            out = [bool(v) for v in out]
        if self.nulls is not None:
            for i in np.flatnonzero(self.nulls).tolist():
                out[i] = None
        return out


@dataclass
class DecodedPoints:
    count: int
    timestamps: np.ndarray  # int64 µs
    steps: np.ndarray | None  # int64, NO_STEP where a row has none; None when no row has one
    columns: dict[str, DecodedColumn] = field(default_factory=dict)


def promote(a: int, b: int) -> int | None:
    """The column type that holds values of both types, or None when they do not mix."""
    if a == b or b == NONE:
        return a
    if a == NONE:
        return b
    if {a, b} == {INT, FLOAT}:
        return FLOAT
    return None


# --- encoding -------------------------------------------------------------------------------------


def value_type_of(values: Sequence) -> int | None:
    """The column type of a list of Python scalars, or None when they do not share one."""
    kinds = set(map(type, values))
    kinds.discard(type(None))
    if not kinds:
        return NONE
    if kinds <= {float, int}:
        return FLOAT if float in kinds else INT
    if kinds == {bool}:
        return BOOL
    if kinds == {str}:
        return STRING
    return None


def encode_column(name: str, values: Sequence, vtype: int | None = None) -> pb.Column:
    """A column of Python scalars (int, float, bool, str, None) of one type (ints promote to float)."""
    if vtype is None:
        vtype = value_type_of(values)
        if vtype is None:
            raise CodecError(f"column {name!r} mixes value types")
    col = pb.Column(name=name, type=vtype)
    if vtype == NONE:
        return col
    nulls: list[int] = []
    if None in values:
        nulls = [i for i, v in enumerate(values) if v is None]
        filler = "" if vtype == STRING else 0
        values = [filler if v is None else v for v in values]
        col.nulls.extend(nulls)
    if vtype == STRING:
        col.strings.extend(values)
    else:
        col.data = shuffle(np.array(values, dtype=_DTYPES[vtype]))
    return col


def encode_points(
    run_id: str,
    name: str,
    kind: int,
    timestamps_us: np.ndarray,
    steps: np.ndarray | None,
    columns: Iterable[pb.Column],
    description: str = "",
) -> pb.MetricPoints:
    mp = pb.MetricPoints(
        run_id=run_id,
        name=name,
        kind=kind,
        description=description,
        count=len(timestamps_us),
        timestamps=encode_deltas(timestamps_us),
    )
    if steps is not None:
        mp.steps = encode_deltas(steps)
    mp.columns.extend(columns)
    return mp


def encode_decoded(points: DecodedPoints) -> pb.MetricPoints:
    """`DecodedPoints` back to a `MetricPoints` without run, name or kind (a stored chunk)."""
    mp = pb.MetricPoints(count=points.count, timestamps=encode_deltas(points.timestamps))
    if points.steps is not None:
        mp.steps = encode_deltas(points.steps)
    for col in points.columns.values():
        out = pb.Column(name=col.name, type=col.type)
        if col.type == STRING:
            out.strings.extend(col.values)
        elif col.type != NONE:
            out.data = shuffle(np.asarray(col.values, dtype=_DTYPES[col.type]))
        if col.nulls is not None and col.type != NONE:
            out.nulls.extend(np.flatnonzero(col.nulls).tolist())
        mp.columns.append(out)
    return mp


# --- decoding -------------------------------------------------------------------------------------


def decode_column(col: pb.Column, count: int) -> DecodedColumn:
    vtype = col.type
    if vtype not in TYPE_NAMES:
        raise CodecError(f"column {col.name!r}: unknown value type {vtype}")
    nulls = None
    if col.nulls:
        idx = np.fromiter(col.nulls, dtype=np.int64, count=len(col.nulls))
        if idx.size and (idx.min() < 0 or idx.max() >= count):
            raise CodecError(f"column {col.name!r}: null offset out of range")
        nulls = np.zeros(count, dtype=bool)
        nulls[idx] = True
    if vtype == NONE:
        if col.data or col.strings:
            raise CodecError(f"column {col.name!r}: a none column carries values")
        return DecodedColumn(col.name, NONE, None, None)
    if vtype == STRING:
        if len(col.strings) != count or col.data:
            raise CodecError(f"column {col.name!r}: expected {count} strings, got {len(col.strings)}")
        return DecodedColumn(col.name, STRING, list(col.strings), nulls)
    if col.strings:
        raise CodecError(f"column {col.name!r}: a numeric column carries strings")
    values = unshuffle(col.data, _DTYPES[vtype], count)
    if vtype == BOOL and values.size and values.max() > 1:
        raise CodecError(f"column {col.name!r}: bool values must be 0 or 1")
    return DecodedColumn(col.name, vtype, values, nulls)


def decode_points(mp: pb.MetricPoints) -> DecodedPoints:
    """Decode points sent by a producer, checking their shape against their kind."""
    if mp.count == 0:
        raise CodecError(f"metric {mp.name!r}: no rows")
    points = decode_points_unchecked(mp)
    columns = points.columns
    if len(columns) != len(mp.columns):
        raise CodecError(f"metric {mp.name!r}: a column appears twice")
    if not columns:
        raise CodecError(f"metric {mp.name!r}: no columns")
    if mp.kind in (SCALAR, LIST, IMAGE) and list(columns) != [""]:
        raise CodecError(f"metric {mp.name!r}: a {KIND_NAMES[mp.kind]} metric has exactly one unnamed column")
    if mp.kind == TABLE and "" in columns:
        raise CodecError(f"metric {mp.name!r}: table columns need names")
    if mp.kind not in KIND_NAMES:
        raise CodecError(f"metric {mp.name!r}: unknown kind {mp.kind}")
    return points


# --- concatenation (the store appends rows to a series chunk by chunk) ----------------------------


def concat(parts: Sequence[DecodedPoints]) -> DecodedPoints:
    """Rows of `parts` in order. Columns missing from a part are None there; ints meeting floats
    become floats. Raises CodecError when a column's types do not mix."""
    if len(parts) == 1:
        return parts[0]
    count = sum(p.count for p in parts)
    timestamps = np.concatenate([p.timestamps for p in parts])
    steps = None
    if any(p.steps is not None for p in parts):
        steps = np.concatenate([p.steps if p.steps is not None else np.full(p.count, NO_STEP, np.int64) for p in parts])
    names: list[str] = []
    for p in parts:
        names.extend(n for n in p.columns if n not in names)
    columns = {}
    for name in names:
        vtype = NONE
        for p in parts:
            col = p.columns.get(name)
            if col is not None:
                merged = promote(vtype, col.type)
                if merged is None:
                    raise CodecError(
                        f"column {name!r}: {TYPE_NAMES[col.type]} values cannot join {TYPE_NAMES[vtype]} ones"
                    )
                vtype = merged
        columns[name] = _concat_column(name, vtype, [(p.columns.get(name), p.count) for p in parts])
    return DecodedPoints(count, timestamps, steps, columns)


def _concat_column(name: str, vtype: int, pieces: list[tuple[DecodedColumn | None, int]]) -> DecodedColumn:
    if vtype == NONE:
        return DecodedColumn(name, NONE, None, None)
    masks = []
    values: list = []
    for col, n in pieces:
        if col is None or col.type == NONE:
            masks.append(np.ones(n, dtype=bool))
            values.append([""] * n if vtype == STRING else np.zeros(n, dtype=_DTYPES[vtype]))
        else:
            masks.append(col.nulls if col.nulls is not None else np.zeros(n, dtype=bool))
            values.append(col.values if vtype == STRING else np.asarray(col.values, dtype=_DTYPES[vtype]))
    mask = np.concatenate(masks)
    joined = [s for part in values for s in part] if vtype == STRING else np.concatenate(values)
    return DecodedColumn(name, vtype, joined, mask if mask.any() else None)


def slice_points(points: DecodedPoints, start: int, stop: int) -> DecodedPoints:
    cols = {}
    for name, col in points.columns.items():
        vals = None if col.values is None else col.values[start:stop]
        nulls = None if col.nulls is None else col.nulls[start:stop]
        if nulls is not None and not nulls.any():
            nulls = None
        cols[name] = DecodedColumn(name, col.type, vals, nulls)
    steps = None if points.steps is None else points.steps[start:stop]
    return DecodedPoints(stop - start, points.timestamps[start:stop], steps, cols)


# --- compression ----------------------------------------------------------------------------------

_COMPRESSOR_LEVEL = 3
_local = threading.local()


def compress(data: bytes) -> bytes:
    compressor = getattr(_local, "compressor", None)
    if compressor is None:  # one per thread: a compressor is not safe to share between threads
        compressor = _local.compressor = zstandard.ZstdCompressor(level=_COMPRESSOR_LEVEL)
    return compressor.compress(data)


def decompress(data: bytes, max_output: int) -> bytes:
    """Decompress zstd data, refusing output larger than `max_output` bytes."""
    try:
        params = zstandard.get_frame_parameters(data)
        if params.content_size > max_output:
            raise CodecError(f"compressed payload expands to {params.content_size} bytes (limit {max_output})")
        return zstandard.ZstdDecompressor().decompress(data, max_output_size=max_output)
    except zstandard.ZstdError as e:
        raise CodecError(f"bad zstd payload: {e}") from e


def encode_chunk(points: DecodedPoints) -> bytes:
    """A stored chunk: zstd of a `MetricPoints` holding only count, timestamps, steps, columns."""
    return compress(encode_decoded(points).SerializeToString())


def decode_chunk(blob: bytes, max_output: int = 1 << 31) -> DecodedPoints:
    mp = pb.MetricPoints()
    mp.ParseFromString(decompress(blob, max_output))
    return decode_points_unchecked(mp)


def decode_points_unchecked(mp: pb.MetricPoints) -> DecodedPoints:
    """Decode without the kind/column-shape checks (stored chunks carry no kind)."""
    count = mp.count
    timestamps = decode_deltas(mp.timestamps, count)
    steps = decode_deltas(mp.steps, count) if mp.steps else None
    return DecodedPoints(count, timestamps, steps, {c.name: decode_column(c, count) for c in mp.columns})
