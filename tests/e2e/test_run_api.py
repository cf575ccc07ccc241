"""The Run API end to end through a real agent and collector (separate processes)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from runwire import Experiment, Run, UserErrorException, get_run
from runwire.exceptions import MetricTypeError


@pytest.mark.both_stores
def test_logging_api_scenario_shapes_and_types(workspace):
    """RUN_API.md §17 C: every kind logged once or many times comes back in Azure's shapes."""
    experiment = Experiment(workspace, "logging-api-test")
    run = experiment.start_logging()
    run_id = run.id
    assert run.get_status() == "Running"
    run.log("Category", "Red")
    run.log("scale factor", 2)
    run.log("Magic Number", 84)
    run.log("neg", -10.0)
    run.log_list("Fibonacci", (2 * x for x in [0, 1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89]))
    run.log_list("single", [7])
    run.log_list("mixed", [1, 2.5])
    for i in range(-10, 10):
        run.log("Sigmoid", 1 / (1 + np.exp(-i)))
    sines = {"angle": [], "sine": []}
    for i in range(-10, 10):
        angle = i / 2.0 * 2
        run.log_row("Cosine Wave", angle=angle, cos=np.cos(angle))
        sines["angle"].append(angle)
        sines["sine"].append(np.sin(angle))
    run.log_table("Sine Wave", sines)
    run.log_row("once", x=1, y=0.4)
    run.log_table("one-row", {"a": [1], "b": ["x"]})
    run.log_table("appended", {"a": [1, 2]})
    run.log_row("appended", a=3)
    run.log_table("appended", {"a": [4]})
    run.log("flag", True)
    run.log("nothing", None)
    run.log("nan", float("nan"))
    run.log("inf", float("inf"))
    run.log("f32", np.float32(0.1))
    run.complete()
    assert run.get_status() == "Completed"

    fetched = Run(experiment, run_id)
    m = fetched.get_metrics()
    assert m["Category"] == "Red"
    assert m["scale factor"] == 2 and type(m["scale factor"]) is int
    assert m["Magic Number"] == 84
    assert m["neg"] == -10.0 and type(m["neg"]) is float
    assert m["Fibonacci"] == [0, 2, 2, 4, 6, 10, 16, 26, 42, 68, 110, 178]
    assert m["single"] == 7
    assert m["mixed"] == [1.0, 2.5] and all(type(x) is float for x in m["mixed"])
    assert len(m["Sigmoid"]) == 20 and m["Sigmoid"][10] == 0.5
    assert list(m["Cosine Wave"]) == ["angle", "cos"] and len(m["Cosine Wave"]["cos"]) == 20
    assert m["Sine Wave"]["angle"] == sines["angle"]
    assert m["once"] == {"x": 1, "y": 0.4}
    assert m["one-row"] == {"a": 1, "b": "x"}
    assert m["appended"] == {"a": [1, 2, 3, 4]}
    assert m["flag"] is True
    assert m["nothing"] is None
    assert math.isnan(m["nan"]) and m["inf"] == math.inf
    assert m["f32"] == 0.10000000149011612
    assert fetched.get_metrics(name="scale factor") == {"scale factor": 2}
    assert fetched.get_metrics(name="no such metric") == {}
    assert get_run(experiment, run_id).id == run_id


def test_metric_series_arrays_with_steps(workspace):
    run = Experiment(workspace, "series").start_logging()
    for i in range(1000):
        run.log("loss", 1.0 / (i + 1), step=i * 10)
    run.log_row("curve", x=1, y=2.0)
    run.flush()
    s = run.get_metric_series("loss")
    assert s.has_steps and s.kind == "scalar"
    np.testing.assert_array_equal(s.steps, np.arange(1000) * 10)
    np.testing.assert_array_equal(s.values, 1.0 / (np.arange(1000) + 1))
    assert s.timestamps.dtype == np.float64 and np.all(np.diff(s.timestamps) >= 0)
    # steps are stored but get_metrics keeps Azure's shape
    assert run.get_metrics("loss")["loss"][:2] == [1.0, 0.5]
    table = run.get_metric_series("curve")
    assert table.kind == "table" and table.columns["y"].tolist() == [2.0]
    with pytest.raises(UserErrorException, match="no metric named"):
        run.get_metric_series("missing")
    run.complete()


def test_kind_and_type_conflicts_raise_at_call_site(workspace):
    run = Experiment(workspace, "conflicts").start_logging()
    run.log("a", 1)
    with pytest.raises(MetricTypeError, match="keeps the kind"):
        run.log_list("a", [1, 2])
    with pytest.raises(TypeError, match="holds number values"):
        run.log("a", "text")
    run.log("a", 2.5)  # ints and floats mix
    run.complete()
    assert run.get_metrics()["a"] == [1.0, 2.5]


