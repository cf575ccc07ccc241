"""Collector throughput figures (a benchmark that prints, never a test; not collected by pytest).

    .venv/bin/python bench/collector.py [--points 10000000] [--store postgresql://USER@HOST/EMPTY_DB]

Starts `python -m runwire.server` as a subprocess (its store: SQLite in a temporary folder, or `--store`,
which must name an empty database), streams pre-built compressed requests over one or more Ingest
streams and reports committed points per second (first send to last ack) and the commit latency of
one request at a time (send to ack); then times GetMetrics of a 1,000,000-point series, over gRPC and
in the store alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from runwire import limits
from runwire._transports.channel import open_aio_channel
from runwire.server.store.factory import make_store
from runwire.v1 import ingest_pb2, ingest_pb2_grpc, runs_pb2, runs_pb2_grpc
from tests.server.collector_helpers import batch, decode_blobs, points, request

OPTIONS = [
    ("grpc.max_receive_message_length", limits.MAX_GRPC_MESSAGE_BYTES),
    ("grpc.max_send_message_length", limits.MAX_GRPC_MESSAGE_BYTES),
]


def build_requests(run_id: str, total: int, series: int, per_metric: int, producer: str, per_request: int) -> list:
    rng = np.random.default_rng(0)
    reqs, seq, done = [], 0, 0
    # metrics per request: as many as fit a ~4 MB agent bundle, or `per_request`
    per_request = per_request or max(1, limits.AGENT_BATCH_MAX_BYTES // (per_metric * 24))
    while done < total:
        metrics = []
        for _ in range(per_request):
            name = f"m{(done // per_metric) % series}"
            metrics.append(points(run_id, name, rng.standard_normal(per_metric), steps=np.arange(per_metric)))
            done += per_metric
            if done >= total:
                break
        seq += 1
        # one SDK batch per bundle of at most SDK_BATCH_MAX_POINTS points
        batches, cur, n = [], [], 0
        for m in metrics:
            if cur and n + m.count > limits.SDK_BATCH_MAX_POINTS:
                batches.append(cur)
                cur, n = [], 0
            cur.append(m)
            n += m.count
        batches.append(cur)
        reqs.append(request(seq, *[batch(producer, seq * 1000 + i, *b) for i, b in enumerate(batches)]))
    return reqs


async def stream(ingest, reqs) -> int:
    async def gen():
        for r in reqs:
            yield r

    acks = [a async for a in ingest.Ingest(gen())]
    assert all(a.status == ingest_pb2.ACK_STATUS_COMMITTED and not a.warnings for a in acks), acks[:1]
    return len(acks)


async def lockstep(ingest, reqs) -> list[float]:
    """Seconds from sending each request to its ack, one request in flight at a time."""
    call = ingest.Ingest()
    seconds = []
    for r in reqs:
        started = time.perf_counter()
        await call.write(r)
        ack = await call.read()
        seconds.append(time.perf_counter() - started)
        assert ack.status == ingest_pb2.ACK_STATUS_COMMITTED and not ack.warnings, ack
    await call.done_writing()
    return seconds


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=10_000_000)
    ap.add_argument("--store", default=None, help="the collector's --store (an empty database); default SQLite")
    args = ap.parse_args()
    store_args = ["--store", args.store] if args.store else []
    with tempfile.TemporaryDirectory() as tmp:
        ready = Path(tmp) / "ready.json"
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "runwire.server", "--grpc-listen", "127.0.0.1:0", "--http-listen", "off",
            "--data-dir", tmp, "--ready-file", str(ready), "--log-level", "warning", "--auth", "off", *store_args,
            stdout=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        while not ready.exists():
            await asyncio.sleep(0.05)
        address = json.loads(ready.read_text())["grpc"]
        async with open_aio_channel(address, None, OPTIONS) as ch:  # its own collector: --auth off
            runs = runs_pb2_grpc.RunsStub(ch)
            ingest = ingest_pb2_grpc.IngestStub(ch)
            scenarios = [
                ("large float batches, 1 stream", args.points, 10, 65_536, 1, 0),
                ("large float batches, 4 streams", args.points, 10, 65_536, 4, 0),
                ("small batches (1,000 points/metric), 1 stream", args.points // 5, 200, 1_000, 1, 0),
                ("tiny batches (100 points/metric), 1 stream", args.points // 20, 500, 100, 1, 0),
                ("trickle: 100 series x 10 points per request, 1 stream", args.points // 10, 100, 10, 1, 100),
                ("trickle: 1,000 series x 1 point per request, 1 stream", args.points // 50, 1000, 1, 1, 1000),
            ]
            for i, (label, total, nseries, per_metric, nstreams, per_request) in enumerate(scenarios):
                run_id = f"bench{i}"
                await runs.CreateRun(runs_pb2.CreateRunRequest(experiment_name="bench", run_id=run_id))
                parts = [
                    build_requests(run_id, total // nstreams, nseries, per_metric, f"prod{s}", per_request)
                    for s in range(nstreams)
                ]
                started = time.perf_counter()
                await asyncio.gather(*(stream(ingest, p) for p in parts))
                elapsed = time.perf_counter() - started
                print(f"ingest {label}: {total:,} points in {elapsed:.2f} s = {total / elapsed:,.0f} points/s")

            # Trickle into long series: the open tail of each series is already large.
            await runs.CreateRun(runs_pb2.CreateRunRequest(experiment_name="bench", run_id="long"))
            await stream(ingest, build_requests("long", 100 * 60_000, 100, 60_000, "prefill", 1))
            trickle = build_requests("long", 100 * 100, 100, 1, "trickle", 100)
            started = time.perf_counter()
            await stream(ingest, trickle)
            elapsed = time.perf_counter() - started
            print(
                f"ingest trickle into long series: 100 series of 60,000 rows x 1 point per request: "
                f"{10_000:,} points in {elapsed:.2f} s = {10_000 / elapsed:,.0f} points/s"
            )

            await runs.CreateRun(runs_pb2.CreateRunRequest(experiment_name="bench", run_id="latency"))
            one_by_one = build_requests("latency", 300 * 100, 10, 100, "latency", 1)
            seconds = sorted(await lockstep(ingest, one_by_one))
            print(
                f"commit latency, one request (100 points) at a time, send to ack: median "
                f"{seconds[len(seconds) // 2] * 1e3:.2f} ms, p99 {seconds[int(len(seconds) * 0.99)] * 1e3:.2f} ms"
            )

            n = 1_000_000
            await runs.CreateRun(runs_pb2.CreateRunRequest(experiment_name="bench", run_id="read"))
            vals = np.random.default_rng(1).standard_normal(n)
            await stream(ingest, [request(1, batch("reader", 1, points("read", "loss", vals, steps=np.arange(n))))])
            timings = []
            for _ in range(5):
                started = time.perf_counter()
                msgs = [m async for m in runs.GetMetrics(runs_pb2.GetMetricsRequest(run_id="read"))]
                timings.append(time.perf_counter() - started)
            blobs = [c for m in msgs for c in m.chunks]
            decoded_at = time.perf_counter()
            decoded = decode_blobs(blobs)
            decode_s = time.perf_counter() - decoded_at
            assert np.array_equal(decoded.columns[""].values, vals)
            print(
                f"GetMetrics 1,000,000 points over gRPC (client round trip): best {min(timings) * 1e3:.1f} ms, "
                f"{len(msgs)} messages, {sum(map(len, blobs)) / 1e6:.1f} MB of chunks; "
                f"client decode {decode_s * 1e3:.0f} ms"
            )
        proc.send_signal(signal.SIGTERM)
        await proc.wait()

        store = make_store(args.store, Path(tmp))
        await store.open()
        try:
            timings = []
            for _ in range(5):
                started = time.perf_counter()
                async for snap in store.read_metrics("read"):
                    missing = [c.chunk_no for c, b in zip(snap.chunks, snap.blobs, strict=True) if b is None]
                    if missing:
                        await store.read_chunks(snap.series_id, missing)
                timings.append(time.perf_counter() - started)
            print(f"GetMetrics 1,000,000 points, store read alone: best {min(timings) * 1e3:.1f} ms")
        finally:
            await store.close()


if __name__ == "__main__":
    asyncio.run(main())
