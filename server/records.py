"""Plain records passed between the services and a store backend (no protobuf, no SQL)."""

from __future__ import annotations

from dataclasses import dataclass, field

from runwire.codec import DecodedPoints

# --- experiments and runs -------------------------------------------------------------------------


@dataclass(frozen=True)
class ExperimentRecord:
    id: str
    name: str
    created_time: float


@dataclass(frozen=True)
class RunErrorRecord:
    code: str
    message: str
    details_json: str = ""


@dataclass
class RunRecord:
    run_id: str
    experiment_id: str
    experiment_name: str
    parent_run_id: str | None
    number: int
    name: str
    display_name: str
    description: str
    status: str
    type: str
    target: str
    created_time: float
    start_time: float | None = None
    end_time: float | None = None
    tags: dict[str, str | None] = field(default_factory=dict)
    properties: dict[str, str | None] = field(default_factory=dict)
    error: RunErrorRecord | None = None
    warnings: list[str] = field(default_factory=list)
    log_files: list[str] = field(default_factory=list)
    """Paths of the run's log files that hold lines, in the order they were first written."""


@dataclass
class NewRun:
    """A run to create. `run_id` and `status` are final (the caller fills defaults)."""

    experiment_name: str
    run_id: str
    status: str
    parent_run_id: str | None = None
    name: str = ""
    display_name: str = ""
    description: str = ""
    type: str = ""
    target: str = ""
    tags: dict[str, str | None] = field(default_factory=dict)
    properties: dict[str, str | None] = field(default_factory=dict)
    request_id: str = ""
    """The client's id of the call creating it (kept by every retry): a run id that exists with the
    same non-empty request id is this call's own run, returned again (`transitions.existing_run`)."""


@dataclass
class RunUpdate:
    """Fields to change on a run; None leaves a field as it is."""

    run_id: str
    status: str | None = None
    display_name: str | None = None
    description: str | None = None
    error: RunErrorRecord | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class RunQuery:
    """Which runs `list_runs` returns (newest first: created_time, then number, descending).

    With `parent_run_id`: its direct children, or its whole subtree (without itself) when
    `recursive`. Otherwise the runs of `experiment_name` ("" = every experiment), top-level ones
    only unless `include_children`. Filters: a tag/property value None means "has this key"."""

    experiment_name: str = ""
    parent_run_id: str | None = None
    include_children: bool = False
    recursive: bool = False
    statuses: list[str] = field(default_factory=list)
    type: str | None = None
    tags: dict[str, str | None] = field(default_factory=dict)
    properties: dict[str, str | None] = field(default_factory=dict)


# --- ingest ---------------------------------------------------------------------------------------


@dataclass
class PointsInput:
    """One decoded `MetricPoints`. `problem` set = refused before reaching the store (the points
    are dropped with that warning if the batch is not a duplicate)."""

    run_id: str
    name: str
    kind: int
    description: str
    count: int
    points: DecodedPoints | None
    problem: str | None = None


@dataclass
class LogInput:
    """One decoded `LogLines`: lines appended to a run's log file, numbered from `first_line`."""

    run_id: str
    path: str
    first_line: int
    lines: list[str]


@dataclass
class StatusInput:
    """One decoded `StatusChange` reported by an agent (metrics.proto says when it applies)."""

    run_id: str
    status: str
    lease_id: str = ""
    only_if_active: bool = False
    error: RunErrorRecord | None = None
    time: float = 0.0


@dataclass
class BatchInput:
    producer_id: str
    seq: int
    metrics: list[PointsInput]
    logs: list[LogInput] = field(default_factory=list)
    statuses: list[StatusInput] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    """(run_id, warning) for log or status items dropped while decoding; stored as warnings
    unless the batch is a duplicate."""


@dataclass
class IngestUnit:
    """The decoded content of one `IngestRequest`: stored all together or not at all."""

    batches: list[BatchInput]

    @property
    def point_count(self) -> int:
        return sum(p.count for b in self.batches for p in b.metrics)


@dataclass
class CommittedPoints:
    """Rows a commit appended to one series: rows `first_row` .. `first_row + points.count - 1`
    (what the live bus publishes after the commit)."""

    run_id: str
    name: str
    kind: int
    description: str
    first_row: int
    points: DecodedPoints


@dataclass
class CommittedLog:
    """Lines a commit appended to one log file: lines `first_line` .. `first_line + len(lines) - 1`."""

    run_id: str
    path: str
    first_line: int
    lines: list[str]


@dataclass(frozen=True)
class EndedLease:
    """A lease that stopped being held (its job finished, was requeued or failed)."""

    lease_id: str
    run_id: str
    node_id: str
    target: str


@dataclass
class IngestOutcome:
    batches_committed: int = 0
    duplicate_batches: int = 0
    points_committed: int = 0
    points_dropped: int = 0
    warnings: list[str] = field(default_factory=list)
    committed: list[CommittedPoints] = field(default_factory=list)
    """What was appended, in commit order (filled by the store for the live bus)."""
    events: list[CommittedLog | RunRecord] = field(default_factory=list)
    """Log lines stored and runs whose status changed (the run after the change), in the order
    they were applied: what the live bus publishes after the commit."""
    ended_leases: list[EndedLease] = field(default_factory=list)
    """Leases that ended with this commit (their node has a slot free again)."""


# --- metric reads ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChunkRef:
    chunk_no: int
    first_row: int
    row_count: int
    nbytes: int


