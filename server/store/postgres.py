"""The PostgreSQL store: for several collector replicas sharing one database.

Connections come from a `psycopg_pool.AsyncConnectionPool` (`PG_POOL_MIN_SIZE`..`PG_POOL_MAX_SIZE`)
on the event loop itself. Every property that must hold across replicas comes from the database,
never from a replica's memory: each write transaction takes row locks in one order, producers (the
dedup floor) before runs (a run's row guards everything inside it: its series and chunks, log files,
warnings, status) before jobs, and a transaction the server aborts for a deadlock or a serialization
failure is retried (`PG_TX_RETRIES`). The only in-memory state is a cache of decoded open tail
chunks, used when the series row read under the run's lock shows nobody appended since, and dropped
whenever a write transaction fails.

The work is split by job into mixins, assembled into `PostgresStore` here, like the SQLite store:
`postgres_schema` (migrations), `postgres_runs`, `postgres_ingest`, `postgres_reads`, `postgres_files`,
`postgres_jobs`, `postgres_studio` and `postgres_tokens`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool

from runwire.server import limits as server_limits
from runwire.server.errors import CollectorError
from runwire.server.store import postgres_schema
from runwire.server.store.front import StoreFront
from runwire.server.store.postgres_files import PostgresFiles
from runwire.server.store.postgres_ingest import PostgresIngest
from runwire.server.store.postgres_jobs import PostgresJobs
from runwire.server.store.postgres_reads import PostgresReads
from runwire.server.store.postgres_runs import PostgresRuns
from runwire.server.store.postgres_studio import PostgresStudio
from runwire.server.store.postgres_tokens import PostgresTokens
from runwire.server.store.series import SeriesState

log = logging.getLogger(__name__)

T = TypeVar("T")

Conn = psycopg.AsyncConnection

READ_PREFETCH_BYTES = 8 * 1024 * 1024
"""Chunk bytes `read_metrics` loads per read transaction, together with the series metadata."""

_RETRYABLE = (pg_errors.DeadlockDetected, pg_errors.SerializationFailure)


def redact(url: str) -> str:
    """`url` without its password (for logs and status pages)."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql:(unparsable URL)"
    params.pop("password", None)
    host = params.get("host", "")
    port = f":{params['port']}" if params.get("port") else ""
    user = f"{params['user']}@" if params.get("user") else ""
    return f"postgresql://{user}{host}{port}/{params.get('dbname', '')}"


class PostgresStore(
    PostgresRuns, PostgresIngest, PostgresReads, PostgresFiles, PostgresJobs, PostgresStudio, PostgresTokens, StoreFront
):
    """The PostgreSQL backend of `Store`: lifecycle, the pool and the transaction helpers here; what
    they do in the mixins, one module each, called by the public methods of `StoreFront` (shared with
    the SQLite store)."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._pool: AsyncConnectionPool | None = None
        self._commit_lock = asyncio.Lock()  # one commit of this replica at a time (the cache's consistency)
        self._series: OrderedDict[tuple[str, str], SeriesState] = OrderedDict()
        self._tail_bytes = 0

    @property
    def url(self) -> str:
        return self._url

    def describe(self) -> str:
        return redact(self._url)

    # --- lifecycle ------------------------------------------------------------------------------------

    async def open(self) -> None:
        conninfo = make_conninfo(self._url, connect_timeout=int(server_limits.PG_CONNECT_TIMEOUT_S))
        try:  # one connection first: a wrong host, user or password is told at once, with the server's reason
            probe = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
        except psycopg.Error as e:
            reason = " ".join(str(e).split())
            raise OSError(f"cannot connect to PostgreSQL at {self.describe()}: {reason}") from None
        async with probe:
            await postgres_schema.upgrade(probe, self.describe())
        pool = AsyncConnectionPool(
            conninfo,
            min_size=server_limits.PG_POOL_MIN_SIZE,
            max_size=server_limits.PG_POOL_MAX_SIZE,
            kwargs={"autocommit": True},
            configure=_configure_session,
            open=False,
            name="runwire-store",
        )
        try:
            await pool.open(wait=True, timeout=server_limits.PG_CONNECT_TIMEOUT_S)
        except Exception as e:
            await pool.close()
            raise OSError(f"cannot connect to PostgreSQL at {self.describe()}: {e}") from None
        self._pool = pool
        log.info("store opened", extra={"fields": {"store": self.describe()}})

    async def close(self) -> None:
        async with self._commit_lock:  # an in-flight commit finishes first
            if self._pool is not None:
                await self._pool.close()
                self._pool = None
        self._reset_caches()

    # --- transaction helpers ----------------------------------------------------------------------

    async def _write(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """`await fn(conn, *args)` in one read-committed transaction (row locks give the isolation),
        retried when the server aborts it for a deadlock or a serialization failure."""
        pool = self._require_pool()
        attempt = 0
        while True:
            attempt += 1
            try:
                async with pool.connection() as conn, conn.transaction():
                    return await fn(conn, *args)
            except CollectorError:
                raise
            except _RETRYABLE as e:
                self._reset_caches()
                if attempt > server_limits.PG_TX_RETRIES:
                    raise
                log.info("transaction retried", extra={"fields": {"error": type(e).__name__, "attempt": attempt}})
            except BaseException:
                self._reset_caches()
                raise

    async def _read(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """`await fn(conn, *args)` in one read-only repeatable-read transaction (one snapshot)."""
        pool = self._require_pool()
        async with pool.connection() as conn, conn.transaction():
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            return await fn(conn, *args)

    def _require_pool(self) -> AsyncConnectionPool:
        if self._pool is None:
            raise RuntimeError("the store is not open")
        return self._pool

    def _read_prefetch_bytes(self) -> int:
        return READ_PREFETCH_BYTES  # looked up at each read, so a test can lower it on this module

    def _reset_caches(self) -> None:
        self._series.clear()
        self._tail_bytes = 0


async def _configure_session(conn: psycopg.AsyncConnection) -> None:
    timeout_ms = int(server_limits.PG_IDLE_IN_TRANSACTION_TIMEOUT_S * 1000)
    await conn.execute(f"SET idle_in_transaction_session_timeout = {timeout_ms}")
