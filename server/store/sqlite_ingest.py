"""Commit of ingest batches in the SQLite store, on the writer thread: each producer's dedup floor
and dedup keys (a batch at or below the floor, or whose key is already stored, counts as a
duplicate), the series appends (staged per transaction, then written as chunks, with the writer's
in-memory `SeriesState` cache of open tail chunks and its eviction), the log lines (merged into the
file's last chunk while it is small), and the status changes a run reports through ingest.
"""

from __future__ import annotations

import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from runwire import codec, limits
from runwire.server import limits as server_limits
from runwire.server.records import (
    CommittedLog,
    CommittedPoints,
    IngestOutcome,
    IngestUnit,
    LogInput,
    PointsInput,
    RunRecord,
    StatusInput,
)
from runwire.server.store import series, transitions
from runwire.server.store.rows import log_blob
from runwire.server.store.series import SeriesState
from runwire.server.store.sqlite_runs import _record_status, _set_run
from runwire.server.store.transitions import LOG_CHUNK_MAX_CHARS, LOG_CHUNK_MAX_LINES

__all__ = ["LOG_CHUNK_MAX_CHARS", "LOG_CHUNK_MAX_LINES", "SqliteIngest"]


_UPSERT_CHUNK = (
    "INSERT INTO chunks (series_id, chunk_no, first_row, row_count, nbytes, blob) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (series_id, chunk_no) DO UPDATE SET first_row = excluded.first_row, "
    "row_count = excluded.row_count, nbytes = excluded.nbytes, blob = excluded.blob"
)


