"""The collector's content-addressed local blob store: atomic commits, resumable partials, dedup."""

from __future__ import annotations

import hashlib
import os
import time

import pytest

from runwire.server.blobstore import ChecksumMismatch, LocalArtifactStore


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def blob_files(store: LocalArtifactStore) -> list:
    return [p for p in store.root.rglob("*") if p.is_file() and "partial" not in p.parts]


def test_commit_is_sharded_and_content_addressed(tmp_path):
    store = LocalArtifactStore(tmp_path)
    data = os.urandom(3000)
    w = store.open_partial("k1", 0)
    w.write(data[:1000])
    assert blob_files(store) == []  # nothing visible before the commit
    w.write(data[1000:])
    assert w.commit(len(data), sha(data)) is True
    digest = sha(data)
    path = tmp_path / digest[:2] / digest[2:4] / digest
    assert path.read_bytes() == data and store.has(digest) and store.size(digest) == 3000
    assert b"".join(store.read(digest, chunk=1024)) == data
    assert b"".join(store.read(digest, offset=2500)) == data[2500:]
    # The same bytes again: stored once.
    w = store.open_partial("k2", 0)
    w.write(data)
    assert w.commit(len(data), digest) is False
    assert blob_files(store) == [path]
    assert store.partial_size("k2") == 0


def test_checksum_or_size_mismatch_discards(tmp_path):
    store = LocalArtifactStore(tmp_path)
    w = store.open_partial("k", 0)
    w.write(b"abc")
    with pytest.raises(ChecksumMismatch):
        w.commit(3, sha(b"abd"))
    w = store.open_partial("k", 0)
    w.write(b"abc")
    with pytest.raises(ChecksumMismatch):
        w.commit(4, sha(b"abc"))
    assert blob_files(store) == [] and store.partial_size("k") == 0


def test_resume_keeps_the_digest_right(tmp_path):
    store = LocalArtifactStore(tmp_path)
    data = os.urandom(5000)
    w = store.open_partial("k", 0)
    w.write(data[:3000])
    w.close()  # the stream broke
    assert store.partial_size("k") == 3000
    w = store.open_partial("k", 2000)  # resume earlier than what is kept: the rest is overwritten
    assert w.offset == 2000
    w.write(data[2000:])
    assert w.commit(len(data), sha(data))
    assert b"".join(store.read(sha(data))) == data


def test_sweep_partials(tmp_path):
    store = LocalArtifactStore(tmp_path)
    w = store.open_partial("old", 0)
    w.write(b"x")
    w.close()
    old = next(store.partials.glob("*.part"))
    past = time.time() - 3600
    os.utime(old, (past, past))
    w = store.open_partial("new", 0)
    w.write(b"y")
    w.close()
    assert store.sweep_partials(600) == 1
    assert store.partial_size("old") == 0 and store.partial_size("new") == 1


def test_refuses_non_digests(tmp_path):
    store = LocalArtifactStore(tmp_path)
    assert not store.has("../../etc/passwd")
    with pytest.raises(ValueError):
        store.blob_path("../" + "a" * 61)
