"""What a write does to the stored state, decided the same way by every backend: pure functions
from the rows a transaction read (under its locks) to the columns it writes. The backends only
read, lock and write; the rules of RUN_API.md §9 and metrics.proto's `StatusChange` live here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from runwire import codec, limits
from runwire.server import rules
from runwire.server.errors import AlreadyExists, FailedPrecondition, InvalidArgument
from runwire.server.records import (
    JOB_DONE,
    JOB_LEASED,
    JOB_QUEUED,
    ArtifactRecord,
    EndedLease,
    JobRecord,
    LogInput,
    NewRun,
    PointsInput,
    RunErrorRecord,
    RunUpdate,
)
from runwire.server.store import series
from runwire.server.store.rows import error_json
from runwire.server.store.series import SeriesState
from runwire.statuses import TERMINAL_STATUSES

log = logging.getLogger("runwire.server.store")

NOT_STARTED_STATUSES = frozenset({"NotStarted", "Queued", "Preparing", "Provisioning", "Starting"})
"""A job whose run is in one of these never started its process: losing its lease queues it again."""

NODE_LOST_ERROR_CODE = "NodeLost"
"""Error code of a run failed because the node running its job was lost."""

LOG_CHUNK_MAX_LINES = 1_000
"""Lines of one stored log chunk, beyond which appended lines start a new chunk (small appends are
merged into the last chunk up to it)."""

LOG_CHUNK_MAX_CHARS = 256 * 1024
"""Characters of one stored log chunk, beyond which appended lines start a new chunk."""


@dataclass
class RunChange:
    """Columns of the run to set, the status it entered (for its history) and what becomes of its job."""

    sets: dict[str, object] = field(default_factory=dict)
    entered: str | None = None
    job_state: str | None = None
    """The job's new state (JOB_DONE, JOB_QUEUED), or None to leave it."""
    ended_lease: EndedLease | None = None
    publish: bool = False
    """Whether subscribers hear of the run (its status or error changed)."""
    requeued: bool = False


# --- runs ------------------------------------------------------------------------------------------


def run_update(u: RunUpdate, status: str, start: float | None, end: float | None, now: float) -> RunChange:
    """`Store.update_run` on a run now in `status`; FailedPrecondition for a finished run's status."""
    change = RunChange()
    if u.status is not None and u.status != status:
        if status in TERMINAL_STATUSES:
            raise FailedPrecondition(f"run {u.run_id} is already {status}; a finished run cannot become {u.status}")
        change.sets["status"] = change.entered = u.status
        if u.status == "Running" and start is None:
            change.sets["start_time"] = now
        if u.status in TERMINAL_STATUSES:
            if end is None:
                change.sets["end_time"] = now
            # a finished run's job is never (re)leased; a node still running it is told at its next heartbeat
            change.job_state = JOB_DONE
    if u.display_name is not None:
        change.sets["display_name"] = u.display_name
    if u.description is not None:
        change.sets["description"] = u.description
    if u.error is not None:
        change.sets["error"] = error_json(u.error)
    return change


def reported_status(
    sc_run_id: str,
    sc_status: str,
    lease_id: str,
    only_if_active: bool,
    error: RunErrorRecord | None,
    status: str,
    start: float | None,
    job: JobRecord | None,
    now: float,
) -> RunChange | None:
    """A status change reported through ingest, per metrics.proto `StatusChange`, on a run now in
    `status`: None when ignored (stale lease, finished run, or an unleased report while a node runs
    the run's job)."""
    leased = job is not None and job.state == JOB_LEASED
    if lease_id and not (leased and job is not None and job.lease_id == lease_id):
        log.info(
            "stale status change ignored",
            extra={"fields": {"run_id": sc_run_id, "status": sc_status, "lease_id": lease_id}},
        )
        return None
    if status in TERMINAL_STATUSES:
        return None  # terminal statuses are never left (this also covers only_if_active)
    if leased and not lease_id and only_if_active:
        return None  # the node running the job reports its outcome (it knows the exit code)
    new = sc_status
    if (status == "CancelRequested" or (job is not None and job.cancel_requested)) and new not in TERMINAL_STATUSES:
        new = status  # a cancel in progress is only left for a final status
    change = RunChange()
    if new != status:
        change.sets["status"] = change.entered = new
        if new in TERMINAL_STATUSES:
            change.sets["end_time"] = now
    if sc_status == "Running" and start is None:
        change.sets["start_time"] = now
    if error is not None:
        change.sets["error"] = error_json(error)
    if not change.sets:
        return None
    if new in TERMINAL_STATUSES and job is not None and job.state != JOB_DONE:
        change.job_state = JOB_DONE
        if leased:
            change.ended_lease = EndedLease(job.lease_id, job.run_id, job.node_id, job.target)
    change.publish = new != status or error is not None
    return change


def lease_lost(job: JobRecord, status: str, host: str, reason: str, now: float) -> RunChange:
    """A lost lease of `job` (its run now in `status`; `host` the node's name or ""): a finished run
    keeps its status, a canceled job's run becomes Canceled, a run that never started is queued
    again, any other fails with `NODE_LOST_ERROR_CODE`."""
    change = RunChange(job_state=JOB_DONE)
    if status in TERMINAL_STATUSES:
        return change
    if job.cancel_requested:
        change.sets = {"status": "Canceled", "end_time": now}
        change.entered = "Canceled"
    elif status in NOT_STARTED_STATUSES:
        change.job_state, change.requeued = JOB_QUEUED, True
        change.sets = {"status": "Queued"}
        change.entered = "Queued" if status != "Queued" else None
    else:
        name = f"{host} ({job.node_id})" if host else job.node_id
        error = RunErrorRecord(NODE_LOST_ERROR_CODE, f"node {name} {reason}")
        change.sets = {"status": "Failed", "end_time": now, "error": error_json(error)}
        change.entered = "Failed"
    return change


