"""Load generator for several collector replicas (a benchmark that prints, never a test).

    .venv/bin/python bench/loadgen.py --store postgresql://postgres@127.0.0.1:5432/postgres \
        --collectors 1,2,3 --streams 1000 --seconds 20
    .venv/bin/python bench/loadgen.py --store sqlite --collectors 1 --streams 1000

Simulates `--streams` agents: each is one Ingest stream (its own agent id and producer) to one of the
collector replicas (stream i goes to replica i mod N), sending a request of `--metrics` metrics x
`--points` points, waiting for its ack (commit latency = send to ack), then waiting for its next tick
(`--interval-ms`; a stream that falls behind sends at once). The collectors run as real processes on
one fresh PostgreSQL database (created and dropped here) and, with more than one, one fresh NATS
JetStream stream for live fan-out; or one collector on the embedded SQLite store.

A live subscriber on replica 0 follows a probe run written by a stream connected to the LAST replica:
fan-out latency = time the event reached the subscriber - the commit time the writing replica stamped
on it (same machine, same clock).

Prints, per configuration: points/s committed, commit latency median/p99, live fan-out median/p99.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from runwire import limits
from runwire._transports.channel import open_aio_channel
from runwire.v1 import ingest_pb2, ingest_pb2_grpc, live_pb2, live_pb2_grpc, runs_pb2, runs_pb2_grpc
from tests.server.collector_helpers import batch, points, request

OPTIONS = [
    ("grpc.max_receive_message_length", limits.MAX_GRPC_MESSAGE_BYTES),
    ("grpc.max_send_message_length", limits.MAX_GRPC_MESSAGE_BYTES),
]
RUNS = 100
"""Runs the streams write into (stream i writes run i mod RUNS)."""
PROBE_RUN = "probe"


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


@dataclass
class Figures:
    points: int = 0
    latencies: list[float] = field(default_factory=list)
    fanout: list[float] = field(default_factory=list)


def build_stream_requests(
    index: int, count: int, metrics: int, per_metric: int, run_id: str
) -> list[ingest_pb2.IngestRequest]:
    """`count` requests of one simulated agent (its own producer, so seqs never collide)."""
    rng = np.random.default_rng(abs(index))
    producer = f"load-{index}-{uuid.uuid4().hex[:8]}"
    out = []
    for seq in range(1, count + 1):
        steps = np.arange((seq - 1) * per_metric, seq * per_metric)
        ms = [points(run_id, f"m{k}", rng.standard_normal(per_metric), steps=steps) for k in range(metrics)]
        req = request(seq, batch(producer, seq, *ms))
        req.agent_id = producer
        out.append(req)
    return out


async def drive_stream(
    stub: ingest_pb2_grpc.IngestStub, reqs: list, interval: float, deadline: float, figures: Figures
) -> None:
    queue: asyncio.Queue = asyncio.Queue()
    sent_at: dict[int, float] = {}

    async def gen():
        for r in reqs:
            now = time.perf_counter()
            if now >= deadline:
                return
            sent_at[r.seq] = now
            yield r
            await queue.get()  # wait for its ack
            pause = interval - (time.perf_counter() - now)
            if pause > 0:
                await asyncio.sleep(pause)  # the simulated agent's batching interval

    async for ack in stub.Ingest(gen()):
        if ack.status != ingest_pb2.ACK_STATUS_COMMITTED:
            raise RuntimeError(f"request {ack.seq} not committed: {ack.reason}")
        figures.latencies.append(time.perf_counter() - sent_at.pop(ack.seq))
        figures.points += reqs[0].point_count
        queue.put_nowait(None)


async def follow_probe(stub: live_pb2_grpc.LiveStub, figures: Figures, live: asyncio.Event) -> None:
    req = live_pb2.SubscribeRequest(run_id=PROBE_RUN, kinds=[live_pb2.EVENT_KIND_METRIC])
    async for ev in stub.Subscribe(req):
        if ev.kind == live_pb2.EVENT_KIND_LIVE:
            live.set()
        elif ev.kind == live_pb2.EVENT_KIND_METRIC:
            figures.fanout.append(time.time() - ev.time)


async def start_collector(args: list[str], tmp: Path, name: str) -> tuple[asyncio.subprocess.Process, str]:
    ready = tmp / f"{name}.ready.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "runwire.server", "--grpc-listen", "127.0.0.1:0", "--http-listen", "off",
        "--data-dir", str(tmp / name), "--ready-file", str(ready), "--log-level", "warning", "--auth", "off", *args,
        stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    started = time.monotonic()
    while not ready.exists():
        if proc.returncode is not None or time.monotonic() - started > 60:
            raise RuntimeError(f"collector {name} did not start (exit code {proc.returncode})")
        await asyncio.sleep(0.05)
    return proc, json.loads(ready.read_text())["grpc"]


def fresh_database(base_url: str) -> tuple[str, str]:
    """Create a fresh database on the server of `base_url`; its URL and name."""
    import psycopg

    name = f"runwire_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(base_url)
    return urlunsplit(parts._replace(path=f"/{name}")), name


def drop_database(base_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def scenario(args: argparse.Namespace, replicas: int) -> Figures:
    figures = Figures()
    db_name = None
    store_args: list[str] = []
    if args.store != "sqlite":
        url, db_name = fresh_database(args.store)
        store_args = ["--store", url]
    if replicas > 1:
        store_args += ["--bus", f"{args.nats}?stream=rwbench{uuid.uuid4().hex[:8]}"]
    duration = args.seconds
    per_stream = int(duration / (args.interval_ms / 1000)) + 5
    print(f"  building {args.streams} x {per_stream} requests ...", file=sys.stderr, flush=True)
    reqs = [
        build_stream_requests(i, per_stream, args.metrics, args.points, f"load-{i % RUNS}") for i in range(args.streams)
    ]
    probe = build_stream_requests(-1, per_stream, 1, args.points, PROBE_RUN)
    procs: list[asyncio.subprocess.Process] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        try:
            addresses = []
            for r in range(replicas):
                proc, address = await start_collector([*store_args, *args.server_arg], tmp, f"c{r}")
                procs.append(proc)
                addresses.append(address)
            channels = [open_aio_channel(a, None, OPTIONS) for a in addresses]  # its own collectors: --auth off
            runs = runs_pb2_grpc.RunsStub(channels[0])
            for run_id in [*(f"load-{i}" for i in range(min(RUNS, args.streams))), PROBE_RUN]:
                await runs.CreateRun(runs_pb2.CreateRunRequest(experiment_name="load", run_id=run_id))
            live = asyncio.Event()
            follower = asyncio.create_task(follow_probe(live_pb2_grpc.LiveStub(channels[0]), figures, live))
            await asyncio.wait_for(live.wait(), 30)
            interval = args.interval_ms / 1000
            deadline = time.perf_counter() + duration
            started = time.perf_counter()
            ingest = [ingest_pb2_grpc.IngestStub(c) for c in channels]
            probe_figures = Figures()
            await asyncio.gather(
                *(
                    drive_stream(ingest[i % replicas], reqs[i], interval, deadline, figures)
                    for i in range(args.streams)
                ),
                drive_stream(ingest[-1], probe, interval, deadline, probe_figures),
            )
            elapsed = time.perf_counter() - started
            await asyncio.sleep(0.5)  # let the last probe events arrive (a benchmark, not a test)
            follower.cancel()
            figures.points = int(figures.points / elapsed)  # points/s
            for c in channels:
                await c.close()
        finally:
            for p in procs:
                if p.returncode is None:
                    p.send_signal(signal.SIGTERM)
            for p in procs:
                await p.wait()
            if db_name:
                drop_database(args.store, db_name)
    return figures


def row(label: str, f: Figures) -> str:
    lat = [x * 1e3 for x in f.latencies]
    fan = [x * 1e3 for x in f.fanout]
    return (
        f"| {label} | {f.points:,} | {statistics.median(lat):.1f} / {pct(lat, 99):.1f} | "
        f"{statistics.median(fan) if fan else float('nan'):.1f} / {pct(fan, 99):.1f} | {len(f.latencies):,} |"
    )


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", default="postgresql://postgres@127.0.0.1:5432/postgres", help="'sqlite' or a URL")
    ap.add_argument("--nats", default=os.environ.get("RUNWIRE_BENCH_NATS", "nats://127.0.0.1:4222"))
    ap.add_argument("--collectors", default="1,2,3", help="replica counts to run, comma-separated")
    ap.add_argument("--streams", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--interval-ms", type=float, default=200, help="each stream's request interval")
    ap.add_argument("--metrics", type=int, default=4, help="metrics per request")
    ap.add_argument("--points", type=int, default=25, help="points per metric per request")
    ap.add_argument("--server-arg", action="append", default=[], help="extra collector argument (repeatable)")
    args = ap.parse_args()
    print(
        f"{args.streams} streams, every {args.interval_ms:g} ms a request of {args.metrics} x {args.points} points, "
        f"{args.seconds:g} s, store {'sqlite' if args.store == 'sqlite' else 'postgresql'}"
    )
    print("| collectors | points/s committed | commit p50 / p99 (ms) | live fan-out p50 / p99 (ms) | requests |")
    print("|---|---|---|---|---|")
    for n in (int(x) for x in args.collectors.split(",")):
        print(f"running {n} collector(s) ...", file=sys.stderr, flush=True)
        figures = await scenario(args, n)
        store = "SQLite" if args.store == "sqlite" else "PostgreSQL"
        print(row(f"{n} x {store}", figures), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
