"""Chaos harness: real training processes, agents and collectors, killed and paused at random.

    python -m tests.chaos.harness --seed 7 --trials 200

Each trial starts a collector and an agent (separate processes) and a few training processes that
log a sequence 0, 1, 2, ... to their own run, calling `flush()` every few thousand points and
recording, after each flush that returned, how many points it covered. At random moments it
kill -9's the agent, the collector, both, or a training process; pauses a process (SIGSTOP) for a
while; or caps the agent's spool so that it fills while the collector is away. Afterwards it
brings everything back, delivers what dead processes left in their SDK spools (`runwire sync`),
and checks every run: the stored series is 0, 1, 2, ... with no gap and no duplicate (exactly once,
in order), at least as long as the last confirmed flush, and complete for processes that ended;
and that every run ended truthfully: `Completed` when its process completed it, `Failed` when its
process was killed (the agent that served the process reports it, through ingest).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tests.procs import Cluster, short_tmpdir, wait_for

WRITER = textwrap.dedent(
    """
    import os, sys, time
    from runwire import Workspace, Experiment
    run_id, total, flush_every, progress = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    run = Experiment(Workspace.from_config(), "chaos").start_logging(run_id=run_id, snapshot_directory=None)
    for i in range(total):
        run.log("v", i)
        if (i + 1) % flush_every == 0:
            run.flush(timeout_seconds=120)
            with open(progress + ".tmp", "w") as f:
                f.write(str(i + 1))
            os.replace(progress + ".tmp", progress)
        if i % 500 == 0:
            time.sleep(0.002)  # a training step
    with open(progress + ".completing", "w") as f:
        f.write("1")  # from here on a kill may land after complete() ended the run
    run.complete()
    with open(progress + ".tmp", "w") as f:
        f.write(str(total))
    os.replace(progress + ".tmp", progress)
    """
)

STATUS_TIMEOUT_S = 30.0
"""How long a trial waits for a run to reach its final status once every process has ended."""

ACTIONS = ("kill_agent", "kill_collector", "kill_both", "kill_writer", "pause_agent", "pause_collector", "spool_cap")


@dataclass
class TrialResult:
    seed: int
    actions: list[str]
    points_checked: int = 0
    lost: int = 0
    duplicated: int = 0
    dead_runs_failed: int = 0
    failures: list[str] = field(default_factory=list)


def _confirmed(progress: Path) -> int:
    try:
        return int(progress.read_text())
    except (OSError, ValueError):
        return 0


def _stored(workspace, run_id: str) -> np.ndarray:
    from runwire import Experiment, Run

    try:
        return Run(Experiment(workspace, "chaos"), run_id).get_metric_series("v").values
    except Exception:
        return np.array([], dtype=np.int64)


def _final_status(workspace, run_id: str, timeout: float = STATUS_TIMEOUT_S) -> str:
    """The run's status once it is finished (or whatever it is after `timeout`)."""
    from runwire import Experiment, Run

    run = Run(Experiment(workspace, "chaos"), run_id)
    try:
        wait_for(lambda: run.get_status() in ("Completed", "Failed", "Canceled"), timeout, f"{run_id} to end", 0.05)
    except TimeoutError:
        pass
    return run.get_status()