def existing_run(new: NewRun, stored_request_id: str) -> None:
    """`new.run_id` exists, created by the call with `stored_request_id`: returns when that is
    `new`'s own call (a retry whose earlier attempt committed but whose answer was lost; the caller
    answers with the stored run), else AlreadyExists."""
    if new.request_id and stored_request_id == new.request_id:
        return
    raise AlreadyExists(f"run {new.run_id} already exists (run ids are unique)")


def new_properties(run_id: str, stored: Mapping[str, str | None], properties: Mapping[str, str | None]) -> dict:
    """The properties of `properties` not stored yet; AlreadyExists for a key stored with another
    value (properties are immutable), InvalidArgument past MAX_PROPERTIES_PER_RUN."""
    new = {}
    for key, value in properties.items():
        if key in stored:
            if stored[key] != value:
                raise AlreadyExists(
                    f"property {key!r} of run {run_id} is already {stored[key]!r}; properties are immutable "
                    f"and cannot become {value!r}"
                )
        else:
            new[key] = value
    rules.check_property_count(run_id, len(stored) + len(new))
    return new


# --- artifacts -------------------------------------------------------------------------------------


def existing_artifact(existing: ArtifactRecord, a: ArtifactRecord) -> ArtifactRecord:
    """`a` when the run already has its name: the stored record for a retried upload, else AlreadyExists."""
    if a.upload_id and existing.upload_id == a.upload_id and existing.sha256 == a.sha256:
        return existing
    from runwire.artifact_names import conflict_message

    raise AlreadyExists(conflict_message(a.run_id, a.name))


def check_artifact_room(a: ArtifactRecord, total: int) -> None:
    """InvalidArgument when `a` would take its run's artifacts (now `total` bytes) over the limit."""
    if total + a.size > limits.MAX_RUN_ARTIFACT_BYTES:
        raise InvalidArgument(
            f"run {a.run_id}: {a.name!r} ({a.size} bytes) would take the run's artifacts to {total + a.size} "
            f"bytes, over MAX_RUN_ARTIFACT_BYTES ({limits.MAX_RUN_ARTIFACT_BYTES})"
        )


# --- ingest ----------------------------------------------------------------------------------------


def next_floor(floor: int, seqs: list[int]) -> int:
    """A producer's dedup floor after its batches `seqs` (stored above `floor`, ascending) committed:
    the highest seq up to which every batch is committed."""
    for seq in seqs:
        if seq != floor + 1:
            break
        floor = seq
    return floor


def metric_refusal(p: PointsInput, rule: str, dropped: int) -> str:
    return f"run {p.run_id!r} metric {p.name!r}: {rule}; {dropped} points dropped"


def admit_points(
    p: PointsInput, state: SeriesState, pending_rows: int, refuse: Callable[[str, int], None]
) -> codec.DecodedPoints | None:
    """The points of `p` that join `state` (which already got `pending_rows` rows in this
    transaction): None when they conflict with it, cut at MAX_ROWS_PER_METRIC; `refuse(rule,
    dropped)` hears of what is dropped. Records their columns and description in `state`."""
    assert p.points is not None
    rule = series.conflict(state, p.kind, p.points)
    if rule is not None:
        refuse(rule, p.count)
        return None
    room = limits.MAX_ROWS_PER_METRIC - state.count - pending_rows
    points = p.points
    if points.count > room:
        refuse(
            f"the metric reached MAX_ROWS_PER_METRIC ({limits.MAX_ROWS_PER_METRIC}) rows", points.count - max(room, 0)
        )
        if room <= 0:
            return None
        points = codec.slice_points(points, 0, room)
    series.absorb(state, points, p.description)
    return points


def names_limit_rule() -> str:
    return f"the run already has MAX_METRIC_NAMES_PER_RUN ({limits.MAX_METRIC_NAMES_PER_RUN}) metric names"


@dataclass
class LogPlacement:
    first: int
    lines: list[str]
    warning: str | None = None


def place_log_lines(item: LogInput, count: int) -> LogPlacement | None:
    """Where `item`'s lines go in a log file holding `count` lines: lines it holds are skipped (a
    resend never duplicates; None when nothing is left); after a gap they are stored from its end
    (never a hole), with a warning."""
    lines, first = item.lines, item.first_line
    if first < count:
        skip = count - first
        if skip >= len(lines):
            return None
        return LogPlacement(count, lines[skip:])
    if first > count:
        text = (
            f"run {item.run_id!r} log {item.path!r}: lines {count}..{first - 1} never arrived; "
            f"the {len(lines)} lines sent as {first}.. are stored from line {count}"
        )
        return LogPlacement(count, lines, text)
    return LogPlacement(first, lines)


def log_chunk_takes(tail_first: int, tail_lines: int, tail_chars: int, first: int, lines: int, chars: int) -> bool:
    """Whether lines `first`.. (`lines` lines, `chars` characters) are merged into a file's last
    chunk (lines `tail_first`.., `tail_lines` lines, `tail_chars` characters)."""
    return (
        tail_first + tail_lines == first
        and tail_lines + lines <= LOG_CHUNK_MAX_LINES
        and tail_chars + chars <= LOG_CHUNK_MAX_CHARS
    )


def log_chunk_open(lines: int, chars: int) -> bool:
    """Whether a log chunk of `lines` lines and `chars` characters takes more lines."""
    return lines < LOG_CHUNK_MAX_LINES and chars < LOG_CHUNK_MAX_CHARS


def signed64(seq: int) -> int:
    """A uint64 sequence number as the int64 a database stores (the mapping is one-to-one)."""
    return seq - (1 << 64) if seq >= (1 << 63) else seq
