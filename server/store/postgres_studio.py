"""The studio's read queries on the PostgreSQL store: per-experiment summaries, the run table
(filtered, sorted and paged by the database) and the metric info of a run. Text is compared and
sorted byte-wise (COLLATE "C"), as SQLite does, whatever the database's collation."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psycopg

from runwire.server.errors import NotFound
from runwire.server.records import (
    ExperimentRecord,
    ExperimentSummary,
    MetricInfoRecord,
    MetricSummary,
    RunTablePage,
    RunTableQuery,
)
from runwire.server.store import series
from runwire.server.store.postgres_runs import _all, _one, _run_exists

Conn = psycopg.AsyncConnection

_SORT_KEYS = {
    "created": "r.created_time",
    "started": "r.start_time",
    "duration": "(COALESCE(r.end_time, %(now)s) - r.start_time)",
    "status": 'r.status COLLATE "C"',
    "number": "r.number",
    "name": "COALESCE(NULLIF(r.display_name, ''), r.id) COLLATE \"C\"",
}


class PostgresStudio:
    """`PostgresStore`'s reads for the studio."""

    # provided by `PostgresStore` (postgres.py) and the other mixins it is assembled from
    _read: Callable[..., Any]
    _load_runs: Callable[..., Any]

    @staticmethod
    async def _experiment_summaries_tx(conn: Conn, name: str) -> list[ExperimentSummary]:
        where, params = ("WHERE e.name = %s", [name]) if name else ("", [])
        rows = await _all(
            conn,
            "SELECT e.id, e.name, e.created_time, count(r.id), "
            "max(GREATEST(r.created_time, r.start_time, r.end_time)) "  # NULLs skipped; NULL without runs
            f"FROM experiments e LEFT JOIN runs r ON r.experiment_id = e.id {where} "
            "GROUP BY e.id ORDER BY e.created_time, e.seq",
            params,
        )
        out = {
            eid: ExperimentSummary(ExperimentRecord(eid, ename, created), runs, last)
            for eid, ename, created, runs, last in rows
        }
        if out:
            counts = await _all(
                conn,
                "SELECT experiment_id, status, count(*) FROM runs WHERE experiment_id = ANY(%s) "
                "GROUP BY experiment_id, status",
                (list(out),),
            )
            for eid, status, n in counts:
                out[eid].status_counts[status] = n
        return list(out.values())

    async def _query_run_table_tx(self, conn: Conn, q: RunTableQuery) -> RunTablePage:
        row = await _one(conn, "SELECT id FROM experiments WHERE name = %s", (q.experiment_name,))
        if row is None:
            raise NotFound(f"experiment {q.experiment_name!r} not found")
        params: dict[str, Any] = {"experiment": row[0], "now": time.time(), "limit": q.limit, "offset": q.offset}
        where = ["r.experiment_id = %(experiment)s"]
        if not q.include_children:
            where.append("r.parent_id IS NULL")
        if q.statuses:
            where.append("r.status = ANY(%(statuses)s)")
            params["statuses"] = list(q.statuses)
        for i, (key, value) in enumerate(q.tags.items()):
            cond = f"EXISTS (SELECT 1 FROM tags t WHERE t.run_id = r.id AND t.key = %(tag{i})s"
            params[f"tag{i}"] = key
            if value is not None:
                cond += f" AND t.value = %(tagvalue{i})s"
                params[f"tagvalue{i}"] = value
            where.append(cond + ")")
        if q.text:
            params["needle"] = "".join(c.lower() if c.isascii() else c for c in q.text)  # SQLite's lower()
            where.append(
                "(strpos(lower(r.id), %(needle)s) > 0 OR strpos(lower(r.display_name), %(needle)s) > 0 OR EXISTS "
                "(SELECT 1 FROM tags t WHERE t.run_id = r.id AND strpos(lower(t.value), %(needle)s) > 0))"
            )
        where_sql = " AND ".join(where)
        total = await _one(conn, f"SELECT count(*) FROM runs r WHERE {where_sql}", params)
        assert total is not None
        direction = "DESC" if q.descending else "ASC"
        join = ""
        if q.sort == "metric":
            join = "LEFT JOIN series s ON s.run_id = r.id AND s.name = %(sort_metric)s"
            params["sort_metric"] = q.sort_metric
            key = "s." + {"last": "last", "min": "min", "max": "max"}[q.sort_stat]
        else:
            key = _SORT_KEYS[q.sort]
        order = f"({key}) IS NULL, {key} {direction}, r.created_time {direction}, r.number {direction}"
        ids = [
            i
            for (i,) in await _all(
                conn,
                f"SELECT r.id FROM runs r {join} WHERE {where_sql} ORDER BY {order} LIMIT %(limit)s OFFSET %(offset)s",
                params,
            )
        ]
        loaded = {r.run_id: r for r in await self._load_runs(conn, "WHERE r.id = ANY(%s)", [ids])}
        runs = [loaded[i] for i in ids if i in loaded]
        metrics: dict[str, dict[str, MetricSummary]] = {}
        if ids and q.metrics:
            rows = await _all(
                conn,
                "SELECT run_id, name, last, min, max, row_count FROM series WHERE run_id = ANY(%s) AND name = ANY(%s)",
                (ids, list(q.metrics)),
            )
            for run_id, name, last, lo, hi, count in rows:
                metrics.setdefault(run_id, {})[name] = MetricSummary(last, lo, hi, count)
        names = [
            n
            for (n,) in await _all(
                conn,
                'SELECT DISTINCT s.name COLLATE "C" FROM series s JOIN runs r ON r.id = s.run_id '
                "WHERE s.last IS NOT NULL AND r.experiment_id = %s ORDER BY 1",
                (params["experiment"],),
            )
        ]
        return RunTablePage(int(total[0]), runs, metrics, names)

    @staticmethod
    async def _list_metric_info_tx(conn: Conn, run_id: str) -> list[MetricInfoRecord]:
        if not await _run_exists(conn, run_id):
            raise NotFound(f"run {run_id} not found")
        rows = await _all(
            conn,
            "SELECT name, kind, description, row_count, columns, last, min, max FROM series "
            "WHERE run_id = %s ORDER BY id",
            (run_id,),
        )
        return [
            MetricInfoRecord(name, kind, desc, count, list(series.columns_from_json(cols).items()), last, lo, hi)
            for name, kind, desc, count, cols, last, lo, hi in rows
        ]
