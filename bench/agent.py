"""Throughput of the agent's receive path (socket -> validate -> batch -> zstd -> spool).

Not a test (never timed assertions in tests): run it and read the figures.

    .venv/bin/python bench/agent.py [--clients 2] [--batches 400] [--points 4096] [--metrics 4]

SDK clients run in separate processes and send pre-encoded batch frames as fast as the agent
takes them; the figure is measured from the first frame sent to the ack of the last batch, i.e.
everything in the spool. The spool is acknowledged as records are written (no collector), so it
does not fill up.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from runwire import codec
from runwire._runtime import loop_name, run_async
from runwire.frames import SocketReader, pack, parse_agent_frame
from runwire.limits import AGENT_BATCH_MAX_BYTES, PROTOCOL_VERSION
from runwire.v1 import frames_pb2, metrics_pb2


def make_frames(producer: str, batches: int, points: int, metrics: int, steps: bool) -> list[bytes]:
    rows = points // metrics
    rng = np.random.default_rng(0)
    frames = []
    for seq in range(1, batches + 1):
        batch = metrics_pb2.Batch(producer_id=producer, seq=seq)
        base = seq * rows
        for m in range(metrics):
            step = np.arange(base, base + rows, dtype=np.int64)
            ts = 1_700_000_000_000_000 + step * 1234 + rng.integers(0, 50, rows)
            vals = np.cumsum(rng.normal(0, 0.01, rows)) + m
            col = metrics_pb2.Column(name="", type=codec.FLOAT, data=codec.shuffle(vals.astype("<f8")))
            batch.metrics.append(
                codec.encode_points("run-bench", f"metric/{m}", codec.SCALAR, ts, step if steps else None, [col])
            )
        frames.append(pack(frames_pb2.ClientFrame(batch=batch)))
    return frames


def client(path: str, producer: str, batches: int, points: int, metrics: int, steps: bool, go, out) -> None:
    frames = make_frames(producer, batches, points, metrics, steps)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    sock.sendall(
        pack(frames_pb2.ClientFrame(hello=frames_pb2.Hello(protocol_version=PROTOCOL_VERSION, producer_id=producer)))
    )
    reader = SocketReader(sock)
    parse_agent_frame(reader.read())
    done = threading.Event()

    def acks() -> None:
        while True:
            frame = parse_agent_frame(reader.read())
            if frame.WhichOneof("body") == "batch_ack" and frame.batch_ack.seq == batches:
                done.set()
                return

    threading.Thread(target=acks, daemon=True).start()
    nbytes = sum(len(f) for f in frames)
    go.wait()
    t0 = time.perf_counter()
    for f in frames:
        sock.sendall(f)
    done.wait()
    out.put((time.perf_counter() - t0, nbytes))
    sock.close()


async def serve(path: Path, spool_dir: Path, ready, stop) -> None:
    from runwire.agent.batcher import Batcher
    from runwire.agent.metrics import AgentStats
    from runwire.agent.receiver import Receiver
    from runwire.agent.spool import Spool

    spool = Spool(spool_dir)
    spool.open()
    await spool.start()
    loop = asyncio.get_running_loop()
    spool.add_listener(lambda rec: loop.call_soon(spool.ack, rec.seq))
    stats = AgentStats()
    batcher = Batcher(spool, "bench", stats=stats)
    await batcher.start()
    receiver = Receiver(path, batcher, spool, agent_id="bench", stats=stats)
    await receiver.start()
    print(f"agent loop: {loop_name()}", flush=True)
    ready.set()
    await loop.run_in_executor(None, stop.wait)
    await receiver.close()
    await batcher.close()
    await spool.close()
    s = receiver.stats
    print(
        f"agent: {s.batches_received} batches, {s.points_received} points, {s.bundles_cut} bundles, "
        f"{s.spool_bytes_written / 1e6:.1f} MB written to the spool "
        f"(ratio {s.bytes_received / max(1, s.spool_bytes_written):.1f}x)",
        flush=True,
    )


def agent_process(path, spool_dir, ready, stop) -> None:
    run_async(serve(Path(path), Path(spool_dir), ready, stop))


def bench_compress() -> None:
    frames = make_frames("p", 400, 4096, 4, True)
    batches = []
    size = 0
    for f in frames:
        b = frames_pb2.ClientFrame.FromString(f[4:]).batch
        batches.append(b)
        size += len(f)
        if size >= AGENT_BATCH_MAX_BYTES:
            break
    data = metrics_pb2.BatchBundle(batches=batches).SerializeToString()
    codec.compress(data)
    n = 20
    t0 = time.perf_counter()
    for _ in range(n):
        out = codec.compress(data)
    dt = (time.perf_counter() - t0) / n
    print(
        f"compress a {len(data) / 1e6:.2f} MB bundle: {dt * 1e3:.1f} ms ({len(data) / dt / 1e6:.0f} MB/s), "
        f"{len(data) / len(out):.1f}x smaller"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--batches", type=int, default=1000)
    ap.add_argument("--points", type=int, default=4096)
    ap.add_argument("--metrics", type=int, default=4)
    ap.add_argument("--no-steps", action="store_true")
    args = ap.parse_args()
    bench_compress()
    tmp = tempfile.mkdtemp(prefix="rwb-", dir="/tmp")
    try:
        ctx = mp.get_context("spawn")
        ready, stop, go = ctx.Event(), ctx.Event(), ctx.Event()
        out = ctx.Queue()
        path = os.path.join(tmp, "a.sock")
        agent = ctx.Process(target=agent_process, args=(path, os.path.join(tmp, "spool"), ready, stop))
        agent.start()
        if not ready.wait(30):
            agent.terminate()
            raise SystemExit("the agent did not start")
        clients = [
            ctx.Process(
                target=client, args=(path, f"p{i}", args.batches, args.points, args.metrics, not args.no_steps, go, out)
            )
            for i in range(args.clients)
        ]
        for c in clients:
            c.start()
        time.sleep(2.0)  # let the clients encode their frames before the clock starts
        go.set()
        results = [out.get(timeout=300) for _ in clients]
        for c in clients:
            c.join()
        stop.set()
        agent.join(60)
        wall = max(r[0] for r in results)
        points = args.clients * args.batches * args.points
        nbytes = sum(r[1] for r in results)
        print(
            f"{args.clients} clients x {args.batches} batches x {args.points} points "
            f"({nbytes / points:.1f} bytes/point on the socket)"
        )
        print(f"receiver -> spool: {points / wall / 1e6:.2f} M points/s, {nbytes / wall / 1e6:.0f} MB/s ({wall:.2f} s)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
