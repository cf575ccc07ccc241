"""The command line of script runs (issue 4): `runwire submit`, `runwire runs list|show|cancel`,
`runwire logs [-f]` and `runwire compute list|show`, run as real CLI processes against a real
collector and a real agent that is a node of compute target `local`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from runwire.cli._common import safe
from runwire.cli.submit import default_experiment_name
from tests.procs import Cluster, running_cluster, wait_for

JOB_TIMEOUT_S = 90
CLI_TIMEOUT_S = 120
TERMINAL = {"Completed", "Failed", "Canceled"}


@pytest.fixture
def jobs(request):
    """A collector and an agent that is a node of target `local` with 2 slots."""
    with running_cluster(request, agent_args=["--compute-target", "local", "--slots", "2"]) as c:
        yield c


@pytest.fixture
def one_slot(request):
    """As `jobs`, with a single slot: a second job waits in the queue."""
    with running_cluster(request, agent_args=["--compute-target", "local", "--slots", "1"]) as c:
        yield c


def cli(cluster: Cluster | None, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **(cluster.env() if cluster else {}), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "runwire.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        cwd=cwd,
    )


def cli_all(*commands: list[str]) -> list[subprocess.CompletedProcess]:
    """Several CLI commands (no cluster) run at once; their results in order."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "runwire.cli.main", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "COLUMNS": "200"},
        )
        for args in commands
    ]
    out = []
    for args, proc in zip(commands, procs, strict=True):
        stdout, stderr = proc.communicate(timeout=CLI_TIMEOUT_S)
        out.append(subprocess.CompletedProcess(args, proc.returncode, stdout, stderr))
    return out


def popen(cluster: Cluster, *args: str) -> tuple[subprocess.Popen, list[str]]:
    """A CLI process whose stdout lines are collected (by a thread) into the returned list."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "runwire.cli.main", *args],
        env={**os.environ, **cluster.env()},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []

    def read() -> None:
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))

    threading.Thread(target=read, daemon=True).start()
    return proc, lines


def source(folder: Path, code: str, name: str = "train.py", **files: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(textwrap.dedent(code))
    for rel, text in files.items():
        (folder / rel).write_text(text)
    return folder / name


def show(cluster: Cluster, run_id: str) -> dict:
    out = cli(cluster, "runs", "show", run_id, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def status_of(cluster: Cluster, run_id: str) -> str:
    from runwire._transports import Transport
    from runwire.config import Endpoint

    transport = Transport(Endpoint(collector=cluster.collector, agent_socket=None))
    try:
        return transport.get_run(run_id).status
    finally:
        transport.close()


def wait_status(cluster: Cluster, run_id: str, statuses: set[str], timeout: float = JOB_TIMEOUT_S) -> str:
    return wait_for(
        lambda: (s := status_of(cluster, run_id)) in statuses and s, timeout, f"{run_id} to reach {statuses}", 0.05
    )


def submit_detached(cluster: Cluster, *args: str) -> str:
    out = cli(cluster, "submit", "--detach", *args)
    assert out.returncode == 0, out.stdout + out.stderr
    run_id = out.stdout.strip()
    assert run_id and "\n" not in run_id, out.stdout
    return run_id


TRAIN = """
    import os, sys
    import mylib
    from runwire import Run
    run = Run.get_context()
    for i in range(3):
        run.log("loss", 1.0 / (i + 1))
        print(f"step {i} loss {1.0 / (i + 1):.3f}", flush=True)
    print("argv", sys.argv[1:])
    print("greeting", os.environ.get("GREETING"), mylib.X)
    child = run.child_run("kid")
    child.log("k", 1)
    child.complete()
"""

FAIL = """
    print("about to fail", flush=True)
    def f():
        raise ValueError("bad alpha")
    f()
"""

HOLD = """
    import os, sys, time
    print("started", flush=True)
    gate = sys.argv[1]
    while not os.path.exists(gate):  # the job waits for the test to open the gate
        time.sleep(0.02)
    print("released", flush=True)
