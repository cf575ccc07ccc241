"""Commit of ingest batches in the PostgreSQL store, safe with several replicas committing at once.

One transaction per commit group, taking its locks in one order:
1. the rows of the group's producers (`producers`, FOR UPDATE, sorted): a producer's dedup floor and
   keys are read and written by one transaction at a time, so a batch is stored once whichever
   replica a resend reaches;
2. the rows of the runs the new batches write to (FOR NO KEY UPDATE, sorted): the series of a run,
   their chunks, its log files and warnings are then read from the database and written by this
   transaction alone;
3. jobs, when a reported status ends one.
The open tail chunk of a series is taken from this replica's cache only when the series row, read
under the run's lock, shows the count the cache holds (nobody appended since); otherwise it is read back.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from runwire import codec, limits
from runwire.server import limits as server_limits
from runwire.server.records import (
    BatchInput,
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
from runwire.server.store.postgres_runs import _all, _one, _record_status, _set_run
from runwire.server.store.rows import JOB_COLUMNS, job_record, log_blob, log_lines
from runwire.server.store.series import SeriesState

Conn = psycopg.AsyncConnection

_UPSERT_CHUNK = (
    "INSERT INTO chunks (series_id, chunk_no, first_row, row_count, nbytes, blob) VALUES (%s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (series_id, chunk_no) DO UPDATE SET first_row = excluded.first_row, "
    "row_count = excluded.row_count, nbytes = excluded.nbytes, blob = excluded.blob"
)

_SERIES_ROWS = (
    "SELECT s.id, s.run_id, s.name, s.kind, s.description, s.row_count, s.columns, s.last, s.min, s.max, "
    "c.chunk_no, c.first_row, c.row_count FROM series s LEFT JOIN LATERAL (SELECT chunk_no, first_row, row_count "
    "FROM chunks WHERE series_id = s.id ORDER BY chunk_no DESC LIMIT 1) c ON TRUE "
    "WHERE (s.run_id, s.name) IN (SELECT * FROM unnest(%s::text[], %s::text[]))"
)


@dataclass
class _LogFile:
    id: int
    count: int
    tail: tuple[int, list[str], int] | None = None
    """The file's last chunk (first line, lines, characters) once read in this transaction."""
    tail_loaded: bool = False


@dataclass
class _Tx:
    """What one commit transaction learned and staged."""

    floors: dict[str, int]
    runs: set[str]
    series: dict[tuple[str, str], SeriesState]
    series_counts: dict[str, int]
    pending: dict[int, series.PendingAppend] = field(default_factory=dict)
    run_warnings: dict[str, list[str]] = field(default_factory=dict)
    log_files: dict[tuple[str, str], _LogFile] = field(default_factory=dict)


