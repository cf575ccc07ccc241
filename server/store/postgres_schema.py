"""The PostgreSQL store's schema: ordered migration steps (`MIGRATIONS`), the `schema_version`
table that records how far a database got, and `upgrade`, which applies the missing steps in one
transaction under an advisory lock (several collector replicas may start at once; the first one
migrates, the others wait and find nothing left to do).

Version 1 holds experiments, runs, metric series and chunks, dedup keys, artifacts, snapshots,
jobs, nodes and log lines; version 2 adds the status history of runs (a v1 database's runs get
their current status as their history); version 3 the access tokens (issue 7); version 4 the
request id that created each run (idempotent retries of run creation; older runs get '', which
matches no request). A step is never edited once released: a change is a new step at the end.
"""

from __future__ import annotations

import psycopg

_V1 = """
CREATE TABLE experiments (
    id TEXT PRIMARY KEY,
    seq BIGINT GENERATED ALWAYS AS IDENTITY,
    name TEXT NOT NULL UNIQUE,
    created_time DOUBLE PRECISION NOT NULL,
    next_number BIGINT NOT NULL DEFAULT 1
);
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    experiment_id TEXT NOT NULL REFERENCES experiments (id),
    parent_id TEXT REFERENCES runs (id),
    number BIGINT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    display_name TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    type TEXT NOT NULL DEFAULT '',
    target TEXT NOT NULL DEFAULT '',
    created_time DOUBLE PRECISION NOT NULL,
    start_time DOUBLE PRECISION,
    end_time DOUBLE PRECISION,
    error TEXT,
    warnings TEXT NOT NULL DEFAULT '[]',
    UNIQUE (experiment_id, number)
);
CREATE INDEX runs_by_experiment ON runs (experiment_id, created_time DESC, number DESC);
CREATE INDEX runs_by_parent ON runs (parent_id);
CREATE INDEX runs_by_experiment_status ON runs (experiment_id, status);
CREATE INDEX runs_active_by_target ON runs (target) WHERE status NOT IN ('Completed', 'Failed', 'Canceled');
CREATE TABLE tags (
    run_id TEXT NOT NULL REFERENCES runs (id),
    key TEXT NOT NULL,
    value TEXT,
    seq BIGINT GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY (run_id, key)
);
CREATE TABLE properties (
    run_id TEXT NOT NULL REFERENCES runs (id),
    key TEXT NOT NULL,
    value TEXT,
    seq BIGINT GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY (run_id, key)
);
CREATE TABLE series (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs (id),
    name TEXT NOT NULL,
    kind INTEGER NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    row_count BIGINT NOT NULL DEFAULT 0,
    columns TEXT NOT NULL DEFAULT '[]',
    last DOUBLE PRECISION,
    min DOUBLE PRECISION,
    max DOUBLE PRECISION,
    UNIQUE (run_id, name)
);
CREATE INDEX series_by_name ON series (name, run_id);
CREATE TABLE chunks (
    series_id BIGINT NOT NULL REFERENCES series (id),
    chunk_no INTEGER NOT NULL,
    first_row BIGINT NOT NULL,
    row_count INTEGER NOT NULL,
    nbytes INTEGER NOT NULL,
    blob BYTEA NOT NULL,
    PRIMARY KEY (series_id, chunk_no)
);
ALTER TABLE chunks ALTER COLUMN blob SET STORAGE EXTERNAL;
CREATE TABLE dedup (
    producer_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (producer_id, seq)
);
CREATE TABLE producers (
    producer_id TEXT PRIMARY KEY,
    floor BIGINT NOT NULL
);
CREATE TABLE artifacts (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs (id),
    name TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size BIGINT NOT NULL,
    upload_id TEXT NOT NULL DEFAULT '',
    created_time DOUBLE PRECISION NOT NULL,
    UNIQUE (run_id, name)
);
CREATE TABLE snapshots (
    id TEXT PRIMARY KEY,
    files BIGINT NOT NULL,
    size BIGINT NOT NULL,
    created_time DOUBLE PRECISION NOT NULL
);
CREATE TABLE jobs (
    run_id TEXT PRIMARY KEY REFERENCES runs (id),
    seq BIGINT GENERATED ALWAYS AS IDENTITY,
    target TEXT NOT NULL,
    definition BYTEA NOT NULL,
    state TEXT NOT NULL,
    lease_id TEXT NOT NULL DEFAULT '',
    node_id TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    queued_time DOUBLE PRECISION NOT NULL,
    leased_time DOUBLE PRECISION NOT NULL DEFAULT 0,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX jobs_queue ON jobs (target, state, queued_time, seq);
CREATE INDEX jobs_by_lease ON jobs (lease_id);
CREATE INDEX jobs_leased ON jobs (node_id) WHERE state = 'leased';
CREATE TABLE nodes (
    node_id TEXT PRIMARY KEY,
    target TEXT NOT NULL,
    slots INTEGER NOT NULL,
    hostname TEXT NOT NULL DEFAULT '',
    pid BIGINT NOT NULL DEFAULT 0,
    last_seen DOUBLE PRECISION NOT NULL,
    connected BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE TABLE log_files (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs (id),
    path TEXT NOT NULL,
    line_count BIGINT NOT NULL DEFAULT 0,
    UNIQUE (run_id, path)
);
CREATE TABLE logs (
    file_id BIGINT NOT NULL REFERENCES log_files (id),
    first_line BIGINT NOT NULL,
    line_count INTEGER NOT NULL,
    chars BIGINT NOT NULL,
    blob BYTEA NOT NULL,
    PRIMARY KEY (file_id, first_line)
);
"""

