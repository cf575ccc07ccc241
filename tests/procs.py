"""Start real runwire processes (collector, agent, training scripts) for end-to-end tests.

Every process gets temporary folders and ephemeral ports; readiness is a condition (the ready file
the process writes once it has bound), waited on with a timeout.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

READY_TIMEOUT_S = 30.0

CHROMIUM = os.environ.get("RUNWIRE_TEST_CHROMIUM", "/usr/bin/chromium")
"""Debian's chromium, for the browser tests and bench/studio.py (Playwright never downloads a browser)."""

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
"""Headless chromium on a closed network: no background connections, no updates, no first-run UI."""


def wait_for(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.02) -> object:
    """Poll `condition` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def short_tmpdir(prefix: str = "rw") -> Path:
    """A temp folder with a short path: Unix socket paths must stay under 108 bytes."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


@dataclass
class Proc:
    name: str
    args: list[str]
    ready_file: Path
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    popen: subprocess.Popen | None = None
    info: dict = field(default_factory=dict)

    def start(self) -> Proc:
        self.ready_file.unlink(missing_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._log = log
        self.popen = subprocess.Popen(
            [sys.executable, "-m", *self.args, "--ready-file", str(self.ready_file)],
            stdout=log,
            stderr=log,
            env={**os.environ, **self.env},
        )

        def ready():
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{self.log_tail()}")
            return self.ready_file.is_file()

        wait_for(ready, READY_TIMEOUT_S, f"{self.name} to be ready")
        self.info = json.loads(self.ready_file.read_text())
        return self

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def kill9(self) -> None:
        if self.popen and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(10)

    def stop(self, timeout: float = 30) -> int | None:
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        self._log.close()
        return self.popen.returncode


class Cluster:
    """One collector and one agent, as real processes, in a temporary folder."""

    def __init__(
        self,
        root: Path | None = None,
        batch_delay_ms: int = 20,
        agent_args: list[str] | None = None,
        log_level: str = "debug",
        server_args: list[str] | None = None,
        auth: bool = False,
        store_url: str | None = None,
    ) -> None:
        self.agent_args = agent_args or []
        self.server_args = server_args or []
        self.store_url = store_url
        """The collector's `--store` (a PostgreSQL URL, say); None: SQLite in its data folder."""
        self.auth = auth
        """Start the collector with `--auth on` (tokens required; see `create_token`); default off (loopback)."""
        self.log_level = log_level
        self.root = root or short_tmpdir()
        self.root.mkdir(parents=True, exist_ok=True)
        self.batch_delay_ms = batch_delay_ms
        self.grpc_port = 0
        self.server: Proc | None = None
        self.agent: Proc | None = None
        self.extra_agents: list[Proc] = []

    @property
    def socket(self) -> str:
        return str(self.root / "agent.sock")

    @property
    def collector(self) -> str:
        assert self.server is not None
        return self.server.info["grpc"]

    def start_server(self) -> Proc:
        # A restarted collector keeps its port so that the agent reconnects to the same address.
        listen = f"127.0.0.1:{self.grpc_port}"
        self.server = Proc(
            "collector",
            ["runwire.server", "--data-dir", str(self.root / "collector"), "--grpc-listen", listen,
             "--http-listen", "127.0.0.1:0", "--log-level", self.log_level, "--auth", "on" if self.auth else "off",
             *self.store_args(), *self.server_args],
            self.root / "server.json",
            self.root / "server.log",
        ).start()  # fmt: skip
        self.grpc_port = int(self.server.info["grpc"].rsplit(":", 1)[1])
        return self.server

    def start_agent(self) -> Proc:
        self.agent = Proc(
            "agent",
            ["runwire.agent", "--socket", self.socket, "--collector", self.collector, "--spool-dir",
             str(self.root / "spool"), "--batch-delay-ms", str(self.batch_delay_ms), "--log-level", self.log_level,
             *self.agent_args],
            self.root / "agent.json",
            self.root / "agent.log",
        ).start()  # fmt: skip
        return self.agent

    def start_extra_agent(self, name: str, args: list[str] | None = None) -> Proc:
        """Another agent (a second node) with its own socket and spool, on the same collector."""
        proc = Proc(
            name,
            ["runwire.agent", "--socket", str(self.root / f"{name}.sock"), "--collector", self.collector,
             "--spool-dir", str(self.root / f"{name}-spool"), "--batch-delay-ms", str(self.batch_delay_ms),
             "--log-level", self.log_level, *(args or [])],
            self.root / f"{name}.json",
            self.root / f"{name}.log",
        ).start()  # fmt: skip
        self.extra_agents.append(proc)
        return proc

    def create_token(self, scope: str, *args: str) -> str:
        """A new token on this cluster's collector, made by the real `runwire token create` command."""
        out = subprocess.run(
            [sys.executable, "-m", "runwire.cli.main", "token", "create", "--scope", scope,
             "--data-dir", str(self.root / "collector"), *self.store_args(), *args],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        return out.stdout.strip().splitlines()[-1]

    def store_args(self) -> list[str]:
        return ["--store", self.store_url] if self.store_url else []

    def start(self) -> Cluster:
        self.start_server()
        self.start_agent()
        return self

    def env(self) -> dict[str, str]:
        """What a training process needs to find this cluster (no config file)."""
        return {
            "RUNWIRE_COLLECTOR": self.collector,
            "RUNWIRE_AGENT_SOCKET": self.socket,
            "RUNWIRE_HOME": str(self.root / "home"),
            "RUNWIRE_SDK_SPOOL": str(self.root / "sdk-spool"),
        }

    def stop(self) -> None:
        for proc in (*self.extra_agents, self.agent, self.server):
            if proc is not None:
                proc.stop()

    def logs(self) -> str:
        procs = (self.server, self.agent, *self.extra_agents)
        return "\n".join(f"--- {p.name} ---\n{p.log_tail()}" for p in procs if p is not None)


def run_script(
    code: str, env: dict[str, str], timeout: float = 300, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """Run `code` as a real Python training process."""
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


@contextlib.contextmanager
def running_cluster(request=None, **kwargs) -> Iterator[Cluster]:
    """A started `Cluster(**kwargs)` in a fresh short temp folder, stopped and removed afterwards; its
    processes' logs are printed when the test of `request` (a pytest fixture request) failed."""
    root = short_tmpdir()
    c = Cluster(root, **kwargs).start()
    try:
        yield c
    finally:
        c.stop()
        rep = getattr(request.node, "rep_call", None) if request is not None else None
        if rep is not None and rep.failed:
            print(c.logs())
        shutil.rmtree(root, ignore_errors=True)


def workspace_for(cluster: Cluster, monkeypatch):
    """A Workspace in this test process pointed at `cluster` through the environment alone."""
    for key, value in cluster.env().items():
        monkeypatch.setenv(key, value)
    from runwire import Workspace

    return Workspace.from_config()