"""


# --- help and usage -------------------------------------------------------------------------------


def test_help_of_each_command():
    top = cli(None, "--help")
    assert top.returncode == 0
    for command in ("submit", "runs", "logs", "compute"):
        assert command in top.stdout
    expected = {
        ("submit",): ["--experiment", "--source-dir", "--compute-target", "--interpreter", "--env", "--tag",
                      "--display-name", "--detach", "--"],
        ("runs",): ["list", "show", "cancel"],
        ("runs", "list"): ["--experiment", "--status", "--target", "--limit", "--include-children", "--json"],
        ("runs", "show"): ["RUN", "--json"],
        ("runs", "cancel"): ["RUN"],
        ("logs",): ["-f", "--follow", "--path", "--from-line"],
        ("compute",): ["list", "show"],
        ("compute", "list"): ["--json"],
        ("compute", "show"): ["TARGET", "--json"],
    }  # fmt: skip
    results = cli_all(*([*command, "--help"] for command in expected))
    for (command, flags), out in zip(expected.items(), results, strict=True):
        assert out.returncode == 0, out.stderr
        for flag in flags:
            assert flag in out.stdout, f"runwire {' '.join(command)} --help lacks {flag}"


def test_bad_usage_exits_2_with_one_clear_line(tmp_path):
    script = source(tmp_path / "src", "print('hi')\n")
    cases = [
        (["submit", str(tmp_path / "missing.py")], "no such script"),
        (["submit", str(script), "--env", "NOVALUE"], "--env 'NOVALUE'"),
        (["submit", str(script), "--tag", "=x"], "--tag '=x'"),
        (["submit", str(script), "--experiment", "bad name"], "experiment name"),
        (["submit", str(script), "--display-name", "x" * 1000], "MAX_DISPLAY_NAME_LENGTH"),
        (["submit", str(script), "--source-dir", str(tmp_path / "elsewhere")], "--source-dir"),
        (["runs", "list", "--status", "Sleeping"], "unknown status 'Sleeping'"),
        (["logs", "some-run", "--from-line", "-1"], "--from-line"),
        (["runs"], "choose an action"),
        (["compute"], "choose an action"),
    ]
    for (args, message), out in zip(cases, cli_all(*(args for args, _ in cases)), strict=True):
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        assert message in out.stderr and "Traceback" not in out.stderr, (args, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_default_experiment_name_follows_the_rule():
    assert default_experiment_name("train.py") == "train"
    assert default_experiment_name("dir/my train.v2.py") == "my_train_v2"
    assert default_experiment_name("__main__.py") == "main__"
    assert default_experiment_name("!!!.py") == "script"
    assert len(default_experiment_name("a" * 400 + ".py")) == 255


def test_printed_values_cannot_drive_the_terminal():
    assert safe("run-1") == "run-1"
    assert safe("a\x1b[2J\u202eb\tc\r\n\x9b") == "a\\x1b[2J\\u202eb\\x09c\\x0d\\x0a\\x9b"
    assert safe("ünïcödé ✓") == "ünïcödé ✓"


# --- submit ---------------------------------------------------------------------------------------


def test_submit_streams_the_output_and_exits_0(jobs, tmp_path):
    script = source(tmp_path / "src", TRAIN, **{"mylib.py": "X = 7\n"})
    before = sorted(p.name for p in script.parent.iterdir())
    out = cli(
        jobs, "submit", str(script), "--experiment", "cli-ok", "--interpreter", sys.executable,
        "--env", "GREETING=hello", "--tag", "team=vision", "--tag", "quick", "--tag", "evil=\x1b[31mred",
        "--display-name", "first try", "--", "--alpha", "0.5", "--", "-x",
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    run_id = text.split("Submitted ", 1)[1].split()[0]
    assert run_id.startswith("cli-ok_")
    assert f"RunId: {run_id}" in text and "Execution Summary" in text
    assert [ln for ln in text.splitlines() if ln.startswith("step ")] == [
        f"step {i} loss {1.0 / (i + 1):.3f}" for i in range(3)
    ]
    assert "argv ['--alpha', '0.5', '--', '-x']" in text
    assert "greeting hello 7" in text
    assert sorted(p.name for p in script.parent.iterdir()) == before  # the source folder is not written

    details = show(jobs, run_id)
    assert details["status"] == "Completed" and details["target"] == "local"
    assert details["type"] == "azureml.scriptrun" and details["experiment"] == "cli-ok"
    assert details["displayName"] == "first try"
    assert details["tags"]["team"] == "vision" and details["tags"]["quick"] is None
    assert details["metrics"]["loss"] == {"kind": "scalar", "count": 3, "last": pytest.approx(1 / 3)}
    assert "user_logs/std_log.txt" in details["logFiles"]
    assert details["children"] == 1
    top = json.loads(cli(jobs, "runs", "list", "--experiment", "cli-ok", "--json").stdout)
    assert [r["id"] for r in top] == [run_id]
    both = json.loads(cli(jobs, "runs", "list", "--experiment", "cli-ok", "--include-children", "--json").stdout)
    (kid,) = [r for r in both if r["id"] != run_id]
    assert kid["parent"] == run_id and kid["status"] == "Completed" and kid["display_name"] == "kid"

    table = cli(jobs, "runs", "show", run_id)
    assert table.returncode == 0, table.stderr
    assert "\x1b" not in table.stdout and "evil" in table.stdout and "\\x1b[31mred" in table.stdout
    assert "Completed" in table.stdout and "loss" in table.stdout and "(3 rows)" in table.stdout


def test_submit_of_a_failing_script_exits_1_with_the_error(jobs, tmp_path):
    script = source(tmp_path / "src", FAIL)
    out = cli(jobs, "submit", str(script), "--experiment", "cli-fail")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "about to fail" in out.stdout and "ValueError: bad alpha" in out.stdout  # the streamed traceback
    assert "User program failed with ValueError: bad alpha" in out.stderr
    assert "Traceback" not in out.stderr


def test_submit_detach_returns_at_once_and_logs_follow_the_run(jobs, tmp_path):
    script = source(tmp_path / "src", HOLD, name="hold me.py")
    gate = tmp_path / "gate"
    run_id = submit_detached(jobs, str(script), "--", str(gate))  # returns while the job waits on the gate
    assert run_id.startswith("hold_me_")
    assert show(jobs, run_id)["experiment"] == "hold_me"  # the default experiment: the script's stem
    assert status_of(jobs, run_id) not in TERMINAL

    follower, lines = popen(jobs, "logs", "-f", run_id)
    try:
        wait_for(lambda: "started" in lines, JOB_TIMEOUT_S, "logs -f to print the first line")
        snapshot = cli(jobs, "logs", run_id)
        assert snapshot.returncode == 0, snapshot.stderr
        assert snapshot.stdout == "started\n"
        assert follower.poll() is None  # still following: the run has not ended
        gate.touch()
        assert follower.wait(JOB_TIMEOUT_S) == 0, follower.stderr.read()
        wait_for(lambda: "released" in lines, 10, "the reader thread to collect the last line")
        assert lines == ["started", "released"]
        assert f"Run {run_id} Completed" in follower.stderr.read()
    finally:
        if follower.poll() is None:
            follower.kill()
        follower.wait(10)

    whole = cli(jobs, "logs", run_id)
    assert whole.stdout == "started\nreleased\n"
    assert cli(jobs, "logs", run_id, "--from-line", "1").stdout == "released\n"
    assert cli(jobs, "logs", run_id, "-f").stdout == "started\nreleased\n"  # an ended run: prints and exits
    typo = cli(jobs, "logs", run_id, "--path", "nope.txt")
    assert typo.returncode == 1 and "has no log file 'nope.txt'" in typo.stderr
    assert "its log files: user_logs/std_log.txt" in typo.stderr
    unknown = cli(jobs, "logs", "no-such-run")
    assert unknown.returncode == 1 and "no-such-run" in unknown.stderr and "Traceback" not in unknown.stderr


def test_logs_follow_of_a_failed_run_exits_1(jobs, tmp_path):
    run_id = submit_detached(jobs, str(source(tmp_path / "src", FAIL)))
    out = cli(jobs, "logs", "--follow", run_id)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "about to fail" in out.stdout
    assert f"Run {run_id} Failed: User program failed with ValueError: bad alpha" in out.stderr


def test_ctrl_c_stops_watching_and_the_run_keeps_going(jobs, tmp_path):
    gate = tmp_path / "gate"
    proc, lines = popen(jobs, "submit", str(source(tmp_path / "src", HOLD)), "--experiment", "cli-int", "--", str(gate))
    try:
        wait_for(lambda: "started" in lines, JOB_TIMEOUT_S, "submit to stream the first line")
        run_id = next(ln for ln in lines if ln.startswith("Submitted ")).split()[1]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 130
        err = proc.stderr.read()
        assert f"runwire logs -f {run_id}" in err and "keeps going" in err and "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
    assert status_of(jobs, run_id) == "Running"
    gate.touch()
    assert wait_status(jobs, run_id, TERMINAL) == "Completed"


# --- runs list / show / cancel --------------------------------------------------------------------


def test_runs_list_show_and_cancel(jobs, tmp_path):
    script = str(source(tmp_path / "src", HOLD))
    gate = str(tmp_path / "gate")
    running = [submit_detached(jobs, script, "--experiment", "cli-runs", "--", gate) for _ in range(2)]
    for run_id in running:
        wait_status(jobs, run_id, {"Running"})
    queued = submit_detached(jobs, script, "--experiment", "cli-runs", "--", gate)  # both slots are busy
    assert status_of(jobs, queued) == "Queued"
    not_yet = cli(jobs, "logs", queued)
    assert not_yet.returncode == 1 and "(Queued) has no log file 'user_logs/std_log.txt' yet" in not_yet.stderr

    listed = json.loads(cli(jobs, "runs", "list", "--experiment", "cli-runs", "--json").stdout)
    assert listed[0]["id"] == queued  # newest first
    assert {r["id"] for r in listed} == {queued, *running}
    assert {r["status"] for r in listed} == {"Running", "Queued"}
    assert all(r["target"] == "local" and r["type"] == "azureml.scriptrun" for r in listed)

    table = cli(jobs, "runs", "list", "--experiment", "cli-runs")
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["RUN", "EXPERIMENT", "STATUS", "TARGET", "START", "DURATION", "TYPE"]
    assert {row.split()[0] for row in rows} == {queued, *running}

    only_running = json.loads(cli(jobs, "runs", "list", "--status", "Running", "--json").stdout)
    assert {r["id"] for r in only_running} == set(running)
    both = json.loads(cli(jobs, "runs", "list", "--status", "Running", "Queued", "--json").stdout)
    assert {r["id"] for r in both} == {queued, *running}
    assert len(json.loads(cli(jobs, "runs", "list", "--limit", "1", "--json").stdout)) == 1
    assert json.loads(cli(jobs, "runs", "list", "--target", "elsewhere", "--json").stdout) == []
    assert {r["id"] for r in json.loads(cli(jobs, "runs", "list", "--target", "local", "--json").stdout)} == {
        queued,
        *running,
    }

    canceled = cli(jobs, "runs", "cancel", queued, running[0])
    assert canceled.returncode == 0, canceled.stderr
    result = dict(line.split() for line in canceled.stdout.splitlines())
    assert result[queued] == "Canceled"  # queued: at once
    assert result[running[0]] in ("CancelRequested", "Canceled")
    assert wait_status(jobs, running[0], TERMINAL) == "Canceled"
    assert status_of(jobs, running[1]) == "Running"

    missing = cli(jobs, "runs", "cancel", "no-such-run", running[1])
    assert missing.returncode == 1
    assert "no-such-run" in missing.stderr and "Traceback" not in missing.stderr
    assert running[1] in missing.stdout  # the other run is still canceled
    assert wait_status(jobs, running[1], TERMINAL) == "Canceled"
    assert cli(jobs, "runs", "show", "no-such-run").returncode == 1


# --- compute list / show --------------------------------------------------------------------------


def test_compute_list_and_show_while_one_runs_and_one_waits(one_slot, tmp_path):
    script = str(source(tmp_path / "src", HOLD))
    gate = tmp_path / "gate"
    active = submit_detached(one_slot, script, "--experiment", "cli-compute", "--", str(gate))
    wait_status(one_slot, active, {"Running"})
    waiting = submit_detached(one_slot, script, "--experiment", "cli-compute", "--", str(gate))
    assert status_of(one_slot, waiting) == "Queued"

    targets = json.loads(cli(one_slot, "compute", "list", "--json").stdout)
    local = next(t for t in targets if t["name"] == "local")
    assert local == {"name": "local", "nodes_connected": 1, "nodes": 1, "slots": 1, "queued": 1, "active": 1}
    table = cli(one_slot, "compute", "list")
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split() == ["TARGET", "NODES", "SLOTS", "QUEUED", "ACTIVE"]
    assert ["local", "1/1", "1", "1", "1"] in [ln.split() for ln in table.stdout.splitlines()]

    detail = json.loads(cli(one_slot, "compute", "show", "local", "--json").stdout)
    (node,) = detail["nodes"]
    assert node["connected"] and node["slots"] == 1 and node["busy"] == 1 and node["runs"] == [active]
    assert node["id"] == one_slot.agent.info["agent_id"]
    runs = {r["id"]: r for r in detail["runs"]}
    assert runs[active]["status"] == "Running" and runs[active]["node"] == node["id"]
    assert runs[waiting]["status"] == "Queued" and runs[waiting]["node"] is None
    assert {r["experiment"] for r in runs.values()} == {"cli-compute"}

    text = cli(one_slot, "compute", "show", "local")
    assert text.returncode == 0, text.stderr
    assert "1/1 nodes connected, 1 slots, 1 queued, 1 active" in text.stdout
    run_rows = {ln.split()[0]: ln.split() for ln in text.stdout.splitlines() if ln.startswith("cli-compute_")}
    assert run_rows[active][1:] == ["cli-compute", "Running", node["id"]]
    assert run_rows[waiting][1:] == ["cli-compute", "Queued", "-"]

    unknown = cli(one_slot, "compute", "show", "no-such-target")
    assert unknown.returncode == 1 and "no-such-target" in unknown.stderr

    gate.touch()
    for run_id in (active, waiting):
        assert wait_status(one_slot, run_id, TERMINAL) == "Completed"
    after = json.loads(cli(one_slot, "compute", "show", "local", "--json").stdout)
    assert after["runs"] == [] and after["queued"] == 0 and after["active"] == 0
