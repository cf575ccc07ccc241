"""`runwire tail` against real collector and agent processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from runwire import Experiment
from tests.procs import wait_for


def _tail(cluster, *args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "runwire.cli.main", "tail", "--collector", cluster.collector, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "160"},
        **kwargs,
    )


def test_tail_once_prints_a_snapshot(cluster, workspace):
    run = Experiment(workspace, "tail-once").start_logging(snapshot_directory=None)
    for i in range(10):
        run.log("loss", 1.0 / (i + 1), step=i)
    run.log("lr", 0.5)
    run.log_row("curve", x=1, y=2.5)
    run.complete()
    out = _tail(cluster, "--run", run.id, "--once")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert run.id in text and "Completed" in text
    lines = {line.split()[1]: line for line in text.splitlines() if line.split()[:1] == [run.id[:8]]}
    assert set(lines) == {"loss", "lr", "curve"}
    loss = lines["loss"].split()
    assert loss[2:7] == ["0.1", "9", "0.1", "1", "10"]  # latest, step, min, max, n
    assert "█" in lines["loss"] and "▁" in lines["loss"]  # the sparkline
    assert "x=1, y=2.5" in lines["curve"]

    only = _tail(cluster, "--run", run.id, "--metric", "l*", "--once")
    assert only.returncode == 0, only.stderr
    names = {line.split()[1] for line in only.stdout.splitlines() if line.split()[:1] == [run.id[:8]]}
    assert names == {"loss", "lr"}


def test_tail_follows_live_and_exits_cleanly_on_ctrl_c(cluster, workspace):
    exp = Experiment(workspace, "tail-live")
    run = exp.start_logging(snapshot_directory=None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "runwire.cli.main", "tail", "--collector", cluster.collector, "--experiment", exp.name],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = proc.stdout.readline()  # the history: the run's status
        assert first.strip() == f"{run.id} status Running", first + proc.stderr.read()
        run.log("acc", 0.75, step=3)
        run.flush()
        assert proc.stdout.readline().strip() == f"{run.id} metric acc=0.75 step=3"
        run.complete()
        assert proc.stdout.readline().strip() == f"{run.id} status Completed"
        proc.send_signal(signal.SIGINT)
        assert wait_for(lambda: proc.poll() is not None, 30, "tail to exit")
        assert proc.returncode == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def test_tail_in_a_terminal_draws_the_view_and_quits_on_ctrl_c(cluster, workspace):
    """The rich view on a pseudo-terminal (as over SSH): it shows the metric, then Ctrl-C exits 0."""
    import pty

    run = Experiment(workspace, "tail-tty").start_logging(snapshot_directory=None)
    main, child = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "runwire.cli.main", "tail", "--collector", cluster.collector, "--run", run.id],
        stdin=child,
        stdout=child,
        stderr=child,
        env={**os.environ, "TERM": "xterm", "COLUMNS": "120", "LINES": "40"},
        close_fds=True,
    )
    os.close(child)
    screen = bytearray()

    def shows(text: str) -> bool:
        import select

        while select.select([main], [], [], 0.05)[0]:
            try:
                screen.extend(os.read(main, 65536))
            except OSError:
                break
        return text in screen.decode(errors="replace")

    try:
        assert wait_for(lambda: shows("Running"), 60, "the view")
        run.log("throughput", 123.5, step=1)
        run.flush()
        assert wait_for(lambda: shows("throughput") and shows("123.5"), 60, "the new metric on screen")
        proc.send_signal(signal.SIGINT)
        assert wait_for(lambda: shows("") and proc.poll() is not None, 30, "tail to exit")
        assert proc.returncode == 0, screen.decode(errors="replace")[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        os.close(main)
        run.complete()
