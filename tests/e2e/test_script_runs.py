"""Script runs on compute targets, end to end (issue 4): real collector and agent processes, real
training scripts submitted with `experiment.submit(ScriptRunConfig(...))` and run by the agents'
job runners as subprocesses."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from tests.procs import running_cluster, wait_for, workspace_for

LEASE_TTL_S = 3
JOB_TIMEOUT_S = 90


@pytest.fixture
def jobs(request, cluster_store):
    """A collector with a short lease TTL and an agent that is a node of target `local` (2 slots)."""
    with running_cluster(
        request,
        agent_args=["--compute-target", "local", "--slots", "2"],
        server_args=["--lease-ttl", str(LEASE_TTL_S)],
        store_url=cluster_store,
    ) as c:
        yield c


@pytest.fixture
def ws(jobs, monkeypatch):
    return workspace_for(jobs, monkeypatch)


@pytest.fixture
def experiment(ws):
    from runwire import Experiment

    return Experiment(ws, "jobs-e2e")


def source(folder: Path, code: str, name: str = "train.py", **files: str) -> Path:
    """A source folder holding the training script (and `files`)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(textwrap.dedent(code))
    for rel, text in files.items():
        path = folder / rel.replace("__", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return folder


def config(folder: Path, arguments: list | None = None, target: str = "local", script: str = "train.py"):
    from runwire import Environment, ScriptRunConfig

    env = Environment("user-managed-env")
    env.python.user_managed_dependencies = True
    env.python.interpreter_path = sys.executable
    return ScriptRunConfig(
        source_directory=str(folder), script=script, arguments=arguments or [], compute_target=target, environment=env
    )


def log_text(run) -> str:
    return run.get_details_with_logs()["logFiles"].get("user_logs/std_log.txt", "")


def wait_log(run, pattern: str, timeout: float = JOB_TIMEOUT_S) -> re.Match:
    return wait_for(lambda: re.search(pattern, log_text(run)), timeout, f"{pattern!r} in the log of {run.id}", 0.1)


def wait_status(run, statuses: set[str], timeout: float = JOB_TIMEOUT_S) -> str:
    return wait_for(
        lambda: (s := run.get_status()) in statuses and s, timeout, f"run {run.id} to reach {sorted(statuses)}", 0.05
    )


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:  # a zombie not yet reaped by its parent has exited too
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


TRAIN = """
    import os, sys
    from runwire import Run
    run = Run.get_context()
    assert run is Run.get_context()
    for i in range(5):
        run.log("loss", 1.0 / (i + 1))
        print(f"step {i} loss {1.0 / (i + 1):.3f}")
    run.log("alpha", float(sys.argv[1]))
    os.makedirs("outputs", exist_ok=True)
    with open("outputs/model.txt", "w") as f:
        f.write("weights")
    print("argv", sys.argv[1:], file=sys.stderr)
"""


# --- success and the status sequence --------------------------------------------------------------


@pytest.mark.both_stores
def test_submitted_script_runs_to_completion(experiment, tmp_path, capsys):
    from runwire.script_run import ScriptRun

    folder = source(tmp_path / "src", TRAIN, **{"mylib.py": "X = 1\n"})
    before = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))
    statuses = experiment.subscribe(kinds="status", timeout=JOB_TIMEOUT_S)
    run = experiment.submit(config(folder, ["0.5", 7]), tags={"kind": "smoke"})

    assert isinstance(run, ScriptRun)
    assert re.fullmatch(r"jobs-e2e_\d{10}_[0-9a-f]{8}", run.id)
    assert run.type == "azureml.scriptrun"
    assert run.get_tags()["kind"] == "smoke"
    assert run.get_properties()["ContentSnapshotId"]

    details = run.wait_for_completion(show_output=True)
    out = capsys.readouterr().out
    assert details["status"] == "Completed"
    assert details["target"] == "local"
    assert details["runDefinition"]["script"] == "train.py"
    assert details["runDefinition"]["arguments"] == ["0.5", "7"]
    assert "endTimeUtc" in details
    assert out.startswith(f"RunId: {run.id}\nWeb View: ")
    assert "Streaming user_logs/std_log.txt\n" in out
    lines = [f"step {i} loss {1.0 / (i + 1):.3f}" for i in range(5)]
    streamed = out.split("Streaming user_logs/std_log.txt", 1)[1].split("Execution Summary", 1)[0]
    assert [ln for ln in streamed.splitlines() if ln.startswith("step ")] == lines
    assert "argv ['0.5', '7']" in streamed
    assert out.rstrip().endswith(
        f"Execution Summary\n=================\nRunId: {run.id}\nWeb View: {run.get_portal_url()}"
    )

    seen = []
    for event in statuses:
        if event.run_id == run.id and event.kind == "status":
            seen.append(event.status)
            if event.status in ("Completed", "Failed", "Canceled"):
                break
    statuses.close()
    assert seen == ["Queued", "Preparing", "Running", "Finalizing", "Completed"]

    metrics = run.get_metrics()
    assert metrics["loss"] == [1.0, 0.5, 1.0 / 3, 0.25, 0.2]
    assert metrics["alpha"] == 0.5
    names = run.get_file_names()
    assert "outputs/model.txt" in names
    assert "user_logs/std_log.txt" in names
    logs = run.get_details_with_logs()["logFiles"]["user_logs/std_log.txt"]
    assert logs.splitlines()[:5] == lines
    # the source folder was never written
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) == before


