"""Access tokens of the PostgreSQL store (issue 7): the `tokens` table (schema v3) as in the SQLite
store, with the same row layout (`sqlite_tokens` turns a row into a `TokenRecord` for both)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import errors as pg_errors

from runwire.server.errors import AlreadyExists, NotFound
from runwire.server.records import TokenRecord
from runwire.server.store.postgres_runs import _all, _one
from runwire.server.store.sqlite_tokens import _COLUMNS, _token

Conn = psycopg.AsyncConnection


class PostgresTokens:
    """`PostgresStore`'s access tokens."""

    # provided by `PostgresStore` (postgres.py)
    _read: Callable[..., Any]
    _write: Callable[..., Any]

    async def create_token(self, token: TokenRecord) -> TokenRecord:
        return await self._write(self._create_token_tx, token)

    @staticmethod
    async def _create_token_tx(conn: Conn, token: TokenRecord) -> TokenRecord:
        created = token.created_time or time.time()
        try:
            row = await _one(
                conn,
                f"INSERT INTO tokens ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, NULL, NULL) RETURNING {_COLUMNS}",
                (token.token_id, token.secret_sha256, token.scope, json.dumps(list(token.experiments)), token.name,
                 created),
            )  # fmt: skip
        except pg_errors.UniqueViolation:
            raise AlreadyExists(f"a token with id {token.token_id!r} already exists") from None
        assert row is not None
        return _token(row)

    async def list_tokens(self) -> list[TokenRecord]:
        rows = await self._read(lambda conn: _all(conn, f"SELECT {_COLUMNS} FROM tokens ORDER BY created_time, id"))
        return [_token(r) for r in rows]

    async def get_token(self, token_id: str) -> TokenRecord | None:
        row = await self._read(lambda conn: _one(conn, f"SELECT {_COLUMNS} FROM tokens WHERE id = %s", (token_id,)))
        return None if row is None else _token(row)

    async def revoke_token(self, token_id: str) -> TokenRecord:
        return await self._write(self._revoke_token_tx, token_id)

    @staticmethod
    async def _revoke_token_tx(conn: Conn, token_id: str) -> TokenRecord:
        await conn.execute(
            "UPDATE tokens SET revoked_time = %s WHERE id = %s AND revoked_time IS NULL", (time.time(), token_id)
        )
        row = await _one(conn, f"SELECT {_COLUMNS} FROM tokens WHERE id = %s", (token_id,))
        if row is None:
            raise NotFound(f"no token with id {token_id!r} (`runwire token list` shows the ids)")
        return _token(row)

    async def touch_token(self, token_id: str, when: float) -> None:
        await self._write(
            lambda conn: conn.execute("UPDATE tokens SET last_used_time = %s WHERE id = %s", (when, token_id))
        )
