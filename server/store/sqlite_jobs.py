"""Script runs in the SQLite store: submitting a run with its job, leasing jobs to nodes and
releasing their leases (a job whose run never started is queued again; a started one fails with
`NODE_LOST_ERROR_CODE`) and finding the expired ones, cancel requests, the nodes and compute
targets, the active runs of a target, and reading a run's stored log lines.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

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
from runwire.server.store.rows import JOB_COLUMNS, job_record, log_lines
from runwire.server.store.sqlite_runs import _record_status, _set_run
from runwire.server.store.transitions import NODE_LOST_ERROR_CODE, NOT_STARTED_STATUSES

__all__ = ["NODE_LOST_ERROR_CODE", "NOT_STARTED_STATUSES", "SqliteJobs"]
from runwire.statuses import TERMINAL_STATUSES


class SqliteJobs:
    """`SqliteStore`'s jobs, leases, nodes, compute targets, active runs and log reads."""

    # provided by `SqliteStore` (sqlite.py) and the other mixins it is assembled from
    _read: Callable[..., Any]
    _write: Callable[..., Any]
    _get_run_tx: Callable[..., RunRecord]
    _create_run_tx: Callable[..., RunRecord]
    _replayed_run_tx: Callable[..., RunRecord | None]

    # --- script runs: jobs, leases, nodes, logs (issue 4) ---------------------------------------------

    def _submit_run_tx(self, conn: sqlite3.Connection, new: NewRun, definition: bytes) -> RunRecord:
        replayed = self._replayed_run_tx(conn, new)
        if replayed is not None:  # a retry of the submission that created it: its job is there already
            return replayed
        run = self._create_run_tx(conn, new)
        conn.execute(
            "INSERT INTO jobs (run_id, target, definition, state, queued_time) VALUES (?, ?, ?, ?, ?)",
            (run.run_id, new.target, definition, JOB_QUEUED, run.created_time),
        )
        return run

    @staticmethod
    def _job_tx(conn: sqlite3.Connection, run_id: str) -> JobRecord | None:
        row = conn.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE run_id = ?", (run_id,)).fetchone()
        return None if row is None else job_record(row)

    async def get_job(self, run_id: str) -> JobRecord:
        job = await self._read(self._job_tx, run_id)
        if job is None:
            if await self._read(lambda conn: conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone()):
                raise NotFound(f"run {run_id} has no job (it was not submitted to a compute target)")
            raise NotFound(f"run {run_id} not found")
        return job

    def _lease_next_tx(self, conn: sqlite3.Connection, target: str, node_id: str) -> LeaseGrant | None:
        while True:
            row = conn.execute(
                "SELECT run_id FROM jobs WHERE target = ? AND state = ? AND cancel_requested = 0 "
                "ORDER BY queued_time, rowid LIMIT 1",
                (target, JOB_QUEUED),
            ).fetchone()
            if row is None:
                return None
            (run_id,) = row
            lease_id = uuid.uuid4().hex
            now = time.time()
            # conditional: of several collectors racing for this job, exactly one gets it
            cur = conn.execute(
                "UPDATE jobs SET state = ?, lease_id = ?, node_id = ?, attempts = attempts + 1, leased_time = ? "
                "WHERE run_id = ? AND state = ?",
                (JOB_LEASED, lease_id, node_id, now, run_id, JOB_QUEUED),
            )
            if cur.rowcount != 1:
                continue
            (status,) = conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
            if status in TERMINAL_STATUSES:  # ended by other means (UpdateRun): never run it
                conn.execute("UPDATE jobs SET state = ? WHERE run_id = ?", (JOB_DONE, run_id))
                continue
            conn.execute("UPDATE runs SET status = 'Preparing' WHERE id = ?", (run_id,))
            if status != "Preparing":
                _record_status(conn, run_id, "Preparing", now)
            job = self._job_tx(conn, run_id)
            assert job is not None
            return LeaseGrant(lease_id, node_id, job, self._get_run_tx(conn, run_id))

    def _release_lease_tx(self, conn: sqlite3.Connection, lease_id: str, reason: str) -> ReleasedLease | None:
        row = conn.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE lease_id = ? AND state = ?", (lease_id, JOB_LEASED))
        found = row.fetchone()
        if found is None:
            return None
        job = job_record(found)
        (status,) = conn.execute("SELECT status FROM runs WHERE id = ?", (job.run_id,)).fetchone()
        node = conn.execute("SELECT hostname FROM nodes WHERE node_id = ?", (job.node_id,)).fetchone()
        now = time.time()
        change = transitions.lease_lost(job, status, node[0] if node else "", reason, now)
        conn.execute("UPDATE jobs SET state = ? WHERE run_id = ?", (change.job_state, job.run_id))
        _set_run(conn, job.run_id, change.sets)
        if change.entered is not None:
            _record_status(conn, job.run_id, change.entered, now)
        after = self._job_tx(conn, job.run_id)
        assert after is not None
        return ReleasedLease(after, self._get_run_tx(conn, job.run_id), change.requeued)

    def _cancel_run_tx(self, conn: sqlite3.Connection, run_id: str) -> tuple[RunRecord, JobRecord | None, bool]:
        row = conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise NotFound(f"run {run_id} not found")
        (status,) = row
        job = self._job_tx(conn, run_id)
        if status in TERMINAL_STATUSES:
            return self._get_run_tx(conn, run_id), job, False
        now = time.time()
        if job is not None and job.state == JOB_LEASED:
            conn.execute("UPDATE jobs SET cancel_requested = 1 WHERE run_id = ?", (run_id,))
            conn.execute("UPDATE runs SET status = 'CancelRequested' WHERE id = ?", (run_id,))
            if status != "CancelRequested":
                _record_status(conn, run_id, "CancelRequested", now)
            job = self._job_tx(conn, run_id)
            return self._get_run_tx(conn, run_id), job, status != "CancelRequested"
        if job is not None:
            conn.execute("UPDATE jobs SET state = ?, cancel_requested = 1 WHERE run_id = ?", (JOB_DONE, run_id))
            job = self._job_tx(conn, run_id)
        conn.execute("UPDATE runs SET status = 'Canceled', end_time = ? WHERE id = ?", (now, run_id))
        _record_status(conn, run_id, "Canceled", now)
        return self._get_run_tx(conn, run_id), job, True

    async def jobs_of_node(self, node_id: str) -> list[JobRecord]:
        return await self._read(
            lambda conn: [
                job_record(r)
                for r in conn.execute(
                    f"SELECT {JOB_COLUMNS} FROM jobs WHERE node_id = ? AND state = ? ORDER BY leased_time",
                    (node_id, JOB_LEASED),
                )
            ]
        )

    async def jobs_by_lease(self, lease_ids: Sequence[str]) -> dict[str, JobRecord]:
        ids = json.dumps(list(lease_ids))
        return await self._read(
            lambda conn: {
                job.lease_id: job
                for job in (
                    job_record(r)
                    for r in conn.execute(
                        f"SELECT {JOB_COLUMNS} FROM jobs WHERE lease_id IN (SELECT value FROM json_each(?))", (ids,)
                    )
                )
            }
        )

    async def expired_leases(self, seen_before: float) -> list[JobRecord]:
        return await self._read(
            lambda conn: [
                job_record(r)
                for r in conn.execute(
                    f"SELECT {', '.join('j.' + c for c in JOB_COLUMNS.split(', '))} FROM jobs j "
                    "LEFT JOIN nodes n ON n.node_id = j.node_id "
                    "WHERE j.state = 'leased' AND COALESCE(n.last_seen, 0) < ?",
                    (seen_before,),
                )
            ]
        )

    async def upsert_node(self, node: NodeRecord) -> None:
        await self._write(
            lambda conn: conn.execute(
                "INSERT INTO nodes (node_id, target, slots, hostname, pid, last_seen, connected) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (node_id) DO UPDATE SET target = excluded.target, "
                "slots = excluded.slots, hostname = excluded.hostname, pid = excluded.pid, "
                "last_seen = excluded.last_seen, connected = excluded.connected",
                (node.node_id, node.target, node.slots, node.hostname, node.pid, time.time(), int(node.connected)),
            )
        )

    async def set_node_connected(self, node_id: str, connected: bool) -> None:
        await self._write(
            lambda conn: conn.execute(
                "UPDATE nodes SET connected = ?, last_seen = ? WHERE node_id = ?",
                (int(connected), time.time(), node_id),
            )
        )

    async def node_seen(self, node_id: str) -> None:
        await self._write(
            lambda conn: conn.execute(
                "UPDATE nodes SET last_seen = ?, connected = 1 WHERE node_id = ?", (time.time(), node_id)
            )
        )

    @staticmethod
    def _list_nodes_tx(conn: sqlite3.Connection, target: str) -> list[NodeRecord]:
        sql = "SELECT node_id, target, slots, hostname, pid, last_seen, connected FROM nodes"
        params: tuple = ()
        if target:
            sql += " WHERE target = ?"
            params = (target,)
        nodes = [
            NodeRecord(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]))
            for r in conn.execute(sql + " ORDER BY node_id", params)
        ]
        by_id = {n.node_id: n for n in nodes}
        rows = conn.execute(
            "SELECT node_id, run_id FROM jobs WHERE state = ? AND node_id IN (SELECT value FROM json_each(?)) "
            "ORDER BY leased_time",
            (JOB_LEASED, json.dumps(list(by_id))),
        )
        for node_id, run_id in rows:
            by_id[node_id].busy += 1
            by_id[node_id].run_ids.append(run_id)
        return nodes

    def _list_compute_targets_tx(self, conn: sqlite3.Connection, name: str) -> list[TargetRecord]:
        nodes = self._list_nodes_tx(conn, name)
        counts: dict[str, list[int]] = {}
        sql = "SELECT target, state, count(*) FROM jobs WHERE state IN (?, ?)"
        params: list = [JOB_QUEUED, JOB_LEASED]
        if name:
            sql += " AND target = ?"
            params.append(name)
        for target, state, n in conn.execute(sql + " GROUP BY target, state", params):
            counts.setdefault(target, [0, 0])[0 if state == JOB_QUEUED else 1] += n
        names = sorted({n.target for n in nodes} | set(counts))
        return [
            TargetRecord(t, [n for n in nodes if n.target == t], counts.get(t, [0, 0])[0], counts.get(t, [0, 0])[1])
            for t in names
        ]

    def _list_active_runs_tx(self, conn: sqlite3.Connection, target: str, wanted: list[str]) -> list[ActiveRunRecord]:
        # unfinished runs only, at every level (the partial index runs_active_by_target): the
        # finished runs a target piles up over time are never walked
        prefix = (
            "WITH RECURSIVE tree (id) AS (SELECT id FROM runs WHERE target = ? "
            "AND status NOT IN ('Completed', 'Failed', 'Canceled') "
            "UNION SELECT c.id FROM runs c JOIN tree t ON c.parent_id = t.id "
            "WHERE c.status NOT IN ('Completed', 'Failed', 'Canceled')) "
        )
        where = f"WHERE r.id IN (SELECT id FROM tree) AND r.status IN ({', '.join('?' * len(wanted))})"
        runs = self._load_runs(conn, where, [target, *wanted], prefix)
        nodes = dict(
            conn.execute(
                "SELECT run_id, node_id FROM jobs WHERE state = ? AND run_id IN (SELECT value FROM json_each(?))",
                (JOB_LEASED, json.dumps([r.run_id for r in runs])),
            ).fetchall()
        )
        return [ActiveRunRecord(r, nodes.get(r.run_id, "")) for r in runs]

    @staticmethod
    def _read_log_tx(conn: sqlite3.Connection, run_id: str, path: str, from_line: int, max_lines: int) -> LogRead:
        if conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
            raise NotFound(f"run {run_id} not found")
        if path:
            row = conn.execute(
                "SELECT id, path, line_count FROM log_files WHERE run_id = ? AND path = ?", (run_id, path)
            ).fetchone()
        else:
            row = conn.execute(
                "SELECT id, path, line_count FROM log_files WHERE run_id = ? AND line_count > 0 ORDER BY id LIMIT 1",
                (run_id,),
            ).fetchone()
        if row is None:
            return LogRead(run_id, path, from_line, [], 0)
        file_id, path, total = row
        end = total if max_lines <= 0 else min(total, from_line + max_lines)
        lines: list[str] = []
        if from_line < end:
            rows = conn.execute(
                "SELECT first_line, line_count, blob FROM logs WHERE file_id = ? AND first_line < ? "
                "AND first_line + line_count > ? ORDER BY first_line",
                (file_id, end, from_line),
            )
            for first, count, blob in rows:
                chunk = log_lines(blob)
                lo = max(from_line - first, 0)
                hi = min(end - first, count)
                lines.extend(chunk[lo:hi])
        return LogRead(run_id, path, from_line, lines, total)