_V2 = """
CREATE TABLE status_history (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs (id),
    status TEXT NOT NULL,
    time DOUBLE PRECISION NOT NULL
);
CREATE INDEX status_history_by_run ON status_history (run_id, id);
INSERT INTO status_history (run_id, status, time)
    SELECT id, status, COALESCE(end_time, start_time, created_time) FROM runs ORDER BY created_time, number;
"""

_V3 = """
CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    secret_sha256 TEXT NOT NULL,
    scope TEXT NOT NULL,
    experiments TEXT NOT NULL DEFAULT '[]',
    name TEXT NOT NULL DEFAULT '',
    created_time DOUBLE PRECISION NOT NULL,
    last_used_time DOUBLE PRECISION,
    revoked_time DOUBLE PRECISION
);
"""

_V4 = """
ALTER TABLE runs ADD COLUMN request_id TEXT NOT NULL DEFAULT '';
"""

MIGRATIONS: tuple[tuple[int, str], ...] = ((1, _V1), (2, _V2), (3, _V3), (4, _V4))
"""(version, SQL) in order; applying every step after a database's version brings it up to date."""

SCHEMA_VERSION = MIGRATIONS[-1][0]

_MIGRATION_LOCK = 0x72756E77  # "runw": the advisory lock key every replica migrates under


async def version_of(conn: psycopg.AsyncConnection) -> int:
    """The database's schema version; 0 for a database runwire never touched."""
    cur = await conn.execute("SELECT to_regclass('schema_version') IS NOT NULL")
    if not (await cur.fetchone())[0]:
        return 0
    cur = await conn.execute("SELECT version FROM schema_version")
    row = await cur.fetchone()
    return 0 if row is None else row[0]


async def upgrade(conn: psycopg.AsyncConnection, where: str, target: int = SCHEMA_VERSION) -> int:
    """Apply the steps after the database's version, up to `target` (tests stop early to make an
    older database), in one transaction; refuse a database newer than this collector. Returns the
    version found before."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        found = await version_of(conn)
        if found > SCHEMA_VERSION:
            raise RuntimeError(
                f"{where} has schema version {found}, newer than this collector's ({SCHEMA_VERSION}); "
                "upgrade the collector"
            )
        for version, sql in MIGRATIONS:
            if found < version <= target:
                await conn.execute(sql)
        if target > found:
            await conn.execute("DELETE FROM schema_version")
            await conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (target,))
    return found
