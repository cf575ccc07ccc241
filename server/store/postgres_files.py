"""Artifacts and snapshots of the PostgreSQL store. Registering an artifact locks its run's row, so
the size limit and write-once names hold with several replicas registering files of one run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

from runwire.server.errors import CollectorError, NotFound
from runwire.server.records import ArtifactRecord, SnapshotRecord
from runwire.server.store import transitions
from runwire.server.store.postgres_runs import _all, _one, _run_exists
from runwire.server.store.rows import ARTIFACT_COLUMNS

Conn = psycopg.AsyncConnection


class PostgresFiles:
    """`PostgresStore`'s artifacts and snapshots."""

    # provided by `PostgresStore` (postgres.py) and the other mixins it is assembled from
    _read: Callable[..., Any]
    _write: Callable[..., Any]
    _lock_run: Callable[..., Any]

    async def _add_artifact_tx(self, conn: Conn, a: ArtifactRecord) -> ArtifactRecord:
        if await self._lock_run(conn, a.run_id) is None:
            raise NotFound(f"run {a.run_id!r} not found")
        row = await _one(
            conn, f"SELECT {ARTIFACT_COLUMNS} FROM artifacts WHERE run_id = %s AND name = %s", (a.run_id, a.name)
        )
        if row is not None:
            return transitions.existing_artifact(ArtifactRecord(*row), a)
        total = await _one(conn, "SELECT COALESCE(SUM(size), 0) FROM artifacts WHERE run_id = %s", (a.run_id,))
        assert total is not None
        transitions.check_artifact_room(a, int(total[0]))
        await conn.execute(
            f"INSERT INTO artifacts ({ARTIFACT_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s)",
            (a.run_id, a.name, a.sha256, a.size, a.upload_id, a.created_time),
        )
        return a

    async def _add_artifacts_tx(
        self, conn: Conn, records: list[ArtifactRecord]
    ) -> list[ArtifactRecord | CollectorError]:
        out: list[ArtifactRecord | CollectorError] = []
        for record in records:
            try:  # each check happens before its insert: a refusal leaves the transaction clean
                out.append(await self._add_artifact_tx(conn, record))
            except CollectorError as e:
                out.append(e)
        return out

    @staticmethod
    async def _get_artifacts_tx(conn: Conn, run_id: str, names: list[str]) -> dict[str, ArtifactRecord]:
        rows = await _all(
            conn, f"SELECT {ARTIFACT_COLUMNS} FROM artifacts WHERE run_id = %s AND name = ANY(%s)", (run_id, names)
        )
        return {row[1]: ArtifactRecord(*row) for row in rows}

    @staticmethod
    async def _list_artifacts_tx(conn: Conn, run_id: str, prefix: str) -> list[ArtifactRecord]:
        if not await _run_exists(conn, run_id):
            raise NotFound(f"run {run_id!r} not found")
        rows = await _all(
            conn,
            f"SELECT {ARTIFACT_COLUMNS} FROM artifacts WHERE run_id = %s AND left(name, %s) = %s "
            "ORDER BY created_time, id",
            (run_id, len(prefix), prefix),
        )
        return [ArtifactRecord(*row) for row in rows]

    async def run_artifact_bytes(self, run_id: str) -> int:
        async def total(conn: Conn) -> int:
            row = await _one(conn, "SELECT COALESCE(SUM(size), 0) FROM artifacts WHERE run_id = %s", (run_id,))
            assert row is not None
            return int(row[0])

        return await self._read(total)

    @staticmethod
    async def _put_snapshot_tx(conn: Conn, s: SnapshotRecord) -> SnapshotRecord:
        await conn.execute(
            "INSERT INTO snapshots (id, files, size, created_time) VALUES (%s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
            (s.snapshot_id, s.files, s.size, s.created_time),
        )
        row = await _one(conn, "SELECT id, files, size, created_time FROM snapshots WHERE id = %s", (s.snapshot_id,))
        assert row is not None
        return SnapshotRecord(*row)

    async def get_snapshot(self, snapshot_id: str) -> SnapshotRecord:
        row = await self._read(
            lambda conn: _one(conn, "SELECT id, files, size, created_time FROM snapshots WHERE id = %s", (snapshot_id,))
        )
        if row is None:
            raise NotFound(f"snapshot {snapshot_id!r} not found")
        return SnapshotRecord(*row)
