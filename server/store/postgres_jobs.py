"""Script runs in the PostgreSQL store: submitting a run with its job, leasing jobs to nodes (race-safe
across replicas), releasing leases, cancel requests, nodes and compute targets, active runs, and
reading a run's stored log lines.

Locks are taken run before job, as everywhere in this store. `lease_next` picks the oldest queued job,
locks its run, then takes the job with a conditional UPDATE (`WHERE state = 'queued'`): of several
replicas racing for one job, the first wins and the others, finding it leased once they get the row,
move on to the next one.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import psycopg

from runwire.server.errors import NotFound
from runwire.server.records import (
    JOB_DONE,
    JOB_LEASED,
    JOB_QUEUED,
    ActiveRunRecord,
    JobRecord,
    LeaseGrant,
    LogRead,
    NewRun,
    NodeRecord,
    ReleasedLease,
    RunRecord,
    TargetRecord,
)
from runwire.server.store import transitions
from runwire.server.store.postgres_runs import _all, _one, _record_status, _run_exists, _set_run
from runwire.server.store.rows import JOB_COLUMNS, job_record, log_lines
from runwire.statuses import TERMINAL_STATUSES

Conn = psycopg.AsyncConnection

_UNFINISHED = "status NOT IN ('Completed', 'Failed', 'Canceled')"


class PostgresJobs:
    """`PostgresStore`'s jobs, leases, nodes, compute targets, active runs and log reads."""

    # provided by `PostgresStore` (postgres.py) and the other mixins it is assembled from
    _read: Callable[..., Any]
    _write: Callable[..., Any]
    _get_run_tx: Callable[..., Any]
    _create_run_tx: Callable[..., Any]
    _replayed_run_tx: Callable[..., Any]
    _load_runs: Callable[..., Any]
    _lock_run: Callable[..., Any]

    async def _submit_run_tx(self, conn: Conn, new: NewRun, definition: bytes) -> RunRecord:
        replayed = await self._replayed_run_tx(conn, new)
        if replayed is not None:  # a retry of the submission that created it: its job is there already
            return replayed
        run = await self._create_run_tx(conn, new)
        await conn.execute(
            "INSERT INTO jobs (run_id, target, definition, state, queued_time) VALUES (%s, %s, %s, %s, %s)",
            (run.run_id, new.target, definition, JOB_QUEUED, run.created_time),
        )
        return run

    @staticmethod
    async def _job_tx(conn: Conn, run_id: str, lock: bool = False) -> JobRecord | None:
        sql = f"SELECT {JOB_COLUMNS} FROM jobs WHERE run_id = %s" + (" FOR UPDATE" if lock else "")
        row = await _one(conn, sql, (run_id,))
        return None if row is None else job_record(row)

    async def get_job(self, run_id: str) -> JobRecord:
        async def get(conn: Conn) -> JobRecord:
            job = await self._job_tx(conn, run_id)
            if job is not None:
                return job
            if await _run_exists(conn, run_id):
                raise NotFound(f"run {run_id} has no job (it was not submitted to a compute target)")
            raise NotFound(f"run {run_id} not found")

        return await self._read(get)

    async def _lease_next_tx(self, conn: Conn, target: str, node_id: str) -> LeaseGrant | None:
        skip: list[str] = []  # jobs found taken or ended in this transaction
        while True:
            row = await _one(
                conn,
                "SELECT run_id FROM jobs WHERE target = %s AND state = %s AND NOT cancel_requested "
                "AND run_id <> ALL(%s) ORDER BY queued_time, seq LIMIT 1",
                (target, JOB_QUEUED, skip),
            )
            if row is None:
                return None
            (run_id,) = row
            skip.append(run_id)
            locked = await self._lock_run(conn, run_id)
            lease_id = uuid.uuid4().hex
            now = time.time()
            # conditional: of several replicas racing for this job, exactly one gets it
            taken = await _one(
                conn,
                "UPDATE jobs SET state = %s, lease_id = %s, node_id = %s, attempts = attempts + 1, leased_time = %s "
                "WHERE run_id = %s AND state = %s AND NOT cancel_requested RETURNING run_id",
                (JOB_LEASED, lease_id, node_id, now, run_id, JOB_QUEUED),
            )
            if taken is None or locked is None:
                continue
            status = locked[0]
            if status in TERMINAL_STATUSES:  # ended by other means (UpdateRun): never run it
                await conn.execute("UPDATE jobs SET state = %s WHERE run_id = %s", (JOB_DONE, run_id))
                continue
            await conn.execute("UPDATE runs SET status = 'Preparing' WHERE id = %s", (run_id,))
            if status != "Preparing":
                await _record_status(conn, run_id, "Preparing", now)
            job = await self._job_tx(conn, run_id)
            assert job is not None
            return LeaseGrant(lease_id, node_id, job, await self._get_run_tx(conn, run_id))

    async def _release_lease_tx(self, conn: Conn, lease_id: str, reason: str) -> ReleasedLease | None:
        row = await _one(conn, "SELECT run_id FROM jobs WHERE lease_id = %s AND state = %s", (lease_id, JOB_LEASED))
        if row is None:
            return None
        (run_id,) = row
        run = await self._lock_run(conn, run_id)
        job = await self._job_tx(conn, run_id, lock=True)
        if run is None or job is None or job.state != JOB_LEASED or job.lease_id != lease_id:
            return None  # released or ended meanwhile
        host = await _one(conn, "SELECT hostname FROM nodes WHERE node_id = %s", (job.node_id,))
        now = time.time()
        change = transitions.lease_lost(job, run[0], host[0] if host else "", reason, now)
        await conn.execute("UPDATE jobs SET state = %s WHERE run_id = %s", (change.job_state, run_id))
        await _set_run(conn, run_id, change.sets)
        if change.entered is not None:
            await _record_status(conn, run_id, change.entered, now)
        after = await self._job_tx(conn, run_id)
        assert after is not None
        return ReleasedLease(after, await self._get_run_tx(conn, run_id), change.requeued)

    async def _cancel_run_tx(self, conn: Conn, run_id: str) -> tuple[RunRecord, JobRecord | None, bool]:
        row = await self._lock_run(conn, run_id)
        if row is None:
            raise NotFound(f"run {run_id} not found")
        status = row[0]
        job = await self._job_tx(conn, run_id, lock=True)
        if status in TERMINAL_STATUSES:
            return await self._get_run_tx(conn, run_id), job, False
        now = time.time()
        if job is not None and job.state == JOB_LEASED:
            await conn.execute("UPDATE jobs SET cancel_requested = TRUE WHERE run_id = %s", (run_id,))
            await conn.execute("UPDATE runs SET status = 'CancelRequested' WHERE id = %s", (run_id,))
            if status != "CancelRequested":
                await _record_status(conn, run_id, "CancelRequested", now)
            job = await self._job_tx(conn, run_id)
            return await self._get_run_tx(conn, run_id), job, status != "CancelRequested"
        if job is not None:
            await conn.execute(
                "UPDATE jobs SET state = %s, cancel_requested = TRUE WHERE run_id = %s", (JOB_DONE, run_id)
            )
            job = await self._job_tx(conn, run_id)
        await conn.execute("UPDATE runs SET status = 'Canceled', end_time = %s WHERE id = %s", (now, run_id))
        await _record_status(conn, run_id, "Canceled", now)
        return await self._get_run_tx(conn, run_id), job, True

    async def jobs_of_node(self, node_id: str) -> list[JobRecord]:
        return await self._jobs_where("node_id = %s AND state = 'leased' ORDER BY leased_time", (node_id,))

    async def jobs_by_lease(self, lease_ids: Sequence[str]) -> dict[str, JobRecord]:
        jobs = await self._jobs_where("lease_id = ANY(%s)", (list(lease_ids),))
        return {job.lease_id: job for job in jobs}

    async def expired_leases(self, seen_before: float) -> list[JobRecord]:
        return await self._jobs_where(
            "state = 'leased' AND COALESCE((SELECT last_seen FROM nodes n WHERE n.node_id = jobs.node_id), 0) < %s",
            (seen_before,),
        )

    async def _jobs_where(self, where: str, params: Sequence[Any]) -> list[JobRecord]:
        rows = await self._read(lambda conn: _all(conn, f"SELECT {JOB_COLUMNS} FROM jobs WHERE {where}", params))
        return [job_record(r) for r in rows]

    async def upsert_node(self, node: NodeRecord) -> None:
        await self._write(
            lambda conn: conn.execute(
                "INSERT INTO nodes (node_id, target, slots, hostname, pid, last_seen, connected) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (node_id) DO UPDATE SET target = excluded.target, "
                "slots = excluded.slots, hostname = excluded.hostname, pid = excluded.pid, "
                "last_seen = excluded.last_seen, connected = excluded.connected",
                (node.node_id, node.target, node.slots, node.hostname, node.pid, time.time(), node.connected),
            )
        )

    async def set_node_connected(self, node_id: str, connected: bool) -> None:
        await self._write(
            lambda conn: conn.execute(
                "UPDATE nodes SET connected = %s, last_seen = %s WHERE node_id = %s", (connected, time.time(), node_id)
            )
        )

    async def node_seen(self, node_id: str) -> None:
        await self._write(
            lambda conn: conn.execute(
                "UPDATE nodes SET last_seen = %s, connected = TRUE WHERE node_id = %s", (time.time(), node_id)
            )
        )

    @staticmethod
    async def _list_nodes_tx(conn: Conn, target: str) -> list[NodeRecord]:
        where, params = ("WHERE target = %s", [target]) if target else ("", [])
        rows = await _all(
            conn,
            f"SELECT node_id, target, slots, hostname, pid, last_seen, connected FROM nodes {where} ORDER BY node_id",
            params,
        )
        nodes = [NodeRecord(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6])) for r in rows]
        by_id = {n.node_id: n for n in nodes}
        rows = await _all(
            conn,
            "SELECT node_id, run_id FROM jobs WHERE state = %s AND node_id = ANY(%s) ORDER BY leased_time",
            (JOB_LEASED, list(by_id)),
        )
        for node_id, run_id in rows:
            by_id[node_id].busy += 1
            by_id[node_id].run_ids.append(run_id)
        return nodes

    async def _list_compute_targets_tx(self, conn: Conn, name: str) -> list[TargetRecord]:
        nodes = await self._list_nodes_tx(conn, name)
        sql = "SELECT target, state, count(*) FROM jobs WHERE state IN (%s, %s)"
        params: list = [JOB_QUEUED, JOB_LEASED]
        if name:
            sql += " AND target = %s"
            params.append(name)
        counts: dict[str, list[int]] = {}
        for target, state, n in await _all(conn, sql + " GROUP BY target, state", params):
            counts.setdefault(target, [0, 0])[0 if state == JOB_QUEUED else 1] += n
        names = sorted({n.target for n in nodes} | set(counts))
        return [
            TargetRecord(t, [n for n in nodes if n.target == t], counts.get(t, [0, 0])[0], counts.get(t, [0, 0])[1])
            for t in names
        ]

    async def _list_active_runs_tx(self, conn: Conn, target: str, wanted: list[str]) -> list[ActiveRunRecord]:
        # unfinished runs only, at every level (the partial index runs_active_by_target)
        prefix = (
            f"WITH RECURSIVE tree (id) AS (SELECT id FROM runs WHERE target = %s AND {_UNFINISHED} "
            f"UNION SELECT c.id FROM runs c JOIN tree t ON c.parent_id = t.id WHERE c.{_UNFINISHED}) "
        )
        where = "WHERE r.id IN (SELECT id FROM tree) AND r.status = ANY(%s)"
        runs = await self._load_runs(conn, where, [target, wanted], prefix)
        rows = await _all(
            conn,
            "SELECT run_id, node_id FROM jobs WHERE state = %s AND run_id = ANY(%s)",
            (JOB_LEASED, [r.run_id for r in runs]),
        )
        nodes = dict(rows)
        return [ActiveRunRecord(r, nodes.get(r.run_id, "")) for r in runs]

    @staticmethod
    async def _read_log_tx(conn: Conn, run_id: str, path: str, from_line: int, max_lines: int) -> LogRead:
        if not await _run_exists(conn, run_id):
            raise NotFound(f"run {run_id} not found")
        if path:
            row = await _one(
                conn, "SELECT id, path, line_count FROM log_files WHERE run_id = %s AND path = %s", (run_id, path)
            )
        else:
            row = await _one(
                conn,
                "SELECT id, path, line_count FROM log_files WHERE run_id = %s AND line_count > 0 ORDER BY id LIMIT 1",
                (run_id,),
            )
        if row is None:
            return LogRead(run_id, path, from_line, [], 0)
        file_id, path, total = row
        end = total if max_lines <= 0 else min(total, from_line + max_lines)
        lines: list[str] = []
        if from_line < end:
            rows = await _all(
                conn,
                "SELECT first_line, line_count, blob FROM logs WHERE file_id = %s AND first_line < %s "
                "AND first_line + line_count > %s ORDER BY first_line",
                (file_id, end, from_line),
            )
            for first, count, blob in rows:
                chunk = log_lines(blob)
                lines.extend(chunk[max(from_line - first, 0) : min(end - first, count)])
        return LogRead(run_id, path, from_line, lines, total)
