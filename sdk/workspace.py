"""`Workspace`: the handle on one runwire deployment (RUN_API.md §2)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runwire._transports import Transport
from runwire.config import DEFAULT_WORKSPACE_NAME, Endpoint, explicit_endpoint, load_endpoint

if TYPE_CHECKING:
    from runwire.compute import ComputeTarget
    from runwire.experiment import Experiment
    from runwire.run import Run

_transports: dict[tuple[str | None, ...], Transport] = {}


def _transport_for(endpoint: Endpoint) -> Transport:
    e = endpoint
    key = (e.collector, e.agent_socket, e.token, e.tls_ca, e.tls_cert, e.tls_key)
    transport = _transports.get(key)
    if transport is None:
        transport = _transports[key] = Transport(endpoint)
    return transport


class Workspace:
    """`Workspace.from_config()` finds the running `runwire up`; `Workspace(...)` takes explicit values.

    With no arguments the endpoint comes from the environment and config files (see `runwire.config`).
    """

    def __init__(
        self,
        subscription_id: str | None = None,
        resource_group: str | None = None,
        workspace_name: str | None = None,
        auth: Any = None,
        _location: str | None = None,
        *,
        collector: str | None = None,
        agent_socket: str | None = None,
        token: str | None = None,
        studio: str | None = None,
        _endpoint: Endpoint | None = None,
        **kwargs: Any,
    ) -> None:
        if _endpoint is None:
            if collector:
                _endpoint = explicit_endpoint(collector, agent_socket, token, studio)
            else:
                _endpoint = load_endpoint()
                if agent_socket:
                    _endpoint.agent_socket = agent_socket
                if token:
                    _endpoint.token = token
        if subscription_id:
            _endpoint.subscription_id = subscription_id
        if resource_group:
            _endpoint.resource_group = resource_group
        if workspace_name:
            _endpoint.workspace_name = workspace_name
        if _location:
            _endpoint.location = _location
        self._endpoint = _endpoint
        self._transport = _transport_for(_endpoint)

    @classmethod
    def from_config(
        cls,
        path: str | os.PathLike[str] | None = None,
        auth: Any = None,
        _logger: Any = None,
        _file_name: str | None = None,
    ) -> Workspace:
        return cls(_endpoint=load_endpoint(path, _file_name))

    @property
    def name(self) -> str:
        return self._endpoint.workspace_name or DEFAULT_WORKSPACE_NAME

    @property
    def subscription_id(self) -> str:
        return self._endpoint.subscription_id

    @property
    def resource_group(self) -> str:
        return self._endpoint.resource_group

    @property
    def location(self) -> str:
        return self._endpoint.location

    @property
    def collector(self) -> str:
        return self._endpoint.collector

    @property
    def experiments(self) -> dict[str, Experiment]:
        from runwire.experiment import Experiment

        return {
            r.name: Experiment(self, r.name, _skip_name_validation=True) for r in self._transport.list_experiments()
        }

    @property
    def compute_targets(self) -> dict[str, ComputeTarget]:
        """The compute targets the collector knows (those agents have joined), by name."""
        from runwire.compute import ComputeTarget

        return {t.name: t for t in ComputeTarget.list(self)}

    def get_run(self, run_id: str) -> Run:
        from runwire.run import Run

        return Run.get(self, run_id)

    def get_details(self) -> dict[str, Any]:
        status = self._transport.collector.status()
        return {
            "name": self.name,
            "location": self.location,
            "subscriptionId": self.subscription_id,
            "resourceGroup": self.resource_group,
            "collector": self._endpoint.collector,
            "agentSocket": self._endpoint.agent_socket,
            "studio": self._endpoint.studio,
            "version": status.version,
            "store": status.store,
        }

    def write_config(self, path: str | os.PathLike[str] | None = None, file_name: str | None = None) -> str:
        """Write `.azureml/config.json` (under `path`, default the current folder)."""
        folder = Path(path or ".") / ".azureml"
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / (file_name or "config.json")
        data = {
            "subscription_id": self.subscription_id,
            "resource_group": self.resource_group,
            "workspace_name": self.name,
            "collector": self._endpoint.collector,
        }
        if self._endpoint.agent_socket:
            data["agent_socket"] = self._endpoint.agent_socket
        if self._endpoint.studio:
            data["studio"] = self._endpoint.studio
        target.write_text(json.dumps(data, indent=2) + "\n")
        return str(target)

    def __repr__(self) -> str:
        return (
            f"Workspace.create(name='{self.name}', subscription_id='{self.subscription_id}', "
            f"resource_group='{self.resource_group}')"
        )
