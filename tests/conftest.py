from __future__ import annotations

import os

import pytest

from tests import pgtest
from tests.procs import running_cluster, workspace_for

STORE_KINDS = ("sqlite", "postgresql")
"""The collector stores a test marked `both_stores` runs against (its `cluster` fixture's `--store`)."""


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "both_stores: run the test's cluster on each store (SQLite, then a fresh PostgreSQL database)"
    )


def pytest_generate_tests(metafunc):
    if metafunc.definition.get_closest_marker("both_stores") and "cluster_store" in metafunc.fixturenames:
        metafunc.parametrize("cluster_store", STORE_KINDS, indirect=True)


@pytest.fixture
def cluster_store(request):
    """The `--store` URL of this test's collector: None (SQLite in its data folder), or, for the
    `postgresql` case of a `both_stores` test, a database of its own, dropped afterwards."""
    if getattr(request, "param", "sqlite") == "sqlite":
        yield None
        return
    with pgtest.throwaway_database() as url:
        yield url


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
def cluster(request, cluster_store):
    """A real collector and agent (separate processes) on a temp socket and an ephemeral port."""
    with running_cluster(request, store_url=cluster_store) as c:
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
