"""Benchmark of live subscriptions, with collector and agent as separate processes.

    python bench/live.py [--seconds 6] [--probes 250] [--points 1000000]

1. Latency from `run.log()` to a subscriber receiving the point (p50, p99, max), while another
   process logs 100,000 points/s into another run, with 1 and with 100 subscribers (the 99 others
   in a separate process, all subscribed to the probe run).
2. Ingest throughput (first `log` to `flush()` returning, in a separate writer process) with 0
   subscribers, with 100 subscribers watching one low-rate metric of the run being written (a
   dashboard), and with 100 subscribers taking every point (they fall behind and are told so).

The roles run as subprocesses of this script (`--role traffic|drain|writer`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.procs import Cluster  # noqa: E402

TRAFFIC_POINTS_PER_S = 100_000
NICE = int(os.environ.get("RUNWIRE_BENCH_DRAIN_NICE", "0"))
SLICE_S = 0.01


# --- roles (subprocesses) ------------------------------------------------------------------------


def role_traffic(seconds: float) -> None:
    """Log TRAFFIC_POINTS_PER_S points/s (10 metrics, paced in 10 ms slices) for `seconds`."""
    from runwire import Experiment, Workspace

    run = Experiment(Workspace.from_config(), "bench-traffic").start_logging(snapshot_directory=None)
    per_slice = int(TRAFFIC_POINTS_PER_S * SLICE_S) // 10
    names = [f"traffic_{i}" for i in range(10)]
    print("ready", flush=True)
    start = time.perf_counter()
    n = step = 0
    while time.perf_counter() - start < seconds:
        for _ in range(per_slice):
            for name in names:
                run.log(name, 0.5, step=step)
            step += 1
        n += per_slice * 10
        target = start + (n / TRAFFIC_POINTS_PER_S)
        delay = target - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    run.flush()
    elapsed = time.perf_counter() - start
    print(json.dumps({"traffic_points": n, "traffic_rate": n / elapsed}), flush=True)
    run.complete()


def role_drain(count: int, run_id: str, experiment: str, metrics: str) -> None:
    """`count` subscribers (grpc.aio streams on one event loop) reading as fast as they can. They
    count points from the raw messages, as a relay or a browser bridge would, rather than making a
    Python object per point: the figures are then the collector's fan-out cost. Stdin gives the
    points each should get; they stop when they have them (received or reported missed) or when
    nothing came for 3 s. With --nice N the subscribers run at that niceness: on a small machine
    they then take only spare CPU, as subscribers on other machines would."""
    import asyncio

    if NICE:
        os.nice(NICE)

    import grpc

    from runwire._transports.channel import ClientSecurity, open_aio_channel
    from runwire.live import build_request
    from runwire.v1 import live_pb2, live_pb2_grpc

    async def main() -> None:
        channel = open_aio_channel(os.environ["RUNWIRE_COLLECTOR"], ClientSecurity.from_env())
        stub = live_pb2_grpc.LiveStub(channel)
        request = build_request(run_id=run_id, experiment_name=experiment, metrics=metrics or None)
        received = [0] * count
        lagged = [0] * count
        last = [time.monotonic()]
        started = [asyncio.get_running_loop().create_future() for _ in range(count)]

        async def drain(i: int) -> None:
            try:
                async for message in stub.Subscribe(request):
                    last[0] = time.monotonic()
                    if message.kind == live_pb2.EVENT_KIND_LIVE:
                        started[i].set_result(None)
                    elif message.kind == live_pb2.EVENT_KIND_LAGGED:
                        lagged[i] += message.lagged.points
                    else:
                        received[i] += sum(m.points.count for m in message.metrics)
            except (grpc.aio.AioRpcError, asyncio.CancelledError):
                pass

        tasks = [asyncio.create_task(drain(i)) for i in range(count)]
        await asyncio.gather(*started)
        print("ready", flush=True)
        line = await asyncio.to_thread(sys.stdin.readline)
        expected = int(line or 0)
        while time.monotonic() - last[0] < 3.0:
            if all(r + g >= expected for r, g in zip(received, lagged, strict=True)):
                break
            await asyncio.sleep(0.05)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await channel.close()
        print(json.dumps({"received": sum(received), "lagged_points": sum(lagged)}), flush=True)

    asyncio.run(main())


def role_writer(points: int, experiment: str) -> None:
    """Log `points` points as fast as possible (10 metrics; `loss` every 1,000th step), flush."""
    from runwire import Experiment, Workspace

    run = Experiment(Workspace.from_config(), experiment).start_logging(snapshot_directory=None)
    names = [f"m{i}" for i in range(10)]
    values = np.random.default_rng(1).normal(1.0, 0.1, 1000).tolist()
    log = run.log
    start = time.perf_counter()
    n = 0
    step = 0
    while n < points:
        for v in values:
            for name in names:
                log(name, v, step=step)
            step += 1
        log("loss", values[0], step=step)
        n += len(values) * len(names) + 1
    run.flush()
    elapsed = time.perf_counter() - start
    print(json.dumps({"points": n, "seconds": elapsed, "rate": n / elapsed}), flush=True)
    run.complete()


# --- driver -----------------------------------------------------------------------------------------


def spawn(env: dict[str, str], *args: str, stdin: bool = False) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, __file__, *args],
        env={**os.environ, **env},
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )


def wait_ready(proc: subprocess.Popen) -> None:
    line = proc.stdout.readline()
    if line.strip() != "ready":
        raise RuntimeError(f"role did not start: {line!r}")


def latency(cluster: Cluster, env: dict[str, str], subscribers: int, probes: int, seconds: float) -> dict:
    from runwire import Experiment, Workspace

    run = Experiment(Workspace.from_config(), "bench-probe").start_logging(snapshot_directory=None)
    drain = None
    if subscribers > 1:
        drain = spawn(env, "--role", "drain", "--count", str(subscribers - 1), "--run-id", run.id, stdin=True)
        wait_ready(drain)
    traffic = spawn(env, "--role", "traffic", "--seconds", str(seconds))
    wait_ready(traffic)
    sub = run.subscribe(metrics="probe")
    time.sleep(0.5)  # let the traffic reach its steady rate
    lat = []
    interval = max(0.005, (seconds - 1.0) / probes)
    for i in range(probes):
        sent = time.time()
        run.log("probe", sent, step=i)
        ev = sub.next_event(5.0)
        while ev is not None and ev.kind != "metric":
            ev = sub.next_event(5.0)
        if ev is None:
            raise RuntimeError("a probe point never arrived")
        lat.append((time.time() - ev.value) * 1000)
        time.sleep(max(0.0, interval - (time.time() - sent)))
    sub.close()
    out = json.loads(traffic.stdout.readline())
    traffic.wait(60)
    if drain is not None:
        drain.stdin.write(f"{probes}\n")
        drain.stdin.close()
        out.update(json.loads(drain.stdout.readline()))
        drain.wait(60)
    run.complete()
    a = np.asarray(lat)
    return {
        "subscribers": subscribers,
        "probes": len(lat),
        "p50_ms": float(np.percentile(a, 50)),
        "p99_ms": float(np.percentile(a, 99)),
        "max_ms": float(a.max()),
        **out,
    }


def throughput(env: dict[str, str], points: int, subscribers: int, metrics: str, tag: str) -> dict:
    experiment = f"bench-ingest-{tag}"
    drain = None
    if subscribers:
        drain = spawn(
            env, "--role", "drain", "--count", str(subscribers), "--experiment", experiment, "--metrics", metrics,
            stdin=True,
        )  # fmt: skip
        wait_ready(drain)
    writer = spawn(env, "--role", "writer", "--points", str(points), "--experiment", experiment)
    out = json.loads(writer.stdout.readline())
    writer.wait(120)
    if drain is not None:
        drain.stdin.write(f"{out['points'] if not metrics else out['points'] // 10_001}\n")
        drain.stdin.close()
        out.update(json.loads(drain.stdout.readline()))
        drain.wait(60)
    return {"subscribers": subscribers, "watching": metrics or "every point", **out}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--role", default="")
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--probes", type=int, default=250)
    p.add_argument("--points", type=int, default=1_000_000)
    p.add_argument("--count", type=int, default=0)
    p.add_argument("--run-id", default="")
    p.add_argument("--experiment", default="")
    p.add_argument("--metrics", default="")
    p.add_argument("--batch-delay-ms", type=int, default=10)
    p.add_argument("--repeat", type=int, default=2, help="throughput runs per configuration (best kept)")
    p.add_argument("--only", choices=["latency", "throughput"], default=None)
    p.add_argument("--nice", type=int, default=0, help="niceness of the subscriber processes (0-19)")
    args = p.parse_args()
    if args.role == "traffic":
        return role_traffic(args.seconds)
    if args.role == "drain":
        return role_drain(args.count, args.run_id, args.experiment, args.metrics)
    if args.role == "writer":
        return role_writer(args.points, args.experiment)

    cluster = Cluster(batch_delay_ms=args.batch_delay_ms).start()
    env = {**cluster.env(), "RUNWIRE_BENCH_DRAIN_NICE": str(args.nice)}
    os.environ.update(env)
    try:
        print(
            f"agent batch delay {args.batch_delay_ms} ms; traffic {TRAFFIC_POINTS_PER_S:,} points/s; "
            f"subscriber processes at nice {args.nice}"
        )
        for n in (1, 100) if args.only != "throughput" else ():
            r = latency(cluster, env, n, args.probes, args.seconds)
            print(
                f"latency log->subscriber, {n:>3} subscribers: p50 {r['p50_ms']:.1f} ms  p99 {r['p99_ms']:.1f} ms  "
                f"max {r['max_ms']:.1f} ms  ({r['probes']} probes; traffic {r['traffic_rate']:,.0f} points/s)"
            )
        configs = [(0, "", "none"), (100, "loss", "dash"), (100, "", "all")] if args.only != "latency" else []
        results = {}
        for i in range(args.repeat):
            for subs, metrics, tag in configs:
                r = throughput(env, args.points, subs, metrics, f"{tag}{i}")
                if tag not in results or r["rate"] > results[tag]["rate"]:
                    results[tag] = r
        for _, _, tag in configs:
            base = results["none"]["rate"]
            r = results[tag]
            extra = ""
            if r["subscribers"]:
                extra = f"; subscribers received {r['received']:,} points, told of {r['lagged_points']:,} missed"
            print(
                f"ingest {r['points']:,} points, {r['subscribers']:>3} subscribers ({r['watching']}): "
                f"{r['rate']:,.0f} points/s = {r['rate'] / base:.0%} of none{extra}"
            )
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
