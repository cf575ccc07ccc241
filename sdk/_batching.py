"""Turns what `run.log*` buffered into columnar `MetricPoints`, grouped per (run, metric).

Runs on the SDK's background thread, never on the caller's. Work is per group and vectorised with
numpy wherever the values allow; the only per-point Python work is the group-by over names.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import groupby

import numpy as np

from runwire import codec
from runwire.limits import MAX_FRAME_BYTES, SDK_BATCH_MAX_POINTS
from runwire.v1 import metrics_pb2 as pb

SCALAR_FIELDS = 5
"""`run.log` extends one flat list with run_id, name, value, step, time_ns: no per-point tuple
survives, so logging creates no garbage-collected objects (a GC pass over millions of buffered
tuples would stall the training loop)."""
# kind, run_id, name, columns ({"": values} for lists), rows, time_ns
OtherEntry = tuple[int, str, str, dict[str, list], int, int]

SDK_BATCH_TARGET_BYTES = 4 * 1024 * 1024
"""Encoded bytes at which the SDK closes a batch (one socket frame); well under MAX_FRAME_BYTES."""
assert SDK_BATCH_TARGET_BYTES * 2 < MAX_FRAME_BYTES


def _steps_array(steps: Sequence[int | None]) -> np.ndarray | None:
    missing = steps.count(None) if isinstance(steps, list) else list(steps).count(None)
    if missing == len(steps):
        return None
    if missing == 0:
        return np.array(steps, dtype=np.int64)
    return np.array([codec.NO_STEP if s is None else s for s in steps], dtype=np.int64)


def _segments(values: list) -> Iterator[tuple[int, int]]:
    """(start, stop) runs of `values` that share one column type (normally one run: everything)."""
    if codec.value_type_of(values) is not None:
        yield 0, len(values)
        return
    start = 0
    current: int | None = codec.NONE
    for i, v in enumerate(values):
        merged = codec.promote(current, codec.value_type_of([v]))
        if merged is None:
            yield start, i
            start, current = i, codec.value_type_of([v])
        else:
            current = merged
    yield start, len(values)


def _emit(make, lo: int, hi: int, out: list[pb.MetricPoints]) -> None:
    """Append make(lo, hi), halved until each piece fits a batch (long strings make rows big)."""
    mp = make(lo, hi)
    if hi - lo > 1 and mp.ByteSize() > SDK_BATCH_TARGET_BYTES:
        mid = (lo + hi) // 2
        _emit(make, lo, mid, out)
        _emit(make, mid, hi, out)
    else:
        out.append(mp)


def encode_scalars(flat: list, descriptions: dict[tuple[str, str], str]) -> list[pb.MetricPoints]:
    """`flat` holds SCALAR_FIELDS items per point (see above)."""
    if not flat:
        return []
    run_ids, names, values, steps, times = (flat[i::SCALAR_FIELDS] for i in range(SCALAR_FIELDS))
    out: list[pb.MetricPoints] = []
    if len(set(names)) == 1 and len(set(run_ids)) == 1:
        groups = [((run_ids[0], names[0]), values, steps, np.array(times, dtype=np.int64))]
    else:
        index: dict[tuple[str, str], int] = {}
        keys = list(zip(run_ids, names, strict=True))
        ids = np.array([index.setdefault(k, len(index)) for k in keys], dtype=np.int64)
        order = np.argsort(ids, kind="stable")
        bounds = np.concatenate(([0], np.cumsum(np.bincount(ids, minlength=len(index)))))
        values_arr = np.empty(len(values), dtype=object)
        values_arr[:] = values
        steps_arr = np.empty(len(steps), dtype=object)
        steps_arr[:] = steps
        times_arr = np.array(times, dtype=np.int64)
        groups = []
        for key, gid in index.items():
            sel = order[bounds[gid] : bounds[gid + 1]]
            groups.append((key, values_arr[sel].tolist(), steps_arr[sel].tolist(), times_arr[sel]))
    for (run_id, name), vals, stps, ts in groups:
        description = descriptions.pop((run_id, name), "")
        first = len(out)

        def make(lo: int, hi: int, run_id=run_id, name=name, vals=vals, stps=stps, ts=ts) -> pb.MetricPoints:
            column = codec.encode_column("", vals[lo:hi])
            return codec.encode_points(
                run_id, name, codec.SCALAR, ts[lo:hi] // 1000, _steps_array(stps[lo:hi]), [column]
            )

        for start, stop in _segments(vals):
            for lo in range(start, stop, SDK_BATCH_MAX_POINTS):
                _emit(make, lo, min(lo + SDK_BATCH_MAX_POINTS, stop), out)
        out[first].description = description
    return out


def encode_others(entries: list[OtherEntry], descriptions: dict[tuple[str, str], str]) -> list[pb.MetricPoints]:
    """Lists and table rows: consecutive calls on one metric become one MetricPoints."""
    out: list[pb.MetricPoints] = []
    for (kind, run_id, name), group in groupby(entries, key=lambda e: (e[0], e[1], e[2])):
        calls = list(group)
        description = descriptions.pop((run_id, name), "")
        col_names: list[str] = []
        for call in calls:
            col_names.extend(c for c in call[3] if c not in col_names)
        rows = sum(call[4] for call in calls)
        times = np.concatenate([np.full(call[4], call[5] // 1000, dtype=np.int64) for call in calls])
        merged: dict[str, list] = {}
        for col in col_names:
            column: list = []
            for call in calls:
                column.extend(call[3].get(col, [None] * call[4]))
            merged[col] = column
        first = len(out)

        def make(lo: int, hi: int, kind=kind, run_id=run_id, name=name, merged=merged, times=times) -> pb.MetricPoints:
            columns = [codec.encode_column(col, vals[lo:hi]) for col, vals in merged.items()]
            return codec.encode_points(run_id, name, kind, times[lo:hi], None, columns)

        for lo in range(0, rows, SDK_BATCH_MAX_POINTS):
            _emit(make, lo, min(lo + SDK_BATCH_MAX_POINTS, rows), out)
        out[first].description = description
    return out


def pack_batches(points: list[pb.MetricPoints]) -> Iterator[list[pb.MetricPoints]]:
    """Groups of MetricPoints whose encoded size stays near SDK_BATCH_TARGET_BYTES."""
    batch: list[pb.MetricPoints] = []
    size = 0
    for mp in points:
        n = mp.ByteSize()
        if batch and size + n > SDK_BATCH_TARGET_BYTES:
            yield batch
            batch, size = [], 0
        batch.append(mp)
        size += n
    if batch:
        yield batch
