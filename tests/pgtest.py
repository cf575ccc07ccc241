"""PostgreSQL for the tests: throwaway databases on the local server (`RUNWIRE_TEST_PG`, default
postgresql://postgres@127.0.0.1:5432), each named runwire_test_<random hex> and dropped afterwards."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from psycopg import sql

SERVER = os.environ.get("RUNWIRE_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
"""The PostgreSQL server the tests make their databases on (trust auth, a superuser)."""


def _admin() -> psycopg.Connection:
    return psycopg.connect(f"{SERVER}/postgres", autocommit=True, connect_timeout=5)


def unavailable() -> str | None:
    """Why PostgreSQL cannot be used here, or None when it can."""
    try:
        with _admin():
            return None
    except psycopg.OperationalError as e:
        return f"no PostgreSQL server at {SERVER} ({str(e).strip().splitlines()[0]})"


def create_database() -> str:
    """A new empty database; its URL."""
    name = f"runwire_test_{secrets.token_hex(6)}"
    with _admin() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return f"{SERVER}/{name}"


@contextmanager
def throwaway_database() -> Iterator[str]:
    """A new empty database for one test (skipping it, with the reason, where no server answers);
    dropped afterwards."""
    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)
    url = create_database()
    try:
        yield url
    finally:
        drop_database(url)


def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with _admin() as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def truncate(url: str) -> None:
    """Empty every table of runwire's schema but its version (identities start again at 1)."""
    with psycopg.connect(url, autocommit=True) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_version'"
            )
        ]
        if tables:
            conn.execute(
                sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(sql.SQL(", ").join(map(sql.Identifier, tables)))
            )


def rows(url: str, query: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()
