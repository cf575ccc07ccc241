"""The public `Store` methods the SQL backends share: each one checks its arguments by the
backend-neutral rules (`runwire.server.rules`) and runs the backend's `_<name>_tx` in one transaction,
`_read` (one consistent snapshot) or `_write`. A backend provides `_read`, `_write` and the `_tx`
functions (plain functions run on SQLite's threads, coroutines on PostgreSQL's connections); what
differs between backends beyond that (commit, the lookups written as one statement) it defines itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from runwire.server import rules
from runwire.server.errors import CollectorError
from runwire.server.records import (
    ActiveRunRecord,
    ArtifactRecord,
    ExperimentRecord,
    ExperimentSummary,
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
)
from runwire.server.store.base import Store


class StoreFront(Store):
    """Dispatch of the `Store` methods to a backend's transactions (see the module's docstring)."""

    # provided by the backend: the transaction runners and one `_tx` function per method below
    _read: Callable[..., Any]
    _write: Callable[..., Any]
    _read_prefetch_bytes: Callable[[], int]
    _add_artifact_tx: Callable[..., Any]
    _add_artifacts_tx: Callable[..., Any]
    _add_properties_tx: Callable[..., Any]
    _cancel_run_tx: Callable[..., Any]
    _create_run_tx: Callable[..., Any]
    _experiment_summaries_tx: Callable[..., Any]
    _find_experiment: Callable[..., Any]
    _get_artifacts_tx: Callable[..., Any]
    _get_or_create_experiment_tx: Callable[..., Any]
    _get_run_tx: Callable[..., Any]
    _lease_next_tx: Callable[..., Any]
    _list_active_runs_tx: Callable[..., Any]
    _list_artifacts_tx: Callable[..., Any]
    _list_compute_targets_tx: Callable[..., Any]
    _list_experiments_tx: Callable[..., Any]
    _list_metric_info_tx: Callable[..., Any]
    _list_nodes_tx: Callable[..., Any]
    _list_runs_tx: Callable[..., Any]
    _put_snapshot_tx: Callable[..., Any]
    _query_run_table_tx: Callable[..., Any]
    _read_chunks_tx: Callable[..., Any]
    _read_log_tx: Callable[..., Any]
    _release_lease_tx: Callable[..., Any]
    _series_ids_tx: Callable[..., Any]
    _set_tags_tx: Callable[..., Any]
    _snapshots_tx: Callable[..., Any]
    _status_history_tx: Callable[..., Any]
    _submit_run_tx: Callable[..., Any]
    _update_run_tx: Callable[..., Any]

    # --- experiments and runs ---------------------------------------------------------------------------

    async def get_or_create_experiment(self, name: str) -> ExperimentRecord:
        rules.check_experiment_name(name)
        found = await self._read(self._find_experiment, name)
        if found is not None:
            return found
        return await self._write(self._get_or_create_experiment_tx, name)

    async def list_experiments(self, name: str = "") -> list[ExperimentRecord]:
        return await self._read(self._list_experiments_tx, name)

    async def create_run(self, new: NewRun) -> RunRecord:
        rules.check_new_run(new)
        return await self._write(self._create_run_tx, new)

    async def get_run(self, run_id: str) -> RunRecord:
        return await self._read(self._get_run_tx, run_id)

    async def list_runs(self, query: RunQuery) -> list[RunRecord]:
        return await self._read(self._list_runs_tx, query)

    async def update_run(self, update: RunUpdate) -> RunRecord:
        rules.check_run_update(update)
        return await self._write(self._update_run_tx, update)

    async def set_tags(self, run_id: str, tags: Mapping[str, str | None], remove: Sequence[str]) -> RunRecord:
        rules.check_tags(tags)
        return await self._write(self._set_tags_tx, run_id, dict(tags), list(remove))

    async def add_properties(self, run_id: str, properties: Mapping[str, str | None]) -> RunRecord:
        rules.check_properties(properties)
        return await self._write(self._add_properties_tx, run_id, dict(properties))

    async def status_history(self, run_id: str) -> list[StatusEntry]:
        return await self._read(self._status_history_tx, run_id)

    # --- metric reads -----------------------------------------------------------------------------------

    async def read_metrics(
        self, run_id: str, recursive: bool = False, names: Sequence[str] = ()
    ) -> AsyncIterator[SeriesSnapshot]:
        ids = await self._read(self._series_ids_tx, run_id, recursive, list(names))
        i = 0
        while i < len(ids):
            snapshots = await self._read(self._snapshots_tx, ids, i, self._read_prefetch_bytes())
            i += len(snapshots)
            for snapshot in snapshots:
                yield snapshot

    async def read_chunks(self, series_id: int, chunk_nos: Sequence[int]) -> list[bytes]:
        return await self._read(self._read_chunks_tx, series_id, list(chunk_nos))

    # --- artifacts and snapshots ------------------------------------------------------------------------

    async def add_artifact(self, record: ArtifactRecord) -> ArtifactRecord:
        return await self._write(self._add_artifact_tx, record)

    async def add_artifacts(self, records: Sequence[ArtifactRecord]) -> list[ArtifactRecord | CollectorError]:
        return await self._write(self._add_artifacts_tx, list(records))

    async def get_artifacts(self, run_id: str, names: Sequence[str]) -> dict[str, ArtifactRecord]:
        return await self._read(self._get_artifacts_tx, run_id, list(names))

    async def get_artifact(self, run_id: str, name: str) -> ArtifactRecord | None:
        return (await self.get_artifacts(run_id, [name])).get(name)

    async def list_artifacts(self, run_id: str, prefix: str = "") -> list[ArtifactRecord]:
        return await self._read(self._list_artifacts_tx, run_id, prefix)

    async def put_snapshot(self, record: SnapshotRecord) -> SnapshotRecord:
        return await self._write(self._put_snapshot_tx, record)

    # --- script runs: jobs, leases, nodes, logs ---------------------------------------------------------

    async def submit_run(self, new: NewRun, definition: bytes) -> RunRecord:
        rules.check_new_run(new)
        rules.check_target(new.target)
        return await self._write(self._submit_run_tx, new, definition)

    async def lease_next(self, target: str, node_id: str) -> LeaseGrant | None:
        return await self._write(self._lease_next_tx, target, node_id)

    async def release_lease(self, lease_id: str, reason: str) -> ReleasedLease | None:
        return await self._write(self._release_lease_tx, lease_id, reason)

    async def cancel_run(self, run_id: str) -> tuple[RunRecord, JobRecord | None, bool]:
        return await self._write(self._cancel_run_tx, run_id)

    async def list_nodes(self, target: str = "") -> list[NodeRecord]:
        return await self._read(self._list_nodes_tx, target)

    async def list_compute_targets(self, name: str = "") -> list[TargetRecord]:
        return await self._read(self._list_compute_targets_tx, name)

    async def list_active_runs(self, target: str, statuses: Sequence[str] = ()) -> list[ActiveRunRecord]:
        wanted = rules.active_run_statuses(statuses)
        return await self._read(self._list_active_runs_tx, target, sorted(wanted))

    async def read_log(self, run_id: str, path: str = "", from_line: int = 0, max_lines: int = 0) -> LogRead:
        return await self._read(self._read_log_tx, run_id, path, from_line, max_lines)

    # --- studio reads -----------------------------------------------------------------------------------

    async def experiment_summaries(self, name: str = "") -> list[ExperimentSummary]:
        return await self._read(self._experiment_summaries_tx, name)

    async def query_run_table(self, query: RunTableQuery) -> RunTablePage:
        return await self._read(self._query_run_table_tx, query)

    async def list_metric_info(self, run_id: str) -> list[MetricInfoRecord]:
        return await self._read(self._list_metric_info_tx, run_id)
