"""Builders and readers shared by the collector tests (imported by name: tests/server is on sys.path)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

import numpy as np

from runwire import codec
from runwire.v1 import ingest_pb2, metrics_pb2, runs_pb2

T0_US = 1_700_000_000_000_000


def column(name: str, values: Sequence | np.ndarray, vtype: int | None = None) -> metrics_pb2.Column:
    """A wire column; a float64/int64 numpy array is encoded without going through Python objects."""
    if isinstance(values, np.ndarray):
        vtype = codec.FLOAT if values.dtype.kind == "f" else codec.INT
        dtype = "<f8" if vtype == codec.FLOAT else "<i8"
        return metrics_pb2.Column(name=name, type=vtype, data=codec.shuffle(values.astype(dtype)))
    return codec.encode_column(name, list(values), vtype)


def points(
    run_id: str,
    name: str,
    values: Sequence | np.ndarray | None = None,
    *,
    kind: int = codec.SCALAR,
    table: dict[str, Sequence | np.ndarray] | None = None,
    steps: Sequence[int] | np.ndarray | None = None,
    description: str = "",
    t0_us: int = T0_US,
) -> metrics_pb2.MetricPoints:
    if table is not None:
        kind = codec.TABLE
        cols = [column(k, v) for k, v in table.items()]
        count = len(next(iter(table.values())))
    else:
        cols = [column("", values)]
        count = len(values)
    ts = t0_us + np.arange(count, dtype=np.int64) * 1000
    return codec.encode_points(
        run_id, name, kind, ts, None if steps is None else np.asarray(steps, np.int64), cols, description
    )


def batch(producer: str, seq: int, *metrics: metrics_pb2.MetricPoints) -> metrics_pb2.Batch:
    return metrics_pb2.Batch(producer_id=producer, seq=seq, metrics=metrics)


def request(seq: int, *batches: metrics_pb2.Batch, compress: bool = True) -> ingest_pb2.IngestRequest:
    raw = metrics_pb2.BatchBundle(batches=batches).SerializeToString()
    return ingest_pb2.IngestRequest(
        agent_id="test-agent",
        seq=seq,
        codec=ingest_pb2.CODEC_ZSTD if compress else ingest_pb2.CODEC_NONE,
        payload=codec.compress(raw) if compress else raw,
        batch_count=len(batches),
        point_count=sum(m.count for b in batches for m in b.metrics),
    )


def decode_blobs(blobs: Sequence[bytes]) -> codec.DecodedPoints:
    return codec.concat([codec.decode_chunk(b) for b in blobs])


def column_values(points: codec.DecodedPoints, name: str = "") -> list:
    return points.columns[name].to_python(points.count)


def group_metric_data(messages: Sequence[runs_pb2.MetricData]) -> dict[tuple[str, str], list[runs_pb2.MetricData]]:
    out: dict[tuple[str, str], list[runs_pb2.MetricData]] = {}
    for m in messages:
        out.setdefault((m.run_id, m.name), []).append(m)
    return out


async def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.01) -> None:
    """Wait until `predicate()` is true (polling a condition, never a blind sleep)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)
