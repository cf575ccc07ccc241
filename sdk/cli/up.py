"""Start a collector and an agent on this machine, bound to loopback, and write the config that
`Workspace.from_config()` finds. Stops both cleanly on Ctrl-C or SIGTERM. The collector runs with
`--auth off` (no tokens), which it allows only because every listener is on loopback.

Layout of the data folder (default ~/.runwire, or $RUNWIRE_HOME):
  config.json     endpoints for the SDK and the CLI (written once both are up)
  collector/      the collector's SQLite store and artifacts
  spool/          the agent's disk spool
  agent.sock      the agent's Unix socket (mode 0600)
  sdk-spool/      batches the SDK could not hand to the agent, for `runwire sync`
  logs/           server.log and agent.log
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from runwire._runtime import default_data_dir, format_hostport, parse_hostport
from runwire.jobs import DEFAULT_TARGET
from runwire.limits import AGENT_BATCH_MAX_DELAY_S

STARTUP_TIMEOUT_S = 30.0
"""How long `runwire up` waits for the collector and the agent to report their addresses."""
STOP_TIMEOUT_S = 30.0
"""How long `runwire up` waits for each process to drain and exit before killing it."""
UP_SLOTS_DEFAULT = 2
"""Jobs the agent of `runwire up` runs at once for compute target `local` (`runwire up --slots`)."""


def _slots(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return n


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="data folder (default: $RUNWIRE_HOME or ~/.runwire)"
    )
    parser.add_argument(
        "--grpc-listen", default="127.0.0.1:7420", help="collector gRPC address (default 127.0.0.1:7420; port 0 = any)"
    )
    parser.add_argument(
        "--http-listen", default="127.0.0.1:7421", help="studio/HTTP address (default 127.0.0.1:7421; port 0 = any)"
    )
    parser.add_argument("--socket", default=None, help="agent socket path (default: DATA_DIR/agent.sock)")
    parser.add_argument(
        "--batch-delay-ms",
        type=int,
        default=int(AGENT_BATCH_MAX_DELAY_S * 1000),
        help=f"agent batching age bound (default {int(AGENT_BATCH_MAX_DELAY_S * 1000)})",
    )
    parser.add_argument(
        "--slots",
        type=_slots,
        default=UP_SLOTS_DEFAULT,
        help=f"jobs run at once on compute target {DEFAULT_TARGET!r} (default {UP_SLOTS_DEFAULT})",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def _wait_ready(path: Path, proc: subprocess.Popen, what: str, log: Path) -> dict:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if path.is_file():
            return json.loads(path.read_text())
        if proc.poll() is not None:
            tail = log.read_text()[-3000:] if log.is_file() else ""
            raise SystemExit(f"runwire up: the {what} exited with code {proc.returncode} during start-up:\n{tail}")
        time.sleep(0.05)  # waiting on another process's ready file; nothing to block on
    raise SystemExit(f"runwire up: the {what} did not start within {STARTUP_TIMEOUT_S:.0f} s (see {log})")


def _agent_alive(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(1)
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def _stop(proc: subprocess.Popen, what: str) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        print(f"runwire up: the {what} did not stop in {STOP_TIMEOUT_S:.0f} s; killing it", file=sys.stderr)
        proc.kill()
        proc.wait()


def run(args: argparse.Namespace) -> int:
    for value in (args.grpc_listen, args.http_listen):
        host, _ = parse_hostport(value)
        if not (host.startswith("127.") or host in ("localhost", "::1")):
            raise SystemExit(
                f"runwire up binds to loopback only; {value} is not a loopback address (use `runwire server`)"
            )
    data = (args.data_dir or default_data_dir()).expanduser().resolve()
    run_dir, logs = data / "run", data / "logs"
    for folder in (data, run_dir, logs):
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    sock = args.socket or str(data / "agent.sock")
    if _agent_alive(sock):
        raise SystemExit(f"runwire up: an agent is already serving {sock}; is another `runwire up` running?")
    server_ready, agent_ready = run_dir / "server.json", run_dir / "agent.json"
    for f in (server_ready, agent_ready):
        f.unlink(missing_ok=True)

    python = sys.executable
    stopping = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    server_log = open(logs / "server.log", "ab")  # noqa: SIM115 - kept open for the child's lifetime
    server = subprocess.Popen(
        [python, "-m", "runwire.server", "--data-dir", str(data / "collector"), "--grpc-listen", args.grpc_listen,
         "--http-listen", args.http_listen, "--ready-file", str(server_ready), "--log-level", args.log_level,
         "--auth", "off"],
        stdout=subprocess.DEVNULL, stderr=server_log, start_new_session=True,
    )  # fmt: skip
    agent = None
    try:
        s_info = _wait_ready(server_ready, server, "collector", logs / "server.log")
        agent_log = open(logs / "agent.log", "ab")  # noqa: SIM115
        agent = subprocess.Popen(
            [python, "-m", "runwire.agent", "--socket", sock, "--collector", s_info["grpc"], "--spool-dir",
             str(data / "spool"), "--batch-delay-ms", str(args.batch_delay_ms), "--ready-file", str(agent_ready),
             "--log-level", args.log_level, "--compute-target", DEFAULT_TARGET, "--slots", str(args.slots)],
            stdout=subprocess.DEVNULL, stderr=agent_log, start_new_session=True,
        )  # fmt: skip
        a_info = _wait_ready(agent_ready, agent, "agent", logs / "agent.log")
        studio = None
        if s_info.get("http"):
            h, p = parse_hostport(s_info["http"])
            studio = f"http://{format_hostport(h, p)}"
        config = {
            "workspace_name": "local",
            "subscription_id": "local",
            "resource_group": "local",
            "location": "local",
            "collector": s_info["grpc"],
            "agent_socket": a_info["socket"],
            "studio": studio,
            "sdk_spool_dir": str(data / "sdk-spool"),
            "data_dir": str(data),
            "pids": {"up": os.getpid(), "collector": server.pid, "agent": agent.pid},
        }
        config_path = data / "config.json"
        tmp = config_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(config, indent=2) + "\n")
        os.replace(tmp, config_path)
        print("runwire is up", flush=False)
        print(f"  collector (gRPC)  {s_info['grpc']}")
        print(f"  studio (HTTP)     {studio or 'off'}")
        print(f"  agent socket      {a_info['socket']}")
        print(f"  compute target    {DEFAULT_TARGET} ({args.slots} slots)")
        print(f"  data              {data}")
        print(f"  config            {config_path}")
        print(f"  logs              {logs}/server.log, {logs}/agent.log")
        print("Press Ctrl-C to stop.", flush=True)
        while not stopping.is_set():
            if server.poll() is not None or agent.poll() is not None:
                which = "collector" if server.poll() is not None else "agent"
                print(f"runwire up: the {which} exited unexpectedly (see {logs}); stopping", file=sys.stderr)
                return 1
            stopping.wait(0.5)
        print("runwire up: stopping (the agent drains its spool first)", flush=True)
        return 0
    finally:
        if agent is not None:
            _stop(agent, "agent")
        _stop(server, "collector")
        try:
            cfg = json.loads((data / "config.json").read_text())
            if cfg.get("pids", {}).get("up") == os.getpid():
                cfg.pop("pids", None)
                (data / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
        except (OSError, ValueError):
            pass
