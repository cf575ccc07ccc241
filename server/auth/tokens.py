"""The access token format: `rwt_<id>_<secret>`, id = 12 lowercase hex characters, secret = 43
characters of urlsafe base64 (32 random bytes, no padding). Stores keep only sha256(secret) in hex."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

TOKEN_PREFIX = "rwt_"
TOKEN_ID_HEX_CHARS = 12
TOKEN_SECRET_BYTES = 32
_TOKEN_RE = re.compile(r"rwt_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")


class MalformedToken(ValueError):
    """Not `rwt_<12 hex>_<43 urlsafe base64>`."""


@dataclass(frozen=True)
class ParsedToken:
    token_id: str
    secret: str

    def __repr__(self) -> str:  # never print the secret
        return f"ParsedToken(token_id={self.token_id!r}, secret=...)"


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def secret_matches(secret: str, secret_sha256: str) -> bool:
    """Constant-time comparison of the secret's sha256 with the stored one."""
    return hmac.compare_digest(hash_secret(secret), secret_sha256)


def parse_token(text: str) -> ParsedToken:
    m = _TOKEN_RE.fullmatch(text.strip())
    if m is None:
        raise MalformedToken(
            "a runwire token is rwt_<12 hex characters>_<43 characters of urlsafe base64> "
            "(as printed by `runwire token create`)"
        )
    return ParsedToken(m.group(1), m.group(2))


def new_token() -> tuple[str, ParsedToken]:
    """A fresh random token: (its text, its parts)."""
    token_id = secrets.token_hex(TOKEN_ID_HEX_CHARS // 2)
    secret = secrets.token_urlsafe(TOKEN_SECRET_BYTES)
    assert len(secret) == 43
    return f"{TOKEN_PREFIX}{token_id}_{secret}", ParsedToken(token_id, secret)
