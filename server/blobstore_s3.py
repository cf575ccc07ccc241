"""Artifact blobs in an S3 bucket (AWS S3 or an S3-compatible server such as MinIO).

`runwire server --artifacts s3://BUCKET/PREFIX [--s3-endpoint URL]`. Each distinct content is one
object, `PREFIX/<sha[:2]>/<sha[2:4]>/<sha>`, so collector replicas sharing the bucket share every
blob. Credentials and region come from boto3's usual sources (`AWS_ACCESS_KEY_ID`,
`AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` / `AWS_DEFAULT_REGION`, `AWS_PROFILE`, an
instance or pod role); `--s3-endpoint` (or `AWS_ENDPOINT_URL_S3`) points at another server, with
path-style addressing.

An upload in progress is staged in a local file of the collector (`<data-dir>/s3-staging/`), with
the same semantics as the local store: `partial_size` tells how much a broken stream left, the
upload resumes from there on the same replica (another replica starts it over), and `commit`
checks the size and sha256 before the bytes are put into the bucket (boto3's managed transfer:
multipart above `S3_MULTIPART_BYTES`). A PUT is atomic, so a half-written blob is never visible, and
durable once it returns, so `make_durable` has nothing to do. Blobs are never deleted, so `has` and
`size` remember what they saw.

Methods are blocking: the service calls them on worker threads (a boto3 client is thread-safe).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from runwire.limits import FILE_CHUNK_BYTES
from runwire.server.blobstore import ArtifactStore, PartialFolder, PartialWrite, is_sha256

log = logging.getLogger(__name__)

S3_MULTIPART_BYTES = 64 * 1024 * 1024
"""Blobs from this size on are put into the bucket as multipart uploads (in parts of this size)."""
S3_MAX_POOL_CONNECTIONS = 32
"""HTTP connections the collector's S3 client keeps open at most."""

_MISSING = ("404", "NoSuchKey", "NotFound")


class S3ConfigError(OSError):
    """The S3 artifact store cannot be used (bad URL, missing bucket, unreachable endpoint)."""


def parse_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket[/prefix]` to (bucket, prefix without slashes at the ends)."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc or parsed.query or parsed.fragment:
        raise ValueError(f"expected s3://BUCKET[/PREFIX], got {url!r}")
    return parsed.netloc, parsed.path.strip("/")


def make_client(endpoint: str | None = None) -> Any:
    import boto3
    from botocore.config import Config

    session = boto3.session.Session()
    endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None
    config = Config(
        retries={"max_attempts": 5, "mode": "standard"},
        max_pool_connections=S3_MAX_POOL_CONNECTIONS,
        s3={"addressing_style": "path"} if endpoint else None,
    )
    return session.client("s3", endpoint_url=endpoint, region_name=session.region_name or "us-east-1", config=config)


def _missing(e: Exception) -> bool:
    response = getattr(e, "response", None) or {}
    return str(response.get("Error", {}).get("Code", "")) in _MISSING


class S3ArtifactStore(ArtifactStore):
    def __init__(self, bucket: str, prefix: str, client: Any, staging: str | os.PathLike[str]) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client
        self.partials = Path(staging)
        self._partials = PartialFolder(self.partials, self._adopt)
        self._sizes: dict[str, int] = {}  # blobs seen in the bucket (they never change or go away)
        self._lock = threading.Lock()

    @classmethod
    def open(cls, url: str, staging: str | os.PathLike[str], endpoint: str | None = None) -> S3ArtifactStore:
        """The store for `s3://bucket/prefix`, after checking that the bucket answers."""
        try:
            bucket, prefix = parse_s3_url(url)
        except ValueError as e:
            raise S3ConfigError(f"--artifacts: {e}") from None
        client = make_client(endpoint)
        try:
            client.head_bucket(Bucket=bucket)
        except Exception as e:
            where = endpoint or client.meta.endpoint_url
            raise S3ConfigError(f"S3 bucket {bucket!r} at {where} cannot be used: {e}") from None
        return cls(bucket, prefix, client, staging)

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def key(self, sha256: str) -> str:
        if not is_sha256(sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        name = f"{sha256[:2]}/{sha256[2:4]}/{sha256}"
        return f"{self.prefix}/{name}" if self.prefix else name

    # --- uploads ----------------------------------------------------------------------------------

    def partial_size(self, key: str) -> int:
        return self._partials.size(key)

    def open_partial(self, key: str, offset: int) -> PartialWrite:
        return self._partials.open(key, offset)

    def sweep_partials(self, older_than_s: float) -> int:
        return self._partials.sweep(older_than_s)

    def _adopt(self, path: Path, sha256: str) -> bool:
        """Put a verified staging file into the bucket as the blob `sha256`."""
        from boto3.s3.transfer import TransferConfig

        try:
            if self.has(sha256):
                return False
            size = path.stat().st_size
            transfer = TransferConfig(
                multipart_threshold=S3_MULTIPART_BYTES, multipart_chunksize=S3_MULTIPART_BYTES, use_threads=False
            )
            self.client.upload_file(
                str(path),
                self.bucket,
                self.key(sha256),
                ExtraArgs={"ContentType": "application/octet-stream"},
                Config=transfer,
            )
            with self._lock:
                self._sizes[sha256] = size
            return True
        finally:
            path.unlink(missing_ok=True)

    def make_durable(self, sha256s: list[str]) -> None:
        """Nothing to do: a PUT that returned is durable."""

    # --- reads ------------------------------------------------------------------------------------

    def _head(self, sha256: str) -> int | None:
        with self._lock:
            known = self._sizes.get(sha256)
        if known is not None:
            return known
        try:
            reply = self.client.head_object(Bucket=self.bucket, Key=self.key(sha256))
        except Exception as e:
            if _missing(e):
                return None
            raise
        size = int(reply["ContentLength"])
        with self._lock:
            self._sizes[sha256] = size
        return size

    def has(self, sha256: str) -> bool:
        return is_sha256(sha256) and self._head(sha256) is not None

    def size(self, sha256: str) -> int:
        size = self._head(sha256)
        if size is None:
            raise FileNotFoundError(f"no blob {sha256} in {self.describe()}")
        return size

    def read(self, sha256: str, offset: int = 0, chunk: int = FILE_CHUNK_BYTES) -> Iterator[bytes]:
        if offset >= self.size(sha256):
            return
        reply = self.client.get_object(Bucket=self.bucket, Key=self.key(sha256), Range=f"bytes={offset}-")
        body = reply["Body"]
        with contextlib.closing(body):
            yield from body.iter_chunks(chunk)
