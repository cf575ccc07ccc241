"""The offline run of `Run.get_context()` outside a submitted run (RUN_API.md §12).

Nothing is sent anywhere: every call prints what it would have done, so a training script can be
tried locally without a server. Anything else (`get_metrics`, `parent`, `experiment`, ...) does
not exist on it, as in Azure ML, so `run.parent.log(...)` raises AttributeError offline.
"""

from __future__ import annotations

import uuid
from typing import Any

MAX_PRINTED_VALUE_CHARS = 200
"""Longer values are cut when the offline run prints them (long loops stay readable)."""


def _short(value: Any) -> str:
    text = str(value)
    if len(text) > MAX_PRINTED_VALUE_CHARS:
        return text[:MAX_PRINTED_VALUE_CHARS] + f"... ({len(text)} characters)"
    return text


class OfflineRun:
    """What `Run.get_context()` returns when the process is not a submitted run."""

    def __init__(self, run_id: str | None = None) -> None:
        self.id = run_id or f"OfflineRun_{uuid.uuid4()}"

    def _attempt(self, kind: str, name: str, value: Any) -> None:
        print(f"Attempted to log {kind} metric {name}:\n{_short(value)}")

    def log(self, name: str, value: Any, description: str = "") -> None:
        self._attempt("scalar", name, value)

    def log_list(self, name: str, value: Any, description: str = "") -> None:
        self._attempt("list", name, value)

    def log_table(self, name: str, value: Any, description: str = "") -> None:
        self._attempt("table", name, value)

    def log_row(self, name: str, description: str | None = None, **kwargs: Any) -> None:
        self._attempt("row", name, kwargs)

    def log_image(self, name: str, path: str | None = None, plot: Any = None, description: str = "") -> None:
        self._attempt("image", name, plot if plot is not None else path)

    def log_residuals(self, name: str, value: Any, description: str = "") -> None:
        self._attempt("residual", name, value)

    def log_predictions(self, name: str, value: Any, description: str = "") -> None:
        self._attempt("predictions", name, value)

    def log_accuracy_table(self, name: str, value: Any, description: str = "") -> None:
        self._attempt("accuracy_table", name, value)

    def log_confusion_matrix(self, name: str, value: Any, description: str = "") -> None:
        self._attempt("confusion_matrix", name, value)

    def upload_file(self, name: str, path_or_stream: Any, datastore_name: str | None = None) -> None:
        print(f"Attempted to track file {name} at {path_or_stream}")

    def upload_files(self, name: Any, paths: Any, *args: Any, **kwargs: Any) -> None:
        print(f"Attempted to track files {name} at {paths}")

    def upload_folder(self, name: str, path: str, datastore_name: str | None = None) -> None:
        print(f"Attempted to track folder {name} at {path}")

    def tag(self, key: str, value: Any = None) -> None:
        print(f"Attempted to add tag {key} with value {value}")

    def set_tags(self, tags: dict[str, Any]) -> None:
        print(f"Attempted to set tags {tags}")

    def add_properties(self, properties: dict[str, Any]) -> None:
        print(f"Attempted to add properties {properties}")

    def complete(self, _set_status: bool = True) -> None:
        pass

    def cancel(self) -> None:
        pass

    def fail(self, error_details: Any = None, error_code: str | None = None, _set_status: bool = True) -> None:
        print(f"Run failed with error code {error_code}:\n{error_details}")

    def flush(self, timeout_seconds: float = 300) -> None:
        print(f"Attempted to flush run with id {self.id}")

    def child_run(self, name: str | None = None, run_id: str | None = None, outputs: str | None = None) -> OfflineRun:
        return OfflineRun(f"{self.id}.{name or run_id or uuid.uuid4()}")

    def __enter__(self) -> OfflineRun:
        print(f"[START] Run {self.id} context")
        return self

    def __exit__(self, *exc: Any) -> None:
        print(f"[STOP] Run {self.id} context")

    def __str__(self) -> str:
        return f"Run(Id: {self.id}, Offline)"