# --- failures -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status", "message"),
    [
        ("import sys\nprint('bye')\nsys.exit(3)\n", "Failed", "User program failed with exit code 3"),
        (
            "def f():\n    raise ValueError('bad alpha')\nf()\n",
            "Failed",
            "User program failed with ValueError: bad alpha",
        ),
        ("import sys\nprint('done early')\nsys.exit(0)\n", "Completed", None),
    ],
    ids=["nonzero-exit", "uncaught-exception", "sys-exit-0"],
)
def test_exit_codes_decide_the_status(experiment, tmp_path, code, status, message, capsys):
    from runwire.exceptions import ActivityFailedException

    run = experiment.submit(config(source(tmp_path / "src", code)))
    if status == "Failed":
        with pytest.raises(ActivityFailedException) as info:
            run.wait_for_completion(show_output=True)
        assert message in str(info.value)
        assert '"code": "UserError"' in str(info.value)
        details = run.get_details()
        assert details["error"]["error"]["message"] == message
        assert run.wait_for_completion(raise_on_error=False)["status"] == "Failed"
    else:
        assert run.wait_for_completion(show_output=True)["status"] == "Completed"
        assert "done early" in capsys.readouterr().out
    assert run.get_status() == status


HOLD = """
    import os, sys, time
    from runwire import Run
    run = Run.get_context()
    print("pid", os.getpid(), flush=True)
    run.log("started", 1)
    run.flush()
    gate = sys.argv[1]
    while not os.path.exists(gate):
        time.sleep(0.02)
    print("released", flush=True)
"""


def test_kill9_of_the_training_process_fails_the_run(experiment, tmp_path):
    run = experiment.submit(config(source(tmp_path / "src", HOLD), [str(tmp_path / "never")]))
    pid = int(wait_log(run, r"pid (\d+)").group(1))
    assert run.get_status() == "Running"
    os.kill(pid, signal.SIGKILL)
    assert wait_status(run, {"Failed", "Completed", "Canceled"}) == "Failed"
    assert "SIGKILL" in run.get_details()["error"]["error"]["message"]
    assert run.get_metrics()["started"] == 1


# --- cancel ---------------------------------------------------------------------------------------


@pytest.mark.both_stores
def test_cancel_while_queued_and_while_running(experiment, tmp_path):
    folder = source(tmp_path / "src", HOLD)
    gate = str(tmp_path / "never")
    running = [experiment.submit(config(folder, [gate])) for _ in range(2)]  # the node has 2 slots
    pids = [int(wait_log(r, r"pid (\d+)").group(1)) for r in running]
    queued = experiment.submit(config(folder, [gate]))
    assert wait_status(queued, {"Queued"}) == "Queued"

    queued.cancel()
    assert queued.get_status() == "Canceled"  # at once: it never ran

    running[0].cancel()
    assert running[0].get_status() in ("CancelRequested", "Canceled")
    assert wait_status(running[0], {"Canceled", "Failed", "Completed"}) == "Canceled"
    wait_for(lambda: pid_gone(pids[0]), 30, "the canceled job's process to end")
    assert not pid_gone(pids[1])  # the other job is untouched

    running[1].cancel()
    assert wait_status(running[1], {"Canceled", "Failed", "Completed"}) == "Canceled"
    wait_for(lambda: pid_gone(pids[1]), 30, "the second canceled job's process to end")
    assert "released" not in log_text(queued)