def run_trial(seed: int, writers: int = 2, points: int = 20_000, flush_every: int = 2_000) -> TrialResult:
    rng = random.Random(seed)
    root = short_tmpdir("rwchaos")
    spool_cap = rng.random() < 0.2
    agent_args = ["--spool-max-bytes", "256K"] if spool_cap else []
    cluster = Cluster(root, agent_args=agent_args)
    result = TrialResult(seed, ["spool_cap"] if spool_cap else [])
    procs: dict[str, tuple[subprocess.Popen, Path]] = {}
    try:
        cluster.start()
        env = {**os.environ, **cluster.env()}
        for k in range(writers):
            run_id = f"chaos-{seed}-{k}"
            progress = root / f"{run_id}.progress"
            p = subprocess.Popen(
                [sys.executable, "-c", WRITER, run_id, str(points), str(flush_every), str(progress)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=open(root / f"{run_id}.log", "wb"),  # noqa: SIM115
            )
            procs[run_id] = (p, progress)

        for _ in range(rng.randint(1, 3)):
            # act once some progress is confirmed (or soon after start)
            target = rng.randint(0, points // 2)
            run_id = rng.choice(list(procs))
            deadline = time.monotonic() + 30
            while _confirmed(procs[run_id][1]) < target and procs[run_id][0].poll() is None:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.01)
            action = rng.choice([a for a in ACTIONS if a != "spool_cap"])
            result.actions.append(action)
            if action in ("kill_agent", "kill_both"):
                cluster.agent.kill9()
            if action in ("kill_collector", "kill_both"):
                cluster.server.kill9()
            if action == "kill_writer":
                procs[run_id][0].kill()
            if action.startswith("pause_"):
                proc = cluster.agent if action == "pause_agent" else cluster.server
                proc.popen.send_signal(signal.SIGSTOP)
                time.sleep(rng.uniform(0.2, 2.0))  # the pause itself is the fault being injected
                proc.popen.send_signal(signal.SIGCONT)
            time.sleep(rng.uniform(0.0, 1.0))  # the outage lasts a while
            if cluster.server.popen.poll() is not None:
                cluster.start_server()
            if cluster.agent.popen.poll() is not None:
                cluster.start_agent()

        for proc, _ in procs.values():
            try:
                proc.wait(timeout=300)
            except subprocess.TimeoutExpired:
                proc.kill()
                result.failures.append("a writer did not finish in 300 s")
        # Deliver what killed writers left in their SDK spools, then let the agent drain.
        subprocess.run(
            [sys.executable, "-m", "runwire.cli.main", "sync"], env=env, capture_output=True, timeout=120, check=False
        )
        from runwire import Workspace

        ws = Workspace(collector=cluster.collector, agent_socket=cluster.socket)  # this process's env untouched
        from runwire.cli._common import agent_status

        wait_for(lambda: agent_status(cluster.socket).spool_records == 0, 60, "the agent's spool to drain")
        for run_id, (proc, progress) in procs.items():
            confirmed = _confirmed(progress)
            stored = _stored(ws, run_id)
            expected_len = points if proc.returncode == 0 else None
            n = len(stored)
            result.points_checked += n
            if n and not np.array_equal(stored, np.arange(n)):
                uniq = len(np.unique(stored))
                result.duplicated += n - uniq
                result.lost += max(0, int(stored.max()) + 1 - uniq)
                result.failures.append(f"{run_id}: stored series is not 0..{n - 1} in order")
            if n < confirmed:
                result.lost += confirmed - n
                result.failures.append(f"{run_id}: {confirmed} points confirmed by flush, {n} stored")
            if expected_len is not None and n != expected_len:
                result.lost += max(0, expected_len - n)
                result.failures.append(f"{run_id}: the writer finished but {n} of {expected_len} points are stored")
            # Completed when the writer completed it; Failed when it was killed before (a kill during
            # or after complete() may find the run Completed already).
            completing = progress.with_name(progress.name + ".completing").exists()
            want = {"Completed"} if proc.returncode == 0 else {"Failed", "Completed"} if completing else {"Failed"}
            status = _final_status(ws, run_id)
            if status not in want:
                result.failures.append(
                    f"{run_id}: writer exit {proc.returncode}, run is {status}, expected {' or '.join(sorted(want))}"
                )
            elif status == "Failed":
                result.dead_runs_failed += 1
    except Exception as e:
        result.failures.append(f"harness error: {type(e).__name__}: {e}")
    finally:
        for proc, _ in procs.values():
            if proc.poll() is None:
                proc.kill()
        cluster.stop()
        if result.failures:
            keep = Path(os.environ.get("RUNWIRE_CHAOS_KEEP", "/tmp")) / f"rwchaos-failed-{seed}"
            shutil.rmtree(keep, ignore_errors=True)
            shutil.copytree(root, keep, ignore=shutil.ignore_patterns("*.sock"), dirs_exist_ok=True)
            result.failures.append(f"logs kept in {keep}")
        shutil.rmtree(root, ignore_errors=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--points", type=int, default=20_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("RUNWIRE_HOME", str(short_tmpdir("rwchaos-home")))
    totals = {"trials": 0, "points_checked": 0, "lost": 0, "duplicated": 0, "dead_runs_failed": 0, "failed_trials": 0}
    counts: dict[str, int] = {}
    started = time.monotonic()
    for t in range(args.trials):
        r = run_trial(args.seed * 100_003 + t, points=args.points)
        totals["trials"] += 1
        totals["points_checked"] += r.points_checked
        totals["lost"] += r.lost
        totals["duplicated"] += r.duplicated
        totals["dead_runs_failed"] += r.dead_runs_failed
        totals["failed_trials"] += bool(r.failures)
        for a in r.actions:
            counts[a] = counts.get(a, 0) + 1
        status = "ok" if not r.failures else "FAILED: " + "; ".join(r.failures)
        print(f"trial {t + 1}/{args.trials} seed {r.seed} actions {','.join(r.actions)}: {status}", flush=True)
    totals["faults"] = counts
    totals["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(totals) if args.json else f"\nsummary: {json.dumps(totals, indent=2)}")
    return 0 if totals["failed_trials"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
