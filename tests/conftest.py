from __future__ import annotations

import os
import shutil

import pytest

from tests.procs import Cluster, short_tmpdir


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """No test touches the real ~/.runwire: RUNWIRE_HOME points into the test's temp folder."""
    monkeypatch.setenv("RUNWIRE_HOME", str(tmp_path / "runwire-home"))
    for var in ("RUNWIRE_CONFIG", "RUNWIRE_COLLECTOR", "RUNWIRE_AGENT_SOCKET", "RUNWIRE_TOKEN", "RUNWIRE_SDK_SPOOL"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def work(tmp_path, monkeypatch):
    """An empty working folder as the cwd (so snapshots and ./outputs stay small and local)."""
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


@pytest.fixture
def cluster(request):
    """A real collector and agent (separate processes) on a temp socket and an ephemeral port."""
    root = short_tmpdir()
    c = Cluster(root).start()
    yield c
    c.stop()
    if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
        print(c.logs())
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def workspace(cluster, monkeypatch):
    """A Workspace in this test process, pointed at `cluster` through the environment alone."""
    for key, value in cluster.env().items():
        monkeypatch.setenv(key, value)
    from runwire import Workspace

    return Workspace.from_config()


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


os.environ.setdefault("PYTHONUNBUFFERED", "1")
