"""Benchmark of a collector outage (issue 7): a training process logs continuously while the collector is
kill -9'ed for most of the run and then restarted; the agent's spool reaches its (small) cap, the SDK keeps
its points in its own spool, and everything is caught up afterwards.

    python bench/outage.py [--minutes 3] [--spool-max-bytes 4M] [--sdk-max-unacked-bytes 8388608]

The run is split into 30 s before the outage (at least 1/6 of it), the outage, and 30 s after the
catch-up. Prints `run.log()` median / p99 before, during (outage and catch-up) and after; the agent
spool's peak, how long it sat at its cap and how many times it got there; how many points the SDK
kept in its own spool; the catch-up time (collector back until the agent and the SDK hold nothing
more than a moment's worth); and points lost / duplicated (both must be 0). Same scenario as
tests/e2e/test_outage.py (tests/e2e/outage_scenario.py), longer.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from tests.e2e.outage_scenario import run_outage

POINTS_PER_S_BOUND = 150_000
"""More than the writer's pace (500 points, then a 5 ms pause): sizes its timing array."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="whole run, outage included (default 3)")
    parser.add_argument("--spool-max-bytes", default="4M", help="the agent's --spool-max-bytes (default 4M)")
    parser.add_argument(
        "--sdk-max-unacked-bytes",
        type=int,
        default=8 * 1024 * 1024,
        help="RUNWIRE_SDK_MAX_UNACKED_BYTES of the training process (default 8 MiB)",
    )
    args = parser.parse_args()
    total = args.minutes * 60
    edge = max(30.0, total / 6) if total >= 120 else total / 4
    outage = max(5.0, total - 2 * edge)
    started = time.monotonic()

    def phase(name: str) -> None:
        print(f"[{time.monotonic() - started:7.1f} s] {name}", flush=True)

    result, cluster = run_outage(
        before_s=edge,
        outage_s=outage,
        after_s=edge,
        spool_max_bytes=args.spool_max_bytes,
        sdk_max_unacked_bytes=args.sdk_max_unacked_bytes,
        max_points=int((total + 600) * POINTS_PER_S_BOUND),
        require_cap=False,  # a figure: say when (or that) the cap was reached
        on_phase=phase,
    )
    try:
        print(f"\nbench/outage.py: {args.minutes:g} min, outage {result.outage_s:.0f} s, agent cap "
              f"{args.spool_max_bytes}, SDK in-memory bound {args.sdk_max_unacked_bytes:,} B")  # fmt: skip
        for line in result.lines():
            print("  " + line)
    finally:
        cluster.stop()
        shutil.rmtree(cluster.root, ignore_errors=True)
    return 0 if result.lost == 0 and result.duplicated == 0 and not result.out_of_order else 1


if __name__ == "__main__":
    sys.exit(main())
