"""`ScriptRun`: a run made by `experiment.submit(ScriptRunConfig(...))` (RUN_API.md §3, §9, §13).

Submission snapshots the source folder, and the collector queues the run (`Queued`) for its compute
target; an agent of that target with a free slot leases it, runs the script in a fresh copy of the
folder (`Preparing` -> `Running` -> `Finalizing` -> `Completed`/`Failed`) and streams its stdout and
stderr into the run's log, `user_logs/std_log.txt`.

runwire runs scripts in existing interpreters only: a user-managed environment's
`python.interpreter_path`, else the agent's own Python. Docker environments are refused.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from typing import TYPE_CHECKING, Any

from runwire.artifacts import SNAPSHOT_PROPERTY, take_snapshot
from runwire.environment import DEFAULT_ENVIRONMENT_NAME, DEFAULT_INTERPRETER, Environment
from runwire.exceptions import UserErrorException
from runwire.jobs import SCRIPT_RUN_TYPE
from runwire.limits import MAX_RUN_ID_LENGTH
from runwire.run import Run, _str_values, _user
from runwire.script_run_config import ScriptRunConfig, argument_strings, command_argv, script_path, target_name
from runwire.v1 import compute_pb2

if TYPE_CHECKING:
    from runwire.experiment import Experiment

log = logging.getLogger("runwire.sdk")

SUBMIT_KWARGS = ("run_id", "credential_passthrough")
"""Keyword arguments `experiment.submit(ScriptRunConfig)` takes besides `tags` (Azure ML's)."""


class ScriptRun(Run):
    """A submitted script's run. Its status is set by the node that runs it; `cancel()` stops it."""

    RUN_TYPE = SCRIPT_RUN_TYPE

    def cancel(self) -> None:
        """Cancel the run: a queued one ends `Canceled` at once; a running one goes
        `CancelRequested`, its node stops the process (SIGTERM, then SIGKILL after a grace
        period) and reports `Canceled`. Inside the submitted script itself this does nothing."""
        if self._submitted:
            log.warning("cancel() inside a submitted run does nothing; cancel it from outside (run.cancel())")
            return
        self._record = self._transport.cancel_run(self._id)

    def get_environment(self) -> Environment:
        """The environment the run was submitted with (from its run definition)."""
        definition = self._definition()
        env = Environment(definition.environment_name or DEFAULT_ENVIRONMENT_NAME)
        env.python.user_managed_dependencies = definition.user_managed_dependencies
        if definition.interpreter_path:
            env.python.interpreter_path = definition.interpreter_path
        env.environment_variables = dict(definition.environment_variables)
        return env

    def _definition(self) -> compute_pb2.JobDefinition:
        return self._transport.get_job(self._id).definition

    def clean(self) -> list[str]:
        """Remove the run's local files. runwire keeps none on the submitting machine (the node's
        working folder is removed by its agent once the run has ended), so this removes nothing."""
        return []


def submit_script_run(
    experiment: Experiment,
    config: Any,
    tags: dict[str, Any] | None = None,
    *,
    parent: Run | None = None,
    kwargs: dict[str, Any],
) -> ScriptRun:
    """Submit `config` (a ScriptRunConfig) to its compute target; returns the queued ScriptRun at once."""
    for key in kwargs:
        if key not in SUBMIT_KWARGS:
            what = "Run.submit_child" if parent is not None else "Experiment.submit"
            raise TypeError(f"{what}() got an unexpected keyword argument '{key}'")
    if not isinstance(config, ScriptRunConfig):
        raise UserErrorException(
            f"submit takes a runwire ScriptRunConfig, not {type(config).__name__} "
            "(runwire runs scripts; other Azure ML run configurations are not supported)"
        )
    if tags is not None and not isinstance(tags, dict):
        raise UserErrorException(f"tags must be a dict, not {type(tags).__name__}")
    run_id = kwargs.get("run_id") or f"{experiment.name}_{int(time.time())}_{uuid.uuid4().hex[:8]}"
    if not isinstance(run_id, str) or len(run_id) > MAX_RUN_ID_LENGTH:
        raise UserErrorException(f"run_id must be a str of at most {MAX_RUN_ID_LENGTH} characters, got {run_id!r}")
    target = target_name(config.run_config.target)
    definition = job_definition(config)
    definition.snapshot_id = take_snapshot(experiment._transport, config.source_directory)
    properties: dict[str, str | None] = {
        SNAPSHOT_PROPERTY: definition.snapshot_id,
        "azureml.runsource": SCRIPT_RUN_TYPE,
        "runwire.submitted_by": _user(),
    }
    record = experiment._transport.submit_run(
        experiment.name,
        run_id,
        target=target,
        definition=definition,
        parent_run_id=parent.id if parent is not None else None,
        tags=_str_values(tags, "tag") if tags else None,
        properties=properties,
    )
    targets = experiment._transport.list_compute_targets(target)
    if not any(n.connected for t in targets if t.name == target for n in t.nodes):
        log.warning(
            "runwire: no agent has joined compute target %r yet; run %s waits Queued until one does "
            "(`runwire agent --compute-target %s`)",
            target,
            run_id,
            target,
        )
    return ScriptRun._from_record(experiment, record)


def job_definition(config: ScriptRunConfig) -> compute_pb2.JobDefinition:
    """What the node runs for `config` (everything but the snapshot id); raises on what runwire
    cannot run (Docker environments, neither script nor command, a missing script)."""
    rc = config.run_config
    env = rc.environment if rc.environment is not None else Environment(DEFAULT_ENVIRONMENT_NAME)
    python = getattr(env, "python", None)
    docker = getattr(env, "docker", None)
    if python is None or docker is None:
        raise UserErrorException(f"run_config.environment must be a runwire Environment, not {type(env).__name__}")
    if getattr(docker, "enabled", False):
        raise UserErrorException(
            f"environment {env.name!r} has docker.enabled=True: runwire runs scripts in existing Python "
            "interpreters only (set python.user_managed_dependencies=True and python.interpreter_path, or leave "
            "the environment out to use the agent's interpreter)"
        )
    user_managed = bool(python.user_managed_dependencies)
    interpreter = ""
    if user_managed:
        interpreter = python.interpreter_path
        if not isinstance(interpreter, str) or not interpreter:
            raise UserErrorException("a user-managed environment needs python.interpreter_path (e.g. 'python')")
        if interpreter == DEFAULT_INTERPRETER:
            # Azure's default means "the node's python"; on a runwire node that is the agent's own
            # interpreter, which has runwire installed (a bare `python` on PATH may not).
            interpreter = ""
    elif python.conda_dependencies is not None:
        log.warning(
            "environment %r lists packages, but runwire installs nothing: the script runs with the agent's interpreter",
            env.name,
        )
    if config.command is not None and (config.script is not None or config.arguments):
        raise UserErrorException("ScriptRunConfig takes either command, or script with arguments, not both")
    if config.command is None and config.script is None:
        raise UserErrorException("ScriptRunConfig needs a script (or a command) to run")
    variables = {**(rc.environment_variables or {}), **(getattr(env, "environment_variables", None) or {})}
    duration = rc.max_run_duration_seconds
    if duration is not None and (not isinstance(duration, int) or isinstance(duration, bool) or duration < 0):
        raise UserErrorException(f"max_run_duration_seconds must be a non-negative int, got {duration!r}")
    definition = compute_pb2.JobDefinition(
        environment_name=str(env.name),
        user_managed_dependencies=user_managed,
        interpreter_path=interpreter,
        environment_variables={str(k): str(v) for k, v in variables.items()},
        max_run_duration_seconds=duration or 0,
        source_directory=os.fspath(config.source_directory),
    )
    if config.command is not None:
        definition.command.extend(command_argv(config.command))
    else:
        assert config.script is not None
        definition.script = script_path(config.source_directory, config.script)
        definition.arguments.extend(argument_strings(config.arguments))
    return definition


__all__ = ["ScriptRun", "submit_script_run"]
