"""Process plumbing shared by the long-running commands: event loop, logging, addresses, ready files."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any


def run_async(main: Coroutine[Any, Any, Any]) -> Any:
    """Run `main` on uvloop where it is installed, else on asyncio's default loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def loop_name() -> str:
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


class _KeyValueFormatter(logging.Formatter):
    """`ts=... level=... logger=... msg="..." key=value` lines: greppable and machine-readable."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [
            f"ts={self.formatTime(record, '%Y-%m-%dT%H:%M:%S')}.{int(record.msecs):03d}",
            f"level={record.levelname.lower()}",
            f"logger={record.name}",
            f"msg={json.dumps(record.getMessage())}",
        ]
        fields = getattr(record, "fields", None)
        if fields:
            parts.extend(f"{k}={json.dumps(v) if isinstance(v, str) else v}" for k, v in fields.items())
        if record.exc_info:
            parts.append(f"exc={json.dumps(self.formatException(record.exc_info))}")
        return " ".join(parts)


def setup_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def parse_hostport(value: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """`HOST:PORT`, `:PORT` or `[v6]:PORT` to (host, port). Port 0 asks for a free port."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    host = host.strip("[]") or default_host
    return host, int(port)


def format_hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def write_ready_file(path: str | os.PathLike[str] | None, info: dict[str, Any]) -> None:
    """Atomically write the addresses a process actually bound, for scripts and tests to wait on."""
    if not path:
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(info))
    os.replace(tmp, target)


def default_data_dir() -> Path:
    return Path(os.environ.get("RUNWIRE_HOME", "~/.runwire")).expanduser()