@pytest.mark.both_stores
def test_tags_properties_and_details(workspace):
    experiment = Experiment(workspace, "tags")
    run = experiment.start_logging(display_name="first", description="d", tags={"team": "a"})
    run.tag("My Favorite Run")
    run.tag("Competition Rank", 1)
    run.set_tags({"x": "1", "y": "2"})
    run.remove_tags(["y"])
    assert run.get_tags() == {"team": "a", "My Favorite Run": None, "Competition Rank": "1", "x": "1"}
    run.add_properties({"author": "me"})
    run.add_properties({"author": "me"})  # same value again is fine
    with pytest.raises(UserErrorException, match="author"):
        run.add_properties({"author": "you"})
    assert run.get_properties()["author"] == "me"
    assert run.display_name == "first" and run.description == "d"
    run.display_name = "renamed"
    assert Run(experiment, run.id).display_name == "renamed"
    details = run.get_details()
    assert details["runId"] == run.id and details["status"] == "Running" and details["target"] == "local"
    assert "endTimeUtc" not in details and details["startTimeUtc"].endswith("Z")
    run.complete()
    details = run.get_details()
    assert details["status"] == "Completed" and details["endTimeUtc"] >= details["startTimeUtc"]
    assert str(run) == f"Run(Experiment: tags,\nId: {run.id},\nType: None,\nStatus: Completed)"
    assert run.id in run.get_portal_url()


def test_lifecycle_with_block_fail_cancel(workspace):
    experiment = Experiment(workspace, "lifecycle")
    with experiment.start_logging() as run:
        run.log("x", 1)
    assert run.get_status() == "Completed"
    with pytest.raises(RuntimeError), experiment.start_logging() as failing:
        raise RuntimeError("boom")
    details = failing.get_details()
    assert details["status"] == "Failed"
    assert details["error"]["error"]["message"] == "User program failed with RuntimeError: boom"
    with experiment.start_logging() as exiting:
        raise SystemExit(0)
    assert exiting.get_status() == "Completed"
    canceled = experiment.start_logging()
    canceled.cancel()
    assert canceled.get_status() == "Canceled"
    failed = experiment.start_logging()
    failed.fail("bad data", error_code="DataError")
    assert failed.get_details()["error"] == {"error": {"code": "DataError", "message": "bad data"}}
    with pytest.raises(TypeError):
        failed.fail(42)
    numbers = [r.number for r in experiment.get_runs()]
    assert numbers == sorted(numbers, reverse=True) and len(numbers) == 5


@pytest.mark.both_stores
def test_child_runs_and_recursive_metrics(workspace):
    experiment = Experiment(workspace, "children")
    parent = experiment.start_logging()
    parent.log("p", 1)
    child = parent.child_run("c1")
    assert child.get_status() == "Running" and child.parent.id == parent.id
    child.log("c", 2)
    child.parent.log_row("from child", a=1)
    grandchild = child.child_run()
    grandchild.log("g", 3.5)
    batch = parent.create_children(count=3)
    assert {c.get_tags()["azureml.batch_child_number"] for c in batch} == {"0", "1", "2"}
    with pytest.raises(UserErrorException):
        parent.create_children(count=2, tag_key="k", tag_values=["a"])
    for r in (grandchild, child, *batch, parent):
        r.complete()
    assert parent.get_metrics() == {"p": 1, "from child": {"a": 1}}
    recursive = parent.get_metrics(recursive=True)
    assert recursive == {parent.id: {"p": 1, "from child": {"a": 1}}, child.id: {"c": 2}, grandchild.id: {"g": 3.5}}
    assert [c.id for c in parent.get_children()][-1] == child.id
    assert len(list(parent.get_children())) == 4
    assert {r.id for r in parent.get_children(recursive=True)} == {child.id, grandchild.id, *(b.id for b in batch)}
    assert [r.id for r in experiment.get_runs()] == [parent.id]
    assert len(list(experiment.get_runs(include_children=True))) == 6
    assert [r.id for r in experiment.get_runs(tags="azureml.batch_child_number", include_children=True)] == [
        b.id for b in reversed(batch)
    ]
    assert parent.parent is None


def test_experiment_names_and_workspace(workspace):
    with pytest.raises(UserErrorException, match="invalid"):
        Experiment(workspace, "has space")
    with pytest.raises(UserErrorException):
        Experiment(workspace, "-starts-with-dash")
    e1 = Experiment(workspace, "same")
    e2 = Experiment(workspace, "same")
    assert e1.id == e2.id
    assert "same" in workspace.experiments
    assert workspace.name == "local" and workspace.location == "local"
    assert str(e1) == "Experiment(Name: same,\nWorkspace: local)"
