"""Metric reads of the PostgreSQL store: `read_metrics` finds a run's series and yields one
`SeriesSnapshot` each (metadata, chunk index and as many chunk blobs as the prefetch budget allows,
read in one repeatable-read transaction), and `read_chunks` fetches the blobs a snapshot left out
(sealed chunks never change, so any later transaction reads the same bytes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

from runwire.server.errors import NotFound
from runwire.server.records import ChunkRef, SeriesSnapshot
from runwire.server.store import series
from runwire.server.store.postgres_runs import _all, _run_exists

Conn = psycopg.AsyncConnection


class PostgresReads:
    """`PostgresStore`'s metric reads: series snapshots and chunk blobs."""

    # provided by `PostgresStore` (postgres.py)
    _read: Callable[..., Any]
    _read_prefetch_bytes: Callable[[], int]

    @staticmethod
    async def _series_ids_tx(conn: Conn, run_id: str, recursive: bool, names: list[str]) -> list[int]:
        if not await _run_exists(conn, run_id):
            raise NotFound(f"run {run_id} not found")
        name_filter = " AND s.name = ANY(%s)" if names else ""
        extra = [names] if names else []
        if not recursive:
            sql = f"SELECT s.id FROM series s WHERE s.run_id = %s{name_filter} ORDER BY s.id"
            return [i for (i,) in await _all(conn, sql, [run_id, *extra])]
        sql = (
            "WITH RECURSIVE tree (id, depth) AS (SELECT %s::text, 0 "
            "UNION ALL SELECT c.id, t.depth + 1 FROM runs c JOIN tree t ON c.parent_id = t.id) "
            "SELECT s.id FROM series s JOIN tree t ON s.run_id = t.id JOIN runs r ON r.id = t.id "
            f"WHERE TRUE{name_filter} ORDER BY t.depth > 0, r.created_time, r.number, s.id"
        )
        return [i for (i,) in await _all(conn, sql, [run_id, *extra])]

    @staticmethod
    async def _snapshots_tx(conn: Conn, ids: list[int], start: int, budget: int) -> list[SeriesSnapshot]:
        out: list[SeriesSnapshot] = []
        for series_id in ids[start:]:
            if out and budget <= 0:
                break
            (row,) = await _all(
                conn,
                "SELECT run_id, name, kind, description, row_count, columns FROM series WHERE id = %s",
                (series_id,),
            )
            refs = [
                ChunkRef(*r)
                for r in await _all(
                    conn,
                    "SELECT chunk_no, first_row, row_count, nbytes FROM chunks WHERE series_id = %s ORDER BY chunk_no",
                    (series_id,),
                )
            ]
            upto = series.prefetch_upto(refs, budget)
            blobs: dict[int, bytes] = {}
            if refs:
                budget -= sum(r.nbytes for r in refs if r.chunk_no <= upto) + refs[-1].nbytes
                rows = await _all(
                    conn,
                    "SELECT chunk_no, blob FROM chunks WHERE series_id = %s AND (chunk_no <= %s OR chunk_no = %s)",
                    (series_id, upto, refs[-1].chunk_no),
                )
                blobs = {n: bytes(b) for n, b in rows}
            out.append(series.snapshot(series_id, row, refs, blobs))
        return out

    @staticmethod
    async def _read_chunks_tx(conn: Conn, series_id: int, chunk_nos: list[int]) -> list[bytes]:
        rows = await _all(
            conn,
            "SELECT chunk_no, blob FROM chunks WHERE series_id = %s AND chunk_no = ANY(%s)",
            (series_id, chunk_nos),
        )
        found = {n: bytes(b) for n, b in rows}
        missing = [n for n in chunk_nos if n not in found]
        if missing:
            raise NotFound(f"chunks {missing} of metric series {series_id} not found")
        return [found[n] for n in chunk_nos]
