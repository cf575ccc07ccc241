"""Benchmark of the studio's JSON API, against a real collector process over HTTP.

    python bench/studio_api.py [--runs 5000] [--points 1000000] [--repeats 200]

The data is written into the collector's SQLite file before the collector starts (through the
store's own write path: `SqliteStore.create_run` and `commit`), then `runwire.server` serves it:

1. The runs table of an experiment of `--runs` runs (each with metrics `loss` and `acc`, a quarter
   of them Failed): filtered by status, sorted by a metric's last value, with two metric columns,
   first page and last page; and the experiments list.
2. GET series of a `--points`-point scalar metric with width=1000 (whole range, and zoomed to 1%).

Prints median and p99 latency (client-side, keep-alive connection) of each request.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import quote

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runwire import codec  # noqa: E402
from runwire.server.app import SQLITE_FILE  # noqa: E402
from runwire.server.records import (  # noqa: E402
    BatchInput,
    IngestUnit,
    NewRun,
    PointsInput,
    RunTableQuery,
    RunUpdate,
)
from runwire.server.store.sqlite import SqliteStore  # noqa: E402
from tests.procs import Proc, short_tmpdir  # noqa: E402
from tests.server.big_series import scalar_points, store_scalars  # noqa: E402

EXPERIMENT = "bench-table"


async def populate(path: Path, runs: int, points: int) -> None:
    store = SqliteStore(path)
    await store.open()
    try:
        rng = np.random.default_rng(0)
        metrics = []
        for i in range(runs):
            status = "Running"
            await store.create_run(NewRun(EXPERIMENT, f"run-{i:05d}", status, display_name=f"trial {i}"))
            if i % 4 == 0:
                await store.update_run(RunUpdate(f"run-{i:05d}", status="Failed"))
            elif i % 4 == 1:
                await store.update_run(RunUpdate(f"run-{i:05d}", status="Completed"))
            for name in ("loss", "acc"):
                part = scalar_points(rng.random(20), np.arange(20))
                metrics.append(PointsInput(f"run-{i:05d}", name, codec.SCALAR, "", part.count, part))
        for seq, lo in enumerate(range(0, len(metrics), 2000), start=1):
            await store.commit([IngestUnit([BatchInput("bench-table", seq, metrics[lo : lo + 2000])])])
        await store.create_run(NewRun("bench-series", "big", "Running"))
        y = rng.random(points)
        y[int(rng.integers(points))] = 1e9
        await store_scalars(store, "big", "loss", y, np.arange(points))
    finally:
        await store.close()


async def store_query(path: Path, repeats: int) -> tuple[float, float]:
    """The runs-table query in the store alone (no HTTP, no JSON): median and p99 in ms."""
    store = SqliteStore(path)
    await store.open()
    try:
        query = RunTableQuery(
            EXPERIMENT, statuses=["Completed"], sort="metric", sort_metric="loss", metrics=["loss", "acc"]
        )
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            await store.query_run_table(query)
            times.append(time.perf_counter() - t0)
    finally:
        await store.close()
    times.sort()
    return statistics.median(times) * 1000, times[min(len(times) - 1, round(0.99 * (len(times) - 1)))] * 1000


def measure(conn: http.client.HTTPConnection, path: str, repeats: int) -> tuple[float, float, int]:
    times = []
    size = 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        times.append(time.perf_counter() - t0)
        assert resp.status == 200, (path, resp.status, body[:300])
        size = len(body)
    times.sort()
    p99 = times[min(len(times) - 1, round(0.99 * (len(times) - 1)))]
    return statistics.median(times) * 1000, p99 * 1000, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    root = short_tmpdir()
    data = root / "collector"
    data.mkdir(parents=True)
    t0 = time.perf_counter()
    asyncio.run(populate(data / SQLITE_FILE, args.runs, args.points))
    print(f"populated {args.runs} runs and a {args.points:,}-point metric in {time.perf_counter() - t0:.1f} s")
    med, p99 = asyncio.run(store_query(data / SQLITE_FILE, args.repeats))
    print(f"runs-table query in the store alone (status, metric sort, 2 metric columns): {med:.1f} / {p99:.1f} ms")
    server = Proc(
        "collector",
        ["runwire.server", "--data-dir", str(data), "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
         "--log-level", "warning", "--auth", "off"],
        root / "server.json",
        root / "server.log",
    ).start()  # fmt: skip
    try:
        host, port = server.info["http"].rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        table = f"/api/v1/experiments/{EXPERIMENT}/runs"
        sort = quote("metric:loss:last", safe="")
        last_page = (args.runs // 4) - 100
        cases = [
            ("experiments list", "/api/v1/experiments", args.repeats),
            (
                f"runs table, {args.runs} runs: status=Completed, sort by loss last, 2 metric columns, 100 rows",
                f"{table}?status=Completed&sort={sort}&metrics=loss&metrics=acc&limit=100",
                args.repeats,
            ),
            (
                "  same, last page",
                f"{table}?status=Completed&sort={sort}&metrics=loss&metrics=acc&limit=100&offset={max(last_page, 0)}",
                args.repeats,
            ),
            ("  all runs, sort by created, 100 rows", f"{table}?limit=100&metrics=loss", args.repeats),
            ("  all runs, text search 'trial 12'", f"{table}?q={quote('trial 12')}&metrics=loss", args.repeats),
            (
                f"series of {args.points:,} points, width=1000",
                "/api/v1/runs/big/metrics/loss/series?width=1000",
                max(20, args.repeats // 10),
            ),
            (
                "  zoomed to 1% of x",
                f"/api/v1/runs/big/metrics/loss/series?width=1000&x_min={args.points // 2}"
                f"&x_max={args.points // 2 + args.points // 100}",
                max(20, args.repeats // 10),
            ),
        ]
        measure(conn, cases[1][1], 5)  # warm up
        print(f"{'request':<100} {'median ms':>10} {'p99 ms':>8} {'bytes':>9}")
        for label, path, repeats in cases:
            med, p99, size = measure(conn, path, repeats)
            print(f"{label:<100} {med:>10.1f} {p99:>8.1f} {size:>9}")
        conn.request("GET", cases[5][1])
        body = json.loads(conn.getresponse().read())
        print(f"series answer: {len(body['x'])} points, spike kept: {1e9 in body['y']}")
        conn.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
