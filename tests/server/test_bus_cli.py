"""`runwire server --bus/--bus-stream` as a real process: bad values are refused with the rule, an
unreachable NATS server fails the start within NATS_CONNECT_TIMEOUT_S, and a good one serves."""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.request

import pytest

from runwire.server import limits as server_limits
from tests.natsd import NATS_URL, delete_stream_sync, fresh_stream, skip_reason
from tests.procs import Proc, short_tmpdir


def server(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    root = short_tmpdir()
    return subprocess.run(
        [sys.executable, "-m", "runwire.server", "--data-dir", str(root), "--grpc-listen", "127.0.0.1:0",
         "--http-listen", "off", "--auth", "off", *args],
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("args", "rule"),
    [
        (["--bus", "redis://h:1"], "must be 'inprocess' or nats://HOST:PORT"),
        (["--bus", "nats://h:1?stream=a.b"], "letters, digits"),
        (["--bus", "nats://h:1", "--bus-stream", "x y"], "letters, digits"),
        (["--bus-stream", "S"], "--bus-stream needs --bus"),
    ],
)
def test_bad_bus_options_are_refused_with_the_rule(args, rule):
    out = server(*args)
    assert out.returncode == 2 and rule in out.stderr, out.stderr


def test_an_unreachable_nats_server_fails_the_start():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        out = server("--bus", f"nats://127.0.0.1:{port}", timeout=server_limits.NATS_CONNECT_TIMEOUT_S + 60)
    assert out.returncode == 1
    assert f"cannot reach the live bus at nats://127.0.0.1:{port}" in out.stderr + out.stdout


@pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")
def test_a_collector_on_the_nats_bus_says_so_in_its_log_and_metrics():
    stream = fresh_stream()
    root = short_tmpdir()
    proc = Proc(
        "collector",
        ["runwire.server", "--data-dir", str(root), "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
         "--auth", "off", "--bus", f"{NATS_URL}?stream={stream}"],
        root / "ready.json",
        root / "server.log",
    ).start()  # fmt: skip
    try:
        assert f"stream {stream}" in proc.log_tail()
        with urllib.request.urlopen(f"http://{proc.info['http']}/metrics", timeout=30) as r:
            metrics = r.read().decode()
        assert "runwire_collector_bus_connected 1.0" in metrics and "runwire_collector_bus_unsent 0.0" in metrics
    finally:
        assert proc.stop() == 0
        delete_stream_sync(NATS_URL, stream)
