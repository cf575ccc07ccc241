"""The SQLite store's schema: the DDL of every table and index (`_SCHEMA`, all IF NOT EXISTS),
`SCHEMA_VERSION`, the page size of new databases, and `upgrade`, which brings a database of an older
version (1 to 5) up to the current one in place when the writer opens it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

SCHEMA_VERSION = 6
"""6: the request id that created each run (idempotent retries of run creation; older runs get '');
5: access tokens (issue 7); 4: the status history of runs (issue 6); 3: jobs, nodes and log lines
(issue 4); 2: the per-producer dedup floor. Older databases are upgraded in place when opened (every
table and index is created IF NOT EXISTS, so a v4 database just gains the empty `tokens` table; a v3
database's runs get their current status as their history)."""
PAGE_SIZE = 16384
"""SQLite page size for new databases: fewer overflow pages per chunk blob."""

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
    request_id TEXT NOT NULL DEFAULT '',
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
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    secret_sha256 TEXT NOT NULL,
    scope TEXT NOT NULL,
    experiments TEXT NOT NULL DEFAULT '[]',
    name TEXT NOT NULL DEFAULT '',
    created_time REAL NOT NULL,
    last_used_time REAL,
    revoked_time REAL
);
"""


def upgrade(conn: sqlite3.Connection, path: Path) -> None:
    """Create the schema of a new database, or upgrade an older one in place, and stamp it with
    `SCHEMA_VERSION`; refuse a database newer than this collector."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise RuntimeError(f"{path} has schema version {version}, newer than this collector's")
    conn.executescript(_SCHEMA)
    columns = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
    if "request_id" not in columns:  # a database older than 6: its runs can be no retry's, '' matches none
        conn.execute("ALTER TABLE runs ADD COLUMN request_id TEXT NOT NULL DEFAULT ''")
    if 0 < version < 4:  # runs of an older database: their current status is all the history known
        conn.execute(
            "INSERT INTO status_history (run_id, status, time) "
            "SELECT id, status, COALESCE(end_time, start_time, created_time) FROM runs "
            "WHERE id NOT IN (SELECT run_id FROM status_history)"
        )
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