@dataclass
class SeriesSnapshot:
    """One metric series as of one read transaction: its chunks in row order, with `blobs[i]` the
    stored bytes of `chunks[i]`, or None for a sealed chunk still to fetch with `read_chunks`
    (sealed chunks never change, so fetching them later is consistent with the snapshot)."""

    series_id: int
    run_id: str
    name: str
    kind: int
    description: str
    count: int
    columns: list[tuple[str, int]]
    chunks: list[ChunkRef]
    blobs: list[bytes | None]


@dataclass(frozen=True)
class ArtifactRecord:
    """One committed file of a run: its name, and the content (sha256 of the blob) it points at."""

    run_id: str
    name: str
    sha256: str
    size: int
    upload_id: str
    created_time: float


@dataclass(frozen=True)
class SnapshotRecord:
    """A snapshot: id = sha256 of its manifest (a blob listing path, sha256 and size of each file)."""

    snapshot_id: str
    files: int
    size: int
    created_time: float


# --- script runs on compute targets (issue 4) -------------------------------------------------------

JOB_QUEUED = "queued"
JOB_LEASED = "leased"
JOB_DONE = "done"


@dataclass
class JobRecord:
    """The job of a submitted script run. `definition` is a serialized `compute_pb2.JobDefinition`."""

    run_id: str
    target: str
    definition: bytes
    state: str
    lease_id: str = ""
    node_id: str = ""
    attempts: int = 0
    queued_time: float = 0.0
    leased_time: float = 0.0
    cancel_requested: bool = False


@dataclass
class LeaseGrant:
    """A job just leased to a node (its run is now `Preparing`)."""

    lease_id: str
    node_id: str
    job: JobRecord
    run: RunRecord


@dataclass
class ReleasedLease:
    """What releasing a lost lease did: the job (queued again, or done) and its run after the change."""

    job: JobRecord
    run: RunRecord
    requeued: bool


@dataclass
class NodeRecord:
    """An agent that joined a compute target. `busy`/`run_ids`: the leases it holds in the store."""

    node_id: str
    target: str
    slots: int
    hostname: str = ""
    pid: int = 0
    last_seen: float = 0.0
    connected: bool = False
    busy: int = 0
    run_ids: list[str] = field(default_factory=list)


@dataclass
class TargetRecord:
    """A compute target: its nodes, and its unfinished jobs (queued, and leased = active)."""

    name: str
    nodes: list[NodeRecord]
    queued: int
    active: int


@dataclass
class ActiveRunRecord:
    """An unfinished run of a compute target, with the node running it ("" when none)."""

    run: RunRecord
    node_id: str


@dataclass
class LogRead:
    """Lines `first_line` .. of one log file, read in one transaction holding `total_lines` lines."""

    run_id: str
    path: str
    first_line: int
    lines: list[str]
    total_lines: int


# --- studio reads (issue 6) ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StatusEntry:
    """A status a run entered, and when (unix seconds)."""

    status: str
    time: float


@dataclass
class ExperimentSummary:
    """An experiment with its run counts: `runs` counts top-level runs and children; `last_activity`
    is the latest created/start/end time of its runs (None without runs)."""

    experiment: ExperimentRecord
    runs: int = 0
    last_activity: float | None = None
    status_counts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class MetricSummary:
    """A series' stored summary: last/min/max of its numeric values (None when it has none) and rows."""

    last: float | None
    min: float | None
    max: float | None
    count: int


@dataclass
class MetricInfoRecord:
    """One metric series of a run as stored (no chunk read): kind, columns (name, value type), summary."""

    name: str
    kind: int
    description: str
    count: int
    columns: list[tuple[str, int]]
    last: float | None
    min: float | None
    max: float | None


RUN_TABLE_SORTS = ("created", "started", "duration", "status", "number", "name")
"""Run fields a runs table can be sorted by (besides `metric:<name>:<last|min|max>`)."""


@dataclass
class RunTableQuery:
    """One page of an experiment's runs table. `sort` is one of RUN_TABLE_SORTS, or "metric" with
    `sort_metric` naming the metric and `sort_stat` one of last/min/max (runs without it last).
    `tags`: a value None means "has this key". `text`: substring of run id, display name or a tag value."""

    experiment_name: str
    statuses: list[str] = field(default_factory=list)
    tags: dict[str, str | None] = field(default_factory=dict)
    text: str = ""
    include_children: bool = False
    sort: str = "created"
    sort_metric: str = ""
    sort_stat: str = "last"
    descending: bool = True
    offset: int = 0
    limit: int = 100
    metrics: list[str] = field(default_factory=list)
    """Metric names whose summaries the page's rows carry."""


@dataclass
class RunTablePage:
    total: int
    runs: list[RunRecord]
    metrics: dict[str, dict[str, MetricSummary]]
    """run id -> metric name -> summary, for the query's `metrics` the run has."""
    metric_names: list[str]
    """Names of the numeric scalar/list metrics of the experiment's runs, sorted."""


# --- access tokens (issue 7) ------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenRecord:
    """An access token as stored: never its secret, only the secret's sha256 (hex)."""

    token_id: str
    secret_sha256: str
    scope: str
    """`read`, `write` or `admin` (runwire.server.auth.scopes)."""
    experiments: tuple[str, ...] = ()
    """The experiments the token is restricted to; empty = every experiment."""
    name: str = ""
    created_time: float = 0.0
    last_used_time: float | None = None
    revoked_time: float | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_time is not None
