"""`Experiment`: a named group of runs in a workspace (RUN_API.md §3)."""

from __future__ import annotations

import html
import os
import re
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from runwire.exceptions import UserErrorException
from runwire.run import Run, _filter, _str_values, _user

if TYPE_CHECKING:
    from runwire.live import Subscription
    from runwire.script_run import ScriptRun
    from runwire.workspace import Workspace

EXPERIMENT_NAME_RULE = re.compile(r"^[a-zA-Z0-9][\w-]{0,254}$")


def check_experiment_name(name: Any) -> str:
    if not isinstance(name, str) or not EXPERIMENT_NAME_RULE.match(name):
        raise UserErrorException(
            f"experiment name {name!r} is invalid: it must be 1-255 characters, start with a letter or digit, "
            "and contain only letters, digits, '_' and '-'"
        )
    return name


class Experiment:
    """Get-or-create an experiment by name."""

    def __init__(self, workspace: Workspace, name: str, _skip_name_validation: bool = False, **kwargs: Any) -> None:
        if not _skip_name_validation:
            check_experiment_name(name)
        self._workspace = workspace
        self._transport = workspace._transport
        record = self._transport.get_or_create_experiment(name)
        self._name = record.name
        self._id = record.id
        self._tags: dict[str, str | None] = {}

    @property
    def name(self) -> str:
        return self._name

    @property
    def id(self) -> str:
        return self._id

    @property
    def workspace(self) -> Workspace:
        return self._workspace

    @property
    def tags(self) -> dict[str, str | None]:
        return dict(self._tags)

    @property
    def archived_time(self) -> None:
        return None

    def start_logging(self, *args: Any, **kwargs: Any) -> Run:
        """Create a run and start it (status Running); log into it interactively.

        Arguments as Azure ML: outputs=None ("./outputs"; False for none), snapshot_directory=".",
        run_id=None, name=None, display_name=None, description=None, tags=None.
        """
        params = dict(zip(("outputs", "snapshot_directory"), args, strict=False))
        params.update(kwargs)
        unknown = set(params) - {
            "outputs",
            "snapshot_directory",
            "run_id",
            "name",
            "display_name",
            "description",
            "tags",
            "_parent_logger",
            "_ident",
        }
        if unknown:
            raise TypeError(f"start_logging() got unexpected arguments: {', '.join(sorted(unknown))}")
        outputs = params.get("outputs")
        if outputs is None or outputs is True:
            outputs = "./outputs"
        elif outputs is False:
            outputs = None
        tags = params.get("tags") or {}
        properties = {"azureml.runsource": "experiment", "runwire.submitted_by": _user()}
        snapshot_directory = params.get("snapshot_directory", ".")
        if snapshot_directory is not None:
            from runwire.artifacts import SNAPSHOT_PROPERTY, take_snapshot

            properties[SNAPSHOT_PROPERTY] = take_snapshot(self._transport, snapshot_directory)

        record = self._transport.create_run(
            self._name,
            params.get("run_id") or str(uuid.uuid4()),
            status="Running",
            name=params.get("name"),
            display_name=params.get("display_name"),
            description=params.get("description"),
            tags=_str_values(tags, "tag") if tags else None,
            properties=properties,
        )
        run = Run._from_record(self, record, outputs)
        run._producer.claim(record.run_id)  # this process owns it: dying without ending it fails it
        if outputs:
            os.makedirs(outputs, exist_ok=True)
        return run

    def submit(self, config: Any, tags: dict[str, Any] | None = None, **kwargs: Any) -> ScriptRun:
        """Submit a `ScriptRunConfig`: snapshot its source folder and queue the run for its compute
        target; returns the `ScriptRun` at once (status `Queued`, id `<experiment>_<unix
        seconds>_<8 hex>`). Keyword arguments as Azure ML: `run_id=None`,
        `credential_passthrough=False` (accepted, unused). `tags` are set on the new run.

        runwire runs scripts in existing interpreters (a user-managed environment's
        `python.interpreter_path`, else the agent's Python); Docker environments raise
        UserErrorException."""
        from runwire.script_run import submit_script_run

        return submit_script_run(self, config, tags, kwargs=kwargs)

    def get_runs(
        self,
        type: str | None = None,
        tags: str | dict[str, Any] | None = None,
        properties: str | dict[str, Any] | None = None,
        include_children: bool = False,
    ) -> Iterator[Run]:
        """Runs of this experiment, newest first (top-level only unless include_children)."""
        return self._list_runs(type, tags, properties, None, include_children)

    def subscribe(
        self,
        metrics: str | list[str] | None = None,
        from_start: bool = False,
        kinds: str | list[str] | None = None,
        timeout: float | None = None,
    ) -> Subscription:
        """Events of every run of this experiment (child runs and runs created later included),
        pushed as the collector commits them; the arguments are those of `Run.subscribe`."""
        return self._transport.subscribe(
            experiment_name=self._name, metrics=metrics, kinds=kinds, from_start=from_start, timeout=timeout
        )

    def _list_runs(
        self,
        run_type: str | None,
        tags: str | dict[str, Any] | None,
        properties: str | dict[str, Any] | None,
        status: str | None,
        include_children: bool,
    ) -> Iterator[Run]:
        records = self._transport.list_runs(
            self._name,
            include_children=include_children,
            statuses=[status] if status else None,
            run_type=run_type,
            tags=_filter(tags),
            properties=_filter(properties),
        )
        for record in records:
            yield Run._from_record(self, record)

    @staticmethod
    def list(
        workspace: Workspace, experiment_name: str | None = None, view_type: str | None = None, tags: Any = None
    ) -> list[Experiment]:
        records = workspace._transport.list_experiments(experiment_name or "")
        return [Experiment(workspace, r.name, _skip_name_validation=True) for r in records]

    def get_portal_url(self) -> str:
        studio = self._transport.endpoint.studio or "http://127.0.0.1:7421"
        return f"{studio.rstrip('/')}/experiments/{quote(self._name, safe='')}"

    def __str__(self) -> str:
        return f"Experiment(Name: {self._name},\nWorkspace: {self._workspace.name})"

    __repr__ = __str__

    def _repr_html_(self) -> str:
        link = html.escape(self.get_portal_url())
        return (
            "<table style='width:100%'><tr><th>Name</th><th>Workspace</th><th>Report Page</th></tr>"
            f"<tr><td>{html.escape(self._name)}</td><td>{html.escape(self._workspace.name)}</td>"
            f'<td><a href="{link}" target="_blank">Link to runwire studio</a></td></tr></table>'
        )
