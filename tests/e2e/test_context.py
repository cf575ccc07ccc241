"""Run.get_context(): the offline run outside a submitted run, the submitted run inside one."""

from __future__ import annotations

import textwrap

import pytest

from runwire import Experiment, Run, RunEnvironmentException
from runwire import run as run_module
from tests.procs import run_script


@pytest.fixture(autouse=True)
def _fresh_context(monkeypatch):
    monkeypatch.setattr(run_module, "_context_run", None)
    monkeypatch.delenv("RUNWIRE_RUN_ID", raising=False)


def test_offline_run_prints_what_it_would_do(capsys):
    run = Run.get_context()
    assert run.id.startswith("OfflineRun_") and Run.get_context() is run
    run.log("loss", 0.5)
    run.log_list("l", [1, 2])
    run.log_row("r", x=1)
    run.tag("t", "v")
    run.flush()
    with run:
        pass
    child = run.child_run("c")
    out = capsys.readouterr().out
    assert "Attempted to log scalar metric loss:\n0.5" in out
    assert "Attempted to log list metric l:\n[1, 2]" in out
    assert "Attempted to log row metric r:\n{'x': 1}" in out
    assert "Attempted to add tag t with value v" in out
    assert f"Attempted to flush run with id {run.id}" in out
    assert f"[START] Run {run.id} context" in out and f"[STOP] Run {run.id} context" in out
    assert child.id == f"{run.id}.c"
    with pytest.raises(AttributeError):
        run.parent.log("x", 1)
    with pytest.raises(AttributeError):
        run.get_metrics()


def test_allow_offline_false_raises():
    with pytest.raises(RunEnvironmentException, match="RUNWIRE_RUN_ID"):
        Run.get_context(allow_offline=False)


SCRIPT = textwrap.dedent(
    """
    from runwire import Run
    run = Run.get_context()
    assert Run.get_context() is run
    run.log("alpha", 0.4)
    run.parent.log_row("from child", a=1, b=2.5)
    with run:
        run.log("mse", 3295.71)
    run.complete()
    print(run.id, run.get_status())
    """
)


def test_submitted_run_context_logs_and_leaves_status_to_the_executor(workspace, cluster):
    experiment = Experiment(workspace, "context")
    parent = experiment.start_logging()
    child = parent.child_run("script")
    env = {**cluster.env(), "RUNWIRE_RUN_ID": child.id}
    result = run_script(SCRIPT, env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [child.id, "Running"]
    assert child.get_metrics() == {"alpha": 0.4, "mse": 3295.71}
    assert parent.get_metrics() == {"from child": {"a": 1, "b": 2.5}}
    parent.complete()
