"""The submit API surface (RUN_API.md §3, §9.4, §11, §12, §13, §15) through a real collector and a
real agent that is a node of compute target `local` (2 slots): what `experiment.submit` returns,
`get_details` / `get_details_with_logs`, the exact text of `wait_for_completion(show_output=True)`,
ActivityFailedException, `Run.get_context()` in a submitted script, `Run.list_by_compute`,
`submit_child`."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from runwire import ComputeTarget, Environment, Experiment, Run, ScriptRun, ScriptRunConfig
from runwire.exceptions import ActivityFailedException, UserErrorException
from tests.procs import running_cluster, wait_for, workspace_for

TIMEOUT_S = 90


@pytest.fixture
def node(request):
    """A collector and an agent that joined compute target `local` with 2 slots."""
    with running_cluster(request, agent_args=["--compute-target", "local", "--slots", "2"]) as c:
        yield c


@pytest.fixture
def ws(node, monkeypatch):
    return workspace_for(node, monkeypatch)


@pytest.fixture
def experiment(ws):
    return Experiment(ws, "submit-api")


def folder_with(tmp_path: Path, code: str, name: str = "train.py", **files: str) -> Path:
    folder = tmp_path / "src"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(textwrap.dedent(code))
    for rel, text in files.items():
        (folder / rel).write_text(textwrap.dedent(text))
    return folder


def config(folder: Path, arguments: list | None = None, script: str = "train.py") -> ScriptRunConfig:
    env = Environment("user-managed-env")
    env.python.user_managed_dependencies = True
    env.python.interpreter_path = sys.executable
    return ScriptRunConfig(source_directory=str(folder), script=script, arguments=arguments or [], environment=env)


GATED = """
    import os, sys, time
    print("waiting", flush=True)
    while not os.path.exists(sys.argv[1]):
        time.sleep(0.02)
    print("released", flush=True)
