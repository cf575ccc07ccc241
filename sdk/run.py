"""`Run`: one execution of an experiment, with Azure ML v1's tracking API (RUN_API.md §4-§11)."""

from __future__ import annotations

import datetime as _dt
import getpass
import html
import json
import logging
import os
import shlex
import sys
import time
import traceback
import uuid
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from runwire import _validate as v
from runwire import codec
from runwire._transports import RunRecord, Transport
from runwire._transports.producer import FlushTimeout
from runwire.artifacts import RunFiles
from runwire.exceptions import (
    ActivityFailedException,
    ExperimentExecutionException,
    MetricTypeError,
    RunEnvironmentException,
    UserErrorException,
)
from runwire.jobs import DEFAULT_TARGET, ENV_RUN_ID, SCRIPT_RUN_TYPE
from runwire.limits import INT64_MAX, INT64_MIN
from runwire.offline import OfflineRun
from runwire.series import MetricSeries, azure_value
from runwire.statuses import POST_PROCESSING_STATUSES, TERMINAL_STATUSES

if TYPE_CHECKING:
    from runwire.compute import ActiveRunRecord, ComputeTarget
    from runwire.experiment import Experiment
    from runwire.live import Subscription
    from runwire.script_run import ScriptRun
    from runwire.workspace import Workspace

log = logging.getLogger("runwire.sdk")

MAX_CHILDREN_PER_CALL = 100
"""`create_children` makes at most this many runs at once (Azure ML's limit)."""

DEFAULT_STUDIO = "http://127.0.0.1:7421"
"""The studio's address when the endpoint names none (`runwire up`'s default)."""

_KIND_CALLS = {codec.SCALAR: "log", codec.LIST: "log_list", codec.TABLE: "log_row/log_table", codec.IMAGE: "log_image"}
_time_ns = time.time_ns


def _iso(ts: float | None) -> str | None:
    if not ts:
        return None
    return _dt.datetime.fromtimestamp(ts, _dt.UTC).isoformat().replace("+00:00", "Z")


def _str_values(items: dict[str, Any], what: str) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for key, value in items.items():
        v.check_name(key, f"{what} key")
        if value is not None and not isinstance(value, str):
            log.warning("Converting non-string %s value %r of %r to a string", what, value, key)
            value = str(value)
        out[key] = value
    return out


def _error_json(details: dict[str, Any]) -> str:
    """A failed run's error as Azure ML prints it (`{"error": {"code": ..., "message": ...}}`)."""
    error = details.get("error") or "Detailed error not set on the Run. Please check the logs for details."
    return json.dumps(error, indent=4)


def _activity_failed(details: dict[str, Any]) -> str:
    """The text of the ActivityFailedException of a failed run: Azure ML's, with the error JSON."""
    return "Activity Failed:\n" + _error_json(details)


def _filter(spec: str | dict[str, Any] | list[str] | None) -> dict[str, str | None] | None:
    """Azure's tag/property filters: a str means "has this key", a dict "key equals value"."""
    if spec is None:
        return None
    if isinstance(spec, str):
        return {spec: None}
    if isinstance(spec, dict):
        return {k: (None if val is None else str(val)) for k, val in spec.items()}
    return dict.fromkeys(spec)


