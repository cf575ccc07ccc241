"""Artifacts and snapshots of the SQLite store: registering a run's artifacts (one or many),
getting and listing them with the bytes a run holds, and putting and getting snapshots (by the
sha256 of their manifest).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from runwire.server.errors import CollectorError, NotFound
from runwire.server.records import (
    ArtifactRecord,
    RunRecord,
    SnapshotRecord,
)
from runwire.server.store import transitions
from runwire.server.store.rows import ARTIFACT_COLUMNS


class SqliteFiles:
    """`SqliteStore`'s artifacts and snapshots."""

    # provided by `SqliteStore` (sqlite.py) and the other mixins it is assembled from
    _read: Callable[..., Any]
    _write: Callable[..., Any]
    _get_run_tx: Callable[..., RunRecord]

    # --- artifacts and snapshots ------------------------------------------------------------------------

    def _add_artifact_tx(self, conn: sqlite3.Connection, a: ArtifactRecord) -> ArtifactRecord:
        if conn.execute("SELECT 1 FROM runs WHERE id = ?", (a.run_id,)).fetchone() is None:
            raise NotFound(f"run {a.run_id!r} not found")
        row = conn.execute(
            f"SELECT {ARTIFACT_COLUMNS} FROM artifacts WHERE run_id = ? AND name = ?", (a.run_id, a.name)
        ).fetchone()
        if row is not None:
            return transitions.existing_artifact(ArtifactRecord(*row), a)
        total = conn.execute("SELECT COALESCE(SUM(size), 0) FROM artifacts WHERE run_id = ?", (a.run_id,)).fetchone()[0]
        transitions.check_artifact_room(a, total)
        conn.execute(
            f"INSERT INTO artifacts ({ARTIFACT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
            (a.run_id, a.name, a.sha256, a.size, a.upload_id, a.created_time),
        )
        return a

    def _add_artifacts_tx(
        self, conn: sqlite3.Connection, records: list[ArtifactRecord]
    ) -> list[ArtifactRecord | CollectorError]:
        out: list[ArtifactRecord | CollectorError] = []
        for record in records:
            try:  # each check happens before its insert: a refusal leaves the transaction clean
                out.append(self._add_artifact_tx(conn, record))
            except CollectorError as e:
                out.append(e)
        return out

    def _get_artifacts_tx(self, conn: sqlite3.Connection, run_id: str, names: list[str]) -> dict[str, ArtifactRecord]:
        out = {}
        for lo in range(0, len(names), 500):
            part = names[lo : lo + 500]
            rows = conn.execute(
                f"SELECT {ARTIFACT_COLUMNS} FROM artifacts WHERE run_id = ? AND name IN ({', '.join('?' * len(part))})",
                (run_id, *part),
            ).fetchall()
            for row in rows:
                out[row[1]] = ArtifactRecord(*row)
        return out

    def _list_artifacts_tx(self, conn: sqlite3.Connection, run_id: str, prefix: str) -> list[ArtifactRecord]:
        if conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
            raise NotFound(f"run {run_id!r} not found")
        rows = conn.execute(
            f"SELECT {ARTIFACT_COLUMNS} FROM artifacts WHERE run_id = ? AND substr(name, 1, ?) = ? "
            "ORDER BY created_time, id",
            (run_id, len(prefix), prefix),
        ).fetchall()
        return [ArtifactRecord(*row) for row in rows]

    async def run_artifact_bytes(self, run_id: str) -> int:
        return await self._read(
            lambda conn: conn.execute(
                "SELECT COALESCE(SUM(size), 0) FROM artifacts WHERE run_id = ?", (run_id,)
            ).fetchone()[0]
        )

    @staticmethod
    def _put_snapshot_tx(conn: sqlite3.Connection, s: SnapshotRecord) -> SnapshotRecord:
        row = conn.execute(
            "SELECT id, files, size, created_time FROM snapshots WHERE id = ?", (s.snapshot_id,)
        ).fetchone()
        if row is not None:
            return SnapshotRecord(*row)
        conn.execute(
            "INSERT INTO snapshots (id, files, size, created_time) VALUES (?, ?, ?, ?)",
            (s.snapshot_id, s.files, s.size, s.created_time),
        )
        return s

    async def get_snapshot(self, snapshot_id: str) -> SnapshotRecord:
        row = await self._read(
            lambda conn: conn.execute(
                "SELECT id, files, size, created_time FROM snapshots WHERE id = ?", (snapshot_id,)
            ).fetchone()
        )
        if row is None:
            raise NotFound(f"snapshot {snapshot_id!r} not found")
        return SnapshotRecord(*row)
