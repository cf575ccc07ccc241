"""Experiments and runs of the SQLite store: creating, finding and listing experiments; creating,
getting, listing and updating runs (with their warnings, tags and properties); and each run's status
history, appended by `_record_status` in the transaction that changes a status. Also the row helpers
the other parts share: `_load_runs` (run rows as `RunRecord`s) and `_set_run` (columns a
`transitions.RunChange` sets).
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from runwire.server import rules
from runwire.server.errors import InvalidArgument, NotFound
from runwire.server.records import (
    ExperimentRecord,
    NewRun,
    RunQuery,
    RunRecord,
    RunUpdate,
    StatusEntry,
)
from runwire.server.store import queries, transitions
from runwire.server.store.rows import RUN_COLUMNS, run_record
from runwire.statuses import TERMINAL_STATUSES


class SqliteRuns:
    """`SqliteStore`'s experiments, runs, tags, properties and status history."""

    # provided by `SqliteStore` (sqlite.py) and the other mixins it is assembled from
    _read: Callable[..., Any]
    _write: Callable[..., Any]

    # --- experiments ----------------------------------------------------------------------------------

    @staticmethod
    def _find_experiment(conn: sqlite3.Connection, name: str) -> ExperimentRecord | None:
        row = conn.execute("SELECT id, name, created_time FROM experiments WHERE name = ?", (name,)).fetchone()
        return None if row is None else ExperimentRecord(*row)

    def _get_or_create_experiment_tx(self, conn: sqlite3.Connection, name: str) -> ExperimentRecord:
        found = self._find_experiment(conn, name)
        if found is not None:
            return found
        record = ExperimentRecord(str(uuid.uuid4()), name, time.time())
        conn.execute(
            "INSERT INTO experiments (id, name, created_time) VALUES (?, ?, ?)",
            (record.id, record.name, record.created_time),
        )
        return record

    @staticmethod
    def _list_experiments_tx(conn: sqlite3.Connection, name: str) -> list[ExperimentRecord]:
        sql = "SELECT id, name, created_time FROM experiments"
        params: tuple = ()
        if name:
            sql += " WHERE name = ?"
            params = (name,)
        return [ExperimentRecord(*row) for row in conn.execute(sql + " ORDER BY created_time, rowid", params)]

    # --- runs -------------------------------------------------------------------------------------------

    def _replayed_run_tx(self, conn: sqlite3.Connection, new: NewRun) -> RunRecord | None:
        """None when `new.run_id` is free; the stored run when it is a retry of the call that
        created it (the same request id); else AlreadyExists."""
        row = conn.execute("SELECT request_id FROM runs WHERE id = ?", (new.run_id,)).fetchone()
        if row is None:
            return None
        transitions.existing_run(new, row[0])
        return self._get_run_tx(conn, new.run_id)

    def _create_run_tx(self, conn: sqlite3.Connection, new: NewRun) -> RunRecord:
        replayed = self._replayed_run_tx(conn, new)
        if replayed is not None:
            return replayed
        experiment = self._get_or_create_experiment_tx(conn, new.experiment_name)
        parent = new.parent_run_id or None
        if parent is not None:
            row = conn.execute(
                "SELECT e.name FROM runs r JOIN experiments e ON e.id = r.experiment_id WHERE r.id = ?", (parent,)
            ).fetchone()
            if row is None:
                raise NotFound(f"parent run {parent} not found")
            if row[0] != experiment.name:
                raise InvalidArgument(
                    f"parent run {parent} belongs to experiment {row[0]!r}, not {experiment.name!r} "
                    "(a child run is in its parent's experiment)"
                )
        (number,) = conn.execute(
            "UPDATE experiments SET next_number = next_number + 1 WHERE id = ? RETURNING next_number - 1",
            (experiment.id,),
        ).fetchone()
        now = time.time()
        start = now if new.status == "Running" else None
        end = now if new.status in TERMINAL_STATUSES else None
        conn.execute(
            "INSERT INTO runs (id, experiment_id, parent_id, number, name, display_name, description, status, type, "
            "target, created_time, start_time, end_time, request_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                new.run_id,
                experiment.id,
                parent,
                number,
                new.name,
                new.display_name,
                new.description,
                new.status,
                new.type,
                new.target,
                now,
                start,
                end,
                new.request_id,
            ),
        )
        _record_status(conn, new.run_id, new.status, now)
        conn.executemany(
            "INSERT INTO tags (run_id, key, value) VALUES (?, ?, ?)", [(new.run_id, k, v) for k, v in new.tags.items()]
        )
        conn.executemany(
            "INSERT INTO properties (run_id, key, value) VALUES (?, ?, ?)",
            [(new.run_id, k, v) for k, v in new.properties.items()],
        )
        return self._get_run_tx(conn, new.run_id)

    def _get_run_tx(self, conn: sqlite3.Connection, run_id: str) -> RunRecord:
        runs = self._load_runs(conn, "WHERE r.id = ?", [run_id])
        if not runs:
            raise NotFound(f"run {run_id} not found")
        return runs[0]

    def _load_runs(self, conn: sqlite3.Connection, where: str, params: list, prefix: str = "") -> list[RunRecord]:
        sql = (
            f"{prefix}SELECT {RUN_COLUMNS} FROM runs r JOIN experiments e ON e.id = r.experiment_id {where} "
            "ORDER BY r.created_time DESC, r.number DESC"
        )
        runs = [run_record(row) for row in conn.execute(sql, params)]
        if runs:
            by_id = {r.run_id: r for r in runs}
            ids = json.dumps(list(by_id))
            for table, attr in (("tags", "tags"), ("properties", "properties")):
                rows = conn.execute(
                    f"SELECT run_id, key, value FROM {table} WHERE run_id IN (SELECT value FROM json_each(?)) "
                    "ORDER BY rowid",
                    (ids,),
                )
                for run_id, key, value in rows:
                    getattr(by_id[run_id], attr)[key] = value
            rows = conn.execute(
                "SELECT run_id, path FROM log_files WHERE run_id IN (SELECT value FROM json_each(?)) "
                "AND line_count > 0 ORDER BY id",
                (ids,),
            )
            for run_id, path in rows:
                by_id[run_id].log_files.append(path)
        return runs

    def _list_runs_tx(self, conn: sqlite3.Connection, q: RunQuery) -> list[RunRecord]:
        if q.parent_run_id and not conn.execute("SELECT 1 FROM runs WHERE id = ?", (q.parent_run_id,)).fetchone():
            raise NotFound(f"run {q.parent_run_id} not found")
        prefix, where, params = queries.run_filters(q, "?")
        return self._load_runs(conn, where, params, prefix)

    def _update_run_tx(self, conn: sqlite3.Connection, u: RunUpdate) -> RunRecord:
        row = conn.execute("SELECT status, start_time, end_time FROM runs WHERE id = ?", (u.run_id,)).fetchone()
        if row is None:
            raise NotFound(f"run {u.run_id} not found")
        now = time.time()
        change = transitions.run_update(u, *row, now)
        _set_run(conn, u.run_id, change.sets)
        if change.entered is not None:
            _record_status(conn, u.run_id, change.entered, now)
        if change.job_state is not None:
            conn.execute(
                "UPDATE jobs SET state = ? WHERE run_id = ? AND state != ?",
                (change.job_state, u.run_id, change.job_state),
            )
        if u.warnings:
            self._append_run_warnings(conn, u.run_id, list(u.warnings))
        return self._get_run_tx(conn, u.run_id)

    @staticmethod
    def _append_run_warnings(conn: sqlite3.Connection, run_id: str, warnings: list[str]) -> None:
        row = conn.execute("SELECT warnings FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            return
        stored = json.loads(row[0])
        merged = rules.append_warnings(stored, warnings)
        if len(merged) != len(stored):
            conn.execute("UPDATE runs SET warnings = ? WHERE id = ?", (json.dumps(merged), run_id))

    def _set_tags_tx(
        self, conn: sqlite3.Connection, run_id: str, tags: dict[str, str | None], remove: list[str]
    ) -> RunRecord:
        if not conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone():
            raise NotFound(f"run {run_id} not found")
        keys = {k for (k,) in conn.execute("SELECT key FROM tags WHERE run_id = ?", (run_id,))}
        rules.check_tag_count(run_id, len((keys | set(tags)) - set(remove)))
        conn.executemany(
            "INSERT INTO tags (run_id, key, value) VALUES (?, ?, ?) "
            "ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value",
            [(run_id, k, v) for k, v in tags.items()],
        )
        conn.executemany("DELETE FROM tags WHERE run_id = ? AND key = ?", [(run_id, k) for k in remove])
        return self._get_run_tx(conn, run_id)

    def _add_properties_tx(self, conn: sqlite3.Connection, run_id: str, properties: dict[str, str | None]) -> RunRecord:
        if not conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone():
            raise NotFound(f"run {run_id} not found")
        stored = dict(conn.execute("SELECT key, value FROM properties WHERE run_id = ?", (run_id,)).fetchall())
        new = transitions.new_properties(run_id, stored, properties)
        conn.executemany(
            "INSERT INTO properties (run_id, key, value) VALUES (?, ?, ?)", [(run_id, k, v) for k, v in new.items()]
        )
        return self._get_run_tx(conn, run_id)

    async def count_runs(self) -> int:
        return await self._read(lambda conn: conn.execute("SELECT count(*) FROM runs").fetchone()[0])

    @staticmethod
    def _status_history_tx(conn: sqlite3.Connection, run_id: str) -> list[StatusEntry]:
        if conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
            raise NotFound(f"run {run_id} not found")
        rows = conn.execute("SELECT status, time FROM status_history WHERE run_id = ? ORDER BY id", (run_id,))
        return [StatusEntry(status, when) for status, when in rows]


def _record_status(conn: sqlite3.Connection, run_id: str, status: str, when: float) -> None:
    """Append a status the run entered to its history (in the transaction that changed it)."""
    conn.execute("INSERT INTO status_history (run_id, status, time) VALUES (?, ?, ?)", (run_id, status, when))


def _set_run(conn: sqlite3.Connection, run_id: str, sets: Mapping[str, object]) -> None:
    """UPDATE the run's columns `sets` (names from `transitions`, never from a client)."""
    if sets:
        conn.execute(f"UPDATE runs SET {', '.join(f'{c} = ?' for c in sets)} WHERE id = ?", [*sets.values(), run_id])
