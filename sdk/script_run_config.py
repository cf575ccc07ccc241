"""`ScriptRunConfig` and `RunConfiguration`: what `experiment.submit(config)` runs, and where
(RUN_API.md §13).

`ScriptRunConfig(source_directory, script, arguments, compute_target="local", environment=env)`
names a script inside a folder; submitting snapshots the folder and queues the run for the compute
target, whose agents run `<interpreter> <script> <arguments...>` in a fresh copy of the folder.
"""

from __future__ import annotations

import logging
import os
import shlex
from pathlib import Path
from typing import Any

from runwire.environment import DEFAULT_ENVIRONMENT_NAME, Environment
from runwire.exceptions import ExperimentExecutionException, UserErrorException
from runwire.jobs import DEFAULT_TARGET
from runwire.limits import MAX_JOB_ARGUMENTS

log = logging.getLogger("runwire.sdk")

MAX_DURATION_SECONDS_DEFAULT = 2592000
"""`max_run_duration_seconds` of a ScriptRunConfig given none: 30 days (Azure ML's default)."""


def target_name(compute_target: Any) -> str:
    """A compute target given as a name, or as an object with `.name` (a ComputeTarget)."""
    if compute_target is None:
        return DEFAULT_TARGET
    if isinstance(compute_target, str):
        name = compute_target
    else:
        name = getattr(compute_target, "name", None)
        if not isinstance(name, str):
            raise UserErrorException(
                f"compute_target must be a compute target name or a ComputeTarget, not {type(compute_target).__name__}"
            )
    if not name or name != name.strip():
        raise UserErrorException(f"compute target name {name!r} is invalid")
    return name


class RunConfiguration:
    """Where and how a script runs: `.target` (compute target name), `.environment`, and the
    script, arguments or command. Both `.target` and `.environment` may be changed after creation."""

    def __init__(
        self,
        script: str | None = None,
        arguments: list[Any] | None = None,
        framework: str | None = None,
        communicator: str | None = None,
        conda_dependencies: Any = None,
        _history_enabled: bool | None = None,
        _path: str | None = None,
        _name: str | None = None,
        command: str | list[str] | None = None,
    ) -> None:
        self.script = script
        self.arguments: list[Any] = list(arguments or [])
        self.command = command
        self.framework = framework or "Python"
        self.communicator = communicator or "None"
        self.target: Any = DEFAULT_TARGET
        self.environment: Environment = Environment(DEFAULT_ENVIRONMENT_NAME)
        if conda_dependencies is not None:
            self.environment.python.conda_dependencies = conda_dependencies
        self.environment_variables: dict[str, str] = {}
        self.max_run_duration_seconds: int | None = MAX_DURATION_SECONDS_DEFAULT
        self.node_count = 1
        self.history = _history_enabled if _history_enabled is not None else True

    def __repr__(self) -> str:
        return (
            f"RunConfiguration(target={self.target!r}, environment={getattr(self.environment, 'name', None)!r}, "
            f"script={self.script!r}, arguments={self.arguments!r}, command={self.command!r})"
        )


