"""A call whose request reached the collector but whose answer was lost (tests/faultproxy.py cuts
the connection as the answer arrives) is retried by the SDK and succeeds: creating a run does not
fail on the run its first attempt created, completing it does not fail on its own Completed."""

from __future__ import annotations

import uuid

import pytest

from runwire import Experiment, UserErrorException, Workspace
from runwire.v1 import runs_pb2
from tests.faultproxy import FaultProxy

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def proxy(cluster):
    with FaultProxy(cluster.collector) as p:
        yield p


@pytest.fixture
def lossy_workspace(cluster, proxy, monkeypatch) -> Workspace:
    """A Workspace whose calls to the collector go through `proxy`."""
    for key, value in cluster.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("RUNWIRE_COLLECTOR", proxy.address)
    return Workspace.from_config()


@pytest.mark.both_stores
def test_start_logging_and_complete_survive_lost_answers(lossy_workspace, proxy, workspace):
    experiment = Experiment(lossy_workspace, "lost-answers")
    run_id = f"lost-{uuid.uuid4().hex[:8]}"

    proxy.lose_next_answer()
    run = experiment.start_logging(run_id=run_id, outputs=False, snapshot_directory=None)
    assert len(proxy.lost) == 1 and run_id.encode() in proxy.lost[0].request  # CreateRun's answer was lost
    assert proxy.connections >= 2  # the retry came on a new connection
    assert run.id == run_id and run.get_status() == "Running"
    runs = list(Experiment(workspace, "lost-answers").get_runs())  # straight to the collector
    assert [r.id for r in runs] == [run_id]  # one run

    run.log("loss", 0.5)
    proxy.lose_next_answer()
    run.complete()
    assert len(proxy.lost) == 2 and b"Completed" in proxy.lost[1].request  # UpdateRun's answer was lost
    assert run.get_status() == "Completed"
    direct = Experiment(workspace, "lost-answers")
    (stored,) = direct.get_runs(include_children=True)
    assert stored.id == run_id and stored.get_status() == "Completed"
    assert stored.get_metrics()["loss"] == 0.5


def test_without_a_request_id_the_retry_meets_its_own_run(lossy_workspace, proxy):
    """The control: the same lost answer to a CreateRun that carries no request id (as before the
    fix) makes the retry fail on the run its first attempt created."""
    collector = lossy_workspace._transport.collector
    request = runs_pb2.CreateRunRequest(experiment_name="lost-answers", run_id="bare", status="Running")
    proxy.lose_next_answer()
    with pytest.raises(UserErrorException, match="run bare already exists"):
        collector.call("CreateRun", request)
    assert len(proxy.lost) == 1 and b"bare" in proxy.lost[0].request
    assert lossy_workspace._transport.get_run("bare").status == "Running"  # the first attempt created it