class Run(RunFiles):
    """A run: log metrics into it, tag it, end it, read it back.

    `Run(experiment, run_id)` loads an existing run; new runs come from
    `experiment.start_logging()` and `run.child_run()`.
    """

    def __init__(self, experiment: Experiment, run_id: str, outputs: str | None = None, **kwargs: Any) -> None:
        record = experiment._transport.get_run(run_id)
        self._bind(experiment, record, outputs)

    @classmethod
    def _from_record(cls, experiment: Experiment, record: RunRecord, outputs: str | None = None) -> Run:
        run = cls.__new__(cls)
        run._bind(experiment, record, outputs)
        return run

    def _bind(self, experiment: Experiment, record: RunRecord, outputs: str | None) -> None:
        if record.type == SCRIPT_RUN_TYPE and type(self) is Run:
            from runwire.script_run import ScriptRun

            self.__class__ = ScriptRun  # a submitted script's run, however it was loaded
        self._experiment = experiment
        self._transport: Transport = experiment._transport
        self._record = record
        self._id = record.run_id
        self._outputs_dir = outputs
        self._parent_cache: Run | bool | None = False
        producer = self._transport.producer
        self._producer = producer
        self._scalars = producer.scalars
        self._others = producer.others
        self._kinds: dict[str, int] = {}
        self._classes: dict[tuple[str, str], str] = {}
        self._numeric: set[str] = set()
        self._submitted = False  # the run of a submitted script: the executor owns its status

    # --- identity -------------------------------------------------------------------------------

    @property
    def id(self) -> str:
        return self._id

    @property
    def experiment(self) -> Experiment:
        return self._experiment

    @property
    def status(self) -> str:
        """The status as of the last fetch; `get_status()` refreshes it."""
        return self._record.status

    @property
    def type(self) -> str | None:
        return self._record.type

    @property
    def number(self) -> int:
        return self._record.number

    @property
    def name(self) -> str | None:
        """Deprecated in Azure ML in favour of display_name."""
        return self._record.name

    @property
    def display_name(self) -> str | None:
        return self._record.display_name

    @display_name.setter
    def display_name(self, value: str) -> None:
        self._record = self._transport.update_run(self._id, display_name=str(value))

    @property
    def description(self) -> str | None:
        return self._record.description

    @description.setter
    def description(self, value: str) -> None:
        self._record = self._transport.update_run(self._id, description=str(value))

    @property
    def tags(self) -> dict[str, str | None]:
        return dict(self._record.tags)

    @property
    def properties(self) -> dict[str, str | None]:
        return dict(self._record.properties)

    @property
    def parent(self) -> Run | None:
        """The parent run (fetched once, then cached), or None for a top-level run."""
        if self._parent_cache is False:
            pid = self._record.parent_run_id
            self._parent_cache = (
                None if pid is None else Run._from_record(self._experiment, self._transport.get_run(pid))
            )
        return self._parent_cache  # type: ignore[return-value]

    # --- metrics --------------------------------------------------------------------------------

    def log(self, name: str, value: Any, description: str = "", step: int | None = None) -> None:
        """Log one value under `name`; repeated calls append. Returns at once (no I/O)."""
        t = type(value)
        try:
            if (
                (t is float or (t is int and INT64_MIN <= value <= INT64_MAX))
                and name in self._numeric
                and not description
                and (step is None or (type(step) is int and INT64_MIN < step <= INT64_MAX))
            ):
                self._scalars.extend((self._id, name, value, step, _time_ns()))
                return
        except TypeError:  # an unhashable name: let the slow path explain
            pass
        self._log_slow(name, value, description, step)

    def _log_slow(self, name: Any, value: Any, description: str, step: Any) -> None:
        v.check_name(name)
        value = v.check_log_value(name, value)
        step = v.check_step(name, step)
        cls = v.value_class(value)
        self._register(name, codec.SCALAR, {"": cls})
        if description:
            self._producer.descriptions.setdefault((self._id, name), str(description))
        self._scalars.extend((self._id, name, value, step, _time_ns()))
        if cls == v.NUMBER:
            self._numeric.add(name)

    def _register(self, name: str, kind: int, classes: dict[str, str | None]) -> None:
        """One metric name keeps its first kind, and each column its first value class."""
        known = self._kinds.get(name)
        if known is not None and known != kind:
            raise MetricTypeError(
                f"metric {name!r} was logged with {_KIND_CALLS[known]}; a metric keeps the kind it was first "
                f"logged with, so it cannot take {_KIND_CALLS[kind]} values too (use another name)"
            )
        for col, cls in classes.items():
            if cls is None:
                continue
            seen = self._classes.get((name, col))
            if seen is not None and seen != cls:
                where = f" column {col!r}" if col else ""
                raise MetricTypeError(
                    f"metric {name!r}{where} holds {seen} values and cannot take {cls} values "
                    "(a metric keeps one value class: numbers, bools or strings; ints and floats mix)"
                )
        self._kinds[name] = kind
        for col, cls in classes.items():
            if cls is not None:
                self._classes.setdefault((name, col), cls)

    def log_list(self, name: str, value: Any, description: str = "") -> None:
        """Log a list of values under `name` (appended to what was logged before)."""
        v.check_name(name)
        values = v.check_list(name, value)
        self._register(name, codec.LIST, {"": v.common_class(name, values, "the list")})
        if description:
            self._producer.descriptions.setdefault((self._id, name), str(description))
        self._others.append((codec.LIST, self._id, name, {"": values}, len(values), _time_ns()))

    def log_row(self, name: str, description: str | None = None, **kwargs: Any) -> None:
        """Append one row to the table `name`; each keyword is a column."""
        v.check_name(name)
        row = v.check_row(name, kwargs)
        self._register(name, codec.TABLE, {c: v.common_class(name, vals, f"column {c!r}") for c, vals in row.items()})
        if description:
            self._producer.descriptions.setdefault((self._id, name), str(description))
        self._others.append((codec.TABLE, self._id, name, row, 1, _time_ns()))

    def log_table(self, name: str, value: dict[str, Any], description: str = "") -> None:
        """Append the rows of a dict of equal-length columns to the table `name`."""
        v.check_name(name)
        table, rows = v.check_table(name, value)
        self._register(name, codec.TABLE, {c: v.common_class(name, vals, f"column {c!r}") for c, vals in table.items()})
        if description:
            self._producer.descriptions.setdefault((self._id, name), str(description))
        self._others.append((codec.TABLE, self._id, name, table, rows, _time_ns()))

    def flush(self, timeout_seconds: float = 300) -> None:
        """Block until everything logged so far is committed at the collector (files included)."""
        started = time.monotonic()
        try:
            self._producer.flush(timeout_seconds)
        except FlushTimeout as e:
            warnings.warn(str(e), RuntimeWarning, stacklevel=2)
            log.warning("%s", e)
        self._flush_files(max(1.0, timeout_seconds - (time.monotonic() - started)))

    def _flush_if_logging(self) -> None:
        """Read-your-writes for this process: send what it logged before reading back."""
        p = self._producer
        if p.scalars or p.others or p.stats()["next_seq"] != 1:
            self.flush(timeout_seconds=30)

    def get_metrics(
        self, name: str | None = None, recursive: bool = False, run_type: str | None = None, populate: bool = False
    ) -> dict[str, Any]:
        """Metrics in Azure ML's shapes (RUN_API.md §6): bare value for one row, else a list; tables as
        {column: values}. With recursive=True: {run_id: {...}} over this run and its descendants."""
        self._flush_if_logging()
        names = [name] if name is not None else None
        series = self._transport.get_metrics(self._id, recursive=recursive, names=names)
        if not recursive:
            return {s.name: self._metric_value(s, populate) for s in series}
        allowed: set[str] | None = None
        if run_type is not None:
            descendants = self._transport.list_runs(parent_run_id=self._id, recursive=True, run_type=run_type)
            allowed = {self._id, *(r.run_id for r in descendants)}
        out: dict[str, dict[str, Any]] = {}
        for s in series:
            if allowed is None or s.run_id in allowed:
                out.setdefault(s.run_id, {})[s.name] = self._metric_value(s, populate)
        return out

    def _metric_value(self, s: Any, populate: bool) -> Any:
        value = azure_value(s.kind, s.points)
        return self._populate(value) if populate and s.kind == codec.IMAGE else value

    def get_metric_series(self, name: str) -> MetricSeries:
        """Every row of one metric as numpy arrays: steps, timestamps, values (runwire's richer read)."""
        self._flush_if_logging()
        series = self._transport.get_metrics(self._id, names=[name])
        if not series:
            raise UserErrorException(f"run {self._id} has no metric named {name!r}")
        s = series[0]
        return MetricSeries.from_points(s.run_id, s.name, s.kind, s.description, s.points)

    # --- live -------------------------------------------------------------------------------------

    def subscribe(
        self,
        metrics: str | list[str] | None = None,
        from_start: bool = False,
        kinds: str | list[str] | None = None,
        include_children: bool = False,
        timeout: float | None = None,
    ) -> Subscription:
        """Events of this run pushed as the collector commits them (see `runwire.live`).

        `metrics`: names, exact or glob (`"loss"`, `"val_*"`); None = all. `from_start`: first
        what is already stored, then live, with no gap and no duplicate. `kinds`: some of
        `"metric"`, `"status"`, `"log"`, `"tag"`, `"file"` (None = all). `include_children`: the
        run's descendants too. `timeout`: seconds without an event after which iterating raises
        `TimeoutError`. The subscription is registered when this returns; close it (or leave a
        `with` block) to end it."""
        return self._transport.subscribe(
            run_id=self._id,
            include_children=include_children,
            metrics=metrics,
            kinds=kinds,
            from_start=from_start,
            timeout=timeout,
        )

    # --- tags and properties --------------------------------------------------------------------

    def tag(self, key: str, value: Any = None) -> None:
        self.set_tags({key: value})

    def set_tags(self, tags: dict[str, Any]) -> None:
        if not isinstance(tags, dict):
            raise UserErrorException(f"set_tags takes a dict, not {type(tags).__name__}")
        self._record = self._transport.set_tags(self._id, _str_values(tags, "tag"))

    def remove_tags(self, tags: list[str]) -> None:
        keys = [tags] if isinstance(tags, str) else list(tags)
        self._record = self._transport.set_tags(self._id, {}, remove=keys)

    def get_tags(self) -> dict[str, str | None]:
        self._record = self._transport.get_run(self._id)
        return dict(self._record.tags)

    def add_properties(self, properties: dict[str, Any]) -> None:
        if not properties:
            return
        self._record = self._transport.add_properties(self._id, _str_values(properties, "property"))

    def get_properties(self) -> dict[str, str | None]:
        self._record = self._transport.get_run(self._id)
        return dict(self._record.properties)

    # --- lifecycle ------------------------------------------------------------------------------

    def _set_status(self, status: str, error: dict[str, str] | None = None) -> None:
        if self._record.status in TERMINAL_STATUSES and self._record.status == status:
            return
        self._record = self._transport.update_run(self._id, status=status, error=error)

    def start(self) -> None:
        self._set_status("Running")

    def complete(self, _set_status: bool = True) -> None:
        """Upload the outputs folder, flush (wait until committed), then mark the run Completed."""
        self._upload_outputs()
        self.flush()
        if _set_status and not self._submitted:
            self._set_status("Completed")

    def fail(self, error_details: str | BaseException | None = None, error_code: str | None = None, _set_status=True):
        """Upload the outputs folder, flush, record the error, mark the run Failed."""
        if error_details is not None and not isinstance(error_details, str | BaseException):
            raise TypeError(f"error_details must be a str or an exception, not {type(error_details).__name__}")
        self._upload_outputs()
        self.flush()
        error = {"code": error_code or "UserError", "message": ""}
        if isinstance(error_details, BaseException):
            error["message"] = f"User program failed with {type(error_details).__name__}: {error_details}"
            stack = "".join(traceback.format_exception(error_details))
            error["details"] = json.dumps({"exception_type": type(error_details).__name__, "stack_trace": stack})
        elif error_details is not None:
            error["message"] = error_details
        if _set_status and not self._submitted:
            self._set_status("Failed", error)

    def cancel(self) -> None:
        if self._submitted:
            log.warning("cancel() inside a submitted run does nothing; cancel it from outside (run.cancel())")
            return
        if self._record.type == SCRIPT_RUN_TYPE:
            self._record = self._transport.cancel_run(self._id)  # its node stops the process
            return
        self._set_status("Canceled")
        self._upload_outputs()
        self.flush()

    def get_status(self) -> str:
        if self._record.status not in TERMINAL_STATUSES:
            self._record = self._transport.get_run(self._id)
        return self._record.status

    def get_detailed_status(self) -> dict[str, str | None]:
        return {"status": self.get_status(), "details": None}

    def get_details(self) -> dict[str, Any]:
        """The run's details in Azure ML's shape (RUN_API.md §9.4); `logFiles` maps each log file
        to its download URL."""
        record = self._record = self._transport.get_run(self._id)
        details: dict[str, Any] = {
            "runId": record.run_id,
            "target": record.target or "local",
            "status": record.status,
            "startTimeUtc": _iso(record.start_time or record.created_time),
        }
        if record.status in TERMINAL_STATUSES and record.end_time:
            details["endTimeUtc"] = _iso(record.end_time)
        details["properties"] = dict(record.properties)
        details["inputDatasets"] = []
        details["outputDatasets"] = []
        details["runDefinition"] = self._run_definition(record)
        details["logFiles"] = {path: self._log_url(path) for path in record.log_files}
        details["submittedBy"] = record.properties.get("runwire.submitted_by") or ""
        if record.error:
            details["error"] = {"error": dict(record.error)}
        if record.warnings:
            details["warnings"] = [{"message": w} for w in record.warnings]
        return details

    def _run_definition(self, record: RunRecord) -> dict[str, Any]:
        """A script run's definition (script, arguments, target, environment, ...); {} for others."""
        if record.type != SCRIPT_RUN_TYPE:
            return {}
        try:
            job = self._transport.get_job(self._id)
        except UserErrorException:
            return {}
        d = job.definition
        return {
            "script": d.script or None,
            "arguments": list(d.arguments),
            "command": shlex.join(d.command) if d.command else "",
            "target": job.target or record.target,
            "environment": {
                "name": d.environment_name,
                "python": {
                    "userManagedDependencies": d.user_managed_dependencies,
                    "interpreterPath": d.interpreter_path or "python",
                },
                "environmentVariables": dict(d.environment_variables),
            },
            "maxRunDurationSeconds": d.max_run_duration_seconds or None,
            "sourceDirectory": d.source_directory,
            "snapshotId": d.snapshot_id,
        }

    def _log_url(self, path: str) -> str:
        studio = (self._transport.endpoint.studio or DEFAULT_STUDIO).rstrip("/")
        return f"{studio}/api/v1/runs/{quote(self._id, safe='')}/logs/{quote(path)}"

    def _log_text(self, path: str) -> str:
        return "".join(line + "\n" for chunk in self._transport.get_log(self._id, path) for line in chunk.lines)

    def get_details_with_logs(self) -> dict[str, Any]:
        """`get_details()` with each `logFiles` value the file's content instead of its URL."""
        details = self.get_details()
        details["logFiles"] = {path: self._log_text(path) for path in details["logFiles"]}
        return details

    def get_all_logs(self, destination: str | os.PathLike[str] | None = None) -> list[str]:
        """Download every log file of the run (`get_details()["logFiles"]`) under `destination`
        (default: a folder named after the run id in the current folder); returns their paths."""
        from runwire.artifact_names import normalize_name

        folder = os.path.abspath(os.fspath(destination) if destination is not None else self._id)
        paths = []
        for name in self._transport.get_run(self._id).log_files:
            target = os.path.join(folder, *normalize_name(name).split("/"))  # never outside `folder`
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "w", encoding="utf-8") as f:
                f.write(self._log_text(name))
            paths.append(target)
        return paths

    def wait_for_completion(
        self, show_output: bool = False, wait_post_processing: bool = False, raise_on_error: bool = True
    ) -> dict[str, Any]:
        """Wait for the run to end; returns `get_details()`.

        Without `show_output` it returns once the run leaves the running set (RUN_API.md §9.1) — at
        `Finalizing`, unless `wait_post_processing`. With `show_output=True` it prints the run id,
        its studio URL, then its log (`user_logs/std_log.txt`) line by line as it is written, waits
        until the run has ended, and prints the execution summary. A `Failed` run raises
        `ActivityFailedException` (with the error JSON) unless `raise_on_error=False`, which prints
        the error instead. The status and the log are pushed by the collector (no polling)."""
        from runwire.log_stream import stream_log, wait_for_status

        if not show_output:
            post = wait_post_processing

            def done(status: str) -> bool:
                return status in TERMINAL_STATUSES or (status in POST_PROCESSING_STATUSES and not post)

            if not done(self._record.status):
                wait_for_status(self._transport, self._id, done)
            details = self.get_details()
            if details["status"] == "Failed" and raise_on_error:
                raise ActivityFailedException(_activity_failed(details))
            return details

        def write(text: str) -> None:
            sys.stdout.write(text)
            sys.stdout.flush()

        url = self.get_portal_url()
        write(f"RunId: {self._id}\nWeb View: {url}\n")
        try:
            stream_log(self._transport, self._id, write, follow=True, title=True)
        except KeyboardInterrupt:
            raise ExperimentExecutionException(
                "The output streaming for the run interrupted.\n"
                "But the run is still executing on the compute target.\n"
                f"Cancel it with run.cancel() or `runwire runs cancel {self._id}`."
            ) from None
        details = self.get_details()
        write(f"\nExecution Summary\n=================\nRunId: {self._id}\nWeb View: {url}\n")
        messages = [w.get("message") for w in details.get("warnings", []) if w.get("message")]
        if messages:
            write("\nWarnings:\n" + "".join(m + "\n" for m in messages) + "\n")
        if details["status"] == "Failed":
            if raise_on_error:
                raise ActivityFailedException(_activity_failed(details))
            write("\nError:\n" + _error_json(details) + "\n")
        write("\n")
        return details

    # --- children -------------------------------------------------------------------------------

    def child_run(self, name: str | None = None, run_id: str | None = None, outputs: str | None = None) -> Run:
        """Create and start a child run (status Running) on the parent's compute target. This
        process owns it: if the process dies without ending it, its agent reports it Failed."""
        record = self._transport.create_run(
            self._experiment.name,
            run_id or str(uuid.uuid4()),
            status="Running",
            parent_run_id=self._id,
            name=f"{self.name or self._id}>{name}" if name else None,
            display_name=name,
            target=self._record.target or DEFAULT_TARGET,
            properties={"azureml.runsource": "experiment", "runwire.submitted_by": _user()},
        )
        self._producer.claim(record.run_id)
        return Run._from_record(self._experiment, record, outputs)

    def create_children(
        self, count: int | None = None, tag_key: str | None = None, tag_values: list[str] | None = None
    ) -> list[Run]:
        if count is not None and (tag_key is not None or tag_values is not None):
            raise UserErrorException("create_children takes either count, or tag_key with tag_values, not both")
        if count is None and (tag_key is None or tag_values is None):
            raise UserErrorException("create_children needs count, or tag_key together with tag_values")
        tag_sets: list[dict[str, str | None]]
        if count is not None:
            if not isinstance(count, int) or count < 1 or count > MAX_CHILDREN_PER_CALL:
                raise UserErrorException(f"count must be between 1 and {MAX_CHILDREN_PER_CALL}, got {count!r}")
            tag_sets = [{"azureml.batch_child_number": str(i)} for i in range(count)]
        else:
            values = list(tag_values or [])
            if len(values) > MAX_CHILDREN_PER_CALL:
                raise UserErrorException(f"at most {MAX_CHILDREN_PER_CALL} tag_values, got {len(values)}")
            tag_sets = [{str(tag_key): str(value)} for value in values]
        children = []
        for tags in tag_sets:
            record = self._transport.create_run(
                self._experiment.name,
                str(uuid.uuid4()),
                status="NotStarted",
                parent_run_id=self._id,
                target=self._record.target or DEFAULT_TARGET,
                tags=tags,
                properties={"azureml.runsource": "experiment", "runwire.submitted_by": _user()},
            )
            self._producer.claim(record.run_id)
            child = Run._from_record(self._experiment, record)
            child.start()
            children.append(child)
        return children

    def submit_child(self, config: Any, tags: dict[str, Any] | None = None, **kwargs: Any) -> ScriptRun:
        """Submit a ScriptRunConfig as a child of this run (as `experiment.submit`); returns at once."""
        from runwire.script_run import submit_script_run

        return submit_script_run(self._experiment, config, tags, parent=self, kwargs=kwargs)

    def get_children(
        self,
        recursive: bool = False,
        tags: str | dict[str, Any] | None = None,
        properties: str | dict[str, Any] | None = None,
        type: str | None = None,
        status: str | None = None,
        _rehydrate_runs: bool = True,
    ) -> Iterator[Run]:
        records = self._transport.list_runs(
            parent_run_id=self._id,
            recursive=recursive,
            statuses=[status] if status else None,
            run_type=type,
            tags=_filter(tags),
            properties=_filter(properties),
        )
        for record in records:
            yield Run._from_record(self._experiment, record)

    # --- context manager and display ------------------------------------------------------------

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> bool:
        if self._submitted:
            self.complete()
            return False
        if self._record.status in TERMINAL_STATUSES:
            self.flush()
            return False
        if exc is None or (isinstance(exc, SystemExit) and exc.code in (0, None)):
            self.complete()
            return exc is not None
        self.fail(exc)
        return False

    def get_portal_url(self) -> str:
        studio = self._transport.endpoint.studio or DEFAULT_STUDIO
        return f"{studio.rstrip('/')}/runs/{quote(self._id, safe='')}"

    def __str__(self) -> str:
        return f"Run(Experiment: {self._experiment.name},\nId: {self._id},\nType: {self.type},\nStatus: {self.status})"

    __repr__ = __str__

    def _repr_html_(self) -> str:
        cells = [self._experiment.name, self._id, str(self.type), self.status]
        row = "".join(f"<td>{html.escape(c)}</td>" for c in cells)
        link = f'<td><a href="{html.escape(self.get_portal_url())}" target="_blank">Link to runwire studio</a></td>'
        head = "".join(f"<th>{h}</th>" for h in ("Experiment", "Id", "Type", "Status", "Details Page"))
        return f"<table style='width:100%'><tr>{head}</tr><tr>{row}{link}</tr></table>"

    # --- class-level lookups --------------------------------------------------------------------

    @classmethod
    def get_context(cls, allow_offline: bool = True, used_for_context_manager: bool = False, **kwargs: Any):
        """The run of this submitted script (the same object on every call), or, outside a submitted
        run, an offline run that only prints what it would log (RunEnvironmentException when
        allow_offline=False). A submitted script finds its run through RUNWIRE_RUN_ID,
        RUNWIRE_COLLECTOR and RUNWIRE_AGENT_SOCKET, which the executor sets.

        The submitted run is a `ScriptRun` whose status belongs to the node that runs it
        (`complete()`/`fail()` flush without changing it); the node also uploads `./outputs` after
        the script exits, so the run object does not."""
        global _context_run
        if _context_run is not None and (not isinstance(_context_run, OfflineRun) or allow_offline):
            return _context_run
        run_id = os.environ.get(ENV_RUN_ID)
        if not run_id:
            if not allow_offline:
                raise RunEnvironmentException(
                    "Run.get_context(allow_offline=False) was called outside a submitted run "
                    "(RUNWIRE_RUN_ID is not set)"
                )
            _context_run = OfflineRun()
            return _context_run
        from runwire.experiment import Experiment
        from runwire.workspace import Workspace

        workspace = Workspace.from_config()
        record = workspace._transport.get_run(run_id)
        experiment = Experiment(workspace, record.experiment_name, _skip_name_validation=True)
        from runwire.script_run import ScriptRun

        run = ScriptRun._from_record(experiment, record, None)  # the node uploads ./outputs after exit
        run._submitted = True
        _context_run = run
        return run

    @staticmethod
    def get(workspace: Workspace, run_id: str) -> Run:
        from runwire.experiment import Experiment

        record = workspace._transport.get_run(run_id)
        return Run._from_record(Experiment(workspace, record.experiment_name), record)

    @staticmethod
    def list_by_compute(
        compute: ComputeTarget | str,
        type: str | None = None,
        tags: str | dict[str, Any] | None = None,
        properties: str | dict[str, Any] | None = None,
        status: str | None = None,
    ) -> Iterator[ActiveRunRecord]:
        """Generator of the unfinished runs of a compute target (a ComputeTarget, or a name in the
        workspace of `Workspace.from_config()`) as lightweight records (RUN_API.md §15); `status`
        may only be "Running" or "Queued"."""
        from runwire.compute import ComputeTarget, active_runs

        if isinstance(compute, ComputeTarget):
            workspace, name = compute.workspace, compute.name
        elif isinstance(compute, str):
            from runwire.workspace import Workspace

            workspace, name = Workspace.from_config(), compute
        else:
            raise UserErrorException(
                f"compute must be a ComputeTarget or a target name, not {compute.__class__.__name__}"
            )
        return active_runs(workspace, name, type, tags, properties, status)

    @staticmethod
    def list(
        experiment: Experiment,
        type: str | None = None,
        tags: str | dict[str, Any] | None = None,
        properties: str | dict[str, Any] | None = None,
        status: str | None = None,
        include_children: bool = False,
        _rehydrate_runs: bool = True,
    ) -> Iterator[Run]:
        return experiment._list_runs(type, tags, properties, status, include_children)


_context_run: Run | OfflineRun | None = None


def get_run(experiment: Experiment, run_id: str, rehydrate: bool = True, clean_up: bool = True) -> Run:
    """Function form of `Run(experiment, run_id)`."""
    return Run(experiment, run_id)


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return os.environ.get("USER", "")
