"""Workspace.from_config's search: RUNWIRE_CONFIG, .runwire/.azureml/aml_config upward, ~/.runwire."""

from __future__ import annotations

import json

import pytest

from runwire.config import find_config_file, load_endpoint
from runwire.exceptions import UserErrorException


def _write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def test_search_walks_up_and_prefers_runwire_folder(tmp_path, monkeypatch):
    deep = tmp_path / "a" / "b" / "c"
    deep.mkdir(parents=True)
    azure = _write(tmp_path / "a" / ".azureml" / "config.json", {"collector": "h:1"})
    monkeypatch.chdir(deep)
    assert find_config_file() == azure
    mine = _write(tmp_path / "a" / "b" / ".runwire" / "config.json", {"collector": "h:2"})
    assert find_config_file() == mine
    assert load_endpoint().collector == "h:2"
    project = _write(deep / "aml_config" / "project.json", {"collector": "h:3"})
    assert find_config_file() == project


def test_runwire_config_env_and_home_fallback(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    home = _write(tmp_path / "runwire-home" / "config.json", {"collector": "home:1", "agent_socket": "/s"})
    assert find_config_file() == home
    explicit = _write(tmp_path / "elsewhere.json", {"collector": "env:1"})
    monkeypatch.setenv("RUNWIRE_CONFIG", str(explicit))
    assert load_endpoint().collector == "env:1"
    monkeypatch.setenv("RUNWIRE_CONFIG", str(tmp_path / "missing.json"))
    with pytest.raises(UserErrorException, match="RUNWIRE_CONFIG"):
        load_endpoint()


def test_environment_alone_is_enough_and_overrides(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserErrorException, match="could not find config.json"):
        load_endpoint()
    monkeypatch.setenv("RUNWIRE_COLLECTOR", "127.0.0.1:9")
    monkeypatch.setenv("RUNWIRE_AGENT_SOCKET", "/tmp/a.sock")
    endpoint = load_endpoint()
    assert (endpoint.collector, endpoint.agent_socket, endpoint.config_path) == ("127.0.0.1:9", "/tmp/a.sock", None)


def test_azure_style_config_takes_endpoint_from_runwire_home(tmp_path, monkeypatch):
    _write(tmp_path / "runwire-home" / "config.json", {"collector": "up:7420", "agent_socket": "/x.sock"})
    proj = tmp_path / "proj"
    _write(proj / "config.json", {"subscription_id": "s", "resource_group": "rg", "workspace_name": "ws"})
    endpoint = load_endpoint(proj)
    assert endpoint.collector == "up:7420" and endpoint.workspace_name == "ws" and endpoint.resource_group == "rg"
    scoped = _write(tmp_path / "scope.json", {"Scope": "/subscriptions/S/resourceGroups/R/providers/p/workspaces/W"})
    assert load_endpoint(scoped).workspace_name == "W"
    bad = _write(tmp_path / "bad" / "config.json", {"subscription_id": "s", "workspace_name": "w"})
    with pytest.raises(UserErrorException, match="resource_group"):
        load_endpoint(bad)


def test_an_explicit_collector_still_takes_token_and_tls_from_the_environment(tmp_path, monkeypatch):
    from runwire import Workspace

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RUNWIRE_TOKEN", "rwt_from_env")
    monkeypatch.setenv("RUNWIRE_TLS_CA", "/etc/ca.pem")
    ws = Workspace(collector="collector.internal:7420")
    endpoint = ws._endpoint
    assert (endpoint.collector, endpoint.token, endpoint.tls_ca) == (
        "collector.internal:7420",
        "rwt_from_env",
        "/etc/ca.pem",
    )
    given = Workspace(collector="c:1", token="rwt_given")._endpoint
    assert given.token == "rwt_given"
