"""The SQLite store: one file in WAL mode (synchronous=NORMAL), for `runwire up` and single-node use.

Threads: every write runs on ONE writer thread with its own connection (so writes are serialized
and the event loop never blocks); reads run on a small pool of reader threads, each with its own
connection; WAL lets them read a consistent snapshot while the writer commits. The writer keeps
the state of the series it appends to in memory (`series.SeriesState`, with the decoded open tail
chunk), so an append never reads the database back; the cache is dropped whenever a write
transaction fails.

The work is split by job into mixins, assembled into `SqliteStore` here: `sqlite_schema` (DDL and
in-place upgrades), `sqlite_runs` (experiments, runs, status history), `sqlite_ingest` (commit of
batches), `sqlite_reads` (metric reads), `sqlite_files` (artifacts, snapshots), `sqlite_jobs` (script
runs: jobs, leases, nodes, logs), `sqlite_studio` (the studio's reads) and `sqlite_tokens` (access
tokens).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from runwire.server import limits as server_limits
from runwire.server.errors import CollectorError
from runwire.server.store import sqlite_schema
from runwire.server.store.front import StoreFront
from runwire.server.store.series import SeriesState
from runwire.server.store.sqlite_files import SqliteFiles
from runwire.server.store.sqlite_ingest import LOG_CHUNK_MAX_CHARS, LOG_CHUNK_MAX_LINES, SqliteIngest
from runwire.server.store.sqlite_jobs import NODE_LOST_ERROR_CODE, NOT_STARTED_STATUSES, SqliteJobs
from runwire.server.store.sqlite_reads import SqliteReads
from runwire.server.store.sqlite_runs import SqliteRuns
from runwire.server.store.sqlite_schema import PAGE_SIZE, SCHEMA_VERSION
from runwire.server.store.sqlite_studio import SqliteStudio
from runwire.server.store.sqlite_tokens import SqliteTokens

__all__ = [
    "LOG_CHUNK_MAX_CHARS",
    "LOG_CHUNK_MAX_LINES",
    "NODE_LOST_ERROR_CODE",
    "NOT_STARTED_STATUSES",
    "PAGE_SIZE",
    "READ_PREFETCH_BYTES",
    "SCHEMA_VERSION",
    "SqliteStore",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

READ_PREFETCH_BYTES = 8 * 1024 * 1024
"""Chunk bytes `read_metrics` loads per reader call, together with the series metadata."""


class SqliteStore(
    SqliteRuns, SqliteIngest, SqliteReads, SqliteFiles, SqliteJobs, SqliteStudio, SqliteTokens, StoreFront
):
    """The SQLite backend of `Store`. This class holds the lifecycle (open/close, the writer thread
    and its connection, the reader pool), the transaction helpers and the writer's caches; what it
    does with them lives in the mixins, one module each, called by the public methods of `StoreFront`
    (shared with the PostgreSQL store)."""

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
        sqlite_schema.upgrade(conn, self._path)
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

    def _read_prefetch_bytes(self) -> int:
        return READ_PREFETCH_BYTES  # looked up at each read, so a test can lower it on this module

    def _reset_caches(self) -> None:
        self._log_tails.clear()
        self._series.clear()
        self._tail_bytes = 0
        self._run_series.clear()
