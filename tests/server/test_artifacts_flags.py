"""`runwire server --artifacts` / `--s3-endpoint` as a process: a bucket that cannot be used stops the
start with a message naming it; `--s3-endpoint` without an s3:// store is a usage error."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.s3_server import S3_ENV, moto_s3


def _server(tmp_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "runwire.server", "--data-dir", str(tmp_path / "c"), "--grpc-listen", "127.0.0.1:0",
         "--http-listen", "off", "--auth", "off", *args],
        env={**os.environ, **S3_ENV}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_a_missing_bucket_stops_the_collector_naming_it(tmp_path):
    with moto_s3() as endpoint:
        result = _server(tmp_path, "--artifacts", "s3://no-such-bucket/p", "--s3-endpoint", endpoint)
    assert result.returncode == 1
    assert "no-such-bucket" in result.stderr and endpoint in result.stderr


def test_s3_endpoint_needs_an_s3_store(tmp_path):
    result = _server(tmp_path, "--s3-endpoint", "http://127.0.0.1:9")
    assert result.returncode == 2 and "--s3-endpoint needs --artifacts s3://" in result.stderr
