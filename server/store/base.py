"""The storage interface the collector's services use, filled by SQLite (`sqlite.py`, one collector)
and PostgreSQL (`postgres.py`, replicas sharing one database); `front.py` holds the public methods
both share, `factory.make_store` picks one from `runwire server --store`.

Every method is a coroutine and must not block the event loop. Failures the caller should
report to a client raise `runwire.server.errors.CollectorError` subclasses (`NotFound`,
`AlreadyExists`, `InvalidArgument`, `FailedPrecondition`); the backend-neutral rules they apply
live in `runwire.server.rules` and the metric chunking logic in `runwire.server.store.series`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping, Sequence

from runwire.server.errors import CollectorError
from runwire.server.records import (
    ActiveRunRecord,
    ArtifactRecord,
    ExperimentRecord,
    ExperimentSummary,
    IngestOutcome,
    IngestUnit,
    JobRecord,
    LeaseGrant,
    LogRead,
    MetricInfoRecord,
    NewRun,
    NodeRecord,
    ReleasedLease,
    RunQuery,
    RunRecord,
    RunTablePage,
    RunTableQuery,
    RunUpdate,
    SeriesSnapshot,
    SnapshotRecord,
    StatusEntry,
    TargetRecord,
    TokenRecord,
)


class Store(ABC):
    # --- lifecycle --------------------------------------------------------------------------------

    @abstractmethod
    async def open(self) -> None:
        """Connect, create or migrate the schema."""

    @abstractmethod
    async def close(self) -> None:
        """Finish in-flight writes, then release connections and threads."""

    @abstractmethod
    def describe(self) -> str:
        """A one-line description for status pages, e.g. `sqlite:/data/runwire.sqlite3`."""

    # --- experiments --------------------------------------------------------------------------------

    @abstractmethod
    async def get_or_create_experiment(self, name: str) -> ExperimentRecord:
        """The experiment called `name`, created if new. Raises InvalidArgument for a bad name."""

    @abstractmethod
    async def list_experiments(self, name: str = "") -> list[ExperimentRecord]:
        """Every experiment (or only the one called `name`), oldest first."""

    # --- runs -----------------------------------------------------------------------------------------

    @abstractmethod
    async def create_run(self, new: NewRun) -> RunRecord:
        """Create a run: experiment get-or-created, next per-experiment number, created_time now,
        start_time when created Running. AlreadyExists for a taken id, NotFound for a missing
        parent, InvalidArgument for a parent in another experiment or a broken limit."""

    @abstractmethod
    async def get_run(self, run_id: str) -> RunRecord:
        """Raises NotFound."""

    @abstractmethod
    async def list_runs(self, query: RunQuery) -> list[RunRecord]:
        """Runs matching `query`, newest first. NotFound for a missing `parent_run_id`."""

    @abstractmethod
    async def update_run(self, update: RunUpdate) -> RunRecord:
        """Apply status (with start/end times), error, names, description; append warnings.
        FailedPrecondition when changing the status of a finished run."""

    @abstractmethod
    async def set_tags(self, run_id: str, tags: Mapping[str, str | None], remove: Sequence[str]) -> RunRecord:
        """Merge `tags` (None = valueless tag), then delete the keys in `remove`."""

    @abstractmethod
    async def add_properties(self, run_id: str, properties: Mapping[str, str | None]) -> RunRecord:
        """Add immutable properties; AlreadyExists when a key already holds another value."""

    @abstractmethod
    async def count_runs(self) -> int: ...

    # --- metrics ----------------------------------------------------------------------------------------

    @abstractmethod
    async def commit(self, units: Sequence[IngestUnit]) -> list[IngestOutcome]:
        """Store `units` in ONE transaction and return one outcome per unit, after the commit.

        For each batch, `(producer_id, seq)` is recorded; a batch recorded before (in an earlier
        transaction or earlier in this one) is skipped whole and counted as duplicate. Points
        that cannot be stored (unknown run, kind or type conflict, limits) are dropped with a
        warning naming run, metric and rule, in the outcome and in the run's stored warnings.

        A batch's log lines are appended to their files (lines a file already holds are skipped,
        so a resend never duplicates) and its status changes applied (metrics.proto
        `StatusChange`: stale leases and finished runs ignored; a final status ends the job),
        in the same transaction; `IngestOutcome.events` and `ended_leases` say what happened."""

    @abstractmethod
    def read_metrics(
        self, run_id: str, recursive: bool = False, names: Sequence[str] = ()
    ) -> AsyncIterator[SeriesSnapshot]:
        """Metric series of the run (and of all its descendants when `recursive`; the run first,
        then descendants oldest first), each in the order it was first logged; only `names` when
        given. Snapshots carry the blobs of their first chunks and of the open tail; the other
        (sealed, immutable) chunks are fetched with `read_chunks`. NotFound for a missing run."""

    @abstractmethod
    async def read_chunks(self, series_id: int, chunk_nos: Sequence[int]) -> list[bytes]:
        """Stored blobs of sealed chunks of a series, in the order of `chunk_nos`."""

    # --- artifacts and snapshots (metadata; the bytes live in an `ArtifactStore`) --------------------

    @abstractmethod
    async def add_artifact(self, record: ArtifactRecord) -> ArtifactRecord:
        """Record a committed file of a run. Write-once: when the run already has `name`, return the
        existing record if it came from the same `upload_id` (a retried upload), else AlreadyExists
        with Azure's "Resource Conflict" message. NotFound for a missing run; InvalidArgument when
        the run's artifacts would exceed MAX_RUN_ARTIFACT_BYTES."""

    @abstractmethod
    async def get_artifact(self, run_id: str, name: str) -> ArtifactRecord | None: ...

    async def add_artifacts(self, records: Sequence[ArtifactRecord]) -> list[ArtifactRecord | CollectorError]:
        """`add_artifact` for many files (a backend may do it in one transaction): per record, the
        stored record or the CollectorError that refused it."""
        out: list[ArtifactRecord | CollectorError] = []
        for record in records:
            try:
                out.append(await self.add_artifact(record))
            except CollectorError as e:
                out.append(e)
        return out

    async def get_artifacts(self, run_id: str, names: Sequence[str]) -> dict[str, ArtifactRecord]:
        """The run's artifacts among `names`, by name (a backend may read them at once)."""
        out = {}
        for name in names:
            found = await self.get_artifact(run_id, name)
            if found is not None:
                out[name] = found
        return out

    @abstractmethod
    async def list_artifacts(self, run_id: str, prefix: str = "") -> list[ArtifactRecord]:
        """Artifacts of a run whose name starts with `prefix`, in the order they were handed over
        (`created_time`, then commit order)."""

    @abstractmethod
    async def run_artifact_bytes(self, run_id: str) -> int: ...

    @abstractmethod
    async def put_snapshot(self, record: SnapshotRecord) -> SnapshotRecord:
        """Record a snapshot; an existing id returns the existing record (same manifest, same id)."""

    @abstractmethod
    async def get_snapshot(self, snapshot_id: str) -> SnapshotRecord:
        """Raises NotFound."""

    # --- script runs: jobs and leases (issue 4) -------------------------------------------------------

    @abstractmethod
    async def submit_run(self, new: NewRun, definition: bytes) -> RunRecord:
        """Create the run (as `create_run`; `new.status` is Queued, `new.target` the compute
        target) and its job, queued, in ONE transaction. `definition`: a serialized JobDefinition."""

    @abstractmethod
    async def get_job(self, run_id: str) -> JobRecord:
        """The run's job. NotFound for a missing run or a run without job."""

    @abstractmethod
    async def lease_next(self, target: str, node_id: str) -> LeaseGrant | None:
        """Lease the oldest queued, not canceled job of `target` to `node_id` (new lease id,
        attempts + 1) and set its run `Preparing`, in ONE transaction; None when none is queued.
        Race-safe across callers and collector processes: a job is never leased twice."""

    @abstractmethod
    async def release_lease(self, lease_id: str, reason: str) -> ReleasedLease | None:
        """The lease is lost (its node stopped answering or no longer runs it). A run that never
        reached Running is queued again; a canceled one becomes Canceled; any other becomes
        Failed (code NodeLost, message "node <host> <reason>"). None when the lease is not
        current (already released or ended)."""

    @abstractmethod
    async def cancel_run(self, run_id: str) -> tuple[RunRecord, JobRecord | None, bool]:
        """Cancel a run: a queued job -> Canceled at once (job done); a leased job ->
        CancelRequested (the job, returned leased with cancel_requested, tells the caller which
        node to stop); a run without job not finished -> Canceled; a finished run -> unchanged.
        Returns (run, its job or None, whether the status changed). NotFound for a missing run."""

    @abstractmethod
    async def jobs_of_node(self, node_id: str) -> list[JobRecord]:
        """The jobs leased to `node_id` now."""

    @abstractmethod
    async def jobs_by_lease(self, lease_ids: Sequence[str]) -> dict[str, JobRecord]:
        """The jobs whose current or last lease is among `lease_ids`, by lease id."""

    @abstractmethod
    async def expired_leases(self, seen_before: float) -> list[JobRecord]:
        """Leased jobs whose node was last seen before `seen_before` (unix seconds)."""

    # --- nodes and compute targets ----------------------------------------------------------------------

    @abstractmethod
    async def upsert_node(self, node: NodeRecord) -> None:
        """Record a node that joined (or rejoined) its target; last_seen = now."""

    @abstractmethod
    async def set_node_connected(self, node_id: str, connected: bool) -> None:
        """Mark the node's Work stream open or closed; last_seen = now."""

    @abstractmethod
    async def node_seen(self, node_id: str) -> None:
        """A heartbeat: last_seen = now, connected (the node's leases live on)."""

    @abstractmethod
    async def list_nodes(self, target: str = "") -> list[NodeRecord]:
        """Known nodes (of `target`, "" = all) with the leases they hold (busy, run_ids)."""

    @abstractmethod
    async def list_compute_targets(self, name: str = "") -> list[TargetRecord]:
        """Targets that have nodes or unfinished jobs (only `name` when given), by name."""

    @abstractmethod
    async def list_active_runs(self, target: str, statuses: Sequence[str] = ()) -> list[ActiveRunRecord]:
        """Unfinished runs whose target is `target`, and their descendants, newest first.
        `statuses` may hold "Queued" (NotStarted, Queued) and "Running" (every other unfinished
        status); anything else raises InvalidArgument."""

    # --- logs ---------------------------------------------------------------------------------------------

    @abstractmethod
    async def read_log(self, run_id: str, path: str = "", from_line: int = 0, max_lines: int = 0) -> LogRead:
        """Lines `from_line` .. (at most `max_lines`, 0 = all) of a run's log file ("" = its first
        one), read in one transaction. An unknown path reads as an empty file; NotFound for a
        missing run."""

    # --- studio reads (issue 6) -----------------------------------------------------------------------

    @abstractmethod
    async def experiment_summaries(self, name: str = "") -> list[ExperimentSummary]:
        """Every experiment (or only the one called `name`) with its run counts, oldest first."""

    @abstractmethod
    async def query_run_table(self, query: RunTableQuery) -> RunTablePage:
        """One page of an experiment's runs, filtered, sorted and paged by the store (fast for many
        thousands of runs), with the requested metric summaries. NotFound for a missing experiment."""

    @abstractmethod
    async def list_metric_info(self, run_id: str) -> list[MetricInfoRecord]:
        """The run's metric series as stored, in the order first logged. NotFound for a missing run."""

    @abstractmethod
    async def status_history(self, run_id: str) -> list[StatusEntry]:
        """Every status the run entered, with its time, oldest first. NotFound for a missing run."""

    # --- access tokens (issue 7) ----------------------------------------------------------------------
    # Plain single-statement SQL in both backends (sqlite_tokens.py, postgres_tokens.py).

    @abstractmethod
    async def create_token(self, token: TokenRecord) -> TokenRecord:
        """Store a new token (the caller made its id and the sha256 of its secret; the store never
        sees the secret). AlreadyExists for a taken id."""

    @abstractmethod
    async def list_tokens(self) -> list[TokenRecord]:
        """Every token, revoked ones too, oldest first."""

    @abstractmethod
    async def get_token(self, token_id: str) -> TokenRecord | None:
        """The token with this id (revoked or not), or None."""

    @abstractmethod
    async def revoke_token(self, token_id: str) -> TokenRecord:
        """Set the token's revoked_time to now (an already revoked token keeps its first one).
        NotFound for an unknown id."""

    @abstractmethod
    async def touch_token(self, token_id: str, when: float) -> None:
        """Record that the token was used at `when` (unix seconds); an unknown id is ignored."""
