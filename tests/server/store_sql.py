"""Raw SQL on a test's store, whichever the backend (imported by name: tests/server is on sys.path):
for the few tests that look at how rows are stored."""

from __future__ import annotations

import sqlite3

from runwire.server.store.base import Store
from runwire.server.store.postgres import PostgresStore
from runwire.server.store.sqlite import SqliteStore
from tests import pgtest


def rows(store: Store, query: str) -> list[tuple]:
    """The rows `query` (plain SQL both backends read alike, no parameters) returns."""
    if isinstance(store, SqliteStore):
        con = sqlite3.connect(store.path)
        try:
            return con.execute(query).fetchall()
        finally:
            con.close()
    assert isinstance(store, PostgresStore)
    return pgtest.rows(store.url, query)
