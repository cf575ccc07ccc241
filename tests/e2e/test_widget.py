"""The RunDetails widget: in a real notebook executed headless (nbclient + ipykernel), and outside one."""

from __future__ import annotations

import time

import pytest

from runwire import Experiment
from runwire.widgets import RunDetails, UserRunDetails

NOTEBOOK_CELLS = [
    """
import time
from runwire import Workspace, Experiment
from runwire.widgets import RunDetails

ws = Workspace.from_config()
run = Experiment(ws, "widget-notebook").start_logging(snapshot_directory=None)
run.log("alpha", 0.5)
child = run.child_run("fold-1")
rd = RunDetails(run)
rd.show()
""",
    """
for i in range(50):
    run.log("loss", 1.0 / (i + 1), step=i)
    run.log_row("curve", x=i, y=i * i)
child.log("acc", 0.9)
run.flush(); child.flush()
""",
    """
def wait_for(cond, what, timeout=60):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {rd.get_widget_data()}"
        time.sleep(0.02)

def metric(name):
    return rd.get_widget_data()["metrics"].get(name, {})

wait_for(lambda: metric("loss").get("count") == 50 and metric("curve").get("count") == 50, "the points")
wait_for(lambda: rd.get_widget_data()["children"].get(child.id, {}).get("metrics") == {"acc": 0.9}, "the child")
def drawn(name):
    chart = rd._chart_widgets.get(name)
    return chart is not None and 'data-count="50"' in chart.get_state()["value"]

wait_for(lambda: drawn("loss") and drawn("curve"), "the charts")
data = rd.get_widget_data()
assert data["metrics"]["loss"]["chart"] == "line" and data["metrics"]["loss"]["x_label"] == "step"
assert data["metrics"]["curve"]["chart"] == "xy" and data["metrics"]["curve"]["y"][-1] == 49 * 49
assert data["metrics"]["alpha"]["chart"] is None and data["metrics"]["alpha"]["last"] == 0.5
print("LOSS_STATE", "<polyline" in rd._chart_widgets["loss"].get_state()["value"])
""",
    """
child.complete(); run.complete()
wait_for(lambda: rd.get_widget_data()["status"] == "Completed", "the status")
rd._thread.join(30)
print("FINAL", rd.get_widget_data()["status"], rd._thread.is_alive())
""",
]


def test_widget_in_a_headless_notebook(workspace, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("ipywidgets")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src.strip()) for src in NOTEBOOK_CELLS]
    client = nbclient.NotebookClient(nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": tmp_path}})
    client.execute()
    outputs = [o for cell in nb.cells for o in cell.outputs]
    errors = [o for o in outputs if o.output_type == "error"]
    assert not errors, errors
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "LOSS_STATE True" in text
    assert "FINAL Completed False" in text
    views = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(views) == 1  # show() displayed one widget
    # the frontend's copy of the models (what a browser would render), as the kernel sent it
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    values = [m["state"].get("value", "") for m in state.values() if m["model_name"] == "HTMLModel"]
    assert any('data-count="50"' in v and "<polyline" in v for v in values)
    assert any("Completed" in v for v in values)


def test_show_outside_a_notebook_prints_a_summary_and_returns(workspace, capsys):
    run = Experiment(workspace, "widget-plain").start_logging(snapshot_directory=None)
    run.log("loss", 0.25)
    run.log_list("fib", [1, 1, 2])
    run.flush()
    widget = RunDetails(run)
    assert isinstance(widget, UserRunDetails) and isinstance(widget, RunDetails)
    started = time.monotonic()
    assert widget.show() is None
    assert time.monotonic() - started < 10
    out = capsys.readouterr().out
    assert run.id in out and "Running" in out and run.get_portal_url() in out
    assert "fib, loss" in out
    html = []
    RunDetails(run).show(render_lib=html.append)
    assert len(html) == 1 and "<polyline" in html[0] and "fib" in html[0]
    run.complete()
