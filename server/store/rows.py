"""Rows as records, the same for every backend: the column lists the stores select and the
functions that turn such a row into a `RunRecord` or `JobRecord`, and a run's error as stored."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from runwire import codec, limits
from runwire.server import rules
from runwire.server.records import JobRecord, RunErrorRecord, RunRecord

RUN_COLUMNS = (
    "r.id, r.experiment_id, e.name, r.parent_id, r.number, r.name, r.display_name, r.description, r.status, "
    "r.type, r.target, r.created_time, r.start_time, r.end_time, r.error, r.warnings"
)
"""A run row (`runs r JOIN experiments e`), as `run_record` reads it."""

JOB_COLUMNS = (
    "run_id, target, definition, state, lease_id, node_id, attempts, queued_time, leased_time, cancel_requested"
)
"""A job row, as `job_record` reads it."""

ARTIFACT_COLUMNS = "run_id, name, sha256, size, upload_id, created_time"
"""An artifact row, in `ArtifactRecord`'s field order."""


def run_record(row: Sequence[Any]) -> RunRecord:
    """A `RUN_COLUMNS` row (tags, properties and log files are filled in by the caller)."""
    error = None
    if row[14]:
        err = json.loads(row[14])
        error = RunErrorRecord(err["code"], err["message"], err.get("details_json", ""))
    return RunRecord(
        run_id=row[0],
        experiment_id=row[1],
        experiment_name=row[2],
        parent_run_id=row[3],
        number=row[4],
        name=row[5],
        display_name=row[6],
        description=row[7],
        status=row[8],
        type=row[9],
        target=row[10],
        created_time=row[11],
        start_time=row[12],
        end_time=row[13],
        error=error,
        warnings=json.loads(row[15]),
    )


def job_record(row: Sequence[Any]) -> JobRecord:
    """A `JOB_COLUMNS` row."""
    return JobRecord(
        run_id=row[0],
        target=row[1],
        definition=bytes(row[2]),
        state=row[3],
        lease_id=row[4],
        node_id=row[5],
        attempts=row[6],
        queued_time=row[7],
        leased_time=row[8],
        cancel_requested=bool(row[9]),
    )


def error_json(error: RunErrorRecord) -> str:
    """A run's error as stored (its message truncated to the limit)."""
    return json.dumps(
        {"code": error.code, "message": rules.truncate_error_message(error.message), "details_json": error.details_json}
    )


def log_blob(lines: list[str]) -> bytes:
    """A chunk of log lines as stored."""
    return codec.compress(json.dumps(lines, ensure_ascii=False).encode())


def log_lines(blob: bytes) -> list[str]:
    """The lines of a stored log chunk."""
    return json.loads(codec.decompress(bytes(blob), limits.MAX_GRPC_MESSAGE_BYTES * 4))
