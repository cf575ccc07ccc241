"""Benchmark of live fan-out across collector replicas (NATS JetStream bus).

    python bench/live_replicas.py [--probes 500] [--interval-ms 10] [--nats nats://127.0.0.1:4222]
                                  [--store postgresql://...]

Two collector processes on one fresh NATS stream (`--bus`), an agent on collector B. This process
logs a `probe` point through B's agent every `--interval-ms`; two raw gRPC Live subscribers, one on
A and one on B, time each probe's arrival:

- commit→event: from B's commit (the time the committing collector stamps on the event, carried
  across the bus) to the subscriber receiving it; on B that is the in-process bus, on A the path
  B → NATS JetStream (acked publish) → A's ordered consumer → A's in-process fan-out;
- log→event: from `run.log()` to the subscriber receiving it (SDK, agent, ingest and commit too).

Without `--store` each collector has its own SQLite file (the subscribers are unscoped, so neither
needs the other's runs; the bus is what is measured); with `--store URL` both share it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.natsd import NATS_URL, delete_stream_sync, fresh_stream, skip_reason  # noqa: E402
from tests.procs import Cluster  # noqa: E402


def subscriber(address: str, out: list[tuple[float, float, float]], ready: threading.Event, stop: threading.Event):
    """A raw Live stream for metric `probe`: (received, committed, logged) per point."""
    import grpc

    from runwire import codec
    from runwire._transports.channel import open_channel
    from runwire.v1 import live_pb2, live_pb2_grpc

    channel = open_channel(address)
    stream = live_pb2_grpc.LiveStub(channel).Subscribe(
        live_pb2.SubscribeRequest(metrics=["probe"], kinds=[live_pb2.EVENT_KIND_METRIC])
    )

    def cancel_on_stop() -> None:
        stop.wait()
        stream.cancel()

    threading.Thread(target=cancel_on_stop, daemon=True).start()
    try:
        for message in stream:
            now = time.time()
            if message.kind == live_pb2.EVENT_KIND_LIVE:
                ready.set()
                continue
            for m in message.metrics:
                for v in codec.decode_points(m.points).columns[""].values.tolist():
                    out.append((now, message.time, v))
    except grpc.RpcError:
        pass
    finally:
        channel.close()


def pct(values: list[float]) -> dict[str, float]:
    a = np.asarray(values) * 1000
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)), "max_ms": float(a.max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--probes", type=int, default=500)
    parser.add_argument("--interval-ms", type=float, default=10.0)
    parser.add_argument("--nats", default=NATS_URL)
    parser.add_argument("--store", default=None, help="a store URL both collectors share (default: one SQLite each)")
    args = parser.parse_args()
    reason = skip_reason(args.nats)
    if reason:
        sys.exit(reason)
    stream = fresh_stream("RWBENCH")
    common = ["--bus", args.nats, "--bus-stream", stream, *(["--store", args.store] if args.store else [])]
    a = Cluster(server_args=common, log_level="warning")
    b = Cluster(server_args=common, log_level="warning")
    try:
        a.start_server()
        b.start()
        for key, value in b.env().items():
            os.environ[key] = value
        from runwire import Experiment, Workspace

        run = Experiment(Workspace.from_config(), "bench-replicas").start_logging(snapshot_directory=None)
        got: dict[str, list] = {"A": [], "B": []}
        stop = threading.Event()
        threads = []
        for name, cluster in (("A", a), ("B", b)):
            ready = threading.Event()
            t = threading.Thread(target=subscriber, args=(cluster.collector, got[name], ready, stop), daemon=True)
            t.start()
            if not ready.wait(30):
                raise RuntimeError(f"the subscriber on {name} did not start")
            threads.append(t)
        run.log("probe", time.time(), step=0)  # warm-up (connections, first commit)
        run.flush()
        deadline = time.monotonic() + 30
        while (len(got["A"]) < 1 or len(got["B"]) < 1) and time.monotonic() < deadline:
            time.sleep(0.01)
        for name in got:
            got[name].clear()
        for i in range(args.probes):
            run.log("probe", time.time(), step=i + 1)
            time.sleep(args.interval_ms / 1000)
        run.flush()
        deadline = time.monotonic() + 60
        while (len(got["A"]) < args.probes or len(got["B"]) < args.probes) and time.monotonic() < deadline:
            time.sleep(0.01)
        stop.set()
        run.complete()
        result = {"probes": args.probes, "interval_ms": args.interval_ms, "store": args.store or "sqlite each"}
        for name, where in (("B", "same collector (in-process bus)"), ("A", "other replica (NATS JetStream)")):
            rows = got[name]
            result[name] = {
                "where": where,
                "received": len(rows),
                "commit_to_event": pct([r - c for r, c, _ in rows]),
                "log_to_event": pct([r - logged for r, _, logged in rows]),
            }
        print(json.dumps(result, indent=2))
    finally:
        b.stop()
        a.stop()
        delete_stream_sync(args.nats, stream)


if __name__ == "__main__":
    main()
