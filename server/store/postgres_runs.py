"""Experiments and runs of the PostgreSQL store: creating, finding and listing experiments; creating,
getting, listing and updating runs (warnings, tags, properties, status history). A transaction that
changes a run first locks its row (`_lock_run`, FOR NO KEY UPDATE: child rows may still reference
it), so replicas changing one run take turns. Also the row helpers the other parts share: `_load_runs`,
`_get_run_tx`, `_record_status` and `_set_run`.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import psycopg
from psycopg import errors as pg_errors

from runwire.server import rules
from runwire.server.errors import AlreadyExists, InvalidArgument, NotFound
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

Conn = psycopg.AsyncConnection


async def _one(conn: Conn, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> tuple | None:
    """The first row of `sql` (rows come in PostgreSQL's binary format: chunk blobs as they are stored,
    not hex text twice their size)."""
    cur = await conn.execute(sql, params, binary=True)
    return await cur.fetchone()


async def _all(conn: Conn, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[tuple]:
    """Every row of `sql`, in binary format (see `_one`)."""
    cur = await conn.execute(sql, params, binary=True)
    return await cur.fetchall()


async def _record_status(conn: Conn, run_id: str, status: str, when: float) -> None:
    """Append a status the run entered to its history (in the transaction that changed it)."""
    await conn.execute("INSERT INTO status_history (run_id, status, time) VALUES (%s, %s, %s)", (run_id, status, when))


async def _set_run(conn: Conn, run_id: str, sets: Mapping[str, object]) -> None:
    """UPDATE the run's columns `sets` (names from `transitions`, never from a client)."""
    if sets:
        assignments = ", ".join(f"{column} = %s" for column in sets)
        await conn.execute(f"UPDATE runs SET {assignments} WHERE id = %s", [*sets.values(), run_id])


async def _run_exists(conn: Conn, run_id: str) -> bool:
    return await _one(conn, "SELECT 1 FROM runs WHERE id = %s", (run_id,)) is not None


