"""The SDK's own spool: batches the agent could not take yet, in a file per producer.

A record is `length (4) | crc32 (4) | seq (8) | Batch bytes`. The file is locked (flock) while its
producer lives, so `runwire sync` only delivers the spools of processes that are gone.
"""

from __future__ import annotations

import bisect
import fcntl
import logging
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("runwire.sdk")

RECORD = struct.Struct(">IIQ")
SPOOL_SUFFIX = ".spool"


class SdkSpool:
    """Append-only record file for one producer; created on first use."""

    def __init__(self, folder: Path, producer_id: str) -> None:
        self.path = folder / f"{producer_id}{SPOOL_SUFFIX}"
        self._fd: int | None = None
        self.records = 0  # records after the read cursor (not yet handed to the agent)
        self.total = 0  # records in the file
        self.bytes = 0
        self.max_seq = 0
        self.cursor = 0  # byte offset of the next record to hand to the agent
        self._ranges: list[list[int]] = []  # seqs in the file, as [first, last] runs

    def _open(self) -> int:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._fd = fd
        return self._fd

    def append(self, seq: int, body: bytes) -> None:
        fd = self._open()
        os.write(fd, RECORD.pack(len(body), zlib.crc32(body), seq) + body)
        self.records += 1
        self.total += 1
        self.bytes += RECORD.size + len(body)
        self.max_seq = max(self.max_seq, seq)
        if self._ranges and seq == self._ranges[-1][1] + 1:
            self._ranges[-1][1] = seq
        else:
            self._ranges.append([seq, seq])

    def holds(self, seq: int) -> bool:
        i = bisect.bisect_right(self._ranges, [seq, float("inf")]) - 1
        return i >= 0 and self._ranges[i][0] <= seq <= self._ranges[i][1]

    def read_next(self, max_bytes: int) -> list[tuple[int, bytes]]:
        """Records from the cursor on, about `max_bytes` of them, advancing the cursor; a damaged
        record is reported and skipped."""
        out: list[tuple[int, bytes]] = []
        if self._fd is None:
            return out
        taken = 0
        while self.cursor + RECORD.size <= self.bytes and (not out or taken < max_bytes):
            length, crc, seq = RECORD.unpack(os.pread(self._fd, RECORD.size, self.cursor))
            body = os.pread(self._fd, length, self.cursor + RECORD.size)
            self.cursor += RECORD.size + length
            self.records = max(0, self.records - 1)
            taken += length
            if len(body) != length or zlib.crc32(body) != crc:
                log.error(
                    "damaged record in SDK spool %s before offset %d (seq %d); skipped", self.path, self.cursor, seq
                )
                continue
            out.append((seq, body))
        return out

    def rewind(self) -> None:
        """Hand every record to the agent again (after a lost connection)."""
        self.cursor = 0
        self.records = self.total

    def remove(self) -> None:
        """Delete the file (every record in it is acknowledged)."""
        if self._fd is not None:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
            os.close(self._fd)
            self._fd = None
        self.records = self.total = self.bytes = self.cursor = 0
        self._ranges = []

    def release(self) -> None:
        """Close without deleting: the records stay for `runwire sync`."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def forget(self) -> None:
        """In a forked child: drop the parent's descriptor without touching the file."""
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None


def read_records(path: Path) -> Iterator[tuple[int, bytes]]:
    """(seq, Batch bytes) of every intact record; a damaged record is reported and skipped."""
    data = path.read_bytes()
    pos = 0
    while pos + RECORD.size <= len(data):
        length, crc, seq = RECORD.unpack_from(data, pos)
        body = data[pos + RECORD.size : pos + RECORD.size + length]
        if len(body) < length:
            log.error("truncated record at the end of SDK spool %s (offset %d); it is skipped", path, pos)
            return
        pos += RECORD.size + length
        if zlib.crc32(body) != crc:
            log.error("checksum mismatch in SDK spool %s at offset %d (seq %d); record skipped", path, pos, seq)
            continue
        yield seq, body


def orphan_spools(folder: Path) -> Iterator[Path]:
    """Spool files whose producer is gone (no lock held)."""
    if not folder.is_dir():
        return
    for path in sorted(folder.glob(f"*{SPOOL_SUFFIX}")):
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        os.close(fd)
        yield path
