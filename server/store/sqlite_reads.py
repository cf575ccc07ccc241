"""Metric reads of the SQLite store: `read_metrics` finds a run's series and yields one
`SeriesSnapshot` each (its metadata, chunk index and as many chunk blobs as the prefetch budget
allows, read in one consistent reader transaction), and `read_chunks` fetches the chunk blobs a
snapshot left out.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any

from runwire.server.errors import NotFound
from runwire.server.records import (
    ChunkRef,
    SeriesSnapshot,
)
from runwire.server.store import series


class SqliteReads:
    """`SqliteStore`'s metric reads: series snapshots and chunk blobs."""

    # provided by `SqliteStore` (sqlite.py) and the other mixins it is assembled from
    _read: Callable[..., Any]
    _write: Callable[..., Any]
    _read_prefetch_bytes: Callable[[], int]

    # --- metric reads -----------------------------------------------------------------------------------

    @staticmethod
    def _series_ids_tx(conn: sqlite3.Connection, run_id: str, recursive: bool, names: list[str]) -> list[int]:
        if not conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone():
            raise NotFound(f"run {run_id} not found")
        name_filter = " AND s.name IN (SELECT value FROM json_each(?))" if names else ""
        extra = [json.dumps(names)] if names else []
        if not recursive:
            sql = f"SELECT s.id FROM series s WHERE s.run_id = ?{name_filter} ORDER BY s.id"
            return [i for (i,) in conn.execute(sql, [run_id, *extra])]
        sql = (
            "WITH RECURSIVE tree (id, depth) AS (SELECT ?, 0 "
            "UNION ALL SELECT c.id, t.depth + 1 FROM runs c JOIN tree t ON c.parent_id = t.id) "
            "SELECT s.id FROM series s JOIN tree t ON s.run_id = t.id JOIN runs r ON r.id = t.id "
            f"WHERE 1{name_filter} ORDER BY t.depth > 0, r.created_time, r.number, s.id"
        )
        return [i for (i,) in conn.execute(sql, [run_id, *extra])]

    @staticmethod
    def _snapshots_tx(conn: sqlite3.Connection, ids: list[int], start: int, budget: int) -> list[SeriesSnapshot]:
        out: list[SeriesSnapshot] = []
        for series_id in ids[start:]:
            if out and budget <= 0:
                break
            row = conn.execute(
                "SELECT run_id, name, kind, description, row_count, columns FROM series WHERE id = ?", (series_id,)
            ).fetchone()
            refs = [
                ChunkRef(*r)
                for r in conn.execute(
                    "SELECT chunk_no, first_row, row_count, nbytes FROM chunks WHERE series_id = ? ORDER BY chunk_no",
                    (series_id,),
                )
            ]
            # Prefetch the leading chunks within the budget, and always the last one: it is the only
            # chunk that may still change, so it must come from this snapshot.
            upto = series.prefetch_upto(refs, budget)
            blobs: dict[int, bytes] = {}
            if refs:
                budget -= sum(r.nbytes for r in refs if r.chunk_no <= upto) + refs[-1].nbytes
                blobs = dict(
                    conn.execute(
                        "SELECT chunk_no, blob FROM chunks WHERE series_id = ? AND (chunk_no <= ? OR chunk_no = ?)",
                        (series_id, upto, refs[-1].chunk_no),
                    )
                )
            out.append(series.snapshot(series_id, row, refs, blobs))
        return out

    @staticmethod
    def _read_chunks_tx(conn: sqlite3.Connection, series_id: int, chunk_nos: list[int]) -> list[bytes]:
        found = dict(
            conn.execute(
                "SELECT chunk_no, blob FROM chunks "
                "WHERE series_id = ? AND chunk_no IN (SELECT value FROM json_each(?))",
                (series_id, json.dumps(chunk_nos)),
            )
        )
        missing = [n for n in chunk_nos if n not in found]
        if missing:
            raise NotFound(f"chunks {missing} of metric series {series_id} not found")
        return [found[n] for n in chunk_nos]
