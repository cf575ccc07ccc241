"""The SQLite store: one file in WAL mode (synchronous=NORMAL), for `runwire up` and single-node use.

Threads: every write runs on ONE writer thread with its own connection (so writes are serialized
and the event loop never blocks); reads run on a small pool of reader threads, each with its own
connection; WAL lets them read a consistent snapshot while the writer commits. The writer keeps
the state of the series it appends to in memory (`series.SeriesState`, with the decoded open tail
chunk), so an append never reads the database back; the cache is dropped whenever a write
transaction fails.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import sqlite3
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from runwire import codec, limits
from runwire.server import limits as server_limits
from runwire.server import rules
from runwire.server.errors import AlreadyExists, CollectorError, FailedPrecondition, InvalidArgument, NotFound
from runwire.server.records import (
    JOB_DONE,
    JOB_LEASED,
    JOB_QUEUED,
    ActiveRunRecord,
    ArtifactRecord,
    ChunkRef,
    CommittedLog,
    CommittedPoints,
    EndedLease,
    ExperimentRecord,
    ExperimentSummary,
    IngestOutcome,
    IngestUnit,
    JobRecord,
    LeaseGrant,
    LogInput,
    LogRead,
    MetricInfoRecord,
    MetricSummary,
    NewRun,
    NodeRecord,
    PointsInput,
    ReleasedLease,
    RunErrorRecord,
    RunQuery,
    RunRecord,
    RunTablePage,
    RunTableQuery,
    RunUpdate,
    SeriesSnapshot,
    SnapshotRecord,
    StatusEntry,
    StatusInput,
    TargetRecord,
)
from runwire.server.store import series
from runwire.server.store.base import Store
from runwire.server.store.series import SeriesState
from runwire.statuses import TERMINAL_STATUSES

log = logging.getLogger(__name__)

T = TypeVar("T")

SCHEMA_VERSION = 4
"""4: the status history of runs (issue 6); 3: jobs, nodes and log lines (issue 4); 2: the
per-producer dedup floor. Older databases are upgraded in place when opened (every table and index
is created IF NOT EXISTS; a v3 database's runs get their current status as their history)."""
PAGE_SIZE = 16384
"""SQLite page size for new databases: fewer overflow pages per chunk blob."""
READ_PREFETCH_BYTES = 8 * 1024 * 1024
"""Chunk bytes `read_metrics` loads per reader call, together with the series metadata."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS experiments (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_time REAL NOT NULL,
    next_number INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    experiment_id TEXT NOT NULL REFERENCES experiments (id),
    parent_id TEXT REFERENCES runs (id),
    number INTEGER NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    display_name TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    type TEXT NOT NULL DEFAULT '',
    target TEXT NOT NULL DEFAULT '',
    created_time REAL NOT NULL,
    start_time REAL,
    end_time REAL,
    error TEXT,
    warnings TEXT NOT NULL DEFAULT '[]',
    UNIQUE (experiment_id, number)
);
CREATE INDEX IF NOT EXISTS runs_by_experiment ON runs (experiment_id, created_time DESC, number DESC);
CREATE INDEX IF NOT EXISTS runs_by_parent ON runs (parent_id);
CREATE TABLE IF NOT EXISTS tags (
    run_id TEXT NOT NULL REFERENCES runs (id),
    key TEXT NOT NULL,
    value TEXT,
    PRIMARY KEY (run_id, key)
);
CREATE TABLE IF NOT EXISTS properties (
    run_id TEXT NOT NULL REFERENCES runs (id),
    key TEXT NOT NULL,
    value TEXT,
    PRIMARY KEY (run_id, key)
);
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs (id),
    name TEXT NOT NULL,
    kind INTEGER NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    row_count INTEGER NOT NULL DEFAULT 0,
    columns TEXT NOT NULL DEFAULT '[]',
    last REAL,
    min REAL,
    max REAL,
    UNIQUE (run_id, name)
);
CREATE TABLE IF NOT EXISTS chunks (
    series_id INTEGER NOT NULL REFERENCES series (id),
    chunk_no INTEGER NOT NULL,
    first_row INTEGER NOT NULL,
    row_count INTEGER NOT NULL,
    nbytes INTEGER NOT NULL,
    blob BLOB NOT NULL,
    PRIMARY KEY (series_id, chunk_no)
);
CREATE TABLE IF NOT EXISTS dedup (
    producer_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (producer_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS producers (
    producer_id TEXT PRIMARY KEY,
    floor INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS artifacts (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs (id),
    name TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    upload_id TEXT NOT NULL DEFAULT '',
    created_time REAL NOT NULL,
    UNIQUE (run_id, name)
);
CREATE TABLE IF NOT EXISTS snapshots (
    id TEXT PRIMARY KEY,
    files INTEGER NOT NULL,
    size INTEGER NOT NULL,
    created_time REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    run_id TEXT PRIMARY KEY REFERENCES runs (id),
    target TEXT NOT NULL,
    definition BLOB NOT NULL,
    state TEXT NOT NULL,
    lease_id TEXT NOT NULL DEFAULT '',
    node_id TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    queued_time REAL NOT NULL,
    leased_time REAL NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs (target, state, queued_time);
CREATE INDEX IF NOT EXISTS jobs_by_lease ON jobs (lease_id);
CREATE INDEX IF NOT EXISTS jobs_by_node ON jobs (node_id, state);
CREATE TABLE IF NOT EXISTS nodes (
    node_id TEXT PRIMARY KEY,
    target TEXT NOT NULL,
    slots INTEGER NOT NULL,
    hostname TEXT NOT NULL DEFAULT '',
    pid INTEGER NOT NULL DEFAULT 0,
    last_seen REAL NOT NULL,
    connected INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS runs_active_by_target ON runs (target)
    WHERE status NOT IN ('Completed', 'Failed', 'Canceled');
CREATE INDEX IF NOT EXISTS jobs_leased ON jobs (node_id) WHERE state = 'leased';
CREATE TABLE IF NOT EXISTS log_files (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs (id),
    path TEXT NOT NULL,
    line_count INTEGER NOT NULL DEFAULT 0,
    UNIQUE (run_id, path)
);
CREATE TABLE IF NOT EXISTS logs (
    file_id INTEGER NOT NULL REFERENCES log_files (id),
    first_line INTEGER NOT NULL,
    line_count INTEGER NOT NULL,
    blob BLOB NOT NULL,
    PRIMARY KEY (file_id, first_line)
);
CREATE TABLE IF NOT EXISTS status_history (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs (id),
    status TEXT NOT NULL,
    time REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS status_history_by_run ON status_history (run_id, id);
CREATE INDEX IF NOT EXISTS runs_by_experiment_status ON runs (experiment_id, status);
CREATE INDEX IF NOT EXISTS series_by_name ON series (name, run_id);
"""

_RUN_COLUMNS = (
    "r.id, r.experiment_id, e.name, r.parent_id, r.number, r.name, r.display_name, r.description, r.status, "
    "r.type, r.target, r.created_time, r.start_time, r.end_time, r.error, r.warnings"
)

_UPSERT_CHUNK = (
    "INSERT INTO chunks (series_id, chunk_no, first_row, row_count, nbytes, blob) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (series_id, chunk_no) DO UPDATE SET first_row = excluded.first_row, "
    "row_count = excluded.row_count, nbytes = excluded.nbytes, blob = excluded.blob"
)


def _signed64(seq: int) -> int:
    """A uint64 sequence number as the int64 SQLite stores (the mapping is one-to-one)."""
    return seq - (1 << 64) if seq >= (1 << 63) else seq


@dataclass
class _Pending:
    """Rows admitted to one series in the current transaction, appended at its end."""

    state: SeriesState
    parts: list[codec.DecodedPoints] = field(default_factory=list)
    rows: int = 0


class SqliteStore(Store):
    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)
        self._writer: ThreadPoolExecutor | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._wconn: sqlite3.Connection | None = None
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._reader_lock = threading.Lock()
        # writer-thread caches (touched only on the writer thread)
        self._series: OrderedDict[tuple[str, str], SeriesState] = OrderedDict()
        self._tail_bytes = 0
        self._run_series: dict[str, int] = {}
        self._floors: dict[str, int] = {}  # producer -> dedup floor, as committed (writer thread)
        self._log_tails: dict[int, tuple[int, list[str], int]] = {}  # log file -> open last chunk (writer)

    @property
    def path(self) -> Path:
        return self._path

    def describe(self) -> str:
        return f"sqlite:{self._path}"

    # --- lifecycle ------------------------------------------------------------------------------------

    async def open(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="runwire-sqlite-writer")
        self._readers = ThreadPoolExecutor(
            server_limits.STORE_READER_THREADS, thread_name_prefix="runwire-sqlite-reader"
        )
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._writer, self._open_writer)
        log.info("store opened", extra={"fields": {"store": self.describe()}})

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        if self._writer is not None:
            await loop.run_in_executor(self._writer, self._close_writer)
            await asyncio.to_thread(self._writer.shutdown, True)
            self._writer = None
        if self._readers is not None:
            await asyncio.to_thread(self._readers.shutdown, True)
            self._readers = None
        with self._reader_lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False, timeout=60.0)
        conn.execute("PRAGMA busy_timeout = 60000")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA cache_size = -32768")
        return conn

    def _open_writer(self) -> None:
        conn = self._connect()
        conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # only takes effect on a new database
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise RuntimeError(f"{self._path}: could not switch SQLite to WAL mode (got {mode})")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"{self._path} has schema version {version}, newer than this collector's")
        conn.executescript(_SCHEMA)
        if 0 < version < 4:  # runs of an older database: their current status is all the history known
            conn.execute(
                "INSERT INTO status_history (run_id, status, time) "
                "SELECT id, status, COALESCE(end_time, start_time, created_time) FROM runs "
                "WHERE id NOT IN (SELECT run_id FROM status_history)"
            )
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self._wconn = conn

    def _close_writer(self) -> None:
        if self._wconn is not None:
            try:
                self._wconn.execute("PRAGMA optimize")
            except sqlite3.OperationalError as e:  # another collector holds the database: skip the hint
                log.debug("PRAGMA optimize skipped", extra={"fields": {"error": str(e)}})
            finally:
                self._wconn.close()
                self._wconn = None
        self._reset_caches()

    def _reader_conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            conn.execute("PRAGMA query_only = ON")
            self._local.conn = conn
            with self._reader_lock:
                self._reader_conns.append(conn)
        return conn

    # --- transaction helpers ----------------------------------------------------------------------

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        if self._writer is None:
            raise RuntimeError("the store is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, functools.partial(self._write_tx, fn, *args))

    def _write_tx(self, fn: Callable[..., T], *args: Any) -> T:
        conn = self._wconn
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn, *args)
            conn.execute("COMMIT")
        except BaseException as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._floors.clear()  # may be ahead of what was rolled back
            self._log_tails.clear()
            if not isinstance(e, CollectorError):
                self._reset_caches()
            raise
        return result

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        if self._readers is None:
            raise RuntimeError("the store is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, functools.partial(self._read_tx, fn, *args))

    def _read_tx(self, fn: Callable[..., T], *args: Any) -> T:
        conn = self._reader_conn()
        conn.execute("BEGIN")
        try:
            return fn(conn, *args)
        finally:
            conn.execute("COMMIT")

    def _reset_caches(self) -> None:
        self._log_tails.clear()
        self._series.clear()
        self._tail_bytes = 0
        self._run_series.clear()

    # --- experiments ----------------------------------------------------------------------------------

    async def get_or_create_experiment(self, name: str) -> ExperimentRecord:
        rules.check_experiment_name(name)
        found = await self._read(self._find_experiment, name)
        if found is not None:
            return found
        return await self._write(self._get_or_create_experiment_tx, name)

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

    async def list_experiments(self, name: str = "") -> list[ExperimentRecord]:
        return await self._read(self._list_experiments_tx, name)

    @staticmethod
    def _list_experiments_tx(conn: sqlite3.Connection, name: str) -> list[ExperimentRecord]:
        sql = "SELECT id, name, created_time FROM experiments"
        params: tuple = ()
        if name:
            sql += " WHERE name = ?"
            params = (name,)
        return [ExperimentRecord(*row) for row in conn.execute(sql + " ORDER BY created_time, rowid", params)]

    # --- runs -------------------------------------------------------------------------------------------

    async def create_run(self, new: NewRun) -> RunRecord:
        rules.check_experiment_name(new.experiment_name)
        rules.check_run_id(new.run_id)
        rules.check_status(new.status)
        rules.check_display_name(new.display_name)
        rules.check_tags(new.tags)
        rules.check_properties(new.properties)
        rules.check_tag_count(new.run_id, len(new.tags))
        rules.check_property_count(new.run_id, len(new.properties))
        return await self._write(self._create_run_tx, new)

    def _create_run_tx(self, conn: sqlite3.Connection, new: NewRun) -> RunRecord:
        experiment = self._get_or_create_experiment_tx(conn, new.experiment_name)
        if conn.execute("SELECT 1 FROM runs WHERE id = ?", (new.run_id,)).fetchone():
            raise AlreadyExists(f"run {new.run_id} already exists (run ids are unique)")
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
            "target, created_time, start_time, end_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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

    async def get_run(self, run_id: str) -> RunRecord:
        return await self._read(self._get_run_tx, run_id)

    def _get_run_tx(self, conn: sqlite3.Connection, run_id: str) -> RunRecord:
        runs = self._load_runs(conn, "WHERE r.id = ?", [run_id])
        if not runs:
            raise NotFound(f"run {run_id} not found")
        return runs[0]

    def _load_runs(self, conn: sqlite3.Connection, where: str, params: list, prefix: str = "") -> list[RunRecord]:
        sql = (
            f"{prefix}SELECT {_RUN_COLUMNS} FROM runs r JOIN experiments e ON e.id = r.experiment_id {where} "
            "ORDER BY r.created_time DESC, r.number DESC"
        )
        runs = []
        for row in conn.execute(sql, params):
            error = None
            if row[14]:
                err = json.loads(row[14])
                error = RunErrorRecord(err["code"], err["message"], err.get("details_json", ""))
            runs.append(
                RunRecord(
                    run_id=row[0],
                    experiment_id=row[1],
                    experiment_name=row[2],
                    parent_run_id=row[3],
                    number=row[4],
                    name=row[5],
                    display_name=row[6],
                    description=row[7],
                    status=row[8],
                    type=row[9],
                    target=row[10],
                    created_time=row[11],
                    start_time=row[12],
                    end_time=row[13],
                    error=error,
                    warnings=json.loads(row[15]),
                )
            )
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

    async def list_runs(self, query: RunQuery) -> list[RunRecord]:
        return await self._read(self._list_runs_tx, query)

    def _list_runs_tx(self, conn: sqlite3.Connection, q: RunQuery) -> list[RunRecord]:
        where: list[str] = []
        params: list = []
        prefix = ""
        if q.parent_run_id:
            if not conn.execute("SELECT 1 FROM runs WHERE id = ?", (q.parent_run_id,)).fetchone():
                raise NotFound(f"run {q.parent_run_id} not found")
            if q.recursive:
                prefix = (
                    "WITH RECURSIVE subtree (id) AS (SELECT id FROM runs WHERE parent_id = ? "
                    "UNION ALL SELECT c.id FROM runs c JOIN subtree s ON c.parent_id = s.id) "
                )
                params.append(q.parent_run_id)
                where.append("r.id IN (SELECT id FROM subtree)")
            else:
                where.append("r.parent_id = ?")
                params.append(q.parent_run_id)
        else:
            if q.experiment_name:
                where.append("e.name = ?")
                params.append(q.experiment_name)
            if not q.include_children:
                where.append("r.parent_id IS NULL")
        if q.statuses:
            where.append(f"r.status IN ({', '.join('?' * len(q.statuses))})")
            params.extend(q.statuses)
        if q.type is not None:
            where.append("r.type = ?")
            params.append(q.type)
        for table, pairs in (("tags", q.tags), ("properties", q.properties)):
            for key, value in pairs.items():
                cond = f"EXISTS (SELECT 1 FROM {table} x WHERE x.run_id = r.id AND x.key = ?"
                params.append(key)
                if value is not None:
                    cond += " AND x.value = ?"
                    params.append(value)
                where.append(cond + ")")
        return self._load_runs(conn, ("WHERE " + " AND ".join(where)) if where else "", params, prefix)

    async def update_run(self, update: RunUpdate) -> RunRecord:
        if update.status is not None:
            rules.check_status(update.status)
        if update.display_name is not None:
            rules.check_display_name(update.display_name)
        if update.error is not None:
            rules.check_error_details(update.error.details_json)
        return await self._write(self._update_run_tx, update)

    def _update_run_tx(self, conn: sqlite3.Connection, u: RunUpdate) -> RunRecord:
        row = conn.execute("SELECT status, start_time, end_time FROM runs WHERE id = ?", (u.run_id,)).fetchone()
        if row is None:
            raise NotFound(f"run {u.run_id} not found")
        status, start, end = row
        sets: list[str] = []
        params: list = []
        if u.status is not None and u.status != status:
            if status in TERMINAL_STATUSES:
                raise FailedPrecondition(f"run {u.run_id} is already {status}; a finished run cannot become {u.status}")
            now = time.time()
            sets.append("status = ?")
            params.append(u.status)
            _record_status(conn, u.run_id, u.status, now)
            if u.status == "Running" and start is None:
                sets.append("start_time = ?")
                params.append(now)
            if u.status in TERMINAL_STATUSES and end is None:
                sets.append("end_time = ?")
                params.append(now)
            if u.status in TERMINAL_STATUSES:
                # a finished run's job is never (re)leased; a node still running it is told at its next heartbeat
                conn.execute(
                    "UPDATE jobs SET state = ? WHERE run_id = ? AND state != ?", (JOB_DONE, u.run_id, JOB_DONE)
                )
        if u.display_name is not None:
            sets.append("display_name = ?")
            params.append(u.display_name)
        if u.description is not None:
            sets.append("description = ?")
            params.append(u.description)
        if u.error is not None:
            sets.append("error = ?")
            params.append(
                json.dumps(
                    {
                        "code": u.error.code,
                        "message": rules.truncate_error_message(u.error.message),
                        "details_json": u.error.details_json,
                    }
                )
            )
        if sets:
            conn.execute(f"UPDATE runs SET {', '.join(sets)} WHERE id = ?", [*params, u.run_id])
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

    async def set_tags(self, run_id: str, tags: Mapping[str, str | None], remove: Sequence[str]) -> RunRecord:
        rules.check_tags(tags)
        return await self._write(self._set_tags_tx, run_id, dict(tags), list(remove))

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

    async def add_properties(self, run_id: str, properties: Mapping[str, str | None]) -> RunRecord:
        rules.check_properties(properties)
        return await self._write(self._add_properties_tx, run_id, dict(properties))

    def _add_properties_tx(self, conn: sqlite3.Connection, run_id: str, properties: dict[str, str | None]) -> RunRecord:
        if not conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone():
            raise NotFound(f"run {run_id} not found")
        stored = dict(conn.execute("SELECT key, value FROM properties WHERE run_id = ?", (run_id,)).fetchall())
        new = {}
        for key, value in properties.items():
            if key in stored:
                if stored[key] != value:
                    raise AlreadyExists(
                        f"property {key!r} of run {run_id} is already {stored[key]!r}; properties are immutable "
                        f"and cannot become {value!r}"
                    )
            else:
                new[key] = value
        rules.check_property_count(run_id, len(stored) + len(new))
        conn.executemany(
            "INSERT INTO properties (run_id, key, value) VALUES (?, ?, ?)", [(run_id, k, v) for k, v in new.items()]
        )
        return self._get_run_tx(conn, run_id)

    async def count_runs(self) -> int:
        return await self._read(lambda conn: conn.execute("SELECT count(*) FROM runs").fetchone()[0])

    # --- ingest -----------------------------------------------------------------------------------------

    async def commit(self, units: Sequence[IngestUnit]) -> list[IngestOutcome]:
        return await self._write(self._commit_tx, list(units))

    def _commit_tx(self, conn: sqlite3.Connection, units: list[IngestUnit]) -> list[IngestOutcome]:
        pending: dict[int, _Pending] = {}
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
                    (batch.producer_id, _signed64(batch.seq)),
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
        lines, first = item.lines, item.first_line
        if first < count:
            skip = count - first
            if skip >= len(lines):
                return
            lines, first = lines[skip:], count
        elif first > count:
            text = (
                f"run {item.run_id!r} log {item.path!r}: lines {count}..{first - 1} never arrived; "
                f"the {len(lines)} lines sent as {first}.. are stored from line {count}"
            )
            out.warnings.append(text)
            run_warnings.setdefault(item.run_id, []).append(text)
            first = count
        self._store_log_lines(conn, file_id, first, lines)
        entry[1] = first + len(lines)
        out.events.append(CommittedLog(item.run_id, item.path, first, lines))

    def _store_log_lines(self, conn: sqlite3.Connection, file_id: int, first: int, lines: list[str]) -> None:
        """Store lines `first`.. of a log file: merged into the file's last chunk while that one is
        small and was written by this writer (a job printing a line at a time does not leave a row
        per line), else as a new chunk."""
        chars = sum(map(len, lines))
        tail = self._log_tails.get(file_id)
        if (
            tail is not None
            and tail[0] + len(tail[1]) == first
            and len(tail[1]) + len(lines) <= LOG_CHUNK_MAX_LINES
            and tail[2] + chars <= LOG_CHUNK_MAX_CHARS
        ):
            start, merged, merged_chars = tail[0], tail[1] + lines, tail[2] + chars
            conn.execute(
                "UPDATE logs SET line_count = ?, blob = ? WHERE file_id = ? AND first_line = ?",
                (len(merged), _log_blob(merged), file_id, start),
            )
        else:
            start, merged, merged_chars = first, list(lines), chars
            conn.execute(
                "INSERT INTO logs (file_id, first_line, line_count, blob) VALUES (?, ?, ?, ?)",
                (file_id, first, len(lines), _log_blob(lines)),
            )
        if len(merged) < LOG_CHUNK_MAX_LINES and merged_chars < LOG_CHUNK_MAX_CHARS:
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
        status, start = row
        job = self._job_tx(conn, sc.run_id)
        leased = job is not None and job.state == JOB_LEASED
        if sc.lease_id and not (leased and job is not None and job.lease_id == sc.lease_id):
            log.info(
                "stale status change ignored",
                extra={"fields": {"run_id": sc.run_id, "status": sc.status, "lease_id": sc.lease_id}},
            )
            return
        if status in TERMINAL_STATUSES:
            return  # terminal statuses are never left (this also covers only_if_active)
        if leased and not sc.lease_id and sc.only_if_active:
            return  # the node running the job reports its outcome (it knows the exit code)
        new = sc.status
        if (status == "CancelRequested" or (job is not None and job.cancel_requested)) and new not in TERMINAL_STATUSES:
            new = status  # a cancel in progress is only left for a final status
        now = time.time()
        sets, params = [], []
        if new != status:
            sets.append("status = ?")
            params.append(new)
            _record_status(conn, sc.run_id, new, now)
            if new in TERMINAL_STATUSES:
                sets.append("end_time = ?")
                params.append(now)
        if sc.status == "Running" and start is None:
            sets.append("start_time = ?")
            params.append(now)
        if sc.error is not None:
            sets.append("error = ?")
            params.append(_error_json(sc.error))
        if not sets:
            return
        conn.execute(f"UPDATE runs SET {', '.join(sets)} WHERE id = ?", [*params, sc.run_id])
        if new in TERMINAL_STATUSES and job is not None and job.state != JOB_DONE:
            conn.execute("UPDATE jobs SET state = ? WHERE run_id = ?", (JOB_DONE, sc.run_id))
            if leased:
                out.ended_leases.append(EndedLease(job.lease_id, job.run_id, job.node_id, job.target))
        if new != status or sc.error is not None:
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
        floor = new = self._floor(conn, producer_id)
        rows = conn.execute(
            "SELECT seq FROM dedup WHERE producer_id = ? AND seq > ? ORDER BY seq", (producer_id, floor)
        ).fetchall()
        for (seq,) in rows:
            if seq != new + 1:
                break
            new = seq
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
        pending: dict[int, _Pending],
        run_warnings: dict[str, list[str]],
    ) -> None:
        n_series = self._series_count(conn, p.run_id)

        def refuse(rule: str, dropped: int) -> None:
            text = f"run {p.run_id!r} metric {p.name!r}: {rule}; {dropped} points dropped"
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
                refuse(
                    f"the run already has MAX_METRIC_NAMES_PER_RUN ({limits.MAX_METRIC_NAMES_PER_RUN}) metric names",
                    p.count,
                )
                return
            state = self._create_series(conn, p)
        rule = series.conflict(state, p.kind, p.points)
        if rule is not None:
            refuse(rule, p.count)
            return
        entry = pending.get(state.id)
        if entry is None:
            entry = pending[state.id] = _Pending(state)
        room = limits.MAX_ROWS_PER_METRIC - state.count - entry.rows
        points = p.points
        if points.count > room:
            rule = f"the metric reached MAX_ROWS_PER_METRIC ({limits.MAX_ROWS_PER_METRIC}) rows"
            refuse(rule, points.count - max(room, 0))
            if room <= 0:
                return
            points = codec.slice_points(points, 0, room)
        series.absorb(state, points, p.description)
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
            state.next_chunk_no = last[0] + 1
            if last[2] < limits.STORE_CHUNK_ROWS:
                state.tail_rows, state.tail_first_row = last[2], last[1]
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

    # --- metric reads -----------------------------------------------------------------------------------

    async def read_metrics(
        self, run_id: str, recursive: bool = False, names: Sequence[str] = ()
    ) -> AsyncIterator[SeriesSnapshot]:
        ids = await self._read(self._series_ids_tx, run_id, recursive, list(names))
        i = 0
        while i < len(ids):
            snapshots = await self._read(self._snapshots_tx, ids, i, READ_PREFETCH_BYTES)
            i += len(snapshots)
            for snapshot in snapshots:
                yield snapshot

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
            upto = -1
            for ref in refs[:-1]:
                if ref.nbytes > budget:
                    break
                budget -= ref.nbytes
                upto = ref.chunk_no
            blobs: dict[int, bytes] = {}
            if refs:
                budget -= refs[-1].nbytes
                blobs = dict(
                    conn.execute(
                        "SELECT chunk_no, blob FROM chunks WHERE series_id = ? AND (chunk_no <= ? OR chunk_no = ?)",
                        (series_id, upto, refs[-1].chunk_no),
                    )
                )
            out.append(
                SeriesSnapshot(
                    series_id=series_id,
                    run_id=row[0],
                    name=row[1],
                    kind=row[2],
                    description=row[3],
                    count=row[4],
                    columns=list(series.columns_from_json(row[5]).items()),
                    chunks=refs,
                    blobs=[blobs.get(ref.chunk_no) for ref in refs],
                )
            )
        return out

    async def read_chunks(self, series_id: int, chunk_nos: Sequence[int]) -> list[bytes]:
        return await self._read(self._read_chunks_tx, series_id, list(chunk_nos))

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

    # --- artifacts and snapshots ------------------------------------------------------------------------

    _ARTIFACT_COLUMNS = "run_id, name, sha256, size, upload_id, created_time"

    async def add_artifact(self, record: ArtifactRecord) -> ArtifactRecord:
        return await self._write(self._add_artifact_tx, record)

    def _add_artifact_tx(self, conn: sqlite3.Connection, a: ArtifactRecord) -> ArtifactRecord:
        if conn.execute("SELECT 1 FROM runs WHERE id = ?", (a.run_id,)).fetchone() is None:
            raise NotFound(f"run {a.run_id!r} not found")
        row = conn.execute(
            f"SELECT {self._ARTIFACT_COLUMNS} FROM artifacts WHERE run_id = ? AND name = ?", (a.run_id, a.name)
        ).fetchone()
        if row is not None:
            existing = ArtifactRecord(*row)
            if a.upload_id and existing.upload_id == a.upload_id and existing.sha256 == a.sha256:
                return existing
            from runwire.artifact_names import conflict_message

            raise AlreadyExists(conflict_message(a.run_id, a.name))
        total = conn.execute("SELECT COALESCE(SUM(size), 0) FROM artifacts WHERE run_id = ?", (a.run_id,)).fetchone()[0]
        if total + a.size > limits.MAX_RUN_ARTIFACT_BYTES:
            raise InvalidArgument(
                f"run {a.run_id}: {a.name!r} ({a.size} bytes) would take the run's artifacts to {total + a.size} "
                f"bytes, over MAX_RUN_ARTIFACT_BYTES ({limits.MAX_RUN_ARTIFACT_BYTES})"
            )
        conn.execute(
            f"INSERT INTO artifacts ({self._ARTIFACT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
            (a.run_id, a.name, a.sha256, a.size, a.upload_id, a.created_time),
        )
        return a

    async def add_artifacts(self, records: Sequence[ArtifactRecord]) -> list[ArtifactRecord | CollectorError]:
        return await self._write(self._add_artifacts_tx, list(records))

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

    async def get_artifacts(self, run_id: str, names: Sequence[str]) -> dict[str, ArtifactRecord]:
        return await self._read(self._get_artifacts_tx, run_id, list(names))

    def _get_artifacts_tx(self, conn: sqlite3.Connection, run_id: str, names: list[str]) -> dict[str, ArtifactRecord]:
        out = {}
        for lo in range(0, len(names), 500):
            part = names[lo : lo + 500]
            rows = conn.execute(
                f"SELECT {self._ARTIFACT_COLUMNS} FROM artifacts WHERE run_id = ? AND name IN "
                f"({', '.join('?' * len(part))})",
                (run_id, *part),
            ).fetchall()
            for row in rows:
                out[row[1]] = ArtifactRecord(*row)
        return out

    async def get_artifact(self, run_id: str, name: str) -> ArtifactRecord | None:
        return await self._read(self._get_artifact_tx, run_id, name)

    def _get_artifact_tx(self, conn: sqlite3.Connection, run_id: str, name: str) -> ArtifactRecord | None:
        row = conn.execute(
            f"SELECT {self._ARTIFACT_COLUMNS} FROM artifacts WHERE run_id = ? AND name = ?", (run_id, name)
        ).fetchone()
        return None if row is None else ArtifactRecord(*row)

    async def list_artifacts(self, run_id: str, prefix: str = "") -> list[ArtifactRecord]:
        return await self._read(self._list_artifacts_tx, run_id, prefix)

    def _list_artifacts_tx(self, conn: sqlite3.Connection, run_id: str, prefix: str) -> list[ArtifactRecord]:
        if conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
            raise NotFound(f"run {run_id!r} not found")
        rows = conn.execute(
            f"SELECT {self._ARTIFACT_COLUMNS} FROM artifacts WHERE run_id = ? AND substr(name, 1, ?) = ? "
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

    async def put_snapshot(self, record: SnapshotRecord) -> SnapshotRecord:
        return await self._write(self._put_snapshot_tx, record)

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

    # --- script runs: jobs, leases, nodes, logs (issue 4) ---------------------------------------------

    async def submit_run(self, new: NewRun, definition: bytes) -> RunRecord:
        rules.check_experiment_name(new.experiment_name)
        rules.check_run_id(new.run_id)
        rules.check_status(new.status)
        rules.check_display_name(new.display_name)
        rules.check_tags(new.tags)
        rules.check_properties(new.properties)
        rules.check_tag_count(new.run_id, len(new.tags))
        rules.check_property_count(new.run_id, len(new.properties))
        rules.check_target(new.target)
        return await self._write(self._submit_run_tx, new, definition)

    def _submit_run_tx(self, conn: sqlite3.Connection, new: NewRun, definition: bytes) -> RunRecord:
        run = self._create_run_tx(conn, new)
        conn.execute(
            "INSERT INTO jobs (run_id, target, definition, state, queued_time) VALUES (?, ?, ?, ?, ?)",
            (run.run_id, new.target, definition, JOB_QUEUED, run.created_time),
        )
        return run

    @staticmethod
    def _job_tx(conn: sqlite3.Connection, run_id: str) -> JobRecord | None:
        row = conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE run_id = ?", (run_id,)).fetchone()
        return None if row is None else _job(row)

    async def get_job(self, run_id: str) -> JobRecord:
        job = await self._read(self._job_tx, run_id)
        if job is None:
            if await self._read(lambda conn: conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone()):
                raise NotFound(f"run {run_id} has no job (it was not submitted to a compute target)")
            raise NotFound(f"run {run_id} not found")
        return job

    async def lease_next(self, target: str, node_id: str) -> LeaseGrant | None:
        return await self._write(self._lease_next_tx, target, node_id)

    def _lease_next_tx(self, conn: sqlite3.Connection, target: str, node_id: str) -> LeaseGrant | None:
        while True:
            row = conn.execute(
                "SELECT run_id FROM jobs WHERE target = ? AND state = ? AND cancel_requested = 0 "
                "ORDER BY queued_time, rowid LIMIT 1",
                (target, JOB_QUEUED),
            ).fetchone()
            if row is None:
                return None
            (run_id,) = row
            lease_id = uuid.uuid4().hex
            now = time.time()
            # conditional: of several collectors racing for this job, exactly one gets it
            cur = conn.execute(
                "UPDATE jobs SET state = ?, lease_id = ?, node_id = ?, attempts = attempts + 1, leased_time = ? "
                "WHERE run_id = ? AND state = ?",
                (JOB_LEASED, lease_id, node_id, now, run_id, JOB_QUEUED),
            )
            if cur.rowcount != 1:
                continue
            (status,) = conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
            if status in TERMINAL_STATUSES:  # ended by other means (UpdateRun): never run it
                conn.execute("UPDATE jobs SET state = ? WHERE run_id = ?", (JOB_DONE, run_id))
                continue
            conn.execute("UPDATE runs SET status = 'Preparing' WHERE id = ?", (run_id,))
            if status != "Preparing":
                _record_status(conn, run_id, "Preparing", now)
            job = self._job_tx(conn, run_id)
            assert job is not None
            return LeaseGrant(lease_id, node_id, job, self._get_run_tx(conn, run_id))

    async def release_lease(self, lease_id: str, reason: str) -> ReleasedLease | None:
        return await self._write(self._release_lease_tx, lease_id, reason)

    def _release_lease_tx(self, conn: sqlite3.Connection, lease_id: str, reason: str) -> ReleasedLease | None:
        row = conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE lease_id = ? AND state = ?", (lease_id, JOB_LEASED))
        found = row.fetchone()
        if found is None:
            return None
        job = _job(found)
        (status,) = conn.execute("SELECT status FROM runs WHERE id = ?", (job.run_id,)).fetchone()
        now = time.time()
        requeued = False
        if status in TERMINAL_STATUSES:
            conn.execute("UPDATE jobs SET state = ? WHERE run_id = ?", (JOB_DONE, job.run_id))
        elif job.cancel_requested:
            conn.execute("UPDATE jobs SET state = ? WHERE run_id = ?", (JOB_DONE, job.run_id))
            conn.execute("UPDATE runs SET status = 'Canceled', end_time = ? WHERE id = ?", (now, job.run_id))
            _record_status(conn, job.run_id, "Canceled", now)
        elif status in NOT_STARTED_STATUSES:
            conn.execute("UPDATE jobs SET state = ? WHERE run_id = ?", (JOB_QUEUED, job.run_id))
            conn.execute("UPDATE runs SET status = 'Queued' WHERE id = ?", (job.run_id,))
            if status != "Queued":
                _record_status(conn, job.run_id, "Queued", now)
            requeued = True
        else:
            node = conn.execute("SELECT hostname FROM nodes WHERE node_id = ?", (job.node_id,)).fetchone()
            name = f"{node[0]} ({job.node_id})" if node and node[0] else job.node_id
            error = RunErrorRecord(NODE_LOST_ERROR_CODE, f"node {name} {reason}")
            conn.execute("UPDATE jobs SET state = ? WHERE run_id = ?", (JOB_DONE, job.run_id))
            conn.execute(
                "UPDATE runs SET status = 'Failed', end_time = ?, error = ? WHERE id = ?",
                (now, _error_json(error), job.run_id),
            )
            _record_status(conn, job.run_id, "Failed", now)
        after = self._job_tx(conn, job.run_id)
        assert after is not None
        return ReleasedLease(after, self._get_run_tx(conn, job.run_id), requeued)

    async def cancel_run(self, run_id: str) -> tuple[RunRecord, JobRecord | None, bool]:
        return await self._write(self._cancel_run_tx, run_id)

    def _cancel_run_tx(self, conn: sqlite3.Connection, run_id: str) -> tuple[RunRecord, JobRecord | None, bool]:
        row = conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise NotFound(f"run {run_id} not found")
        (status,) = row
        job = self._job_tx(conn, run_id)
        if status in TERMINAL_STATUSES:
            return self._get_run_tx(conn, run_id), job, False
        now = time.time()
        if job is not None and job.state == JOB_LEASED:
            conn.execute("UPDATE jobs SET cancel_requested = 1 WHERE run_id = ?", (run_id,))
            conn.execute("UPDATE runs SET status = 'CancelRequested' WHERE id = ?", (run_id,))
            if status != "CancelRequested":
                _record_status(conn, run_id, "CancelRequested", now)
            job = self._job_tx(conn, run_id)
            return self._get_run_tx(conn, run_id), job, status != "CancelRequested"
        if job is not None:
            conn.execute("UPDATE jobs SET state = ?, cancel_requested = 1 WHERE run_id = ?", (JOB_DONE, run_id))
            job = self._job_tx(conn, run_id)
        conn.execute("UPDATE runs SET status = 'Canceled', end_time = ? WHERE id = ?", (now, run_id))
        _record_status(conn, run_id, "Canceled", now)
        return self._get_run_tx(conn, run_id), job, True

    async def jobs_of_node(self, node_id: str) -> list[JobRecord]:
        return await self._read(
            lambda conn: [
                _job(r)
                for r in conn.execute(
                    f"SELECT {_JOB_COLUMNS} FROM jobs WHERE node_id = ? AND state = ? ORDER BY leased_time",
                    (node_id, JOB_LEASED),
                )
            ]
        )

    async def jobs_by_lease(self, lease_ids: Sequence[str]) -> dict[str, JobRecord]:
        ids = json.dumps(list(lease_ids))
        return await self._read(
            lambda conn: {
                job.lease_id: job
                for job in (
                    _job(r)
                    for r in conn.execute(
                        f"SELECT {_JOB_COLUMNS} FROM jobs WHERE lease_id IN (SELECT value FROM json_each(?))", (ids,)
                    )
                )
            }
        )

    async def expired_leases(self, seen_before: float) -> list[JobRecord]:
        return await self._read(
            lambda conn: [
                _job(r)
                for r in conn.execute(
                    f"SELECT {', '.join('j.' + c for c in _JOB_COLUMNS.split(', '))} FROM jobs j "
                    "LEFT JOIN nodes n ON n.node_id = j.node_id "
                    "WHERE j.state = 'leased' AND COALESCE(n.last_seen, 0) < ?",
                    (seen_before,),
                )
            ]
        )

    async def upsert_node(self, node: NodeRecord) -> None:
        await self._write(
            lambda conn: conn.execute(
                "INSERT INTO nodes (node_id, target, slots, hostname, pid, last_seen, connected) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (node_id) DO UPDATE SET target = excluded.target, "
                "slots = excluded.slots, hostname = excluded.hostname, pid = excluded.pid, "
                "last_seen = excluded.last_seen, connected = excluded.connected",
                (node.node_id, node.target, node.slots, node.hostname, node.pid, time.time(), int(node.connected)),
            )
        )

    async def set_node_connected(self, node_id: str, connected: bool) -> None:
        await self._write(
            lambda conn: conn.execute(
                "UPDATE nodes SET connected = ?, last_seen = ? WHERE node_id = ?",
                (int(connected), time.time(), node_id),
            )
        )

    async def node_seen(self, node_id: str) -> None:
        await self._write(
            lambda conn: conn.execute(
                "UPDATE nodes SET last_seen = ?, connected = 1 WHERE node_id = ?", (time.time(), node_id)
            )
        )

    async def list_nodes(self, target: str = "") -> list[NodeRecord]:
        return await self._read(self._list_nodes_tx, target)

    @staticmethod
    def _list_nodes_tx(conn: sqlite3.Connection, target: str) -> list[NodeRecord]:
        sql = "SELECT node_id, target, slots, hostname, pid, last_seen, connected FROM nodes"
        params: tuple = ()
        if target:
            sql += " WHERE target = ?"
            params = (target,)
        nodes = [
            NodeRecord(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]))
            for r in conn.execute(sql + " ORDER BY node_id", params)
        ]
        by_id = {n.node_id: n for n in nodes}
        rows = conn.execute(
            "SELECT node_id, run_id FROM jobs WHERE state = ? AND node_id IN (SELECT value FROM json_each(?)) "
            "ORDER BY leased_time",
            (JOB_LEASED, json.dumps(list(by_id))),
        )
        for node_id, run_id in rows:
            by_id[node_id].busy += 1
            by_id[node_id].run_ids.append(run_id)
        return nodes

    async def list_compute_targets(self, name: str = "") -> list[TargetRecord]:
        return await self._read(self._list_compute_targets_tx, name)

    def _list_compute_targets_tx(self, conn: sqlite3.Connection, name: str) -> list[TargetRecord]:
        nodes = self._list_nodes_tx(conn, name)
        counts: dict[str, list[int]] = {}
        sql = "SELECT target, state, count(*) FROM jobs WHERE state IN (?, ?)"
        params: list = [JOB_QUEUED, JOB_LEASED]
        if name:
            sql += " AND target = ?"
            params.append(name)
        for target, state, n in conn.execute(sql + " GROUP BY target, state", params):
            counts.setdefault(target, [0, 0])[0 if state == JOB_QUEUED else 1] += n
        names = sorted({n.target for n in nodes} | set(counts))
        return [
            TargetRecord(t, [n for n in nodes if n.target == t], counts.get(t, [0, 0])[0], counts.get(t, [0, 0])[1])
            for t in names
        ]

    async def list_active_runs(self, target: str, statuses: Sequence[str] = ()) -> list[ActiveRunRecord]:
        wanted = rules.active_run_statuses(statuses)
        return await self._read(self._list_active_runs_tx, target, sorted(wanted))

    def _list_active_runs_tx(self, conn: sqlite3.Connection, target: str, wanted: list[str]) -> list[ActiveRunRecord]:
        # unfinished runs only, at every level (the partial index runs_active_by_target): the
        # finished runs a target piles up over time are never walked
        prefix = (
            "WITH RECURSIVE tree (id) AS (SELECT id FROM runs WHERE target = ? "
            "AND status NOT IN ('Completed', 'Failed', 'Canceled') "
            "UNION SELECT c.id FROM runs c JOIN tree t ON c.parent_id = t.id "
            "WHERE c.status NOT IN ('Completed', 'Failed', 'Canceled')) "
        )
        where = f"WHERE r.id IN (SELECT id FROM tree) AND r.status IN ({', '.join('?' * len(wanted))})"
        runs = self._load_runs(conn, where, [target, *wanted], prefix)
        nodes = dict(
            conn.execute(
                "SELECT run_id, node_id FROM jobs WHERE state = ? AND run_id IN (SELECT value FROM json_each(?))",
                (JOB_LEASED, json.dumps([r.run_id for r in runs])),
            ).fetchall()
        )
        return [ActiveRunRecord(r, nodes.get(r.run_id, "")) for r in runs]

    async def read_log(self, run_id: str, path: str = "", from_line: int = 0, max_lines: int = 0) -> LogRead:
        return await self._read(self._read_log_tx, run_id, path, from_line, max_lines)

    @staticmethod
    def _read_log_tx(conn: sqlite3.Connection, run_id: str, path: str, from_line: int, max_lines: int) -> LogRead:
        if conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
            raise NotFound(f"run {run_id} not found")
        if path:
            row = conn.execute(
                "SELECT id, path, line_count FROM log_files WHERE run_id = ? AND path = ?", (run_id, path)
            ).fetchone()
        else:
            row = conn.execute(
                "SELECT id, path, line_count FROM log_files WHERE run_id = ? AND line_count > 0 ORDER BY id LIMIT 1",
                (run_id,),
            ).fetchone()
        if row is None:
            return LogRead(run_id, path, from_line, [], 0)
        file_id, path, total = row
        end = total if max_lines <= 0 else min(total, from_line + max_lines)
        lines: list[str] = []
        if from_line < end:
            rows = conn.execute(
                "SELECT first_line, line_count, blob FROM logs WHERE file_id = ? AND first_line < ? "
                "AND first_line + line_count > ? ORDER BY first_line",
                (file_id, end, from_line),
            )
            for first, count, blob in rows:
                chunk = json.loads(codec.decompress(blob, limits.MAX_GRPC_MESSAGE_BYTES * 4))
                lo = max(from_line - first, 0)
                hi = min(end - first, count)
                lines.extend(chunk[lo:hi])
        return LogRead(run_id, path, from_line, lines, total)

    # --- studio reads (issue 6) ---------------------------------------------------------------------

    async def experiment_summaries(self, name: str = "") -> list[ExperimentSummary]:
        return await self._read(self._experiment_summaries_tx, name)

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

    async def query_run_table(self, query: RunTableQuery) -> RunTablePage:
        return await self._read(self._query_run_table_tx, query)

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

    async def list_metric_info(self, run_id: str) -> list[MetricInfoRecord]:
        return await self._read(self._list_metric_info_tx, run_id)

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

    async def status_history(self, run_id: str) -> list[StatusEntry]:
        return await self._read(self._status_history_tx, run_id)

    @staticmethod
    def _status_history_tx(conn: sqlite3.Connection, run_id: str) -> list[StatusEntry]:
        if conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
            raise NotFound(f"run {run_id} not found")
        rows = conn.execute("SELECT status, time FROM status_history WHERE run_id = ? ORDER BY id", (run_id,))
        return [StatusEntry(status, when) for status, when in rows]


