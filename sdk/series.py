"""Decoded metric series: Azure ML's `get_metrics()` shapes, and runwire's richer arrays."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from runwire import codec


def azure_value(kind: int, points: codec.DecodedPoints) -> Any:
    """The value `get_metrics()` returns for one series (RUN_API.md §6.1).

    Scalar, list and image series: a bare value for exactly one row, else a list. Tables:
    `{column: value}` for one row, else `{column: [values]}`. Artifact-backed series return only
    their first URI, as Azure does.
    """
    if kind == codec.TABLE:
        columns = {name: col.to_python(points.count) for name, col in points.columns.items()}
        if points.count == 1:
            return {name: values[0] for name, values in columns.items()}
        return columns
    column = next(iter(points.columns.values()))
    values = column.to_python(points.count)
    if kind == codec.IMAGE or points.count == 1:
        return values[0]
    return values


def _array(col: codec.DecodedColumn, count: int) -> np.ndarray:
    if col.type == codec.NONE:
        return np.full(count, None, dtype=object)
    if col.type == codec.STRING:
        out = np.empty(count, dtype=object)
        out[:] = col.values
        if col.nulls is not None:
            out[col.nulls] = None
        return out
    values = np.asarray(col.values)
    if col.type == codec.BOOL:
        values = values.astype(bool)
    if col.nulls is not None:
        # None in a numeric column: floats become NaN, other types an object array holding None.
        if col.type == codec.FLOAT:
            values = values.copy()
            values[col.nulls] = np.nan
        else:
            values = values.astype(object)
            values[col.nulls] = None
    return values


@dataclass
class MetricSeries:
    """One metric of one run as numpy arrays, for plotting and analysis (`run.get_metric_series`).

    `steps` holds the step of each row; when no row was logged with a step it is the row index
    (`has_steps` is then False). `timestamps` are seconds since the epoch (float64, µs precision).
    `values` is the value column (for a table: its first column); `columns` holds every column.
    `nulls` marks, per column, the rows logged as None (in float columns they also read as NaN).
    """

    run_id: str
    name: str
    kind: str
    description: str
    steps: np.ndarray
    timestamps: np.ndarray
    values: np.ndarray
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    nulls: dict[str, np.ndarray] = field(default_factory=dict)
    has_steps: bool = False

    def __len__(self) -> int:
        return len(self.steps)

    @classmethod
    def from_points(cls, run_id: str, name: str, kind: int, description: str, points: codec.DecodedPoints):
        count = points.count
        columns = {col_name: _array(col, count) for col_name, col in points.columns.items()}
        nulls = {n: c.nulls for n, c in points.columns.items() if c.nulls is not None}
        if kind != codec.TABLE:
            columns = {"value": columns[""]}
            if "" in nulls:
                nulls = {"value": nulls.pop("")}
        has_steps = points.steps is not None
        steps = points.steps if has_steps else np.arange(count, dtype=np.int64)
        return cls(
            run_id=run_id,
            name=name,
            kind=codec.KIND_NAMES.get(kind, "unknown"),
            description=description,
            steps=steps,
            timestamps=points.timestamps.astype(np.float64) / 1e6,
            values=next(iter(columns.values())),
            columns=columns,
            nulls=nulls,
            has_steps=has_steps,
        )
