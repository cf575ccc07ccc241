"""`runwire server`: run the collector until SIGINT/SIGTERM.

`add_arguments` and `run` are shared by `python -m runwire.server` and the `runwire` CLI.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from runwire._runtime import default_data_dir, parse_hostport, run_async, setup_logging, write_ready_file
from runwire.server import limits as server_limits
from runwire.server.app import Collector, CollectorConfig, ExposedWithoutAuth
from runwire.server.bus_nats import check_stream_name, parse_bus
from runwire.server.store.factory import check_store_url
from runwire.server.tls import TLSConfigError, add_tls_arguments, tls_from_args

log = logging.getLogger(__name__)

DEFAULT_GRPC_LISTEN = "127.0.0.1:7420"
DEFAULT_HTTP_LISTEN = "127.0.0.1:7421"


def _hostport(value: str) -> str:
    try:
        parse_hostport(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return value


def _positive_seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, not {value}")
    return seconds


def _on_off(value: str) -> bool:
    if value.lower() not in ("on", "off"):
        raise argparse.ArgumentTypeError(f"expected on or off, got {value!r}")
    return value.lower() == "on"


def _rate(value: str) -> float:
    try:
        rate = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of calls per second: {value!r}") from None
    if not rate >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 (no limit) or more, not {value}")
    return rate


def _burst(value: str) -> int:
    try:
        burst = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of calls, got {value!r}") from None
    if burst < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return burst


def _bus(value: str) -> str | None:
    try:
        parse_bus(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return None if value == "inprocess" else value


def _bus_stream(value: str) -> str:
    try:
        return check_stream_name(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _store_url(value: str) -> str:
    try:
        return check_store_url(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _http_listen(value: str) -> str | None:
    return None if value.lower() == "off" else _hostport(value)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=default_data_dir() / "collector",
        metavar="DIR",
        help="where the collector keeps its database (unless --store names another) and artifacts "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--store",
        type=_store_url,
        default=None,
        metavar="URL",
        help="the database: sqlite:///PATH, or postgresql://USER[:PASSWORD]@HOST[:PORT]/DB for several "
        "replicas sharing one (default: SQLite in --data-dir)",
    )
    parser.add_argument(
        "--grpc-listen",
        type=_hostport,
        default=DEFAULT_GRPC_LISTEN,
        metavar="HOST:PORT",
        help=f"gRPC address for agents and clients; port 0 picks a free port (default: {DEFAULT_GRPC_LISTEN})",
    )
    parser.add_argument(
        "--http-listen",
        type=_http_listen,
        default=DEFAULT_HTTP_LISTEN,
        metavar="HOST:PORT",
        help=f"HTTP address for /healthz, /metrics and /api/v1; 'off' disables it (default: {DEFAULT_HTTP_LISTEN})",
    )
    parser.add_argument(
        "--ready-file",
        type=Path,
        default=None,
        metavar="PATH",
        help="once listening, write the bound addresses there as JSON (keys grpc, http, pid, data_dir, tls)",
    )
    parser.add_argument(
        "--lease-ttl",
        type=_positive_seconds,
        default=server_limits.LEASE_TTL_S,
        metavar="SECONDS",
        help="seconds a node's job leases outlive its last heartbeat; then a job that never started is "
        "queued again and a running one fails (default: %(default)s)",
    )
    parser.add_argument(
        "--auth",
        type=_on_off,
        default=True,
        metavar="on|off",
        help="require access tokens from clients (default: on); off is only allowed when every listener "
        "is on loopback (`runwire up` runs with off)",
    )
    parser.add_argument(
        "--rate-limit",
        type=_rate,
        default=server_limits.RATE_LIMIT_PER_S,
        metavar="CALLS_PER_S",
        help="calls per second each token may make, gRPC calls and HTTP requests together; 0 = no limit "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--rate-burst",
        type=_burst,
        default=server_limits.RATE_LIMIT_BURST,
        metavar="CALLS",
        help="calls each token may make at once beyond its rate (default: %(default)s)",
    )
    parser.add_argument(
        "--bus",
        type=_bus,
        default=None,
        metavar="URL",
        help="live bus between collector replicas: nats://HOST:PORT[?stream=NAME] (NATS with JetStream), "
        "or 'inprocess' (default: inprocess, a single collector)",
    )
    parser.add_argument(
        "--bus-stream",
        type=_bus_stream,
        default=None,
        metavar="NAME",
        help="JetStream stream (and subject prefix) of the NATS bus; every replica of one deployment uses "
        "the same (default: RUNWIRE, or the URL's ?stream=)",
    )
    parser.add_argument(
        "--artifacts",
        default=None,
        metavar="DIR|s3://BUCKET/PREFIX",
        help="where artifact blobs are kept: a folder, or an S3 bucket that collector replicas share "
        "(credentials and region from the AWS_* environment variables; default: DATA_DIR/artifacts)",
    )
    parser.add_argument(
        "--s3-endpoint",
        default=None,
        metavar="URL",
        help="S3-compatible server (MinIO etc.) for --artifacts s3://... (default: AWS, or $AWS_ENDPOINT_URL_S3)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="log level (default: info)",
    )
    add_tls_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Run the collector until SIGINT or SIGTERM; the process exit code."""
    setup_logging(args.log_level)
    try:
        tls = tls_from_args(args)
    except TLSConfigError as e:
        print(f"runwire server: {e}", file=sys.stderr, flush=True)
        return 2
    if args.s3_endpoint and not (args.artifacts or "").startswith("s3://"):
        print("runwire server: --s3-endpoint needs --artifacts s3://BUCKET/PREFIX", file=sys.stderr, flush=True)
        return 2
    if args.bus_stream is not None and args.bus is None:
        print("runwire server: --bus-stream needs --bus nats://HOST:PORT", file=sys.stderr, flush=True)
        return 2
    config = CollectorConfig(
        tls=tls,
        data_dir=args.data_dir,
        store_url=args.store,
        grpc_listen=args.grpc_listen,
        http_listen=args.http_listen,
        log_level=args.log_level,
        lease_ttl=args.lease_ttl,
        bus=args.bus,
        bus_stream=args.bus_stream,
        auth=args.auth,
        rate_limit=args.rate_limit,
        rate_burst=args.rate_burst,
        artifacts=args.artifacts,
        s3_endpoint=args.s3_endpoint,
    )
    return run_async(_serve(config, args.ready_file))


async def _serve(config: CollectorConfig, ready_file: Path | None) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    collector = Collector(config)
    try:
        await collector.start()
    except ExposedWithoutAuth as e:
        log.error("collector refused to start", extra={"fields": {"error": str(e)}})
        print(f"runwire server: {e}", file=sys.stderr, flush=True)
        return 2
    except OSError as e:
        log.error("collector could not start", extra={"fields": {"error": str(e)}})
        return 1
    try:
        print(
            f"runwire server listening grpc={collector.grpc_address} http={collector.http_address or 'off'} "
            f"data={collector.data_dir}",
            flush=True,
        )
        write_ready_file(
            ready_file,
            {
                "grpc": collector.grpc_address,
                "http": collector.http_address,
                "pid": os.getpid(),
                "data_dir": str(collector.data_dir),
                "tls": config.tls is not None,
            },
        )
        await stop.wait()
        log.info("stopping")
    finally:
        await collector.stop(grace=server_limits.STOP_GRACE_S)
    return 0
