from __future__ import annotations

import os

import pytest

from tests.procs import running_cluster, workspace_for


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """No test touches the real ~/.runwire: RUNWIRE_HOME points into the test's temp folder."""
    monkeypatch.setenv("RUNWIRE_HOME", str(tmp_path / "runwire-home"))
    for var in (
        "RUNWIRE_CONFIG",
        "RUNWIRE_COLLECTOR",
        "RUNWIRE_AGENT_SOCKET",
        "RUNWIRE_TOKEN",
        "RUNWIRE_SDK_SPOOL",
        "RUNWIRE_TLS_CA",
        "RUNWIRE_TLS_CERT",
        "RUNWIRE_TLS_KEY",
    ):
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
    with running_cluster(request) as c:
        yield c


@pytest.fixture
def workspace(cluster, monkeypatch):
    """A Workspace in this test process, pointed at `cluster` through the environment alone."""
    return workspace_for(cluster, monkeypatch)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


os.environ.setdefault("PYTHONUNBUFFERED", "1")
