"""Where the collector keeps artifact bytes: a content-addressed blob store.

`ArtifactStore` is the interface; `LocalArtifactStore` keeps each distinct content once under
`<root>/<sha[:2]>/<sha[2:4]>/<sha>` (`blobstore_s3.S3ArtifactStore` keeps it in an S3 bucket). Uploads are written to a
partial file keyed by the caller (run, name, sha256), which survives an interrupted stream so the
upload can resume from its size; the bytes become a blob only by an atomic rename once their size
and sha256 match, so a half-written file is never visible under a blob name.

Methods are blocking: the service calls them on worker threads.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path

from runwire.limits import FILE_CHUNK_BYTES

log = logging.getLogger(__name__)

FSYNC_MAX_FILES = 4
"""Blobs up to which `make_durable` fsyncs each file (and its folder); more take one `sync()`."""

_SHA = re.compile(r"^[0-9a-f]{64}$")


def is_sha256(value: str) -> bool:
    return bool(_SHA.match(value))


class ChecksumMismatch(Exception):
    """The bytes received do not have the announced size or sha256."""


class PartialWrite(ABC):
    """An upload in progress; `offset` is how many bytes it holds."""

    offset: int

    @abstractmethod
    def write(self, data: bytes) -> None: ...

    @abstractmethod
    def close(self) -> None:
        """Stop writing and keep what was written (for a resume)."""

    @abstractmethod
    def discard(self) -> None:
        """Stop writing and delete what was written."""

    @abstractmethod
    def commit(self, size: int, sha256: str) -> bool:
        """Verify size and digest and make the bytes the blob `sha256` (atomically). Returns False when
        the blob already existed (the bytes are dropped). ChecksumMismatch discards the partial.
        The blob is visible at once; `ArtifactStore.make_durable` forces it to stable storage."""


class ArtifactStore(ABC):
    @abstractmethod
    def partial_size(self, key: str) -> int:
        """Bytes kept for the interrupted upload `key` (0 if none)."""

    @abstractmethod
    def open_partial(self, key: str, offset: int) -> PartialWrite:
        """Continue the upload `key` at `offset` (<= partial_size; 0 restarts it)."""

    @abstractmethod
    def make_durable(self, sha256s: list[str]) -> None:
        """Force committed blobs (data and name) to stable storage; called with many at once."""

    @abstractmethod
    def has(self, sha256: str) -> bool: ...

    @abstractmethod
    def size(self, sha256: str) -> int: ...

    @abstractmethod
    def read(self, sha256: str, offset: int = 0, chunk: int = FILE_CHUNK_BYTES) -> Iterator[bytes]:
        """The blob's bytes from `offset`, in chunks of at most `chunk` bytes."""

    @abstractmethod
    def sweep_partials(self, older_than_s: float) -> int:
        """Delete partial uploads untouched for `older_than_s`; returns how many."""


class _LocalPartial(PartialWrite):
    def __init__(self, adopt: Callable[[Path, str], bool], path: Path, offset: int) -> None:
        self._adopt = adopt
        self._path = path
        self._hash = hashlib.sha256()
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self._file = os.fdopen(fd, "r+b", buffering=0)
        # The digest covers every byte: re-read what an earlier attempt wrote before going on.
        remaining = offset
        while remaining:
            data = self._file.read(min(FILE_CHUNK_BYTES, remaining))
            if not data:
                break
            self._hash.update(data)
            remaining -= len(data)
        self.offset = offset - remaining
        self._file.seek(self.offset)
        self._file.truncate(self.offset)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = self._file.write(view)
            view = view[n:]
        self._hash.update(data)
        self.offset += len(data)

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def discard(self) -> None:
        self.close()
        self._path.unlink(missing_ok=True)

    def commit(self, size: int, sha256: str) -> bool:
        if self.offset != size or self._hash.hexdigest() != sha256:
            got = self._hash.hexdigest()
            self.close()
            self._path.unlink(missing_ok=True)
            raise ChecksumMismatch(
                f"received {self.offset} bytes with sha256 {got}, expected {size} bytes with sha256 {sha256}"
            )
        self.close()
        return self._adopt(self._path, sha256)


class PartialFolder:
    """Partial uploads as files in one folder, named by a hash of the caller's key. `adopt(path,
    sha256)` makes a verified file the blob (returns False when the blob already existed)."""

    def __init__(self, folder: Path, adopt: Callable[[Path, str], bool]) -> None:
        self.folder = folder
        self._adopt = adopt
        folder.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.folder / (hashlib.sha256(key.encode()).hexdigest() + ".part")

    def size(self, key: str) -> int:
        try:
            return self.path(key).stat().st_size
        except FileNotFoundError:
            return 0

    def open(self, key: str, offset: int) -> PartialWrite:
        return _LocalPartial(self._adopt, self.path(key), offset)

    def sweep(self, older_than_s: float) -> int:
        cutoff = time.time() - older_than_s
        removed = 0
        for path in self.folder.glob("*.part"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                pass
        return removed


class LocalArtifactStore(ArtifactStore):
    """Blobs in sharded folders under `root`; partial uploads in `root/partial/`."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.partials = self.root / "partial"
        self._partials = PartialFolder(self.partials, self._adopt)

    def blob_path(self, sha256: str) -> Path:
        if not is_sha256(sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def partial_size(self, key: str) -> int:
        return self._partials.size(key)

    def open_partial(self, key: str, offset: int) -> PartialWrite:
        return self._partials.open(key, offset)

    def _adopt(self, path: Path, sha256: str) -> bool:
        target = self.blob_path(sha256)
        if target.exists():
            path.unlink(missing_ok=True)
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
        return True

    def make_durable(self, sha256s: list[str]) -> None:
        if len(sha256s) > FSYNC_MAX_FILES:
            os.sync()  # one call for a batch: much cheaper than an fsync per small file
            return
        folders = set()
        for sha in sha256s:
            path = self.blob_path(sha)
            for target in (path, path.parent):
                if target in folders:
                    continue
                fd = os.open(target, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
                if target == path.parent:
                    folders.add(target)

    def has(self, sha256: str) -> bool:
        return is_sha256(sha256) and self.blob_path(sha256).is_file()

    def size(self, sha256: str) -> int:
        return self.blob_path(sha256).stat().st_size

    def read(self, sha256: str, offset: int = 0, chunk: int = FILE_CHUNK_BYTES) -> Iterator[bytes]:
        with open(self.blob_path(sha256), "rb", buffering=0) as f:
            f.seek(offset)
            while True:
                data = f.read(chunk)
                if not data:
                    return
                yield data

    def sweep_partials(self, older_than_s: float) -> int:
        return self._partials.sweep(older_than_s)
