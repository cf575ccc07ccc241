"""The collector's content-addressed blob stores (a local folder and an S3 bucket, the same suite):
atomic commits, resumable partials, dedup, ranged reads."""

from __future__ import annotations

import hashlib
import os
import time

import pytest

from runwire.server.artifact_stores import open_artifact_store
from runwire.server.blobstore import ArtifactStore, ChecksumMismatch, LocalArtifactStore
from runwire.server.blobstore_s3 import S3ArtifactStore, S3ConfigError, make_client, parse_s3_url
from tests.s3_server import S3_ENV, moto_s3, new_bucket


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def s3_endpoint():
    with moto_s3() as endpoint:
        yield endpoint


@pytest.fixture
def s3_env(monkeypatch):
    for key, value in S3_ENV.items():
        monkeypatch.setenv(key, value)


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path, s3_env) -> ArtifactStore:
    if request.param == "local":
        return LocalArtifactStore(tmp_path / "blobs")
    endpoint = request.getfixturevalue("s3_endpoint")
    return S3ArtifactStore.open(f"s3://{new_bucket(endpoint)}/runs/blobs", tmp_path / "staging", endpoint=endpoint)


def blobs(store: ArtifactStore) -> list[str]:
    """Every committed blob's name (path or key) in the store."""
    if isinstance(store, LocalArtifactStore):
        return sorted(
            str(p.relative_to(store.root)) for p in store.root.rglob("*") if p.is_file() and "partial" not in p.parts
        )
    reply = store.client.list_objects_v2(Bucket=store.bucket)
    return sorted(o["Key"] for o in reply.get("Contents", []))


def test_commit_is_sharded_and_content_addressed(store):
    data = os.urandom(3000)
    digest = sha(data)
    w = store.open_partial("k1", 0)
    w.write(data[:1000])
    assert blobs(store) == [] and not store.has(digest)  # nothing visible before the commit
    w.write(data[1000:])
    assert w.commit(len(data), digest) is True
    name = f"{digest[:2]}/{digest[2:4]}/{digest}"
    assert blobs(store) == [name if isinstance(store, LocalArtifactStore) else f"runs/blobs/{name}"]
    assert store.has(digest) and store.size(digest) == 3000
    assert b"".join(store.read(digest, chunk=1024)) == data
    assert all(len(c) <= 1024 for c in store.read(digest, chunk=1024))
    assert b"".join(store.read(digest, offset=2500)) == data[2500:]
    assert b"".join(store.read(digest, offset=3000)) == b""
    # The same bytes again: stored once.
    w = store.open_partial("k2", 0)
    w.write(data)
    assert w.commit(len(data), digest) is False
    assert len(blobs(store)) == 1
    assert store.partial_size("k2") == 0
    store.make_durable([digest])


def test_checksum_or_size_mismatch_discards(store):
    w = store.open_partial("k", 0)
    w.write(b"abc")
    with pytest.raises(ChecksumMismatch):
        w.commit(3, sha(b"abd"))
    w = store.open_partial("k", 0)
    w.write(b"abc")
    with pytest.raises(ChecksumMismatch):
        w.commit(4, sha(b"abc"))
    assert blobs(store) == [] and store.partial_size("k") == 0 and not store.has(sha(b"abc"))


def test_resume_keeps_the_digest_right(store):
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
    assert store.partial_size("k") == 0


def test_discard_forgets_the_partial(store):
    w = store.open_partial("k", 0)
    w.write(b"half")
    w.discard()
    assert store.partial_size("k") == 0


def test_empty_blob(store):
    w = store.open_partial("e", 0)
    assert w.commit(0, sha(b"")) is True
    assert store.has(sha(b"")) and store.size(sha(b"")) == 0 and b"".join(store.read(sha(b""))) == b""


def test_sweep_partials(store):
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


def test_refuses_non_digests_and_reports_missing_blobs(store):
    assert not store.has("../../etc/passwd")
    missing = sha(b"never stored")
    assert not store.has(missing)
    with pytest.raises(FileNotFoundError):
        store.size(missing)
    with pytest.raises(FileNotFoundError):
        b"".join(store.read(missing))
    with pytest.raises(ValueError):
        b"".join(store.read("../" + "a" * 61))


def test_a_second_store_on_the_bucket_sees_the_blobs(s3_endpoint, s3_env, tmp_path):
    """Two collector replicas share one bucket: what one commits, the other reads."""
    url = f"s3://{new_bucket(s3_endpoint)}/p"
    one = S3ArtifactStore.open(url, tmp_path / "one", endpoint=s3_endpoint)
    two = S3ArtifactStore.open(url, tmp_path / "two", endpoint=s3_endpoint)
    data = os.urandom(10_000)
    w = one.open_partial("k", 0)
    w.write(data)
    assert w.commit(len(data), sha(data))
    assert two.has(sha(data)) and b"".join(two.read(sha(data), offset=9000)) == data[9000:]
    w = two.open_partial("k", 0)
    w.write(data)
    assert w.commit(len(data), sha(data)) is False  # already there: not stored twice


def test_large_blob_goes_up_as_multipart(s3_endpoint, s3_env, tmp_path, monkeypatch):
    monkeypatch.setattr("runwire.server.blobstore_s3.S3_MULTIPART_BYTES", 5 * 1024 * 1024)
    store = S3ArtifactStore.open(f"s3://{new_bucket(s3_endpoint)}", tmp_path / "s", endpoint=s3_endpoint)
    data = os.urandom(11 * 1024 * 1024)
    w = store.open_partial("big", 0)
    for i in range(0, len(data), 1 << 20):
        w.write(data[i : i + (1 << 20)])
    assert w.commit(len(data), sha(data))
    head = store.client.head_object(Bucket=store.bucket, Key=store.key(sha(data)))
    assert head["ETag"].strip('"').endswith("-3")  # three parts
    assert b"".join(store.read(sha(data))) == data


def test_s3_urls_and_bad_buckets(s3_endpoint, s3_env, tmp_path):
    assert parse_s3_url("s3://bucket") == ("bucket", "")
    assert parse_s3_url("s3://bucket/a/b/") == ("bucket", "a/b")
    for bad in ("s3:///x", "http://bucket/x", "s3://bucket/x?y=1"):
        with pytest.raises(ValueError, match="s3://BUCKET"):
            parse_s3_url(bad)
    with pytest.raises(S3ConfigError, match="no-such-bucket"):
        S3ArtifactStore.open("s3://no-such-bucket/x", tmp_path, endpoint=s3_endpoint)
    assert make_client(s3_endpoint).meta.endpoint_url == s3_endpoint


def test_open_artifact_store_by_spec(s3_endpoint, s3_env, tmp_path):
    default = open_artifact_store(None, tmp_path, tmp_path / "artifacts")
    assert isinstance(default, LocalArtifactStore) and default.root == tmp_path / "artifacts"
    folder = open_artifact_store(str(tmp_path / "elsewhere"), tmp_path, tmp_path / "artifacts")
    assert isinstance(folder, LocalArtifactStore) and folder.root == tmp_path / "elsewhere"
    bucket = new_bucket(s3_endpoint)
    s3 = open_artifact_store(f"s3://{bucket}/pre", tmp_path, tmp_path / "artifacts", s3_endpoint=s3_endpoint)
    assert isinstance(s3, S3ArtifactStore) and s3.describe() == f"s3://{bucket}/pre"
    assert s3.partials == tmp_path / "s3-staging"
    with pytest.raises(ValueError, match="--s3-endpoint"):
        open_artifact_store(None, tmp_path, tmp_path / "artifacts", s3_endpoint=s3_endpoint)
