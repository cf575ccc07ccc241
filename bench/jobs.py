"""Benchmark of script runs on a compute target (issue 4), collector and agent as separate processes.

    python bench/jobs.py [--submissions 20] [--lines 100000] [--repeats 3]

1. Submission to `Running`: `experiment.submit(ScriptRunConfig(...))` of a tiny script, one at a
   time, timed from the call to the `Running` status event pushed to a live subscriber (and to
   `submit()` returning, to `Preparing` = leased, to `Completed`). Median and p99 over the runs.
2. Log capture: a script printing `--lines` lines, run directly with its output to /dev/null and
   to a pipe read by `cat`, and as a submitted job (output captured line by line by the agent, sent
   through ingest and stored). Compared: the print loop's time measured inside the script, and for
   the job the time until the last line is stored at the collector.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.procs import Cluster, short_tmpdir  # noqa: E402

TINY = "from runwire import Run\nRun.get_context().log('x', 1)\n"

PRINTER = """
    import sys, time
    n = int(sys.argv[1])
    t0 = time.perf_counter()
    for i in range(n):
        print(f"line {i} of the training log, loss={1.0 / (i + 1):.6f}")
    sys.stdout.flush()
    print(f"PRINT_LOOP_S {time.perf_counter() - t0:.6f}", file=sys.stderr)
"""


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def ms(x: float) -> str:
    return f"{x * 1000:.1f} ms"


def script_config(folder: Path, arguments: list[str] | None = None):
    from runwire import Environment, ScriptRunConfig

    env = Environment("bench")
    env.python.user_managed_dependencies = True
    env.python.interpreter_path = sys.executable
    return ScriptRunConfig(source_directory=str(folder), script="train.py", arguments=arguments or [], environment=env)


def bench_submission(experiment, folder: Path, n: int) -> None:
    (folder / "train.py").write_text(TINY)
    cfg = script_config(folder)
    returned, preparing, running, completed = [], [], [], []
    for _ in range(n):
        sub = experiment.subscribe(kinds="status", timeout=120)
        t0 = time.perf_counter()
        run = experiment.submit(cfg)
        returned.append(time.perf_counter() - t0)
        for ev in sub:
            if ev.run_id != run.id:
                continue
            now = time.perf_counter() - t0
            if ev.status == "Preparing":
                preparing.append(now)
            elif ev.status == "Running":
                running.append(now)
            elif ev.status in ("Completed", "Failed", "Canceled"):
                completed.append(now)
                assert ev.status == "Completed", ev.status
                break
        sub.close()
    print(f"\n1. submission -> status, {n} tiny scripts submitted one at a time (target local, 1 slot)")
    print("   | step | median | p99 |")
    print("   |---|---|---|")
    for label, xs in (
        ("submit() returned (snapshot + SubmitRun)", returned),
        ("-> Preparing (leased to the node)", preparing),
        ("-> Running (snapshot unpacked, process spawned)", running),
        ("-> Completed (script ran, outputs + log uploaded)", completed),
    ):
        print(f"   | {label} | {ms(statistics.median(xs))} | {ms(pct(xs, 0.99))} |")


def direct(folder: Path, lines: int, sink: str) -> tuple[float, float]:
    """(print loop seconds, process wall seconds) of the printer run directly. `sink`: devnull,
    pipe (read by `cat`), or pipe-unbuffered (PYTHONUNBUFFERED=1, as jobs run for live logs)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if sink == "pipe-unbuffered":
        env["PYTHONUNBUFFERED"] = "1"
    t0 = time.perf_counter()
    if sink == "devnull":
        done = subprocess.run(
            [sys.executable, "train.py", str(lines)],
            cwd=folder,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            check=True,
            env=env,
        )
        err = done.stderr
    else:
        p = subprocess.Popen(
            [sys.executable, "train.py", str(lines)],
            cwd=folder,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        cat = subprocess.Popen(["cat"], stdin=p.stdout, stdout=subprocess.DEVNULL)
        p.stdout.close()
        err = p.stderr.read().decode()
        p.wait()
        cat.wait()
    wall = time.perf_counter() - t0
    loop = float(err.split("PRINT_LOOP_S")[1].split()[0])
    return loop, wall


def bench_logs(experiment, folder: Path, lines: int, repeats: int) -> None:
    (folder / "train.py").write_text(textwrap.dedent(PRINTER))
    rows: dict[str, list[tuple[float, float]]] = {"devnull": [], "pipe": [], "pipe-unbuffered": [], "job": []}
    for _ in range(repeats):
        for sink in ("devnull", "pipe", "pipe-unbuffered"):
            rows[sink].append(direct(folder, lines, sink))
        sub = experiment.subscribe(kinds="status", timeout=300)
        t0 = time.perf_counter()
        run = experiment.submit(script_config(folder, [str(lines)]))
        t_running = None
        for ev in sub:
            if ev.run_id == run.id and ev.status == "Running":
                t_running = time.perf_counter()
            if ev.run_id == run.id and ev.status in ("Completed", "Failed", "Canceled"):
                assert ev.status == "Completed", ev.status
                break
        sub.close()
        transport = experiment.workspace._transport
        stored = sum(len(c.lines) for c in transport.get_log(run.id))
        t_stored = time.perf_counter()
        assert stored == lines + 1, stored  # + the PRINT_LOOP_S line (stderr shares the pipe)
        text = "\n".join(ln for c in transport.get_log(run.id, from_line=lines) for ln in c.lines)
        loop = float(text.split("PRINT_LOOP_S")[1].split()[0])
        rows["job"].append((loop, t_stored - (t_running or t0)))
    base = statistics.median(x[0] for x in rows["devnull"])
    print(f"\n2. log capture: a script printing {lines:,} lines (median of {repeats})")
    print("   (jobs run with PYTHONUNBUFFERED=1 so that every line shows up live)")
    print("   | how the script ran | print loop (in the script) | vs /dev/null | wall |")
    print("   |---|---|---|---|")
    for label, key, wall_label in (
        ("directly, stdout -> /dev/null", "devnull", "process"),
        ("directly, stdout -> pipe -> cat", "pipe", "process"),
        ("directly, PYTHONUNBUFFERED=1, stdout -> pipe -> cat", "pipe-unbuffered", "process"),
        ("as a job: captured by the agent, stored at the collector", "job", "Running -> every line stored"),
    ):
        loop = statistics.median(x[0] for x in rows[key])
        wall = statistics.median(x[1] for x in rows[key])
        print(f"   | {label} | {ms(loop)} | x{loop / base:.2f} | {ms(wall)} ({wall_label}) |")
    job_wall = statistics.median(x[1] for x in rows["job"])
    print(f"   capture + store throughput: {lines / job_wall:,.0f} lines/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--submissions", type=int, default=20)
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    root = short_tmpdir("rwjobs")
    cluster = Cluster(root, agent_args=["--compute-target", "local", "--slots", "1"], log_level="info").start()
    os.environ.update(cluster.env())
    work = Path(tempfile.mkdtemp(prefix="rwjobs-src"))
    try:
        from runwire import Experiment, Workspace

        experiment = Experiment(Workspace.from_config(), "bench-jobs")
        (work / "tiny").mkdir()
        (work / "printer").mkdir()
        bench_submission(experiment, work / "tiny", args.submissions)
        bench_logs(experiment, work / "printer", args.lines, args.repeats)
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
