"""A collector outage while a training process logs continuously (tests/e2e/test_outage.py, bench/outage.py).

A real collector and agent (the agent with a small `--spool-max-bytes`) and a training process that logs
`v` = 0, 1, 2, ... in training steps (`STEP_POINTS` points, then a short pause), timing every `run.log()`
call. The collector is kill -9'ed; the agent's spool grows to its cap, after which the agent stops
reading the training process's socket and the SDK keeps the points (in memory up to
RUNWIRE_SDK_MAX_UNACKED_BYTES, then in its own spool file); the collector comes back on the same
port; the process goes on logging, then completes its run. Then every point must be stored exactly
once, in order.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from runwire.cli._common import agent_status
from tests.procs import Cluster, short_tmpdir, wait_for

STEP_POINTS = 500
"""Points the training process logs per step before its pause."""
STEP_PAUSE_S = 0.005
"""The pause of a training step (the model's forward/backward pass, say)."""

WRITER = textwrap.dedent(
    """
    import json, os, sys, time
    import numpy as np
    from runwire import Workspace, Experiment
    run_id, folder, step_points, pause = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    stop, progress = os.path.join(folder, "stop"), os.path.join(folder, "progress")
    run = Experiment(Workspace.from_config(), "outage").start_logging(run_id=run_id, snapshot_directory=None)
    cap = int(sys.argv[5])
    durations = np.zeros(cap, dtype=np.int32)  # ns per run.log() call (a call over 2 s would wrap: none is)
    started = np.zeros(cap // step_points + 1, dtype=np.float64)  # time.monotonic() at each step's start
    log, clock = run.log, time.perf_counter_ns
    i = step = 0
    while not os.path.exists(stop) and i + step_points <= cap:
        started[step] = time.monotonic()
        for _ in range(step_points):
            t0 = clock()
            log("v", i)
            durations[i] = clock() - t0
            i += 1
        step += 1
        if step % 20 == 0:
            with open(progress + ".tmp", "w") as f:
                f.write(str(i))
            os.replace(progress + ".tmp", progress)
        time.sleep(pause)
    stats = run._producer.stats()
    t0 = time.monotonic()
    run.complete()
    np.save(os.path.join(folder, "durations.npy"), durations[:i])
    np.save(os.path.join(folder, "started.npy"), started[:step])
    with open(os.path.join(folder, "result.json"), "w") as f:
        json.dump({"points": i, "complete_s": time.monotonic() - t0, "sdk": stats}, f)
    """
)


@dataclass
class OutageResult:
    points: int
    stored: int
    lost: int
    duplicated: int
    out_of_order: bool
    latency_ns: dict[str, tuple[float, float, int]]  # phase -> (median, p99, calls)
    spool_max_bytes: int
    spool_peak_bytes: int
    spool_full_count: int
    spool_full_seconds: float
    sdk_points_spooled: int
    sdk_max_spool_file_bytes: int
    outage_s: float
    cap_reached_s: float
    catch_up_s: float
    complete_s: float
    agent_report: dict = field(default_factory=dict)
    status_text: str = ""

    def lines(self) -> list[str]:
        out = []
        for phase, (med, p99, n) in self.latency_ns.items():
            out.append(f"run.log() {phase:>7}: median {med:,.0f} ns, p99 {p99:,.0f} ns ({n:,} calls)")
        out += [
            f"points logged {self.points:,}, stored {self.stored:,}, lost {self.lost}, duplicated {self.duplicated}, "
            f"out of order: {self.out_of_order}",
            f"outage {self.outage_s:.1f} s; agent spool cap {self.spool_max_bytes:,} B reached "
            f"{self.cap_reached_s:.1f} s into it (nan: never), peak {self.spool_peak_bytes:,} B, "
            f"at the cap {self.spool_full_count}x for "
            f"{self.spool_full_seconds:.1f} s in all (refills during the catch-up included)",
            f"SDK kept {self.sdk_points_spooled:,} points in its own spool (largest spool file "
            f"{self.sdk_max_spool_file_bytes:,} B)",
            f"catch-up after the collector came back: {self.catch_up_s:.1f} s; complete() took {self.complete_s:.2f} s",
        ]
        return out


def _percentiles(durations: np.ndarray, started: np.ndarray, lo: float, hi: float) -> tuple[float, float, int]:
    steps = np.nonzero((started >= lo) & (started < hi))[0]
    if not len(steps):
        return (float("nan"), float("nan"), 0)
    calls = np.concatenate([durations[s * STEP_POINTS : (s + 1) * STEP_POINTS] for s in steps])
    return (float(np.median(calls)), float(np.percentile(calls, 99)), len(calls))


def run_outage(
    before_s: float,
    outage_s: float,
    after_s: float,
    spool_max_bytes: str = "256K",
    sdk_max_unacked_bytes: int = 1024 * 1024,
    log_level: str = "info",
    max_points: int = 20_000_000,
    require_cap: bool = True,
    on_phase=lambda phase: None,
) -> tuple[OutageResult, Cluster]:
    """Run the scenario; returns its figures and the (still running) cluster. The caller stops the cluster."""
    root = short_tmpdir("rwout")
    cluster = Cluster(
        root, agent_args=["--spool-max-bytes", spool_max_bytes, "--report-interval", "0.5"], log_level=log_level
    ).start()
    folder = root / "writer"
    folder.mkdir()
    env = {**os.environ, **cluster.env(), "RUNWIRE_SDK_MAX_UNACKED_BYTES": str(sdk_max_unacked_bytes)}
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, "outage-run", str(folder), str(STEP_POINTS), str(STEP_PAUSE_S), str(max_points)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    sdk_spool = Path(cluster.env()["RUNWIRE_SDK_SPOOL"])
    max_file = 0

    def progress() -> int:
        if writer.poll() is not None:
            raise RuntimeError(f"the training process exited early: {writer.communicate()[1][-3000:]}")
        try:
            return int((folder / "progress").read_text())
        except (OSError, ValueError):
            return 0

    def sdk_spool_bytes() -> int:
        nonlocal max_file
        sizes = [p.stat().st_size for p in sdk_spool.glob("*.spool") if p.exists()] if sdk_spool.is_dir() else []
        size = sum(sizes)
        max_file = max(max_file, size)
        return size

    try:
        wait_for(lambda: progress() > 0, 60, "the training process to log")
        on_phase("before")
        until = time.monotonic() + before_s
        wait_for(lambda: time.monotonic() >= until and progress() > 0, before_s + 60, "the 'before' phase")
        down_at = time.monotonic()
        cluster.server.kill9()
        on_phase("outage")
        cap_reached_at: float | None = None
        sdk_spooled = False

        def outage_done() -> bool:
            # The outage lasts `outage_s`; with `require_cap`, also until the agent's spool reached its
            # cap and the SDK began keeping points in its own spool file (the policy at work).
            nonlocal cap_reached_at, sdk_spooled
            if cap_reached_at is None and agent_status(cluster.socket).spool_full:
                cap_reached_at = time.monotonic()
            sdk_spooled = sdk_spooled or sdk_spool_bytes() > 0
            over = time.monotonic() >= down_at + outage_s
            return over and (not require_cap or (cap_reached_at is not None and sdk_spooled))

        wait_for(outage_done, outage_s + 180, "the outage (and the spool cap reached)", interval=0.1)
        up_at = time.monotonic()
        cluster.start_server()
        on_phase("after")

        def caught_up() -> bool:
            st = agent_status(cluster.socket)
            return st.collector_connected and not st.spool_full and sdk_spool_bytes() == 0 and st.spool_bytes < 65536

        wait_for(caught_up, 600, "the agent and the SDK to catch up")
        caught_up_at = time.monotonic()
        until = caught_up_at + after_s
        wait_for(lambda: time.monotonic() >= until, after_s + 60, "the 'after' phase")
        status = agent_status(cluster.socket)
        (folder / "stop").write_text("1")
        _, err = writer.communicate(timeout=600)
        if writer.returncode != 0:
            raise RuntimeError(f"the training process failed ({writer.returncode}): {err[-3000:]}")
    except BaseException:
        if writer.poll() is None:
            writer.kill()
        cluster.stop()
        print(cluster.logs())
        shutil.rmtree(root, ignore_errors=True)
        raise

    result = json.loads((folder / "result.json").read_text())
    durations = np.load(folder / "durations.npy")
    started = np.load(folder / "started.npy")
    from runwire import Experiment, Run, Workspace

    ws = Workspace(collector=cluster.collector, agent_socket=cluster.socket)  # this process's env untouched
    values = Run(Experiment(ws, "outage"), "outage-run").get_metric_series("v").values.astype(np.int64)
    points = result["points"]
    expected = np.arange(points, dtype=np.int64)
    unique = np.unique(values)
    lost = int(points - np.isin(expected, unique).sum())
    figures = OutageResult(
        points=points,
        stored=len(values),
        lost=lost,
        duplicated=int(len(values) - len(unique)),
        out_of_order=bool(len(values) > 1 and np.any(np.diff(values) <= 0)),
        latency_ns={
            "before": _percentiles(durations, started, 0, down_at),
            "during": _percentiles(durations, started, down_at, caught_up_at),
            "after": _percentiles(durations, started, caught_up_at, float("inf")),
        },
        spool_max_bytes=status.spool_max_bytes,
        spool_peak_bytes=status.spool_peak_bytes,
        spool_full_count=status.spool_full_count,
        spool_full_seconds=status.spool_full_seconds,
        sdk_points_spooled=result["sdk"]["points_spooled_total"],
        sdk_max_spool_file_bytes=max_file,
        outage_s=up_at - down_at,
        cap_reached_s=(cap_reached_at - down_at) if cap_reached_at is not None else float("nan"),
        catch_up_s=caught_up_at - up_at,
        complete_s=result["complete_s"],
    )
    figures.values = values  # type: ignore[attr-defined]
    return figures, cluster