"""


def wait_status(run: Run, statuses: set[str]) -> str:
    return wait_for(lambda: (s := run.get_status()) in statuses and s, TIMEOUT_S, f"{run.id} to reach {statuses}")


def test_submit_returns_a_queued_script_run_at_once(experiment, tmp_path):
    gate = tmp_path / "gate"
    run = experiment.submit(config(folder_with(tmp_path, GATED), [str(gate)]), tags={"kind": "api", "n": 1})
    assert isinstance(run, ScriptRun) and ScriptRun.RUN_TYPE == "azureml.scriptrun"
    assert re.fullmatch(r"submit-api_\d{10}_[0-9a-f]{8}", run.id)
    assert abs(int(run.id.split("_")[1]) - time.time()) < 60
    assert run.type == "azureml.scriptrun"
    assert run.status == "Queued"  # as created: the agent has not leased it yet
    assert run.tags == {"kind": "api", "n": "1"}
    props = run.properties
    assert props["azureml.runsource"] == "azureml.scriptrun"
    assert props["ContentSnapshotId"] == run.get_snapshot_id()
    assert "runwire.submitted_by" in props
    # however it is loaded, a script run is a ScriptRun
    assert isinstance(Run(experiment, run.id), ScriptRun)
    assert isinstance(Run.get(experiment.workspace, run.id), ScriptRun)
    assert isinstance(next(r for r in experiment.get_runs() if r.id == run.id), ScriptRun)
    gate.write_text("go")
    assert run.wait_for_completion(wait_post_processing=True)["status"] == "Completed"


def test_submit_arguments_are_checked(experiment, tmp_path):
    folder = folder_with(tmp_path, "print('x')\n")
    with pytest.raises(TypeError, match="unexpected keyword argument 'show_output'"):
        experiment.submit(config(folder), show_output=True)
    with pytest.raises(UserErrorException, match="ScriptRunConfig"):
        experiment.submit({"script": "train.py"})
    docker = config(folder)
    docker.run_config.environment.docker.enabled = True
    with pytest.raises(UserErrorException, match="docker"):
        experiment.submit(docker)
    run = experiment.submit(config(folder), run_id="my-own-id", credential_passthrough=False)
    assert run.id == "my-own-id"
    assert run.wait_for_completion(wait_post_processing=True)["status"] == "Completed"


def test_show_output_prints_exactly_azures_text(experiment, tmp_path, capsys):
    code = """
        print("line one")
        print("line two")
        print("  indented  ")
        print("")
        print("last")
    """
    run = experiment.submit(config(folder_with(tmp_path, code)))
    details = run.wait_for_completion(show_output=True)
    out = capsys.readouterr().out
    url = run.get_portal_url()
    title = "Streaming user_logs/std_log.txt"
    head = f"RunId: {run.id}\nWeb View: {url}\n\n{title}\n{'=' * len(title)}\n\n"
    tail = f"\nExecution Summary\n=================\nRunId: {run.id}\nWeb View: {url}\n\n"
    assert out.startswith(head), out
    assert out.endswith(tail), out
    assert out[len(head) : -len(tail)] == "line one\nline two\n  indented  \n\nlast\n"
    assert details["status"] == "Completed"
    # an already finished run: the same text again, promptly
    started = time.monotonic()
    run.wait_for_completion(show_output=True)
    assert time.monotonic() - started < 10
    assert capsys.readouterr().out == out


def test_get_details_shape_while_running_and_after(experiment, tmp_path):
    gate = tmp_path / "gate"
    folder = folder_with(tmp_path, GATED)
    cfg = config(folder, [str(gate), 7])
    cfg.run_config.environment.environment_variables = {"MY_VAR": "1"}
    run = experiment.submit(cfg)
    wait_status(run, {"Running"})
    wait_for(
        lambda: "waiting" in run.get_details_with_logs()["logFiles"].get("user_logs/std_log.txt", ""), TIMEOUT_S, "log"
    )
    details = run.get_details()
    assert details["runId"] == run.id
    assert details["target"] == "local"
    assert details["status"] == "Running"
    assert "endTimeUtc" not in details
    assert details["startTimeUtc"].endswith("Z")
    assert details["inputDatasets"] == [] and details["outputDatasets"] == []
    assert details["properties"]["ContentSnapshotId"]
    rd = details["runDefinition"]
    assert rd["script"] == "train.py"
    assert rd["arguments"] == [str(gate), "7"]
    assert rd["target"] == "local"
    assert rd["command"] == ""
    assert rd["environment"]["name"] == "user-managed-env"
    assert rd["environment"]["python"] == {"userManagedDependencies": True, "interpreterPath": sys.executable}
    assert rd["environment"]["environmentVariables"] == {"MY_VAR": "1"}
    assert rd["maxRunDurationSeconds"] == 2592000
    assert rd["sourceDirectory"] == str(folder)
    url = details["logFiles"]["user_logs/std_log.txt"]
    assert url.endswith(f"/api/v1/runs/{run.id}/logs/user_logs/std_log.txt")
    assert run.get_environment().python.interpreter_path == sys.executable

    gate.write_text("go")
    final = run.wait_for_completion(wait_post_processing=True)
    assert final["status"] == "Completed" and final["endTimeUtc"].endswith("Z")
    logs = run.get_details_with_logs()["logFiles"]
    assert logs["user_logs/std_log.txt"] == "waiting\nreleased\n"
    (path,) = run.get_all_logs(destination=str(tmp_path / "logs"))
    assert path == str(tmp_path / "logs" / "user_logs" / "std_log.txt")
    assert Path(path).read_text() == "waiting\nreleased\n"


def test_failed_run_raises_with_the_error_json(experiment, tmp_path, capsys):
    code = """
        print("about to fail")
        raise ValueError("bad alpha")
    """
    run = experiment.submit(config(folder_with(tmp_path, code)))
    with pytest.raises(ActivityFailedException) as info:
        run.wait_for_completion(show_output=True)
    text = str(info.value)
    error = json.loads(text[text.index("{") :])
    assert error["error"]["code"] == "UserError"
    assert error["error"]["message"] == "User program failed with ValueError: bad alpha"
    out = capsys.readouterr().out
    assert "about to fail\n" in out and "Execution Summary" in out
    # raise_on_error=False: printed and returned instead
    details = run.wait_for_completion(show_output=True, raise_on_error=False)
    out = capsys.readouterr().out
    assert details["status"] == "Failed"
    assert details["error"] == error
    assert out.endswith("\nError:\n" + json.dumps(error, indent=4) + "\n\n")
    with pytest.raises(ActivityFailedException, match="bad alpha"):
        run.wait_for_completion()


def test_get_context_in_a_submitted_script(experiment, tmp_path):
    code = """
        import os
        from runwire import Run
        from runwire.script_run import ScriptRun
        run = Run.get_context()
        assert Run.get_context() is run
        print("type", type(run).__name__, run.type)
        print("id", run.id == os.environ["RUNWIRE_RUN_ID"])
        print("outputs", run._outputs_dir)
        run.log("m", 1)
        run.complete()  # flushes; the status stays the node's
        print("status", run.get_status())
    """
    run = experiment.submit(config(folder_with(tmp_path, code)))
    assert run.wait_for_completion(show_output=False, wait_post_processing=True)["status"] == "Completed"
    log = run.get_details_with_logs()["logFiles"]["user_logs/std_log.txt"].splitlines()
    assert log == ["type ScriptRun azureml.scriptrun", "id True", "outputs None", "status Running"]
    assert run.get_metrics() == {"m": 1}


def test_active_runs_per_compute_target(experiment, tmp_path):
    gate = tmp_path / "gate"
    folder = folder_with(tmp_path, GATED)
    runs = [experiment.submit(config(folder, [str(gate)]), tags={"i": str(i)}) for i in range(3)]
    target = ComputeTarget(experiment.workspace, "local")
    assert "local" in experiment.workspace.compute_targets
    assert "local" in [t.name for t in ComputeTarget.list(experiment.workspace)]

    def two_running_one_queued():
        active = list(target.get_active_runs())
        return [a.status for a in active].count("Running") == 2 and [a.status for a in active].count("Queued") == 1

    wait_for(two_running_one_queued, TIMEOUT_S, "2 runs Running and 1 Queued")
    active = list(Run.list_by_compute(target))
    assert {a.run_id for a in active} == {r.id for r in runs}
    queued = list(Run.list_by_compute("local", status="Queued"))
    assert len(queued) == 1
    q = queued[0]
    assert q["run_id"] == q.run_id and q.experiment_name == "submit-api" and q.target == "local"
    assert q.type == "azureml.scriptrun" and q.experiment_id == experiment.id
    assert q.tags["i"] in {"0", "1", "2"}
    running = list(target.get_active_runs(status="Running"))
    assert len(running) == 2 and all(r.node_id for r in running)
    assert [r.run_id for r in target.get_active_runs(tags={"i": "0"})] == [runs[0].id]
    assert list(target.get_active_runs(type="something-else")) == []
    with pytest.raises(UserErrorException, match="Running"):
        target.get_active_runs(status="Failed")
    gate.write_text("go")
    for r in runs:
        assert r.wait_for_completion(wait_post_processing=True)["status"] == "Completed"
    assert list(target.get_active_runs()) == []


def test_submit_child_from_outside_and_from_a_script(experiment, tmp_path):
    parent = experiment.start_logging(snapshot_directory=None, outputs=False)
    folder = folder_with(
        tmp_path,
        """
        import sys
        from runwire import Environment, Run, ScriptRunConfig
        run = Run.get_context()
        env = Environment("inner")
        env.python.user_managed_dependencies = True
        env.python.interpreter_path = sys.executable
        child = run.submit_child(ScriptRunConfig(".", "child.py", environment=env), tags={"from": "script"})
        print("child", child.id, child.parent.id == run.id)
        child.wait_for_completion(wait_post_processing=True)
        run.parent.log("grandparent saw", 1)
        """,
        **{"child.py": "print('in the child')\n"},
    )
    child = parent.submit_child(config(folder))
    assert isinstance(child, ScriptRun) and child.parent.id == parent.id
    assert child.get_details()["status"] in ("Queued", "Preparing", "Running", "Finalizing", "Completed")
    assert child.wait_for_completion(wait_post_processing=True)["status"] == "Completed"
    grandchild_id = re.search(
        r"^child (\S+) True$", child.get_details_with_logs()["logFiles"]["user_logs/std_log.txt"], re.M
    )
    assert grandchild_id, child.get_details_with_logs()
    grandchild = Run(experiment, grandchild_id.group(1))
    assert isinstance(grandchild, ScriptRun) and grandchild.get_status() == "Completed"
    assert grandchild.tags == {"from": "script"}
    assert grandchild.get_details()["target"] == "local"
    assert [c.id for c in child.get_children()] == [grandchild.id]
    assert "in the child" in grandchild.get_details_with_logs()["logFiles"]["user_logs/std_log.txt"]
    assert parent.get_metrics() == {"grandparent saw": 1}
    parent.complete()


def test_ctrl_c_while_streaming_leaves_the_run_going(experiment, node, tmp_path):
    gate = tmp_path / "gate"
    folder = folder_with(tmp_path, GATED)
    code = f"""
        import sys
        from runwire import Environment, Experiment, ScriptRunConfig, Workspace
        from runwire.exceptions import ExperimentExecutionException
        exp = Experiment(Workspace.from_config(), "submit-api")
        env = Environment("e")
        env.python.user_managed_dependencies = True
        env.python.interpreter_path = sys.executable
        run = exp.submit(ScriptRunConfig({str(folder)!r}, "train.py", arguments=[{str(gate)!r}], environment=env))
        try:
            run.wait_for_completion(show_output=True)
        except ExperimentExecutionException as e:
            print("interrupted", run.id, run.get_status(), "still executing" in str(e), flush=True)
    """
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**os.environ, **node.env()},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:
            seen.append(line)
            if line == "waiting\n":
                break
        assert seen and seen[-1] == "waiting\n", (seen, proc.stderr.read() if proc.stderr else "")
        proc.send_signal(signal.SIGINT)
        rest = proc.stdout.read()
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    _, run_id, status, explained = rest.split()
    assert status == "Running" and explained == "True"
    run = Run(experiment, run_id)
    gate.write_text("go")
    assert run.wait_for_completion(wait_post_processing=True)["status"] == "Completed"


def test_show_output_of_a_run_without_a_log(experiment, capsys):
    """A start_logging run has no log file: the header and the summary, no "Streaming" block."""
    run = experiment.start_logging(snapshot_directory=None, outputs=False)
    run.complete()
    details = run.wait_for_completion(show_output=True)
    url = run.get_portal_url()
    assert details["status"] == "Completed" and details["logFiles"] == {}
    assert capsys.readouterr().out == (
        f"RunId: {run.id}\nWeb View: {url}\n"
        f"\nExecution Summary\n=================\nRunId: {run.id}\nWeb View: {url}\n\n"
    )


def test_show_output_streams_every_line_once_in_order(experiment, tmp_path, capsys):
    """Lines written while the stream starts (history, then live) come out once each, in order."""
    code = """
        import time
        for i in range(3000):
            print(f"line {i}", flush=(i % 7 == 0))
            if i % 500 == 0:
                time.sleep(0.05)
    """
    run = experiment.submit(config(folder_with(tmp_path, code)))
    wait_status(run, {"Running", "Finalizing", "Completed"})  # join while it writes
    run.wait_for_completion(show_output=True)
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.startswith("line ")]
    assert lines == [f"line {i}" for i in range(3000)]


def test_a_target_without_agents_warns_and_its_run_cancels_at_once(experiment, tmp_path, caplog):
    cfg = config(folder_with(tmp_path, "print('never')\n"))
    cfg.run_config.target = "nowhere"
    with caplog.at_level(logging.WARNING, logger="runwire.sdk"):
        run = experiment.submit(cfg)
    assert "no agent has joined compute target 'nowhere'" in caplog.text
    assert run.get_details()["target"] == "nowhere" and run.get_status() == "Queued"
    assert [a.run_id for a in ComputeTarget(experiment.workspace, "nowhere").get_active_runs()] == [run.id]
    run.cancel()
    assert run.status == "Canceled" and run.get_status() == "Canceled"
    assert run.wait_for_completion()["status"] == "Canceled"