# --- queueing and fair leasing over two nodes -----------------------------------------------------


def test_two_nodes_share_a_target_fairly_and_run_each_job_once(jobs, experiment, tmp_path):
    from runwire import ComputeTarget, Run

    for name in ("node-a", "node-b"):
        jobs.start_extra_agent(name, ["--compute-target", "pool", "--slots", "1"])
    target = ComputeTarget(experiment.workspace, "pool")
    wait_for(
        lambda: (
            sum(n.connected for t in experiment.workspace._transport.list_compute_targets("pool") for n in t.nodes) == 2
        ),
        30,
        "both nodes to join target pool",
    )
    gate = tmp_path / "go"
    ledger = tmp_path / "ledger.txt"
    code = """
        import os, sys, time
        from runwire import Run
        run = Run.get_context()
        with open(sys.argv[2], "a") as f:
            f.write(f"{run.id} {os.environ['RUNWIRE_AGENT_SOCKET']}\\n")
        while not os.path.exists(sys.argv[1]):
            time.sleep(0.02)
    """
    folder = source(tmp_path / "src", code)
    runs = [experiment.submit(config(folder, [str(gate), str(ledger)], target="pool")) for _ in range(6)]

    def two_running_four_queued():
        active = list(target.get_active_runs())
        by = {s: sum(1 for a in active if a.status == s) for s in ("Running", "Queued")}
        return by["Running"] == 2 and by["Queued"] == 4 and len(active) == 6

    wait_for(two_running_four_queued, JOB_TIMEOUT_S, "2 runs Running and 4 Queued on target pool")
    assert {r.run_id for r in Run.list_by_compute(target, status="Queued")} <= {r.id for r in runs}
    gate.write_text("go")
    for r in runs:
        assert r.wait_for_completion()["status"] in ("Completed", "Finalizing")
        assert wait_status(r, {"Completed", "Failed", "Canceled"}) == "Completed"
    entries = [line.split() for line in ledger.read_text().splitlines()]
    assert sorted(e[0] for e in entries) == sorted(r.id for r in runs)  # each run executed exactly once
    per_node = {sock: sum(1 for e in entries if e[1] == sock) for sock in {e[1] for e in entries}}
    assert len(per_node) == 2 and min(per_node.values()) >= 2, per_node  # both nodes took their share
    assert list(target.get_active_runs()) == []


# --- an agent killed while running a job ----------------------------------------------------------


def test_agent_killed_while_running_a_job(jobs, experiment, tmp_path):
    node = jobs.start_extra_agent("node-x", ["--compute-target", "solo", "--slots", "1"])
    folder = source(tmp_path / "src", HOLD)
    first = experiment.submit(config(folder, [str(tmp_path / "never")], target="solo"))
    pid = int(wait_log(first, r"pid (\d+)").group(1))
    second = experiment.submit(config(folder, [str(tmp_path / "go")], target="solo"))
    assert wait_status(second, {"Queued"}) == "Queued"

    node.kill9()
    wait_for(lambda: pid_gone(pid), 30, "the job's process to die with its agent")
    assert wait_status(first, {"Failed", "Completed", "Canceled"}, timeout=LEASE_TTL_S + 30) == "Failed"
    assert "node" in first.get_details()["error"]["error"]["message"].lower()
    assert second.get_status() == "Queued"  # never started: still waiting for a node

    (tmp_path / "go").write_text("go")
    jobs.start_extra_agent("node-y", ["--compute-target", "solo", "--slots", "1"])
    assert wait_status(second, {"Completed", "Failed", "Canceled"}) == "Completed"
    assert "released" in log_text(second)


# --- child runs from inside a submitted script ----------------------------------------------------