class ScriptRunConfig:
    """A script (or a command) in a source folder, to submit with `experiment.submit(config)`.

    `arguments`: a list; non-str items are passed to the script as strings (`['--alpha', 0.5]`).
    `compute_target`: a target name or a ComputeTarget; default `"local"` (the target of
    `runwire up`'s agent). With `run_config`, `compute_target`, `environment`,
    `distributed_job_config`, `max_run_duration_seconds` and `docker_runtime_config` are ignored
    (with a warning). `command` (argv list or a shell-like string) replaces script + arguments.
    """

    MAX_DURATION_SECONDS_DEFAULT = MAX_DURATION_SECONDS_DEFAULT

    def __init__(
        self,
        source_directory: str | os.PathLike[str],
        script: str | os.PathLike[str] | None = None,
        arguments: list[Any] | tuple[Any, ...] | None = None,
        run_config: RunConfiguration | None = None,
        _telemetry_values: Any = None,
        compute_target: Any = None,
        environment: Environment | None = None,
        distributed_job_config: Any = None,
        resume_from: Any = None,
        max_run_duration_seconds: int | None = MAX_DURATION_SECONDS_DEFAULT,
        command: str | list[Any] | None = None,
        docker_runtime_config: Any = None,
    ) -> None:
        if source_directory is None or not isinstance(source_directory, str | os.PathLike):
            raise UserErrorException(f"source_directory must be a folder path, not {type(source_directory).__name__}")
        self.source_directory = os.fspath(source_directory)
        self.script = os.fspath(script) if script is not None else None
        self.arguments = _check_arguments(arguments)
        self.command = command
        self._telemetry_values = _telemetry_values
        self.distributed_job_config = distributed_job_config
        self.resume_from = resume_from
        self.docker_runtime_config = docker_runtime_config

        if run_config is not None:
            if not isinstance(run_config, RunConfiguration):
                raise UserErrorException(f"run_config must be a RunConfiguration, not {type(run_config).__name__}")
            if (
                compute_target is not None
                or environment is not None
                or distributed_job_config is not None
                or docker_runtime_config is not None
                or max_run_duration_seconds != MAX_DURATION_SECONDS_DEFAULT
            ):
                log.warning(
                    "If 'run_config' is specified, the following parameters will be ignored: 'compute_target', "
                    "'environment', 'distributed_job_config', 'max_run_duration_seconds', and 'docker_runtime_config'."
                )
            if run_config.script and self.script is None:
                self.script = run_config.script
            if run_config.arguments and not self.arguments:
                self.arguments = _check_arguments(run_config.arguments)
            if run_config.command and self.command is None:
                self.command = run_config.command
            self.run_config = run_config
        else:
            self.run_config = RunConfiguration()
            self.run_config.target = target_name(compute_target)
            if environment is not None:
                self.run_config.environment = environment
            self.run_config.max_run_duration_seconds = max_run_duration_seconds
        self.run_config.script = self.script
        self.run_config.arguments = self.arguments
        self.run_config.command = self.command

        if self.command is not None and (self.script is not None or self.arguments):
            raise UserErrorException(
                "ScriptRunConfig takes either command, or script with arguments, not both "
                "(put the arguments in the command)"
            )
        if self.command is not None:
            command_argv(self.command)
        if self.script is not None:
            script_path(self.source_directory, self.script)

    @property
    def target(self) -> str:
        """The compute target name (`run_config.target`)."""
        return target_name(self.run_config.target)

    @property
    def environment(self) -> Environment:
        return self.run_config.environment

    def __repr__(self) -> str:
        return (
            f"ScriptRunConfig(source_directory={self.source_directory!r}, script={self.script!r}, "
            f"arguments={self.arguments!r}, command={self.command!r}, target={self.run_config.target!r})"
        )


def _check_arguments(arguments: Any) -> list[Any]:
    if arguments is None:
        return []
    if isinstance(arguments, str | bytes) or not isinstance(arguments, list | tuple):
        raise UserErrorException(f"arguments must be a list (e.g. ['--alpha', 0.5]), not {type(arguments).__name__}")
    if len(arguments) > MAX_JOB_ARGUMENTS:
        raise UserErrorException(f"a script run takes at most {MAX_JOB_ARGUMENTS} arguments, got {len(arguments)}")
    return list(arguments)


def argument_strings(arguments: list[Any]) -> list[str]:
    """The arguments as the script gets them: non-str items as strings."""
    out = []
    for a in _check_arguments(arguments):
        if isinstance(a, os.PathLike):
            a = os.fspath(a)
        out.append(a if isinstance(a, str) else str(a))
    for a in out:
        if "\x00" in a:
            raise UserErrorException(f"argument {a!r} contains a NUL character")
    return out


def command_argv(command: str | list[Any]) -> list[str]:
    """A command as argv: a list (items as strings) or a string split like a shell would."""
    if isinstance(command, str):
        try:
            argv = shlex.split(command)
        except ValueError as e:
            raise UserErrorException(f"command {command!r} cannot be split into arguments: {e}") from None
    elif isinstance(command, list | tuple):
        argv = argument_strings(list(command))
    else:
        raise UserErrorException(f"command must be a str or a list, not {type(command).__name__}")
    if not argv:
        raise UserErrorException("command is empty")
    if len(argv) > MAX_JOB_ARGUMENTS:
        raise UserErrorException(f"a command takes at most {MAX_JOB_ARGUMENTS} arguments, got {len(argv)}")
    return argv


def script_path(source_directory: str, script: str) -> str:
    """The script's path relative to the source folder ("/"-separated); it must be a file inside it."""
    root = Path(source_directory)
    if not root.is_dir():
        raise ExperimentExecutionException(
            f"The script path doesn't exist: source_directory {source_directory!r} is not a folder"
        )
    given = Path(script)
    candidate = given if given.is_absolute() else root / given
    try:
        rel = candidate.resolve().relative_to(root.resolve())
    except (ValueError, OSError):
        rel = None
    if rel is None or not candidate.is_file() or rel.parts[:1] == ("..",) or not rel.parts:
        raise ExperimentExecutionException(
            f"The script path doesn't exist: {script!r} is not a file inside source_directory {source_directory!r}"
        )
    return rel.as_posix()


__all__ = ["RunConfiguration", "ScriptRunConfig"]
