"""`Environment`: where a submitted script runs (RUN_API.md §13).

runwire runs scripts in existing Python interpreters on its agents' nodes; it never builds
environments. `python.user_managed_dependencies=True` runs `python.interpreter_path` as it is
(install nothing, Azure ML's meaning); otherwise the script runs with the agent's own interpreter.
Docker environments (`docker.enabled=True`) are refused at submission. Conda and pip
specifications are kept on the environment (shown in the run definition) but nothing is installed.

Registered environments (`env.register(ws)`, `Environment.get(ws, name)`) are kept as JSON files
under `RUNWIRE_HOME/environments/<workspace>/`, one per name and version.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runwire._runtime import default_data_dir
from runwire.exceptions import UserErrorException

if TYPE_CHECKING:
    from runwire.workspace import Workspace

DEFAULT_INTERPRETER = "python"
"""`python.interpreter_path` of a new Environment (Azure ML's default)."""

DEFAULT_ENVIRONMENT_NAME = "runwire-default"
"""Name of the environment of a ScriptRunConfig given none (the agent's own interpreter)."""


@dataclass
class CondaDependencies:
    """The packages an environment asks for (kept and shown; runwire installs nothing)."""

    conda_packages: list[str] = field(default_factory=list)
    pip_packages: list[str] = field(default_factory=list)
    channels: list[str] = field(default_factory=list)
    python_version: str | None = None

    @classmethod
    def create(
        cls,
        pip_packages: list[str] | None = None,
        conda_packages: list[str] | None = None,
        python_version: str | None = None,
        **kwargs: Any,
    ) -> CondaDependencies:
        return cls(list(conda_packages or []), list(pip_packages or []), [], python_version)

    def add_pip_package(self, pip_package: str) -> None:
        if pip_package not in self.pip_packages:
            self.pip_packages.append(pip_package)

    def add_conda_package(self, conda_package: str) -> None:
        if conda_package not in self.conda_packages:
            self.conda_packages.append(conda_package)

    def serialize_to_string(self) -> str:
        """A conda environment file (YAML) for these packages."""
        deps = ([f"python={self.python_version}"] if self.python_version else []) + list(self.conda_packages)
        lines = ["name: project_environment", "dependencies:"] + [f"- {d}" for d in deps]
        if self.pip_packages:
            lines += ["- pip:"] + [f"  - {p}" for p in self.pip_packages]
        if self.channels:
            lines += ["channels:"] + [f"- {c}" for c in self.channels]
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {
            "condaPackages": list(self.conda_packages),
            "pipPackages": list(self.pip_packages),
            "channels": list(self.channels),
            "pythonVersion": self.python_version,
        }


class PythonSection:
    """`env.python`: the interpreter a script runs with."""

    def __init__(self) -> None:
        self.user_managed_dependencies: bool = False
        """True: run `interpreter_path` as it is (install nothing)."""
        self.interpreter_path: str = DEFAULT_INTERPRETER
        """The interpreter of a user-managed environment (a name on PATH or a path)."""
        self.conda_dependencies: CondaDependencies | None = None


class DockerSection:
    """`env.docker`: runwire does not run containers; `enabled=True` is refused at submission."""

    def __init__(self) -> None:
        self.enabled: bool = False
        self.base_image: str | None = None


class Environment:
    """A named Python environment for submitted scripts (see the module docstring)."""

    def __init__(self, name: str, **kwargs: Any) -> None:
        if not isinstance(name, str):
            raise TypeError(f"Environment name must be a str, not {type(name).__name__}")
        self.name = name
        self.version: str | None = None
        self.python = PythonSection()
        self.docker = DockerSection()
        self.environment_variables: dict[str, str] = {}

    # --- the run definition's view -----------------------------------------------------------------

    def _to_dict(self) -> dict[str, Any]:
        conda = self.python.conda_dependencies
        return {
            "name": self.name,
            "version": self.version,
            "python": {
                "userManagedDependencies": bool(self.python.user_managed_dependencies),
                "interpreterPath": self.python.interpreter_path,
                "condaDependencies": conda.to_dict() if conda is not None else None,
            },
            "docker": {"enabled": bool(self.docker.enabled), "baseImage": self.docker.base_image},
            "environmentVariables": dict(self.environment_variables),
        }

    @classmethod
    def _from_dict(cls, data: dict[str, Any]) -> Environment:
        env = cls(str(data.get("name") or DEFAULT_ENVIRONMENT_NAME))
        env.version = data.get("version")
        python = data.get("python") or {}
        env.python.user_managed_dependencies = bool(python.get("userManagedDependencies", False))
        env.python.interpreter_path = python.get("interpreterPath") or DEFAULT_INTERPRETER
        conda = python.get("condaDependencies")
        if conda:
            env.python.conda_dependencies = CondaDependencies(
                list(conda.get("condaPackages") or []),
                list(conda.get("pipPackages") or []),
                list(conda.get("channels") or []),
                conda.get("pythonVersion"),
            )
        docker = data.get("docker") or {}
        env.docker.enabled = bool(docker.get("enabled", False))
        env.docker.base_image = docker.get("baseImage")
        env.environment_variables = {str(k): str(v) for k, v in (data.get("environmentVariables") or {}).items()}
        return env

    # --- registration (local files) ----------------------------------------------------------------

    @staticmethod
    def _folder(workspace: Workspace) -> Path:
        return default_data_dir() / "environments" / _safe(workspace.name)

    def register(self, workspace: Workspace) -> Environment:
        """Register this environment under its name in the workspace (a new version each time)."""
        folder = self._folder(workspace) / _safe(self.name)
        folder.mkdir(parents=True, exist_ok=True)
        versions = [int(p.stem) for p in folder.glob("*.json") if p.stem.isdigit()]
        self.version = str(max(versions, default=0) + 1)
        target = folder / f"{self.version}.json"
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self._to_dict(), indent=2))
        os.replace(tmp, target)
        return self

    @staticmethod
    def get(workspace: Workspace, name: str, version: str | None = None, label: str | None = None) -> Environment:
        """A registered environment (the latest version unless `version`)."""
        folder = Environment._folder(workspace) / _safe(name)
        versions = sorted((int(p.stem) for p in folder.glob("*.json") if p.stem.isdigit()), reverse=True)
        if version is not None:
            versions = [v for v in versions if str(v) == str(version)]
        if not versions:
            what = f"version {version} of " if version is not None else ""
            raise UserErrorException(f"no {what}environment named {name!r} is registered in workspace {workspace.name}")
        return Environment._from_dict(json.loads((folder / f"{versions[0]}.json").read_text()))

    @staticmethod
    def list(workspace: Workspace) -> dict[str, Environment]:
        """Registered environments by name (latest versions)."""
        folder = Environment._folder(workspace)
        out: dict[str, Environment] = {}
        if folder.is_dir():
            for sub in sorted(folder.iterdir()):
                try:
                    env = Environment.get(workspace, _unsafe(sub.name))
                except UserErrorException:
                    continue
                out[env.name] = env
        return out

    # --- from package specifications ----------------------------------------------------------------

    @staticmethod
    def from_pip_requirements(name: str, file_path: str, pip_version: str | None = None) -> Environment:
        """An environment whose pip packages are the lines of a requirements file."""
        env = Environment(name)
        lines = Path(file_path).read_text().splitlines()
        packages = [ln.split("#", 1)[0].strip() for ln in lines]
        env.python.conda_dependencies = CondaDependencies(pip_packages=[p for p in packages if p])
        return env

    @staticmethod
    def from_conda_specification(name: str, file_path: str) -> Environment:
        """An environment from a conda environment file (its dependencies and pip section)."""
        env = Environment(name)
        env.python.conda_dependencies = _parse_conda_file(Path(file_path).read_text())
        return env

    def __repr__(self) -> str:
        return json.dumps(self._to_dict(), indent=4)


