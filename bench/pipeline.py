"""Benchmark of the metric pipeline: SDK → agent → collector → SQLite, as separate processes.

    python bench/pipeline.py [--points 1000000]

Prints: ns per `run.log` call (median, p99, max block) in a tight loop, and the same while the
background sender is busy (the slowdown); points/s from the first `log` to `flush()` returning;
bytes per point on the wire (agent → collector) and on disk for a noisy float64 loss curve with
consecutive steps; the time to read the series back with `get_metrics()` and `get_metric_series()`.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.procs import Cluster, short_tmpdir  # noqa: E402

BLOCK = 100  # calls timed together; per-call figures are block time / BLOCK


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def time_log_calls(run, n: int, name: str) -> tuple[list[float], float]:
    """Per-call ns for blocks of BLOCK calls; and the longest single block (a stall) in ms."""
    log = run.log
    per_call = []
    worst = 0
    perf = time.perf_counter_ns
    values = np.random.default_rng(1).normal(1.0, 0.1, BLOCK).tolist()
    step = 0
    for _ in range(n // BLOCK):
        t0 = perf()
        for v in values:
            log(name, v, step=step)
            step += 1
        dt = perf() - t0
        per_call.append(dt / BLOCK)
        worst = max(worst, dt)
    return per_call, worst / 1e6


def agent_wire_bytes(cluster: Cluster) -> int | None:
    """Bytes of IngestRequest payloads the agent sent, from its Prometheus counter (if exposed)."""
    return None


def disk_bytes(cluster: Cluster, run_id: str, name: str) -> tuple[int, int]:
    db = next((cluster.root / "collector").glob("*.db"))
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in con.execute("select name from sqlite_master where type='table'")]
        chunk_table = next(t for t in tables if "chunk" in t)
        cols = [r[1] for r in con.execute(f"pragma table_info({chunk_table})")]
        blob_col = next(c for c in cols if c in ("blob", "data", "payload"))
        total = con.execute(f"select sum(length({blob_col})) from {chunk_table}").fetchone()[0] or 0
    finally:
        con.close()
    return int(total), sum(p.stat().st_size for p in (cluster.root / "collector").glob("*.db*"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=1_000_000)
    args = parser.parse_args()
    n = args.points

    cluster = Cluster(short_tmpdir("rwbench")).start()
    os.environ.update(cluster.env())
    from runwire import Experiment, Workspace

    try:
        ws = Workspace.from_config()
        exp = Experiment(ws, "bench")
        print(f"runwire pipeline benchmark: {n:,} points, agent and collector as separate processes")
        print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}")

        # 1. run.log cost in a tight loop, sender idle (bursts with pauses) vs busy (sustained).
        warm = exp.start_logging()
        time_log_calls(warm, 20_000, "warmup")
        warm.complete()
        idle_run = exp.start_logging()
        idle = []
        for _ in range(20):
            idle_run.flush()
            calls, _ = time_log_calls(idle_run, 10_000, "burst")
            idle.extend(calls)
        idle_run.complete()

        # 2. sustained: n points, timed per block, then flush; end-to-end throughput.
        rng = np.random.default_rng(0)
        run = exp.start_logging()
        t0 = time.perf_counter()
        busy, worst_ms = time_log_calls(run, n, "loss")
        t_logged = time.perf_counter()
        run.flush()
        t_flushed = time.perf_counter()
        run.complete()

        print("\nrun.log() per call (blocks of 100 calls)")
        print(f"  sender idle : median {statistics.median(idle):7.0f} ns   p99 {percentile(idle, 99):7.0f} ns")
        print(
            f"  sender busy : median {statistics.median(busy):7.0f} ns   p99 {percentile(busy, 99):7.0f} ns   "
            f"longest block {worst_ms:.2f} ms"
        )
        print(f"  slowdown while the sender works: x{statistics.median(busy) / statistics.median(idle):.2f} (median)")
        print("\nend to end")
        print(f"  {n:,} points logged in {t_logged - t0:.3f} s, flushed (committed) after {t_flushed - t0:.3f} s")
        print(f"  throughput first log -> flush returned: {n / (t_flushed - t0):,.0f} points/s")

        # 3. bytes per point for a noisy float64 loss curve with consecutive steps.
        loss_run = exp.start_logging()
        steps = np.arange(n)
        loss = np.exp(-steps / (n / 5)) + rng.normal(0, 0.01, n)
        log = loss_run.log
        for i, v in enumerate(loss.tolist()):
            log("noisy_loss", v, step=i)
        loss_run.complete()
        from runwire import _batching, codec
        from runwire.v1 import metrics_pb2

        # What crosses the wire is the agent's zstd BatchBundle of the SDK's batches: re-encode the
        # same points the same way, in bundles of the agent's size bound.
        entries = [(loss_run.id, "noisy_loss", float(v), i, 1_700_000_000_000_000_000 + i * 1000) for i, v in
                   enumerate(loss.tolist())]  # fmt: skip
        points = _batching.encode_scalars(entries, {})
        wire = 0
        for group_start in range(0, len(points), 16):
            batches = [metrics_pb2.Batch(producer_id="p" * 32, seq=k, metrics=[mp]) for k, mp in
                       enumerate(points[group_start : group_start + 16])]  # fmt: skip
            wire += len(codec.compress(metrics_pb2.BatchBundle(batches=batches).SerializeToString()))
        chunk_bytes, _ = disk_bytes(cluster, loss_run.id, "noisy_loss")
        print("\nbytes per point, noisy float64 loss curve with consecutive steps")
        print(f"  wire (zstd bundles, as the agent sends them): {wire / n:.2f} B/point")
        print(f"  disk (compressed chunks, all series in store): {chunk_bytes / (3 * n):.2f} B/point (approx.)")

        # 4. reading a 1,000,000-point series back.
        from runwire import Run

        fetched = Run(exp, loss_run.id)
        reads_arrays, reads_dict = [], []
        for _ in range(5):
            t = time.perf_counter()
            s = fetched.get_metric_series("noisy_loss")
            reads_arrays.append(time.perf_counter() - t)
            assert len(s) == n
        for _ in range(3):
            t = time.perf_counter()
            m = fetched.get_metrics(name="noisy_loss")
            reads_dict.append(time.perf_counter() - t)
            assert len(m["noisy_loss"]) == n
        print(f"\nread back {n:,} points")
        print(f"  get_metric_series (numpy arrays): median {statistics.median(reads_arrays) * 1e3:.1f} ms")
        print(f"  get_metrics (Python lists)      : median {statistics.median(reads_dict) * 1e3:.1f} ms")
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
