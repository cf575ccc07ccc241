"""Downsampling a metric series for a chart of a given pixel width, keeping every spike.

The x range is cut into `width` equal buckets; each non-empty bucket keeps the rows holding its
smallest and its largest y (at most two points, in row order), so an outlier of a single row is
always drawn however many rows share its pixel column. Vectorized with numpy: about O(n) for n rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Downsampled:
    x: np.ndarray
    y: np.ndarray
    downsampled: bool


def zoom(x: np.ndarray, y: np.ndarray, x_min: float | None, x_max: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Rows with x_min <= x <= x_max (x sorted ascending); none when x_min > x_max."""
    lo = 0 if x_min is None else int(np.searchsorted(x, x_min, side="left"))
    hi = len(x) if x_max is None else int(np.searchsorted(x, x_max, side="right"))
    hi = max(lo, hi)
    return x[lo:hi], y[lo:hi]


def min_max(x: np.ndarray, y: np.ndarray, width: int) -> Downsampled:
    """At most 2 * `width` points of (x, y) (x sorted ascending, float y with NaN for missing):
    per x bucket the rows of the minimum and the maximum y. Buckets whose y are all NaN keep their
    first row (so a gap stays visible). Rows are returned unchanged when they are few enough."""
    n = len(x)
    if n <= 2 * width:
        return Downsampled(x, y, False)
    x0, x1 = float(x[0]), float(x[-1])
    span = x1 - x0
    if span > 0:
        edges = x0 + span * (np.arange(1, width, dtype=np.float64) / width)
        starts = np.concatenate(([0], np.searchsorted(x, edges, side="left")))
    else:
        starts = np.array([0])
    starts = np.unique(starts)  # empty buckets share a start: drop them
    starts = starts[starts < n]
    counts = np.diff(np.append(starts, n))
    nan = np.isnan(y)
    if nan.any():
        lows, highs = np.where(nan, np.inf, y), np.where(nan, -np.inf, y)
        empty = np.add.reduceat((~nan).astype(np.int64), starts) == 0
    else:
        lows = highs = y
        empty = None
    keep = [
        _first_where(lows, np.minimum.reduceat(lows, starts), starts, counts),
        _first_where(highs, np.maximum.reduceat(highs, starts), starts, counts),
    ]
    if empty is not None:
        keep.append(starts[empty])
    idx = np.unique(np.concatenate(keep))
    return Downsampled(x[idx], y[idx], True)


def _first_where(values: np.ndarray, extremes: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """For each bucket (`starts`, `counts`), the index of its first row equal to its extreme."""
    rows = np.flatnonzero(values == np.repeat(extremes, counts))
    if not rows.size:
        return rows
    bucket = np.searchsorted(starts, rows, side="right") - 1
    return rows[np.flatnonzero(np.diff(bucket, prepend=-1) != 0)]