def _safe(name: str) -> str:
    """A file name for a workspace or environment name (reversible)."""
    return re.sub(r"[^A-Za-z0-9_.-]", lambda m: f"%{ord(m.group()):06X}", name) or "%"


def _unsafe(name: str) -> str:
    return re.sub(r"%([0-9A-F]{6})", lambda m: chr(int(m.group(1), 16)), name)


def _parse_conda_file(text: str) -> CondaDependencies:
    """The common shape of a conda environment file (`channels:`, `dependencies:` with an optional
    `- pip:` list), read line by line (no YAML library needed)."""
    deps = CondaDependencies()
    section = ""
    in_pip, pip_indent = False, 0
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        item = line.strip()
        if indent == 0 and not item.startswith("-"):
            section, in_pip = item.split(":", 1)[0].strip(), False
            continue
        if not item.startswith("-"):
            continue
        value = item[1:].strip().strip("'\"")
        if section == "channels":
            deps.channels.append(value)
        elif section == "dependencies":
            if value.rstrip(":") == "pip" and value.endswith(":"):
                in_pip, pip_indent = True, indent
            elif in_pip and indent > pip_indent:
                deps.pip_packages.append(value)
            else:
                in_pip = False
                if re.match(r"python([=<>! ]|$)", value):
                    deps.python_version = value.split("=", 1)[1].lstrip("=") if "=" in value else None
                else:
                    deps.conda_packages.append(value)
    return deps


__all__ = ["CondaDependencies", "DockerSection", "Environment", "PythonSection"]
