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
import socket
import sqlite3
import statistics
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.procs import Cluster, short_tmpdir

BLOCK = 100  # calls timed together; per-call figures are block time / BLOCK


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def agent_counter(cluster: Cluster, name: str) -> float:
    """One counter from the agent's Prometheus endpoint."""
    with urllib.request.urlopen(f"http://{cluster.agent_http}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(f"runwire_agent_{name}") and not line.startswith("#"):
                return float(line.split()[-1])
    raise KeyError(name)


def disk_bytes(cluster: Cluster, run_id: str, name: str) -> int:
    """Bytes of the stored chunks of one series."""
    db = next((cluster.root / "collector").glob("*.sqlite3"))
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        row = con.execute(
            "select sum(length(c.blob)) from chunks c join series s on s.id = c.series_id "
            "where s.run_id = ? and s.name = ?",
            (run_id, name),
        ).fetchone()
    finally:
        con.close()
    return int(row[0] or 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=1_000_000)
    args = parser.parse_args()
    n = args.points

    agent_http = f"127.0.0.1:{free_port()}"
    cluster = Cluster(short_tmpdir("rwbench"), agent_args=["--http-listen", agent_http]).start()
    cluster.agent_http = agent_http
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
        loss = (np.exp(-steps / (n / 5)) + rng.normal(0, 0.01, n)).tolist()
        wire_before = agent_counter(cluster, "spool_bytes_written")
        log = loss_run.log
        for i in range(n):
            log("noisy_loss", loss[i], step=i)
        loss_run.complete()
        wire = agent_counter(cluster, "spool_bytes_written") - wire_before
        chunk_bytes = disk_bytes(cluster, loss_run.id, "noisy_loss")
        print("\nbytes per point, noisy float64 loss curve with consecutive steps")
        print(f"  wire (agent -> collector IngestRequests, zstd): {wire / n:.2f} B/point")
        print(f"  disk (stored compressed chunks of the series): {chunk_bytes / n:.2f} B/point")

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