_JOB_COLUMNS = (
    "run_id, target, definition, state, lease_id, node_id, attempts, queued_time, leased_time, cancel_requested"
)

NOT_STARTED_STATUSES = frozenset({"NotStarted", "Queued", "Preparing", "Provisioning", "Starting"})
"""A job whose run is in one of these never started its process: losing its lease queues it again."""

NODE_LOST_ERROR_CODE = "NodeLost"
"""Error code of a run failed because the node running its job was lost."""


def _job(row: tuple) -> JobRecord:
    return JobRecord(
        run_id=row[0],
        target=row[1],
        definition=row[2],
        state=row[3],
        lease_id=row[4],
        node_id=row[5],
        attempts=row[6],
        queued_time=row[7],
        leased_time=row[8],
        cancel_requested=bool(row[9]),
    )


LOG_CHUNK_MAX_LINES = 1_000
"""Lines of one stored log chunk, beyond which appended lines start a new chunk (small appends are
merged into the last chunk up to it)."""

LOG_CHUNK_MAX_CHARS = 256 * 1024
"""Characters of one stored log chunk, beyond which appended lines start a new chunk."""


def _log_blob(lines: list[str]) -> bytes:
    return codec.compress(json.dumps(lines, ensure_ascii=False).encode())


def _record_status(conn: sqlite3.Connection, run_id: str, status: str, when: float) -> None:
    """Append a status the run entered to its history (in the transaction that changed it)."""
    conn.execute("INSERT INTO status_history (run_id, status, time) VALUES (?, ?, ?)", (run_id, status, when))


def _error_json(error: RunErrorRecord) -> str:
    return json.dumps(
        {"code": error.code, "message": rules.truncate_error_message(error.message), "details_json": error.details_json}
    )
