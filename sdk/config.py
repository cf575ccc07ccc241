"""Where the SDK finds the collector and the agent: environment variables and config files.

Search order for `Workspace.from_config()` with no path:
  1. the file named by `RUNWIRE_CONFIG`;
  2. from the current folder up through every parent: `.runwire/`, `.azureml/`, `aml_config/`, the
     folder itself — each for `config.json`, then `project.json` (Azure ML's search, plus `.runwire/`);
  3. `~/.runwire/config.json` (the folder is `RUNWIRE_HOME` when set), which `runwire up` writes.

Environment variables override what a file says: `RUNWIRE_COLLECTOR`, `RUNWIRE_AGENT_SOCKET`,
`RUNWIRE_TOKEN`, `RUNWIRE_STUDIO`, `RUNWIRE_TLS_CA`, `RUNWIRE_TLS_CERT`, `RUNWIRE_TLS_KEY`. With no
config file at all, `RUNWIRE_COLLECTOR` and `RUNWIRE_AGENT_SOCKET` alone are enough (as inside jobs
and containers). The TLS keys of a file name PEM files; relative paths are relative to that file's folder.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runwire._runtime import default_data_dir
from runwire.exceptions import UserErrorException

CONFIG_DIRS = (".runwire", ".azureml", "aml_config", "")
CONFIG_FILES = ("config.json", "project.json")
DEFAULT_COLLECTOR = "127.0.0.1:7420"
DEFAULT_WORKSPACE_NAME = "local"


@dataclass
class Endpoint:
    """Everything a client needs to reach one runwire deployment."""

    collector: str
    agent_socket: str | None
    token: str | None = None
    studio: str | None = None
    tls_ca: str | None = None
    """PEM file of the CA of the collector's certificate: set, the client speaks TLS."""
    tls_cert: str | None = None
    """PEM file of the client certificate (collectors that require one: mutual TLS)."""
    tls_key: str | None = None
    """PEM file of the private key of `tls_cert`."""
    sdk_spool_dir: str | None = None
    workspace_name: str = DEFAULT_WORKSPACE_NAME
    subscription_id: str = "local"
    resource_group: str = "local"
    location: str = "local"
    config_path: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def spool_dir(self) -> Path:
        return Path(self.sdk_spool_dir or os.environ.get("RUNWIRE_SDK_SPOOL") or default_data_dir() / "sdk-spool")


def find_config_file(start: str | os.PathLike[str] | None = None, file_name: str | None = None) -> Path | None:
    """The first config file of the search order above, or None."""
    names = (file_name,) if file_name else CONFIG_FILES
    if start is None:
        env = os.environ.get("RUNWIRE_CONFIG")
        if env:
            path = Path(env).expanduser()
            if not path.is_file():
                raise UserErrorException(f"RUNWIRE_CONFIG names {path}, which is not a file")
            return path
        start = "."
    start_path = Path(start).expanduser()
    if start_path.is_file():
        return start_path
    for folder in (start_path.resolve(), *start_path.resolve().parents):
        for sub in CONFIG_DIRS:
            for name in names:
                candidate = folder / sub / name
                if candidate.is_file():
                    return candidate
    home = default_data_dir() / "config.json"
    return home if home.is_file() else None


def _scope_parts(scope: str) -> dict[str, str]:
    parts = scope.strip("/").split("/")
    pairs = dict(zip(parts[::2], parts[1::2], strict=False))
    return {
        "subscription_id": pairs.get("subscriptions", ""),
        "resource_group": pairs.get("resourceGroups", ""),
        "workspace_name": pairs.get("workspaces", ""),
    }


def _tls_path(name: str, data: dict[str, Any], found: Path | None) -> str | None:
    """`RUNWIRE_<NAME>` as given, else the config key (relative to the config file's folder)."""
    env = os.environ.get(f"RUNWIRE_{name.upper()}")
    if env:
        return env
    value = data.get(name)
    if not value:
        return None
    if not isinstance(value, str):
        raise UserErrorException(f"the workspace config {found}: {name} must be the path of a PEM file")
    path = Path(value).expanduser()
    if not path.is_absolute() and found is not None:
        path = found.parent / path
    return str(path)


def explicit_endpoint(
    collector: str, agent_socket: str | None = None, token: str | None = None, studio: str | None = None
) -> Endpoint:
    """An Endpoint for an explicitly named collector (`Workspace(collector=...)`); what is not given
    (token, TLS files) still comes from the environment, as with a config file."""
    return Endpoint(
        collector=collector,
        agent_socket=agent_socket,
        token=token or os.environ.get("RUNWIRE_TOKEN"),
        studio=studio,
        tls_ca=_tls_path("tls_ca", {}, None),
        tls_cert=_tls_path("tls_cert", {}, None),
        tls_key=_tls_path("tls_key", {}, None),
    )


def load_endpoint(path: str | os.PathLike[str] | None = None, file_name: str | None = None) -> Endpoint:
    """Resolve an Endpoint from a config file (searched as above) and the environment."""
    found = find_config_file(path, file_name)
    data: dict[str, Any] = {}
    if found is not None:
        try:
            data = json.loads(found.read_text())
        except (OSError, ValueError) as e:
            raise UserErrorException(f"cannot read the workspace config {found}: {e}") from e
        if not isinstance(data, dict):
            raise UserErrorException(f"the workspace config {found} must hold a JSON object")
        if "Scope" in data:
            data = {**_scope_parts(str(data["Scope"])), **data}
        azure_keys = ("subscription_id", "resource_group", "workspace_name")
        if "collector" not in data and any(k in data for k in azure_keys):
            missing = [k for k in azure_keys if not data.get(k)]
            if missing:
                raise UserErrorException(f"the workspace config {found} lacks {', '.join(missing)}")
            # An Azure-style file names a workspace but no runwire endpoint: take the endpoint
            # from the environment or from the config that `runwire up` wrote.
            home = default_data_dir() / "config.json"
            if home.is_file() and home != found:
                try:
                    data = {**json.loads(home.read_text()), **data}
                except (OSError, ValueError):
                    pass

    collector = os.environ.get("RUNWIRE_COLLECTOR") or data.get("collector")
    if not collector:
        raise UserErrorException(
            "We could not find config.json in: "
            f"{Path(path or '.').resolve()} or in its parent directories, nor {default_data_dir() / 'config.json'}. "
            "Start runwire with `runwire up` (it writes that file), or set RUNWIRE_COLLECTOR "
            "(and RUNWIRE_AGENT_SOCKET) in the environment."
        )
    return Endpoint(
        collector=collector,
        agent_socket=os.environ.get("RUNWIRE_AGENT_SOCKET") or data.get("agent_socket"),
        token=os.environ.get("RUNWIRE_TOKEN") or data.get("token"),
        studio=os.environ.get("RUNWIRE_STUDIO") or data.get("studio"),
        tls_ca=_tls_path("tls_ca", data, found),
        tls_cert=_tls_path("tls_cert", data, found),
        tls_key=_tls_path("tls_key", data, found),
        sdk_spool_dir=data.get("sdk_spool_dir"),
        workspace_name=data.get("workspace_name") or DEFAULT_WORKSPACE_NAME,
        subscription_id=data.get("subscription_id") or "local",
        resource_group=data.get("resource_group") or "local",
        location=data.get("location") or "local",
        config_path=str(found) if found else None,
        extra={k: v for k, v in data.items() if k not in Endpoint.__dataclass_fields__},
    )
