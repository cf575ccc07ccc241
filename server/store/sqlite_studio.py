"""The studio's read queries on the SQLite store: per-experiment summaries, the run table (filtered,
sorted and paged runs with the metric values it shows), and the metric info of a run.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from runwire.server.errors import NotFound
from runwire.server.records import (
    ExperimentRecord,
    ExperimentSummary,
    MetricInfoRecord,
    MetricSummary,
    RunRecord,
    RunTablePage,
    RunTableQuery,
)
from runwire.server.store import series


class SqliteStudio:
    """`SqliteStore`'s reads for the studio."""

    # provided by `SqliteStore` (sqlite.py) and the other mixins it is assembled from
    _read: Callable[..., Any]
    _write: Callable[..., Any]
    _load_runs: Callable[..., list[RunRecord]]

    # --- studio reads (issue 6) ---------------------------------------------------------------------

    @staticmethod
    def _experiment_summaries_tx(conn: sqlite3.Connection, name: str) -> list[ExperimentSummary]:
        where, params = ("WHERE e.name = ?", [name]) if name else ("", [])
        out: dict[str, ExperimentSummary] = {}
        rows = conn.execute(
            "SELECT e.id, e.name, e.created_time, count(r.id), "
            "max(max(r.created_time, COALESCE(r.start_time, 0), COALESCE(r.end_time, 0))) "
            f"FROM experiments e LEFT JOIN runs r ON r.experiment_id = e.id {where} "
            "GROUP BY e.id ORDER BY e.created_time, e.rowid",
            params,
        )
        for eid, ename, created, runs, last in rows:
            out[eid] = ExperimentSummary(ExperimentRecord(eid, ename, created), runs, last)
        if out:
            counts = conn.execute(
                "SELECT experiment_id, status, count(*) FROM runs "
                "WHERE experiment_id IN (SELECT value FROM json_each(?)) GROUP BY experiment_id, status",
                (json.dumps(list(out)),),
            )
            for eid, status, n in counts:
                out[eid].status_counts[status] = n
        return list(out.values())

    def _query_run_table_tx(self, conn: sqlite3.Connection, q: RunTableQuery) -> RunTablePage:
        row = conn.execute("SELECT id FROM experiments WHERE name = ?", (q.experiment_name,)).fetchone()
        if row is None:
            raise NotFound(f"experiment {q.experiment_name!r} not found")
        (experiment_id,) = row
        where = ["r.experiment_id = ?"]
        params: list = [experiment_id]
        if not q.include_children:
            where.append("r.parent_id IS NULL")
        if q.statuses:
            where.append(f"r.status IN ({', '.join('?' * len(q.statuses))})")
            params.extend(q.statuses)
        for key, value in q.tags.items():
            cond = "EXISTS (SELECT 1 FROM tags t WHERE t.run_id = r.id AND t.key = ?"
            params.append(key)
            if value is not None:
                cond += " AND t.value = ?"
                params.append(value)
            where.append(cond + ")")
        if q.text:
            needle = "".join(c.lower() if c.isascii() else c for c in q.text)  # as SQLite's lower() does
            where.append(
                "(instr(lower(r.id), ?) > 0 OR instr(lower(r.display_name), ?) > 0 OR EXISTS "
                "(SELECT 1 FROM tags t WHERE t.run_id = r.id AND instr(lower(t.value), ?) > 0))"
            )
            params.extend([needle, needle, needle])
        where_sql = " AND ".join(where)
        (total,) = conn.execute(f"SELECT count(*) FROM runs r WHERE {where_sql}", params).fetchone()
        join, join_params = "", []
        direction = "DESC" if q.descending else "ASC"
        if q.sort == "metric":
            stat = {"last": "last", "min": "min", "max": "max"}[q.sort_stat]
            join = "LEFT JOIN series s ON s.run_id = r.id AND s.name = ?"
            join_params = [q.sort_metric]
            key = f"s.{stat}"
        else:
            key = {
                "created": "r.created_time",
                "started": "r.start_time",
                "duration": "(COALESCE(r.end_time, ?) - r.start_time)",
                "status": "r.status",
                "number": "r.number",
                "name": "COALESCE(NULLIF(r.display_name, ''), r.id)",
            }[q.sort]
            if q.sort == "duration":
                join_params = [time.time()]  # a running run's duration so far
        order = f"({key}) IS NULL, {key} {direction}, r.created_time {direction}, r.number {direction}"
        if q.sort == "duration":  # the placeholder appears twice in the ORDER BY
            join_params = join_params * 2
        sql = (
            f"SELECT r.id FROM runs r {join} WHERE {where_sql} ORDER BY {order} LIMIT ? OFFSET ?"
            if q.sort == "metric"
            else f"SELECT r.id FROM runs r WHERE {where_sql} ORDER BY {order} LIMIT ? OFFSET ?"
        )
        sql_params = (
            [*join_params, *params, q.limit, q.offset]
            if q.sort == "metric"
            else [*params, *join_params, q.limit, q.offset]
        )
        ids = [i for (i,) in conn.execute(sql, sql_params)]
        loaded = {
            r.run_id: r
            for r in self._load_runs(conn, "WHERE r.id IN (SELECT value FROM json_each(?))", [json.dumps(ids)])
        }
        runs = [loaded[i] for i in ids if i in loaded]
        metrics: dict[str, dict[str, MetricSummary]] = {}
        if ids and q.metrics:
            rows = conn.execute(
                "SELECT run_id, name, last, min, max, row_count FROM series "
                "WHERE run_id IN (SELECT value FROM json_each(?)) AND name IN (SELECT value FROM json_each(?))",
                (json.dumps(ids), json.dumps(q.metrics)),
            )
            for run_id, name, last, lo, hi, count in rows:
                metrics.setdefault(run_id, {})[name] = MetricSummary(last, lo, hi, count)
        names = [
            n
            for (n,) in conn.execute(
                # every distinct name (from the name index), kept when a run of the experiment has it
                "SELECT n.name FROM (SELECT DISTINCT name FROM series) n WHERE EXISTS (SELECT 1 FROM series s "
                "JOIN runs r ON r.id = s.run_id WHERE s.name = n.name AND s.last IS NOT NULL AND r.experiment_id = ?) "
                "ORDER BY n.name",
                (experiment_id,),
            )
        ]
        return RunTablePage(total, runs, metrics, names)

    @staticmethod
    def _list_metric_info_tx(conn: sqlite3.Connection, run_id: str) -> list[MetricInfoRecord]:
        if conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
            raise NotFound(f"run {run_id} not found")
        rows = conn.execute(
            "SELECT name, kind, description, row_count, columns, last, min, max FROM series "
            "WHERE run_id = ? ORDER BY id",
            (run_id,),
        )
        return [
            MetricInfoRecord(name, kind, desc, count, list(series.columns_from_json(cols).items()), last, lo, hi)
            for name, kind, desc, count, cols, last, lo, hi in rows
        ]