class PostgresRuns:
    """`PostgresStore`'s experiments, runs, tags, properties and status history."""

    # provided by `PostgresStore` (postgres.py)
    _read: Callable[..., Any]
    _write: Callable[..., Any]

    # --- experiments ----------------------------------------------------------------------------------

    @staticmethod
    async def _find_experiment(conn: Conn, name: str) -> ExperimentRecord | None:
        row = await _one(conn, "SELECT id, name, created_time FROM experiments WHERE name = %s", (name,))
        return None if row is None else ExperimentRecord(*row)

    async def _get_or_create_experiment_tx(self, conn: Conn, name: str) -> ExperimentRecord:
        await conn.execute(
            "INSERT INTO experiments (id, name, created_time) VALUES (%s, %s, %s) ON CONFLICT (name) DO NOTHING",
            (str(uuid.uuid4()), name, time.time()),
        )
        found = await self._find_experiment(conn, name)
        assert found is not None
        return found

    @staticmethod
    async def _list_experiments_tx(conn: Conn, name: str) -> list[ExperimentRecord]:
        where, params = ("WHERE name = %s", [name]) if name else ("", [])
        rows = await _all(
            conn, f"SELECT id, name, created_time FROM experiments {where} ORDER BY created_time, seq", params
        )
        return [ExperimentRecord(*row) for row in rows]

    # --- runs -------------------------------------------------------------------------------------------

    async def _replayed_run_tx(self, conn: Conn, new: NewRun) -> RunRecord | None:
        """None when `new.run_id` is free; the stored run when it is a retry of the call that
        created it (the same request id); else AlreadyExists."""
        row = await _one(conn, "SELECT request_id FROM runs WHERE id = %s", (new.run_id,))
        if row is None:
            return None
        transitions.existing_run(new, row[0])
        return await self._get_run_tx(conn, new.run_id)

    async def _create_run_tx(self, conn: Conn, new: NewRun) -> RunRecord:
        replayed = await self._replayed_run_tx(conn, new)
        if replayed is not None:
            return replayed
        experiment = await self._get_or_create_experiment_tx(conn, new.experiment_name)
        parent = new.parent_run_id or None
        if parent is not None:
            row = await _one(
                conn,
                "SELECT e.name FROM runs r JOIN experiments e ON e.id = r.experiment_id WHERE r.id = %s",
                (parent,),
            )
            if row is None:
                raise NotFound(f"parent run {parent} not found")
            if row[0] != experiment.name:
                raise InvalidArgument(
                    f"parent run {parent} belongs to experiment {row[0]!r}, not {experiment.name!r} "
                    "(a child run is in its parent's experiment)"
                )
        now = time.time()
        start = now if new.status == "Running" else None
        end = now if new.status in TERMINAL_STATUSES else None
        try:
            async with conn.transaction():  # a savepoint: a run created meanwhile undoes just the number and row
                row = await _one(
                    conn,
                    "UPDATE experiments SET next_number = next_number + 1 WHERE id = %s RETURNING next_number - 1",
                    (experiment.id,),
                )
                assert row is not None
                await conn.execute(
                    "INSERT INTO runs (id, experiment_id, parent_id, number, name, display_name, description, "
                    "status, type, target, created_time, start_time, end_time, request_id) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (
                        new.run_id,
                        experiment.id,
                        parent,
                        row[0],
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
        except pg_errors.UniqueViolation:  # another replica created it meanwhile (maybe this call's earlier try)
            replayed = await self._replayed_run_tx(conn, new)  # read committed: this statement sees that run
            if replayed is None:
                raise AlreadyExists(f"run {new.run_id} already exists (run ids are unique)") from None
            return replayed
        await _record_status(conn, new.run_id, new.status, now)
        async with conn.cursor() as cur:
            for table, pairs in (("tags", new.tags), ("properties", new.properties)):
                if pairs:
                    await cur.executemany(
                        f"INSERT INTO {table} (run_id, key, value) VALUES (%s, %s, %s)",
                        [(new.run_id, k, v) for k, v in pairs.items()],
                    )
        return await self._get_run_tx(conn, new.run_id)

    async def _get_run_tx(self, conn: Conn, run_id: str) -> RunRecord:
        runs = await self._load_runs(conn, "WHERE r.id = %s", [run_id])
        if not runs:
            raise NotFound(f"run {run_id} not found")
        return runs[0]

    async def _load_runs(self, conn: Conn, where: str, params: list, prefix: str = "") -> list[RunRecord]:
        sql = (
            f"{prefix}SELECT {RUN_COLUMNS} FROM runs r JOIN experiments e ON e.id = r.experiment_id {where} "
            "ORDER BY r.created_time DESC, r.number DESC"
        )
        runs = [run_record(row) for row in await _all(conn, sql, params)]
        if runs:
            by_id = {r.run_id: r for r in runs}
            ids = list(by_id)
            for table in ("tags", "properties"):
                rows = await _all(
                    conn, f"SELECT run_id, key, value FROM {table} WHERE run_id = ANY(%s) ORDER BY seq", (ids,)
                )
                for run_id, key, value in rows:
                    getattr(by_id[run_id], table)[key] = value
            rows = await _all(
                conn,
                "SELECT run_id, path FROM log_files WHERE run_id = ANY(%s) AND line_count > 0 ORDER BY id",
                (ids,),
            )
            for run_id, path in rows:
                by_id[run_id].log_files.append(path)
        return runs

    async def _list_runs_tx(self, conn: Conn, q: RunQuery) -> list[RunRecord]:
        if q.parent_run_id and not await _run_exists(conn, q.parent_run_id):
            raise NotFound(f"run {q.parent_run_id} not found")
        prefix, where, params = queries.run_filters(q, "%s")
        return await self._load_runs(conn, where, params, prefix)

    @staticmethod
    async def _lock_run(conn: Conn, run_id: str) -> tuple | None:
        """Lock the run's row for this transaction: (status, start_time, end_time), or None."""
        return await _one(
            conn, "SELECT status, start_time, end_time FROM runs WHERE id = %s FOR NO KEY UPDATE", (run_id,)
        )

    async def _update_run_tx(self, conn: Conn, u: RunUpdate) -> RunRecord:
        row = await self._lock_run(conn, u.run_id)
        if row is None:
            raise NotFound(f"run {u.run_id} not found")
        now = time.time()
        change = transitions.run_update(u, *row, now)
        await _set_run(conn, u.run_id, change.sets)
        if change.entered is not None:
            await _record_status(conn, u.run_id, change.entered, now)
        if change.job_state is not None:
            await conn.execute(
                "UPDATE jobs SET state = %s WHERE run_id = %s AND state <> %s",
                (change.job_state, u.run_id, change.job_state),
            )
        if u.warnings:
            await self._append_run_warnings(conn, u.run_id, list(u.warnings))
        return await self._get_run_tx(conn, u.run_id)

    @staticmethod
    async def _append_run_warnings(conn: Conn, run_id: str, warnings: list[str]) -> None:
        """Append to the run's warnings (its row locked by the caller)."""
        row = await _one(conn, "SELECT warnings FROM runs WHERE id = %s", (run_id,))
        if row is None:
            return
        stored = json.loads(row[0])
        merged = rules.append_warnings(stored, warnings)
        if len(merged) != len(stored):
            await conn.execute("UPDATE runs SET warnings = %s WHERE id = %s", (json.dumps(merged), run_id))

    async def _set_tags_tx(self, conn: Conn, run_id: str, tags: dict[str, str | None], remove: list[str]) -> RunRecord:
        if await self._lock_run(conn, run_id) is None:
            raise NotFound(f"run {run_id} not found")
        keys = {k for (k,) in await _all(conn, "SELECT key FROM tags WHERE run_id = %s", (run_id,))}
        rules.check_tag_count(run_id, len((keys | set(tags)) - set(remove)))
        async with conn.cursor() as cur:
            if tags:
                await cur.executemany(
                    "INSERT INTO tags (run_id, key, value) VALUES (%s, %s, %s) "
                    "ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value",
                    [(run_id, k, v) for k, v in tags.items()],
                )
            if remove:
                await cur.execute("DELETE FROM tags WHERE run_id = %s AND key = ANY(%s)", (run_id, remove))
        return await self._get_run_tx(conn, run_id)

    async def _add_properties_tx(self, conn: Conn, run_id: str, properties: dict[str, str | None]) -> RunRecord:
        if await self._lock_run(conn, run_id) is None:
            raise NotFound(f"run {run_id} not found")
        stored = dict(await _all(conn, "SELECT key, value FROM properties WHERE run_id = %s", (run_id,)))
        new = transitions.new_properties(run_id, stored, properties)
        if new:
            async with conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO properties (run_id, key, value) VALUES (%s, %s, %s)",
                    [(run_id, k, v) for k, v in new.items()],
                )
        return await self._get_run_tx(conn, run_id)

    async def count_runs(self) -> int:
        async def count(conn: Conn) -> int:
            row = await _one(conn, "SELECT count(*) FROM runs")
            assert row is not None
            return row[0]

        return await self._read(count)

    @staticmethod
    async def _status_history_tx(conn: Conn, run_id: str) -> list[StatusEntry]:
        if not await _run_exists(conn, run_id):
            raise NotFound(f"run {run_id} not found")
        rows = await _all(conn, "SELECT status, time FROM status_history WHERE run_id = %s ORDER BY id", (run_id,))
        return [StatusEntry(status, when) for status, when in rows]
