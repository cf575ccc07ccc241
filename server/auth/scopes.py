"""Token scopes, each including the ones below it: `read` < `write` < `admin`."""

from __future__ import annotations

from enum import IntEnum


class Scope(IntEnum):
    READ = 1
    """Queries, live subscriptions, downloads, studio pages and API, status."""
    WRITE = 2
    """read + ingest, creating and updating runs, tags, uploads, submit, cancel, the node Work stream."""
    ADMIN = 3
    """write + token management."""

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Scope:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown scope {text!r}: use read, write or admin") from None

    def allows(self, needed: Scope) -> bool:
        return self >= needed


SCOPE_NAMES = tuple(s.label for s in Scope)
