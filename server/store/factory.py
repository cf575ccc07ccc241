"""The store a collector uses, from `runwire server --store URL`: `sqlite:///PATH` (or `sqlite:PATH`),
`postgresql://…` (also `postgres://…`), or, without a URL, the embedded SQLite file in the data folder."""

from __future__ import annotations

from pathlib import Path

from runwire.server.store.base import Store

SQLITE_FILE = "runwire.sqlite3"
"""The SQLite database's file name inside the collector's data folder (the default store)."""

STORE_URL_RULE = "sqlite:///ABSOLUTE/PATH, sqlite:RELATIVE/PATH or postgresql://USER@HOST[:PORT]/DATABASE"


def sqlite_path(url: str) -> Path:
    """The file a `sqlite:` URL names."""
    rest = url.split(":", 1)[1]
    if rest.startswith("//"):
        if not rest.startswith("///"):
            raise ValueError(f"store URL {url!r}: a SQLite URL names a file, not a host (use {STORE_URL_RULE})")
        rest = rest[2:]
    if not rest:
        raise ValueError(f"store URL {url!r} names no file (use {STORE_URL_RULE})")
    return Path(rest)


def check_store_url(url: str) -> str:
    """`url` when it names a store this collector can use, else ValueError naming the rule."""
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "sqlite":
        sqlite_path(url)
    elif scheme not in ("postgresql", "postgres"):
        raise ValueError(f"unknown store URL {url!r}: use {STORE_URL_RULE}")
    return url


def make_store(url: str | None, data_dir: Path) -> Store:
    """The (unopened) store `url` names; None = SQLite in `data_dir`."""
    if not url:
        from runwire.server.store.sqlite import SqliteStore

        return SqliteStore(Path(data_dir) / SQLITE_FILE)
    check_store_url(url)
    if url.lower().startswith("sqlite:"):
        from runwire.server.store.sqlite import SqliteStore

        return SqliteStore(sqlite_path(url))
    from runwire.server.store.postgres import PostgresStore

    return PostgresStore(url)