def test_child_runs_and_parent_logging_from_a_script(experiment, tmp_path):
    code = """
        from runwire import Run
        run = Run.get_context()
        child = run.child_run("fold-0")
        child.log("acc", 0.9)
        child.parent.log_row("summary", fold=0, acc=0.9)
        child.complete()
        for i, c in enumerate(run.create_children(count=2)):
            c.log("i", i)
            c.complete()
        run.log("done", True)
    """
    run = experiment.submit(config(source(tmp_path / "src", code)))
    assert run.wait_for_completion()["status"] in ("Completed", "Finalizing")
    wait_status(run, {"Completed"})
    children = list(run.get_children())
    assert len(children) == 3
    assert {c.get_status() for c in children} == {"Completed"}
    assert {c.get_details()["target"] for c in children} == {"local"}
    metrics = run.get_metrics()
    assert metrics["summary"] == {"fold": 0, "acc": 0.9}
    assert metrics["done"] is True
    tree = run.get_metrics(recursive=True)
    assert set(tree) == {run.id, *(c.id for c in children)}
    assert sorted(m["acc"] for m in tree.values() if "acc" in m) == [0.9]
    assert sorted(m["i"] for m in tree.values() if "i" in m) == [0, 1]


# --- snapshots ------------------------------------------------------------------------------------


def test_amlignore_is_honoured_by_the_snapshot(experiment, tmp_path):
    code = """
        import os
        for root, dirs, files in sorted(os.walk(".")):
            for f in sorted(files):
                print("file", os.path.relpath(os.path.join(root, f), "."))
    """
    folder = source(
        tmp_path / "src",
        code,
        **{".amlignore": "data/\n*.bin\n", "data__big.txt": "x" * 1000, "w.bin": "b", "keep__me.txt": "k"},
    )
    run = experiment.submit(config(folder))
    assert run.wait_for_completion(show_output=False, wait_post_processing=True)["status"] == "Completed"
    listed = set(re.findall(r"^file (.+)$", log_text(run), re.M))
    assert {"train.py", ".amlignore", "keep/me.txt"} <= listed
    assert not any(p.startswith("data") or p.endswith(".bin") for p in listed)
    with zipfile.ZipFile(run.restore_snapshot(path=str(tmp_path / "restored"))) as zf:
        members = set(zf.namelist())
    assert members == {"train.py", ".amlignore", "keep/me.txt"}


# --- the same script outside a submitted run: the offline fallback --------------------------------


def test_the_script_runs_offline_outside_a_submitted_run(tmp_path):
    folder = source(tmp_path / "src", TRAIN)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNWIRE_")}
    env["RUNWIRE_HOME"] = str(tmp_path / "home")
    done = subprocess.run(
        [sys.executable, "train.py", "0.25"], cwd=folder, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "Attempted to log scalar metric loss:\n1.0" in done.stdout
    assert "Attempted to log scalar metric alpha:\n0.25" in done.stdout
    strict = subprocess.run(
        [sys.executable, "-c", "from runwire import Run\nRun.get_context(allow_offline=False)"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert strict.returncode != 0 and "RunEnvironmentException" in strict.stderr


# --- truthful status for processes that die without ending their runs -----------------------------


@pytest.mark.parametrize("how", ["kill9", "exception"])
def test_a_start_logging_process_that_dies_leaves_its_run_failed(jobs, ws, tmp_path, how):
    from runwire import Experiment, Run

    code = f"""
        import os, sys, time
        from runwire import Workspace, Experiment
        exp = Experiment(Workspace.from_config(), "jobs-e2e")
        run = exp.start_logging(snapshot_directory=None, outputs=False)
        child = run.child_run("inner")
        run.log("x", 1)
        run.flush()
        print(run.id, child.id, os.getpid(), flush=True)
        if {how!r} == "exception":
            raise RuntimeError("boom")
        while True:
            time.sleep(1)
    """
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**os.environ, **jobs.env()},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    run_id, child_id, pid = proc.stdout.readline().split()
    experiment = Experiment(ws, "jobs-e2e")
    run = Run(experiment, run_id)
    if how == "kill9":
        assert run.get_status() == "Running"
        os.kill(int(pid), signal.SIGKILL)
    # not reaped until the agent has reported: its exit status stays readable meanwhile
    assert wait_status(run, {"Failed", "Completed", "Canceled"}, timeout=30) == "Failed"
    proc.wait(60)
    message = run.get_details()["error"]["error"]["message"]
    assert pid in message
    if how == "kill9":
        assert "SIGKILL" in message
    assert wait_status(Run(experiment, child_id), {"Failed", "Completed", "Canceled"}, timeout=30) == "Failed"
    assert run.get_metrics()["x"] == 1
