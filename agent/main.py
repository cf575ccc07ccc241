"""`runwire agent` / `python -m runwire.agent`: command-line flags and the process around `Agent`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path

from runwire._runtime import (
    default_data_dir,
    format_hostport,
    parse_hostport,
    run_async,
    setup_logging,
    write_ready_file,
)
from runwire.agent.app import AGENT_STOP_GRACE_S, Agent, AgentConfig
from runwire.agent.collectors import format_collectors, parse_collectors
from runwire.agent.health import AGENT_REPORT_INTERVAL_S
from runwire.agent.receiver import AgentAlreadyRunning
from runwire.agent.security import add_security_arguments, security_from_args
from runwire.agent.sender import SENDER_ACK_TIMEOUT_S
from runwire.agent.spool import FSYNC_MODES, SPOOL_MAX_BYTES_DEFAULT
from runwire.limits import AGENT_BATCH_MAX_DELAY_S, JOB_CANCEL_GRACE_S

log = logging.getLogger("runwire.agent")

DEFAULT_COLLECTOR = "127.0.0.1:7420"


def _size(value: str) -> int:
    """Bytes, with an optional K/M/G/T suffix (powers of 1024)."""
    text = value.strip().upper().removesuffix("B").removesuffix("I")
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    factor = 1
    if text and text[-1] in units:
        factor = units[text[-1]]
        text = text[:-1]
    try:
        n = int(float(text) * factor)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size like 500M or 10G, got {value!r}") from None
    if n <= 0:
        raise argparse.ArgumentTypeError("size must be positive")
    return n


def _hostport(value: str) -> str:
    try:
        host, port = parse_hostport(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return format_hostport(host, port)


def _collectors(value: str) -> str:
    try:
        return format_collectors(parse_collectors(value))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    data = default_data_dir()
    parser.add_argument("--socket", type=Path, default=data / "agent.sock", help="Unix socket the SDK connects to")
    parser.add_argument(
        "--collector",
        type=_collectors,
        default=DEFAULT_COLLECTOR,
        help="collector gRPC HOST:PORT, or several separated by commas (a DNS name stands for all its addresses); "
        "the agent spreads its streams over them and moves to another when one fails",
    )
    parser.add_argument("--spool-dir", type=Path, default=data / "spool", help="folder of the disk spool")
    parser.add_argument(
        "--batch-delay-ms",
        type=float,
        default=AGENT_BATCH_MAX_DELAY_S * 1000,
        help="age bound of a bundle of batches before it is spooled (ms)",
    )
    parser.add_argument(
        "--fsync",
        choices=FSYNC_MODES,
        default="interval",
        help="when spooled data is forced to disk: before each ack, every second, or never (kill -9 is safe anyway)",
    )
    parser.add_argument(
        "--spool-max-bytes",
        type=_size,
        default=SPOOL_MAX_BYTES_DEFAULT,
        help="unacknowledged spool bytes at which the agent stops reading from SDK sockets (e.g. 500M, 10G)",
    )
    parser.add_argument(
        "--socket-group",
        default=None,
        help="make the socket 0660 owned by this group and serve its members too (default: 0600, this user only)",
    )
    parser.add_argument(
        "--report-interval",
        type=float,
        default=AGENT_REPORT_INTERVAL_S,
        help=f"seconds between health reports to the collector (default {AGENT_REPORT_INTERVAL_S:g})",
    )
    parser.add_argument(
        "--ack-timeout",
        type=float,
        default=SENDER_ACK_TIMEOUT_S,
        metavar="SECONDS",
        help="abandon an ingest stream whose collector acknowledged nothing for this long while records were in "
        f"flight (a hung collector) and resend them to the next replica (default {SENDER_ACK_TIMEOUT_S:g})",
    )
    add_security_arguments(parser)
    parser.add_argument("--agent-id", default=None, help="agent id (default: a stable id kept in the spool folder)")
    parser.add_argument("--ready-file", default=None, help="write a JSON file with the bound addresses once listening")
    parser.add_argument("--http-listen", default=None, help="HOST:PORT serving /metrics and /healthz (off by default)")
    parser.add_argument(
        "--stop-grace", type=float, default=AGENT_STOP_GRACE_S, help="seconds to drain the spool when stopping"
    )
    parser.add_argument(
        "--compute-target",
        default=None,
        help="join this compute target and run its queued jobs (default: run no jobs)",
    )
    parser.add_argument("--slots", type=int, default=1, help="jobs run at once with --compute-target (default 1)")
    parser.add_argument("--keep-job-dirs", action="store_true", help="keep the working folders of jobs after they end")
    parser.add_argument(
        "--job-cancel-grace",
        type=float,
        default=JOB_CANCEL_GRACE_S,
        help=f"seconds a stopped job gets between SIGTERM and SIGKILL (default {JOB_CANCEL_GRACE_S:g})",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def config_from_args(args: argparse.Namespace) -> AgentConfig:
    if args.batch_delay_ms < 0:
        raise ValueError("--batch-delay-ms must not be negative")
    if args.slots < 1:
        raise ValueError("--slots must be at least 1")
    if args.job_cancel_grace < 0:
        raise ValueError("--job-cancel-grace must not be negative")
    if args.compute_target is not None and not args.compute_target.strip():
        raise ValueError("--compute-target must not be empty")
    if not args.report_interval > 0:
        raise ValueError("--report-interval must be a positive number of seconds")
    if not args.ack_timeout > 0:
        raise ValueError("--ack-timeout must be a positive number of seconds")
    if args.socket_group is not None:
        from runwire.agent.receiver import resolve_group

        resolve_group(args.socket_group)  # an unknown group is a usage error, before anything starts
    security = security_from_args(args)
    http = None
    if args.http_listen:
        http = parse_hostport(args.http_listen)
    return AgentConfig(
        socket_path=Path(args.socket).expanduser(),
        spool_dir=Path(args.spool_dir).expanduser(),
        collector=args.collector,
        agent_id=args.agent_id or None,
        token=security.token,
        tls_ca=security.tls_ca,
        tls_cert=security.tls_cert,
        tls_key=security.tls_key,
        batch_delay_s=args.batch_delay_ms / 1000.0,
        fsync=args.fsync,
        spool_max_bytes=args.spool_max_bytes,
        http_listen=http,
        stop_grace_s=args.stop_grace,
        compute_target=args.compute_target or None,
        slots=args.slots,
        keep_job_dirs=args.keep_job_dirs,
        job_cancel_grace_s=args.job_cancel_grace,
        socket_group=args.socket_group or None,
        report_interval_s=args.report_interval,
        ack_timeout_s=args.ack_timeout,
    )


async def serve(config: AgentConfig, ready_file: str | None = None) -> int:
    agent = Agent(config)
    try:
        await agent.start()
    except AgentAlreadyRunning as e:
        log.error("cannot start the agent", extra={"fields": {"error": str(e)}})
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        print(
            f"runwire agent listening socket={config.socket_path} collector={config.collector} "
            f"spool={config.spool_dir}",
            flush=True,
        )
        info = {
            "socket": str(config.socket_path),
            "agent_id": agent.agent_id,
            "pid": os.getpid(),
            "spool_dir": str(config.spool_dir),
            "collector": config.collector,
            "compute_target": config.compute_target,
            "slots": config.slots,
        }
        if agent.http_address is not None:
            info["http"] = format_hostport(*agent.http_address)
        write_ready_file(ready_file, info)
        await stop.wait()
        log.info("stopping on signal", extra={"fields": {}})
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        await agent.stop()
    return 0


def run(args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    try:
        config = config_from_args(args)
    except ValueError as e:
        print(f"runwire agent: {e}", file=sys.stderr)
        return 2
    return run_async(serve(config, args.ready_file))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="runwire agent", description="runwire's node agent")
    add_arguments(parser)
    return run(parser.parse_args(argv))
