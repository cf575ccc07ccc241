"""An S3 server for tests: moto's ThreadedMotoServer on an ephemeral loopback port."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
"""Credentials moto accepts; set for the test process and given to collector processes."""


@contextlib.contextmanager
def moto_s3() -> Iterator[str]:
    """Run an S3 server in this process; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def new_bucket(endpoint: str) -> str:
    """Create a bucket with a fresh name on `endpoint`; returns its name."""
    import boto3

    name = f"rw-{uuid.uuid4().hex[:16]}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **_keys()).create_bucket(Bucket=name)
    return name


def _keys() -> dict[str, str]:
    return {"aws_access_key_id": S3_ENV["AWS_ACCESS_KEY_ID"], "aws_secret_access_key": S3_ENV["AWS_SECRET_ACCESS_KEY"]}
