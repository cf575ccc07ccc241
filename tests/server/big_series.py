"""Helpers to store large metric series straight through the store's ingest path (`Store.commit`)."""

from __future__ import annotations

import numpy as np

from runwire import codec
from runwire.server.records import BatchInput, IngestUnit, PointsInput
from runwire.server.store.base import Store


def scalar_points(values: np.ndarray, steps: np.ndarray | None = None) -> codec.DecodedPoints:
    n = len(values)
    col = codec.DecodedColumn("", codec.FLOAT, np.asarray(values, dtype=np.float64))
    ts = np.arange(n, dtype=np.int64) + 1_700_000_000_000_000
    return codec.DecodedPoints(n, ts, None if steps is None else np.asarray(steps, dtype=np.int64), {"": col})


async def store_scalars(
    store: Store, run_id: str, name: str, values: np.ndarray, steps: np.ndarray | None = None, producer: str = "p"
) -> None:
    """Append `values` (with `steps`) to scalar metric `name` of `run_id`, in batches of 250,000 rows."""
    for seq, lo in enumerate(range(0, len(values), 250_000), start=1):
        hi = min(lo + 250_000, len(values))
        part = scalar_points(values[lo:hi], None if steps is None else steps[lo:hi])
        points = PointsInput(run_id, name, codec.SCALAR, "", part.count, part)
        outcome = await store.commit([IngestUnit([BatchInput(f"{producer}-{name}", seq, [points])])])
        assert outcome[0].points_committed == part.count, outcome[0].warnings