class PostgresIngest:
    """`PostgresStore`'s `commit` of ingest units."""

    # provided by `PostgresStore` (postgres.py) and the other mixins it is assembled from
    _read: Callable[..., Any]
    _write: Callable[..., Any]
    _get_run_tx: Callable[..., Any]
    _append_run_warnings: Callable[..., Any]
    _commit_lock: asyncio.Lock
    _series: OrderedDict[tuple[str, str], SeriesState]
    _tail_bytes: int

    async def commit(self, units: Sequence[IngestUnit]) -> list[IngestOutcome]:
        async with self._commit_lock:
            return await self._write(self._commit_tx, list(units))

    async def _commit_tx(self, conn: Conn, units: list[IngestUnit]) -> list[IngestOutcome]:
        batches = [b for unit in units for b in unit.batches]
        floors = await self._lock_producers(conn, sorted({b.producer_id for b in batches}))
        fresh_ids, dedup_writes = await self._dedup(conn, batches, floors)
        fresh = [b for b in batches if id(b) in fresh_ids]
        runs = await _lock_runs(conn, fresh)
        tx = _Tx(floors, runs, *await self._load_series(conn, fresh, runs))
        outcomes = []
        for unit in units:
            out = IngestOutcome()
            for batch in unit.batches:
                if id(batch) not in fresh_ids:
                    out.duplicate_batches += 1
                    continue
                out.batches_committed += 1
                for points in batch.metrics:
                    await self._stage(conn, points, out, tx)
                for run_id, text in batch.problems:
                    out.warnings.append(text)
                    tx.run_warnings.setdefault(run_id, []).append(text)
                for item in batch.logs:
                    await self._append_log(conn, item, out, tx)
                for change in batch.statuses:
                    await self._apply_status(conn, change, out, tx)
            outcomes.append(out)
        await self._write_series(conn, tx, dedup_writes)
        for run_id, warnings in tx.run_warnings.items():
            if run_id in tx.runs:
                await self._append_run_warnings(conn, run_id, warnings)
        self._evict()
        return outcomes

    # --- deduplication keys ---------------------------------------------------------------------------
    # As in the SQLite store: a producer's floor is the highest seq up to which every batch is
    # committed; only batches above it keep a row in `dedup`. With the producers' rows locked, their
    # keys are read once and decided here: a batch in order costs no `dedup` row at all.

    @staticmethod
    async def _lock_producers(conn: Conn, producers: list[str]) -> dict[str, int]:
        """Lock the producers' rows (created when new), in id order; their floors."""
        rows = await _all(
            conn,
            "INSERT INTO producers (producer_id, floor) SELECT p, 0 FROM unnest(%s::text[]) p ORDER BY p "
            "ON CONFLICT (producer_id) DO UPDATE SET floor = producers.floor RETURNING producer_id, floor",
            (producers,),
        )
        return dict(rows)

    @staticmethod
    async def _dedup(
        conn: Conn, batches: list[BatchInput], floors: dict[str, int]
    ) -> tuple[set[int], list[tuple[str, tuple]]]:
        """ids of the batches never committed before, and the writes that record their keys (only
        those above the producers' new floors) and the floors (run with the transaction's last writes)."""
        rows = await _all(conn, "SELECT producer_id, seq FROM dedup WHERE producer_id = ANY(%s)", (list(floors),))
        stored = set(rows)
        fresh, new_keys = set(), []
        for b in batches:
            key = (b.producer_id, transitions.signed64(b.seq))
            if 0 < b.seq <= floors[b.producer_id] or key in stored:
                continue
            stored.add(key)
            new_keys.append(key)
            fresh.add(id(b))
        writes: list[tuple[str, tuple]] = []
        if not new_keys:
            return fresh, writes
        raised = {}
        for producer_id, floor in floors.items():
            above = sorted(seq for p, seq in stored if p == producer_id and seq > floor)
            new = transitions.next_floor(floor, above)
            if new > floor:
                raised[producer_id] = new
        keep = [(p, seq) for p, seq in new_keys if not 0 < seq <= raised.get(p, floors[p])]
        if keep:
            writes.append(
                (
                    "INSERT INTO dedup (producer_id, seq) SELECT * FROM unnest(%s::text[], %s::bigint[])",
                    ([p for p, _ in keep], [seq for _, seq in keep]),
                )
            )
        absorbed = sorted({p for p, seq in rows if 0 < seq <= raised.get(p, floors[p])})
        if absorbed:
            writes.append(
                (
                    "DELETE FROM dedup d USING unnest(%s::text[], %s::bigint[]) f (producer_id, floor) "
                    "WHERE d.producer_id = f.producer_id AND d.seq > 0 AND d.seq <= f.floor",
                    (absorbed, [raised[p] for p in absorbed]),
                )
            )
        if raised:
            writes.append(
                (
                    "UPDATE producers SET floor = f.floor FROM unnest(%s::text[], %s::bigint[]) "
                    "f (producer_id, floor) WHERE producers.producer_id = f.producer_id",
                    (list(raised), list(raised.values())),
                )
            )
        return fresh, writes

    # --- runs and series ------------------------------------------------------------------------------

    async def _load_series(
        self, conn: Conn, batches: list[BatchInput], runs: set[str]
    ) -> tuple[dict[tuple[str, str], SeriesState], dict[str, int]]:
        """The states of the series the batches append to (from the cache when still current), and
        the number of series of each run."""
        keys = sorted({(p.run_id, p.name) for b in batches for p in b.metrics if p.run_id in runs})
        states: dict[tuple[str, str], SeriesState] = {}
        if keys:
            rows = await _all(conn, _SERIES_ROWS, ([k[0] for k in keys], [k[1] for k in keys]))
            for row in rows:
                sid, run_id, name, kind, desc, count, columns, last, lo, hi, chunk_no, first_row, rows_in = row
                cached = self._series.get((run_id, name))
                if cached is not None and cached.id == sid and cached.count == count:
                    self._series.move_to_end((run_id, name))
                    states[(run_id, name)] = cached
                    continue
                if cached is not None:
                    self._forget((run_id, name))
                state = SeriesState(
                    id=sid,
                    run_id=run_id,
                    name=name,
                    kind=kind,
                    description=desc,
                    count=count,
                    columns=series.columns_from_json(columns),
                    last=last,
                    min=lo,
                    max=hi,
                )
                series.restore_tail(state, chunk_no, first_row, rows_in)
                states[(run_id, name)] = state
        counts = {}
        if runs:
            rows = await _all(
                conn, "SELECT run_id, count(*) FROM series WHERE run_id = ANY(%s) GROUP BY run_id", (sorted(runs),)
            )
            counts = {run_id: 0 for run_id in runs} | dict(rows)
        return states, counts

    async def _stage(self, conn: Conn, p: PointsInput, out: IngestOutcome, tx: _Tx) -> None:
        known = p.run_id in tx.runs

        def refuse(rule: str, dropped: int) -> None:
            text = transitions.metric_refusal(p, rule, dropped)
            out.warnings.append(text)
            out.points_dropped += dropped
            if known:
                tx.run_warnings.setdefault(p.run_id, []).append(text)

        if not known:
            refuse("no run with this id", p.count)
            return
        if p.problem is not None or p.points is None:
            refuse(p.problem or "undecodable points", p.count)
            return
        state = tx.series.get((p.run_id, p.name))
        if state is None:
            if tx.series_counts[p.run_id] >= limits.MAX_METRIC_NAMES_PER_RUN:
                refuse(transitions.names_limit_rule(), p.count)
                return
            row = await _one(
                conn,
                "INSERT INTO series (run_id, name, kind) VALUES (%s, %s, %s) RETURNING id",
                (p.run_id, p.name, p.kind),
            )
            assert row is not None
            state = tx.series[(p.run_id, p.name)] = SeriesState(id=row[0], run_id=p.run_id, name=p.name, kind=p.kind)
            tx.series_counts[p.run_id] += 1
        entry = tx.pending.get(state.id)
        if entry is None:
            entry = tx.pending[state.id] = series.PendingAppend(state)
        points = transitions.admit_points(p, state, entry.rows, refuse)
        if points is None:
            return
        out.committed.append(CommittedPoints(p.run_id, p.name, p.kind, p.description, state.count + entry.rows, points))
        entry.parts.append(points)
        entry.rows += points.count
        out.points_committed += points.count

    async def _write_series(self, conn: Conn, tx: _Tx, statements: list[tuple[str, tuple]]) -> None:
        """Append the staged rows to their series (chunks and series rows), set the log files' lengths
        and run `statements`, all sent together."""
        entries = [e for e in tx.pending.values() if e.parts]
        counted = {e.state.id: self._counted_tail(e.state) for e in entries}
        need = [e.state for e in entries if e.state.needs_tail]
        if need:
            rows = await _all(
                conn,
                "SELECT series_id, blob FROM chunks WHERE (series_id, chunk_no) IN "
                "(SELECT * FROM unnest(%s::bigint[], %s::int[]))",
                ([s.id for s in need], [s.next_chunk_no - 1 for s in need]),
            )
            blobs = dict(rows)
            for state in need:
                series.set_tail(state, codec.decode_chunk(bytes(blobs[state.id])), state.tail_first_row)
        chunk_rows = []
        series_rows = []
        for entry in entries:
            state = entry.state
            writes = series.append_rows(state, entry.parts)
            chunk_rows.extend((state.id, w.chunk_no, w.first_row, w.row_count, len(w.blob), w.blob) for w in writes)
            series_rows.append(
                (state.description, state.count, state.columns_json(), state.last, state.min, state.max, state.id)
            )
            self._remember(state, counted[state.id])
        async with conn.pipeline(), conn.cursor() as cur:  # the writes go out together: one round trip
            if chunk_rows:
                await cur.executemany(_UPSERT_CHUNK, chunk_rows)
            if series_rows:
                await cur.executemany(
                    "UPDATE series SET description = %s, row_count = %s, columns = %s, last = %s, min = %s, "
                    "max = %s WHERE id = %s",
                    series_rows,
                )
            if tx.log_files:
                await cur.executemany(
                    "UPDATE log_files SET line_count = %s WHERE id = %s",
                    [(f.count, f.id) for f in tx.log_files.values()],
                )
            for sql, params in statements:
                await cur.execute(sql, params)

    # --- the tail cache -------------------------------------------------------------------------------

    def _counted_tail(self, state: SeriesState) -> int:
        """The bytes of `state`'s tail that `_tail_bytes` holds now."""
        cached = self._series.get((state.run_id, state.name)) is state
        return state.tail_nbytes if cached and state.tail is not None else 0

    def _remember(self, state: SeriesState, counted: int) -> None:
        """Keep `state` (appended to; `counted` bytes of its tail were in `_tail_bytes`) in the cache."""
        key = (state.run_id, state.name)
        if self._series.get(key) is not state:
            self._forget(key)
            self._series[key] = state
        self._series.move_to_end(key)
        self._tail_bytes += (state.tail_nbytes if state.tail is not None else 0) - counted

    def _forget(self, key: tuple[str, str]) -> None:
        state = self._series.pop(key, None)
        if state is not None and state.tail is not None:
            self._tail_bytes -= state.tail_nbytes

    def _evict(self) -> None:
        while len(self._series) > server_limits.STORE_SERIES_CACHE_ENTRIES:
            self._forget(next(iter(self._series)))
        if self._tail_bytes > server_limits.STORE_TAIL_CACHE_BYTES:
            for state in self._series.values():
                if state.tail is not None:
                    self._tail_bytes -= state.tail_nbytes
                    state.tail = None
                    if self._tail_bytes <= server_limits.STORE_TAIL_CACHE_BYTES // 2:
                        break

    # --- log lines and status changes reported through ingest -----------------------------------------

    async def _append_log(self, conn: Conn, item: LogInput, out: IngestOutcome, tx: _Tx) -> None:
        if item.run_id not in tx.runs:
            out.warnings.append(
                f"run {item.run_id!r} log {item.path!r}: no run with this id; {len(item.lines)} lines dropped"
            )
            return
        key = (item.run_id, item.path)
        f = tx.log_files.get(key)
        if f is None:
            row = await _one(
                conn, "SELECT id, line_count FROM log_files WHERE run_id = %s AND path = %s", (item.run_id, item.path)
            )
            if row is None:
                row = await _one(
                    conn,
                    "INSERT INTO log_files (run_id, path, line_count) VALUES (%s, %s, 0) RETURNING id, line_count",
                    (item.run_id, item.path),
                )
                assert row is not None
            f = tx.log_files[key] = _LogFile(row[0], row[1])
        placed = transitions.place_log_lines(item, f.count)
        if placed is None:
            return
        if placed.warning is not None:
            out.warnings.append(placed.warning)
            tx.run_warnings.setdefault(item.run_id, []).append(placed.warning)
        await self._store_log_lines(conn, f, placed.first, placed.lines)
        f.count = placed.first + len(placed.lines)
        out.events.append(CommittedLog(item.run_id, item.path, placed.first, placed.lines))

    @staticmethod
    async def _store_log_lines(conn: Conn, f: _LogFile, first: int, lines: list[str]) -> None:
        """Store lines `first`.. of a log file: merged into its last chunk while that one is small
        (a job printing a line at a time does not leave a row per line), else as a new chunk."""
        chars = sum(map(len, lines))
        if not f.tail_loaded:
            f.tail_loaded = True
            row = await _one(
                conn,
                "SELECT first_line, line_count, chars, blob FROM logs WHERE file_id = %s "
                "ORDER BY first_line DESC LIMIT 1",
                (f.id,),
            )
            if row is not None and transitions.log_chunk_open(row[1], row[2]):
                f.tail = (row[0], log_lines(row[3]), row[2])
        tail = f.tail
        if tail is not None and transitions.log_chunk_takes(tail[0], len(tail[1]), tail[2], first, len(lines), chars):
            start, merged, merged_chars = tail[0], tail[1] + lines, tail[2] + chars
            await conn.execute(
                "UPDATE logs SET line_count = %s, chars = %s, blob = %s WHERE file_id = %s AND first_line = %s",
                (len(merged), merged_chars, log_blob(merged), f.id, start),
            )
        else:
            start, merged, merged_chars = first, list(lines), chars
            await conn.execute(
                "INSERT INTO logs (file_id, first_line, line_count, chars, blob) VALUES (%s, %s, %s, %s, %s)",
                (f.id, first, len(lines), chars, log_blob(lines)),
            )
        f.tail = (start, merged, merged_chars) if transitions.log_chunk_open(len(merged), merged_chars) else None

    async def _apply_status(self, conn: Conn, sc: StatusInput, out: IngestOutcome, tx: _Tx) -> None:
        """Apply a reported status change per metrics.proto `StatusChange` (the run's row is locked)."""
        row = None
        if sc.run_id in tx.runs:
            row = await _one(conn, "SELECT status, start_time FROM runs WHERE id = %s", (sc.run_id,))
        if row is None:
            out.warnings.append(f"run {sc.run_id!r}: status {sc.status} reported for no run with this id; ignored")
            return
        job_row = await _one(conn, f"SELECT {JOB_COLUMNS} FROM jobs WHERE run_id = %s FOR UPDATE", (sc.run_id,))
        job = None if job_row is None else job_record(job_row)
        now = time.time()
        change = transitions.reported_status(
            sc.run_id, sc.status, sc.lease_id, sc.only_if_active, sc.error, row[0], row[1], job, now
        )
        if change is None:
            return
        await _set_run(conn, sc.run_id, change.sets)
        if change.entered is not None:
            await _record_status(conn, sc.run_id, change.entered, now)
        if change.job_state is not None:
            await conn.execute("UPDATE jobs SET state = %s WHERE run_id = %s", (change.job_state, sc.run_id))
        if change.ended_lease is not None:
            out.ended_leases.append(change.ended_lease)
        if change.publish:
            run: RunRecord = await self._get_run_tx(conn, sc.run_id)
            out.events.append(run)


async def _lock_runs(conn: Conn, batches: list[BatchInput]) -> set[str]:
    """Lock the rows of the runs `batches` write to, in id order; the ids that exist."""
    ids = sorted(
        {p.run_id for b in batches for p in b.metrics}
        | {item.run_id for b in batches for item in b.logs}
        | {sc.run_id for b in batches for sc in b.statuses}
        | {run_id for b in batches for run_id, _ in b.problems}
    )
    if not ids:
        return set()
    rows = await _all(conn, "SELECT id FROM runs WHERE id = ANY(%s) ORDER BY id FOR NO KEY UPDATE", (ids,))
    return {r for (r,) in rows}
