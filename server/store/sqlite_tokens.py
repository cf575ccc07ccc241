"""Access tokens of the SQLite store (issue 7): one row per token in `tokens`, holding the sha256 of its
secret (never the secret), its scope, the experiments it is restricted to (a JSON list) and its times.
Plain single-statement SQL, so that other backends can mirror it."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from runwire.server.errors import AlreadyExists, NotFound
from runwire.server.records import TokenRecord

_COLUMNS = "id, secret_sha256, scope, experiments, name, created_time, last_used_time, revoked_time"


def _token(row: tuple) -> TokenRecord:
    token_id, secret_sha256, scope, experiments, name, created, last_used, revoked = row
    return TokenRecord(
        token_id=token_id,
        secret_sha256=secret_sha256,
        scope=scope,
        experiments=tuple(json.loads(experiments)),
        name=name,
        created_time=created,
        last_used_time=last_used,
        revoked_time=revoked,
    )


class SqliteTokens:
    _read: Callable[..., Any]
    _write: Callable[..., Any]

    async def create_token(self, token: TokenRecord) -> TokenRecord:
        return await self._write(self._create_token_tx, token)

    @staticmethod
    def _create_token_tx(conn: sqlite3.Connection, token: TokenRecord) -> TokenRecord:
        created = token.created_time or time.time()
        try:
            conn.execute(
                f"INSERT INTO tokens ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, NULL, NULL)",
                (token.token_id, token.secret_sha256, token.scope, json.dumps(list(token.experiments)), token.name,
                 created),
            )  # fmt: skip
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"a token with id {token.token_id!r} already exists") from None
        row = conn.execute(f"SELECT {_COLUMNS} FROM tokens WHERE id = ?", (token.token_id,)).fetchone()
        return _token(row)

    async def list_tokens(self) -> list[TokenRecord]:
        rows = await self._read(
            lambda conn: conn.execute(f"SELECT {_COLUMNS} FROM tokens ORDER BY created_time, id").fetchall()
        )
        return [_token(r) for r in rows]

    async def get_token(self, token_id: str) -> TokenRecord | None:
        row = await self._read(
            lambda conn: conn.execute(f"SELECT {_COLUMNS} FROM tokens WHERE id = ?", (token_id,)).fetchone()
        )
        return None if row is None else _token(row)

    async def revoke_token(self, token_id: str) -> TokenRecord:
        return await self._write(self._revoke_token_tx, token_id)

    @staticmethod
    def _revoke_token_tx(conn: sqlite3.Connection, token_id: str) -> TokenRecord:
        conn.execute(
            "UPDATE tokens SET revoked_time = ? WHERE id = ? AND revoked_time IS NULL", (time.time(), token_id)
        )
        row = conn.execute(f"SELECT {_COLUMNS} FROM tokens WHERE id = ?", (token_id,)).fetchone()
        if row is None:
            raise NotFound(f"no token with id {token_id!r} (`runwire token list` shows the ids)")
        return _token(row)

    async def touch_token(self, token_id: str, when: float) -> None:
        await self._write(
            lambda conn: conn.execute("UPDATE tokens SET last_used_time = ? WHERE id = ?", (when, token_id))
        )
