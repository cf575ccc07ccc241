"""The SDK's encoder: buffered calls become columnar MetricPoints that decode to what was logged."""

from __future__ import annotations

import math

import numpy as np

from runwire import _batching, codec
from runwire.limits import SDK_BATCH_MAX_POINTS


def flat(entries):
    return [item for entry in entries for item in entry]


def _decode(points):
    return {(mp.run_id, mp.name): codec.decode_points(mp) for mp in points}


def test_scalars_grouped_per_run_and_metric_in_order():
    entries = []
    for i in range(10):
        entries.append(("r1", "loss", 1.0 / (i + 1), i, 1_000_000_000 + i * 1000))
        entries.append(("r2", "acc", i, None, 1_000_000_000 + i * 1000))
    descriptions = {("r1", "loss"): "training loss"}
    points = _batching.encode_scalars(flat(entries), descriptions)
    decoded = _decode(points)
    loss = decoded[("r1", "loss")]
    assert loss.columns[""].to_python(10) == [1.0 / (i + 1) for i in range(10)]
    assert loss.steps.tolist() == list(range(10))
    assert loss.timestamps.tolist() == [1_000_000 + i for i in range(10)]
    acc = decoded[("r2", "acc")]
    assert acc.columns[""].type == codec.INT and acc.steps is None
    assert [mp.description for mp in points if mp.name == "loss"] == ["training loss"]
    assert descriptions == {}


def test_mixed_values_split_into_consistent_segments():
    entries = [("r", "m", val, None, 1000 * i) for i, val in enumerate([1, 2.5, "x", None, "y", 3])]
    points = _batching.encode_scalars(flat(entries), {})
    assert [codec.decode_points(mp).count for mp in points] == [2, 3, 1]


def test_nan_none_and_partial_steps():
    entries = [("r", "m", float("nan"), 1, 0), ("r", "m", None, None, 1000), ("r", "m", 2.0, 3, 2000)]
    (mp,) = _batching.encode_scalars(flat(entries), {})
    d = codec.decode_points(mp)
    values = d.columns[""].to_python(3)
    assert math.isnan(values[0]) and values[1] is None and values[2] == 2.0
    assert d.steps.tolist() == [1, codec.NO_STEP, 3]


def test_large_groups_are_split():
    n = SDK_BATCH_MAX_POINTS + 10
    entries = [("r", "m", float(i), None, i) for i in range(n)]
    points = _batching.encode_scalars(flat(entries), {})
    assert [mp.count for mp in points] == [SDK_BATCH_MAX_POINTS, 10]


def test_lists_and_tables_merge_consecutive_calls_with_missing_columns():
    entries = [
        (codec.LIST, "r", "fib", {"": [0, 1, 1]}, 3, 5_000),
        (codec.LIST, "r", "fib", {"": [2.5]}, 1, 6_000),
        (codec.TABLE, "r", "t", {"x": [1], "y": [0.4]}, 1, 7_000),
        (codec.TABLE, "r", "t", {"x": [2], "z": ["a"]}, 1, 8_000),
    ]
    points = _batching.encode_others(entries, {})
    decoded = _decode(points)
    fib = decoded[("r", "fib")]
    assert fib.columns[""].to_python(4) == [0.0, 1.0, 1.0, 2.5]
    t = decoded[("r", "t")]
    assert {k: c.to_python(2) for k, c in t.columns.items()} == {"x": [1, 2], "y": [0.4, None], "z": [None, "a"]}


def test_long_strings_split_to_fit_a_frame():
    big = "s" * 4000
    entries = [("r", "notes", big, None, i) for i in range(5000)]  # ~20 MB of strings
    points = _batching.encode_scalars(flat(entries), {})
    assert len(points) > 1
    assert all(mp.ByteSize() <= _batching.SDK_BATCH_TARGET_BYTES for mp in points)
    assert sum(mp.count for mp in points) == 5000
    batches = list(_batching.pack_batches(points))
    assert sum(len(b) for b in batches) == len(points)


def test_bytes_per_point_for_a_noisy_loss_curve():
    rng = np.random.default_rng(0)
    n = 100_000
    loss = np.exp(-np.arange(n) / 20_000) + rng.normal(0, 0.01, n)
    entries = [("r", "loss", float(x), i, 1_700_000_000_000_000_000 + i * 900) for i, x in enumerate(loss)]
    (mp, *rest) = _batching.encode_scalars(flat(entries), {})
    payload = codec.compress(b"".join(p.SerializeToString() for p in [mp, *rest]))
    assert len(payload) / n < 10
