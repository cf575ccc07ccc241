"""NATS for the multi-replica tests: the machine's server (127.0.0.1:4222, or `RUNWIRE_TEST_NATS`), a
fresh stream name per test, and a private `nats-server` process a test may stop and start again."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from tests.procs import short_tmpdir, wait_for

NATS_URL = os.environ.get("RUNWIRE_TEST_NATS", "nats://127.0.0.1:4222")
NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


def reachable(url: str = NATS_URL, timeout: float = 1.0) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port or 4222), timeout=timeout):
            return True
    except OSError:
        return False


def skip_reason(url: str = NATS_URL) -> str | None:
    if not reachable(url):
        return f"no NATS server with JetStream at {url} (set RUNWIRE_TEST_NATS; CI starts one)"
    return None


def fresh_stream(prefix: str = "RWTEST") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


async def delete_stream(url: str, stream: str) -> None:
    import nats

    nc = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=1)
    try:
        await nc.jetstream().delete_stream(stream)
    except Exception:
        pass
    finally:
        await nc.close()


def delete_stream_sync(url: str, stream: str) -> None:
    asyncio.run(delete_stream(url, stream))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateNats:
    """A `nats-server -js` of the test's own, on a free port, with its store in a temp folder:
    `stop()` and `start()` again on the same port and store (a restart)."""

    def __init__(self) -> None:
        self.root = short_tmpdir("nats")
        self.port = _free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> PrivateNats:
        log = open(self.root / "nats.log", "ab")  # noqa: SIM115 - the process holds it
        self.proc = subprocess.Popen(
            [NATS_SERVER, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.root / "store")],
            stdout=log,
            stderr=log,
        )
        log.close()
        wait_for(lambda: self._ready(), 20, f"nats-server on port {self.port}")
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"nats-server exited with {self.proc.returncode}:\n{self.log()}")
        return reachable(self.url, 0.2)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)
        self.proc = None

    def log(self) -> str:
        path = Path(self.root / "nats.log")
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
