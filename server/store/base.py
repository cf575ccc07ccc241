"""The storage interface the collector's services use. SQLite fills it today (`sqlite.py`);
a PostgreSQL backend must be able to fill it later without touching any caller.

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
    ArtifactRecord,
    ExperimentRecord,
    IngestOutcome,
    IngestUnit,
    NewRun,
    RunQuery,
    RunRecord,
    RunUpdate,
    SeriesSnapshot,
    SnapshotRecord,
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
        warning naming run, metric and rule, in the outcome and in the run's stored warnings."""

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
