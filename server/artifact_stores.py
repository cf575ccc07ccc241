"""The collector's artifact store from `runwire server --artifacts`: a local folder (the default,
`<data-dir>/artifacts`) or an S3 bucket (`s3://BUCKET/PREFIX`, see `blobstore_s3`)."""

from __future__ import annotations

from pathlib import Path

from runwire.server.blobstore import ArtifactStore, LocalArtifactStore

S3_STAGING_DIR = "s3-staging"
"""Folder inside the collector's data folder where uploads to an S3 store are staged until verified."""


def open_artifact_store(
    spec: str | None, data_dir: Path, default_dir: Path, s3_endpoint: str | None = None
) -> ArtifactStore:
    """`spec`: None for `default_dir`, `s3://bucket/prefix`, or a folder. Raises OSError (S3ConfigError)
    when the bucket cannot be used."""
    if spec and spec.startswith("s3://"):
        from runwire.server.blobstore_s3 import S3ArtifactStore

        return S3ArtifactStore.open(spec, data_dir / S3_STAGING_DIR, endpoint=s3_endpoint)
    if s3_endpoint:
        raise ValueError("--s3-endpoint is only meaningful with --artifacts s3://BUCKET/PREFIX")
    return LocalArtifactStore(Path(spec).expanduser() if spec else default_dir)


def describe(blobs: ArtifactStore) -> str:
    describe_fn = getattr(blobs, "describe", None)
    if describe_fn is not None:
        return describe_fn()
    return str(getattr(blobs, "root", type(blobs).__name__))