class SqliteIngest:
    """`SqliteStore`'s `commit` of ingest units and the writer-side caches it keeps."""

    # provided by `SqliteStore` (sqlite.py) and the other mixins it is assembled from
    _read: Callable[..., Any]
    _write: Callable[..., Any]
    _get_run_tx: Callable[..., RunRecord]
    _append_run_warnings: Callable[..., None]
    _series: OrderedDict[tuple[str, str], SeriesState]
    _tail_bytes: int
    _run_series: dict[str, int]
    _floors: dict[str, int]
    _log_tails: dict[int, tuple[int, list[str], int]]

    # --- ingest -----------------------------------------------------------------------------------------

    async def commit(self, units: Sequence[IngestUnit]) -> list[IngestOutcome]:
        return await self._write(self._commit_tx, list(units))

    def _commit_tx(self, conn: sqlite3.Connection, units: list[IngestUnit]) -> list[IngestOutcome]:
        pending: dict[int, series.PendingAppend] = {}
        run_warnings: dict[str, list[str]] = {}
        outcomes = []
        producers: set[str] = set()
        log_files: dict[tuple[str, str], list[int]] = {}  # (run, path) -> [file id, lines], this transaction
        for unit in units:
            out = IngestOutcome()
            for batch in unit.batches:
                if 0 < batch.seq <= self._floor(conn, batch.producer_id):
                    out.duplicate_batches += 1
                    continue
                cur = conn.execute(
                    "INSERT OR IGNORE INTO dedup (producer_id, seq) VALUES (?, ?)",
                    (batch.producer_id, transitions.signed64(batch.seq)),
                )
                if cur.rowcount == 0:
                    out.duplicate_batches += 1
                    continue
                producers.add(batch.producer_id)
                out.batches_committed += 1
                for points in batch.metrics:
                    self._stage(conn, points, out, pending, run_warnings)
                for run_id, text in batch.problems:
                    out.warnings.append(text)
                    run_warnings.setdefault(run_id, []).append(text)
                for item in batch.logs:
                    self._append_log(conn, item, out, log_files, run_warnings)
                for change in batch.statuses:
                    self._apply_status(conn, change, out)
            outcomes.append(out)
        conn.executemany(
            "UPDATE log_files SET line_count = ? WHERE id = ?",
            [(count, file_id) for file_id, count in log_files.values()],
        )
        chunk_rows = []
        series_rows = []
        for entry in pending.values():
            state, parts = entry.state, entry.parts
            if not parts:
                continue
            before = state.tail_nbytes if state.tail is not None else 0
            if state.needs_tail:
                self._load_tail(conn, state)
            writes = series.append_rows(state, parts)
            self._tail_bytes += (state.tail_nbytes if state.tail is not None else 0) - before
            chunk_rows.extend((state.id, w.chunk_no, w.first_row, w.row_count, len(w.blob), w.blob) for w in writes)
            series_rows.append(
                (state.description, state.count, state.columns_json(), state.last, state.min, state.max, state.id)
            )
        conn.executemany(_UPSERT_CHUNK, chunk_rows)
        conn.executemany(
            "UPDATE series SET description = ?, row_count = ?, columns = ?, last = ?, min = ?, max = ? WHERE id = ?",
            series_rows,
        )
        for run_id, warnings in run_warnings.items():
            self._append_run_warnings(conn, run_id, warnings)  # no-op for a run that does not exist
        for producer_id in producers:
            self._raise_floor(conn, producer_id)
        self._evict()
        return outcomes

    # --- log lines and status changes reported through ingest (issue 4) -------------------------------

    def _append_log(
        self,
        conn: sqlite3.Connection,
        item: LogInput,
        out: IngestOutcome,
        files: dict[tuple[str, str], list[int]],
        run_warnings: dict[str, list[str]],
    ) -> None:
        """Append `item`'s lines to its log file: lines the file already holds are skipped (a resend
        never duplicates); after a gap the lines are stored from the file's end (never a hole)."""
        key = (item.run_id, item.path)
        entry = files.get(key)
        if entry is None:
            row = conn.execute(
                "SELECT id, line_count FROM log_files WHERE run_id = ? AND path = ?", (item.run_id, item.path)
            ).fetchone()
            if row is None:
                if conn.execute("SELECT 1 FROM runs WHERE id = ?", (item.run_id,)).fetchone() is None:
                    out.warnings.append(
                        f"run {item.run_id!r} log {item.path!r}: no run with this id; {len(item.lines)} lines dropped"
                    )
                    return
                cur = conn.execute(
                    "INSERT INTO log_files (run_id, path, line_count) VALUES (?, ?, 0)", (item.run_id, item.path)
                )
                row = (cur.lastrowid, 0)
            entry = files[key] = [row[0], row[1]]
        file_id, count = entry
        placed = transitions.place_log_lines(item, count)
        if placed is None:
            return
        if placed.warning is not None:
            out.warnings.append(placed.warning)
            run_warnings.setdefault(item.run_id, []).append(placed.warning)
        first, lines = placed.first, placed.lines
        self._store_log_lines(conn, file_id, first, lines)
        entry[1] = first + len(lines)
        out.events.append(CommittedLog(item.run_id, item.path, first, lines))

    def _store_log_lines(self, conn: sqlite3.Connection, file_id: int, first: int, lines: list[str]) -> None:
        """Store lines `first`.. of a log file: merged into the file's last chunk while that one is
        small and was written by this writer (a job printing a line at a time does not leave a row
        per line), else as a new chunk."""
        chars = sum(map(len, lines))
        tail = self._log_tails.get(file_id)
        if tail is not None and transitions.log_chunk_takes(tail[0], len(tail[1]), tail[2], first, len(lines), chars):
            start, merged, merged_chars = tail[0], tail[1] + lines, tail[2] + chars
            conn.execute(
                "UPDATE logs SET line_count = ?, blob = ? WHERE file_id = ? AND first_line = ?",
                (len(merged), log_blob(merged), file_id, start),
            )
        else:
            start, merged, merged_chars = first, list(lines), chars
            conn.execute(
                "INSERT INTO logs (file_id, first_line, line_count, blob) VALUES (?, ?, ?, ?)",
                (file_id, first, len(lines), log_blob(lines)),
            )
        if transitions.log_chunk_open(len(merged), merged_chars):
            if len(self._log_tails) >= server_limits.STORE_SERIES_CACHE_ENTRIES:
                self._log_tails.clear()
            self._log_tails[file_id] = (start, merged, merged_chars)
        else:
            self._log_tails.pop(file_id, None)

    def _apply_status(self, conn: sqlite3.Connection, sc: StatusInput, out: IngestOutcome) -> None:
        """Apply a reported status change per metrics.proto `StatusChange` (ignored when stale, when
        the run is finished, or, without a lease, while a node runs the run's job)."""
        row = conn.execute("SELECT status, start_time FROM runs WHERE id = ?", (sc.run_id,)).fetchone()
        if row is None:
            out.warnings.append(f"run {sc.run_id!r}: status {sc.status} reported for no run with this id; ignored")
            return
        job = self._job_tx(conn, sc.run_id)
        now = time.time()
        change = transitions.reported_status(
            sc.run_id, sc.status, sc.lease_id, sc.only_if_active, sc.error, row[0], row[1], job, now
        )
        if change is None:
            return
        _set_run(conn, sc.run_id, change.sets)
        if change.entered is not None:
            _record_status(conn, sc.run_id, change.entered, now)
        if change.job_state is not None:
            conn.execute("UPDATE jobs SET state = ? WHERE run_id = ?", (change.job_state, sc.run_id))
        if change.ended_lease is not None:
            out.ended_leases.append(change.ended_lease)
        if change.publish:
            out.events.append(self._get_run_tx(conn, sc.run_id))

    # --- deduplication keys ---------------------------------------------------------------------------
    # A producer numbers its batches 1, 2, 3, ... Its *floor* is the highest seq below which every
    # batch is committed: those are duplicates by comparison, and their dedup rows are deleted. Only
    # batches above the floor (arrived out of order, or after a gap) keep a row, so the table stays
    # small however long a producer lives.

    def _floor(self, conn: sqlite3.Connection, producer_id: str) -> int:
        floor = self._floors.get(producer_id)
        if floor is None:
            row = conn.execute("SELECT floor FROM producers WHERE producer_id = ?", (producer_id,)).fetchone()
            floor = row[0] if row else 0
            if len(self._floors) >= server_limits.STORE_SERIES_CACHE_ENTRIES:
                self._floors.clear()
            self._floors[producer_id] = floor
        return floor

    def _raise_floor(self, conn: sqlite3.Connection, producer_id: str) -> None:
        floor = self._floor(conn, producer_id)
        rows = conn.execute(
            "SELECT seq FROM dedup WHERE producer_id = ? AND seq > ? ORDER BY seq", (producer_id, floor)
        ).fetchall()
        new = transitions.next_floor(floor, [seq for (seq,) in rows])
        if new > floor:
            conn.execute("DELETE FROM dedup WHERE producer_id = ? AND seq > 0 AND seq <= ?", (producer_id, new))
            conn.execute(
                "INSERT INTO producers (producer_id, floor) VALUES (?, ?) "
                "ON CONFLICT (producer_id) DO UPDATE SET floor = excluded.floor",
                (producer_id, new),
            )
            self._floors[producer_id] = new

    def _stage(
        self,
        conn: sqlite3.Connection,
        p: PointsInput,
        out: IngestOutcome,
        pending: dict[int, series.PendingAppend],
        run_warnings: dict[str, list[str]],
    ) -> None:
        n_series = self._series_count(conn, p.run_id)

        def refuse(rule: str, dropped: int) -> None:
            text = transitions.metric_refusal(p, rule, dropped)
            out.warnings.append(text)
            out.points_dropped += dropped
            if n_series is not None:
                run_warnings.setdefault(p.run_id, []).append(text)

        if n_series is None:
            refuse("no run with this id", p.count)
            return
        if p.problem is not None or p.points is None:
            refuse(p.problem or "undecodable points", p.count)
            return
        state = self._get_series(conn, p.run_id, p.name)
        if state is None:
            if n_series >= limits.MAX_METRIC_NAMES_PER_RUN:
                refuse(transitions.names_limit_rule(), p.count)
                return
            state = self._create_series(conn, p)
        entry = pending.get(state.id)
        if entry is None:
            entry = pending[state.id] = series.PendingAppend(state)
        points = transitions.admit_points(p, state, entry.rows, refuse)
        if points is None:
            return
        out.committed.append(CommittedPoints(p.run_id, p.name, p.kind, p.description, state.count + entry.rows, points))
        entry.parts.append(points)
        entry.rows += points.count
        out.points_committed += points.count

    def _series_count(self, conn: sqlite3.Connection, run_id: str) -> int | None:
        """Number of metric series of a run, or None when there is no such run."""
        n = self._run_series.get(run_id)
        if n is None:
            row = conn.execute(
                "SELECT (SELECT count(*) FROM series WHERE run_id = r.id) FROM runs r WHERE r.id = ?", (run_id,)
            ).fetchone()
            if row is None:
                return None
            n = row[0]
            if len(self._run_series) >= server_limits.STORE_SERIES_CACHE_ENTRIES:
                self._run_series.clear()
            self._run_series[run_id] = n
        return n

    def _get_series(self, conn: sqlite3.Connection, run_id: str, name: str) -> SeriesState | None:
        key = (run_id, name)
        state = self._series.get(key)
        if state is not None:
            self._series.move_to_end(key)
            return state
        row = conn.execute(
            "SELECT id, kind, description, row_count, columns, last, min, max FROM series "
            "WHERE run_id = ? AND name = ?",
            (run_id, name),
        ).fetchone()
        if row is None:
            return None
        state = SeriesState(
            id=row[0],
            run_id=run_id,
            name=name,
            kind=row[1],
            description=row[2],
            count=row[3],
            columns=series.columns_from_json(row[4]),
            last=row[5],
            min=row[6],
            max=row[7],
        )
        last = conn.execute(
            "SELECT chunk_no, first_row, row_count FROM chunks WHERE series_id = ? ORDER BY chunk_no DESC LIMIT 1",
            (state.id,),
        ).fetchone()
        if last is not None:
            series.restore_tail(state, *last)
        self._series[key] = state
        return state

    def _create_series(self, conn: sqlite3.Connection, p: PointsInput) -> SeriesState:
        cur = conn.execute("INSERT INTO series (run_id, name, kind) VALUES (?, ?, ?)", (p.run_id, p.name, p.kind))
        state = SeriesState(id=cur.lastrowid, run_id=p.run_id, name=p.name, kind=p.kind)
        self._series[(p.run_id, p.name)] = state
        self._run_series[p.run_id] += 1
        return state

    def _load_tail(self, conn: sqlite3.Connection, state: SeriesState) -> None:
        (blob,) = conn.execute(
            "SELECT blob FROM chunks WHERE series_id = ? AND chunk_no = ?", (state.id, state.next_chunk_no - 1)
        ).fetchone()
        series.set_tail(state, codec.decode_chunk(blob), state.tail_first_row)

    def _evict(self) -> None:
        while len(self._series) > server_limits.STORE_SERIES_CACHE_ENTRIES:
            _, state = self._series.popitem(last=False)
            if state.tail is not None:
                self._tail_bytes -= state.tail_nbytes
        if self._tail_bytes > server_limits.STORE_TAIL_CACHE_BYTES:
            for state in self._series.values():
                if state.tail is not None:
                    self._tail_bytes -= state.tail_nbytes
                    state.tail = None
                    if self._tail_bytes <= server_limits.STORE_TAIL_CACHE_BYTES // 2:
                        break
