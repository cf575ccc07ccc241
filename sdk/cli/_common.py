"""Helpers shared by the CLI commands."""

from __future__ import annotations

import argparse
import os
import socket

from runwire import frames
from runwire.config import Endpoint, load_endpoint
from runwire.limits import PROTOCOL_VERSION
from runwire.v1 import frames_pb2

AGENT_QUERY_TIMEOUT_S = 5.0


def add_endpoint_arguments(parser: argparse.ArgumentParser, agent: bool = True) -> None:
    parser.add_argument("--config", default=None, help="config file (default: the search of Workspace.from_config)")
    parser.add_argument("--collector", default=None, help="collector HOST:PORT (overrides the config)")
    if agent:
        parser.add_argument("--socket", default=None, help="agent socket path (overrides the config)")


def endpoint_from_args(args: argparse.Namespace) -> Endpoint:
    if args.collector and not args.config:
        try:
            endpoint = load_endpoint()
        except Exception:
            env = os.environ.get
            endpoint = Endpoint(
                collector=args.collector,
                agent_socket=None,
                token=env("RUNWIRE_TOKEN") or None,
                tls_ca=env("RUNWIRE_TLS_CA") or None,
                tls_cert=env("RUNWIRE_TLS_CERT") or None,
                tls_key=env("RUNWIRE_TLS_KEY") or None,
            )
    else:
        endpoint = load_endpoint(args.config)
    if args.collector:
        endpoint.collector = args.collector
    if getattr(args, "socket", None):
        endpoint.agent_socket = args.socket
    return endpoint


def agent_status(path: str) -> frames_pb2.AgentStatus:
    """Ask the agent on `path` for its status over its own socket protocol."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(AGENT_QUERY_TIMEOUT_S)
        s.connect(path)
        hello = frames_pb2.Hello(protocol_version=PROTOCOL_VERSION, producer_id="cli-status", client="runwire-cli")
        try:
            s.sendall(frames.pack(frames_pb2.ClientFrame(hello=hello)))
            s.sendall(frames.pack(frames_pb2.ClientFrame(status=frames_pb2.StatusRequest())))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the agent refused us before reading: its ErrorFrame, read below, says why
        reader = frames.SocketReader(s)
        while True:
            body = reader.read()
            if body is None:
                raise ConnectionError("the agent closed the connection")
            frame = frames.parse_agent_frame(body)
            kind = frame.WhichOneof("body")
            if kind == "status":
                return frame.status
            if kind == "error":
                raise ConnectionError(frame.error.reason)


# --- output helpers for the job commands (submit, runs, logs, compute) ------------------------------

_CONTROL_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


def safe(value: object) -> str:
    """`value` as text that cannot drive a terminal: control characters (escape sequences, carriage
    returns, bidi overrides, ...) are shown as `\\xNN` / `\\uNNNN` escapes instead of being sent."""
    import unicodedata

    text = "" if value is None else str(value)
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch == " " or unicodedata.category(ch) not in _CONTROL_CATEGORIES:
            out.append(ch)
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    return "".join(out)


def format_time(ts: float | None) -> str:
    """A unix time as local `YYYY-MM-DD HH:MM:SS`, or `-`."""
    import time

    if not ts:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def iso_time(ts: float | None) -> str | None:
    """A unix time as ISO-8601 UTC (for --json), or None."""
    from datetime import UTC, datetime

    if not ts:
        return None
    return datetime.fromtimestamp(ts, tz=UTC).isoformat().replace("+00:00", "Z")


def format_duration(seconds: float | None) -> str:
    """`4.2s`, `3m07s`, `2h05m`, or `-`."""
    if seconds is None or seconds < 0:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def print_table(headers: list[str], rows: list[list[str]], empty: str = "(none)") -> None:
    """Left-aligned columns two spaces apart; every cell is passed through `safe`."""
    if not rows:
        print(empty)
        return
    cells = [[safe(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    for row in [headers, *cells]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def fail(command: str, message: str, code: int = 1) -> int:
    """Print `runwire COMMAND: message` (terminal-safe) on stderr and return the exit status."""
    import sys

    print(f"runwire {command}: {safe(message)}", file=sys.stderr)
    return code
