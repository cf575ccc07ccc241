"""The collector process in one object: store, group committer, gRPC server and HTTP app on one loop."""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
from aiohttp import web
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from runwire import limits
from runwire._runtime import format_hostport, is_loopback, parse_hostport
from runwire.server import limits as server_limits
from runwire.server.agents import AgentReports
from runwire.server.artifact_stores import open_artifact_store
from runwire.server.artifacts import ARTIFACTS_SERVICE_NAME, ArtifactsService, add_artifacts_servicer
from runwire.server.auth.grpc_gate import GrpcGate
from runwire.server.auth.guard import Guard
from runwire.server.blobstore import ArtifactStore
from runwire.server.bus import LiveBus
from runwire.server.bus_nats import NatsBus, make_bus
from runwire.server.committer import GroupCommitter
from runwire.server.compute import COMPUTE_SERVICE_NAME, ComputeService, add_compute_service
from runwire.server.dispatch import Dispatcher, Peers
from runwire.server.http import build_app
from runwire.server.ingest import IngestService
from runwire.server.live import LiveService, add_live_service
from runwire.server.query import RunsService
from runwire.server.store.base import Store
from runwire.server.store.factory import SQLITE_FILE, make_store  # noqa: F401 - SQLITE_FILE: runwire token, benches
from runwire.server.studio.context import StudioContext
from runwire.server.telemetry import Telemetry
from runwire.server.tls import ServerTLS, add_grpc_port
from runwire.v1 import ingest_pb2, ingest_pb2_grpc, live_pb2, runs_pb2, runs_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    ingest_pb2.DESCRIPTOR.services_by_name["Ingest"].full_name,
    runs_pb2.DESCRIPTOR.services_by_name["Runs"].full_name,
    ARTIFACTS_SERVICE_NAME,
    live_pb2.DESCRIPTOR.services_by_name["Live"].full_name,
    COMPUTE_SERVICE_NAME,
)


ARTIFACTS_DIR = "artifacts"
"""The content-addressed artifact blobs' folder inside the collector's data folder."""


def version() -> str:
    try:
        return importlib.metadata.version("runwire")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


@dataclass
class CollectorConfig:
    data_dir: Path
    grpc_listen: str = "127.0.0.1:7420"
    """HOST:PORT for gRPC; port 0 picks a free port."""
    http_listen: str | None = "127.0.0.1:7421"
    """HOST:PORT for HTTP, or None for no HTTP server."""
    log_level: str = "info"
    tls: ServerTLS | None = None
    """TLS for gRPC and HTTPS (`--tls-cert`, `--tls-key`; `--tls-client-ca`: mutual TLS on gRPC); None: plaintext."""
    lease_ttl: float = server_limits.LEASE_TTL_S
    """Seconds a node's leases outlive its last heartbeat (`--lease-ttl`)."""
    bus: str | None = None
    """The live bus between replicas (`--bus nats://HOST:PORT[?stream=NAME]`); None: in-process."""
    bus_stream: str | None = None
    """The NATS JetStream stream (and subject prefix) of the bus (`--bus-stream`)."""
    auth: bool = False
    """Require access tokens (`--auth on`, the default of `runwire server`). Off is refused unless every
    listener is on loopback."""
    rate_limit: float = server_limits.RATE_LIMIT_PER_S
    """Calls per second per token (`--rate-limit`; 0 = no limit). Only with auth on."""
    rate_burst: int = server_limits.RATE_LIMIT_BURST
    """Calls per token at once beyond the rate (`--rate-burst`)."""
    artifacts: str | None = None
    """Artifact blobs (`--artifacts`): a folder or `s3://BUCKET/PREFIX`; None: `<data_dir>/artifacts`."""
    s3_endpoint: str | None = None
    """S3-compatible server for an `s3://` artifact store (`--s3-endpoint`); None: AWS or `$AWS_ENDPOINT_URL_S3`."""
    store_url: str | None = None
    """The store (`--store`): `sqlite:///PATH` or `postgresql://USER@HOST/DB`; None: SQLite in `data_dir`."""


class ExposedWithoutAuth(Exception):
    """Auth is off and a listener is beyond loopback: the collector refuses to start."""


def check_exposure(config: CollectorConfig) -> None:
    """Raise ExposedWithoutAuth when auth is off and a listener's host is not a loopback address."""
    if config.auth:
        return
    listeners = [("gRPC", config.grpc_listen), ("HTTP", config.http_listen)]
    for what, listen in listeners:
        if listen is None:
            continue
        host, _ = parse_hostport(listen)
        if not is_loopback(host):
            raise ExposedWithoutAuth(
                f"refusing to listen for {what} on {listen} with --auth off: without authentication the "
                f"collector may only listen on loopback (127.0.0.1, ::1, localhost). Use --auth on and create "
                f"tokens with `runwire token create`, or listen on 127.0.0.1"
            )


class Collector:
    """`await start()`, then `grpc_address` / `http_address` hold the bound addresses; `await stop()`."""

    def __init__(self, config: CollectorConfig, store: Store | None = None, blobs: ArtifactStore | None = None) -> None:
        self.config = config
        self.data_dir = Path(config.data_dir)
        self.store: Store = store if store is not None else make_store(config.store_url, self.data_dir)
        self.telemetry = Telemetry()
        self.agents = AgentReports()
        """The last health report of each agent (in memory; the studio's GET /api/v1/agents)."""
        self.blobs: ArtifactStore | None = blobs
        self._artifacts: ArtifactsService | None = None
        self.live: LiveBus = make_bus(config.bus, config.bus_stream, on_lag=self.telemetry.live_lagged)
        if isinstance(self.live, NatsBus):
            self.live.register_metrics(self.telemetry.registry)
        self.telemetry.watch_live_subscribers(lambda: self.live.subscriber_count)
        """The live bus: committed events go to subscribers (`publish_log`/`publish_file` for logs and files)."""
        self.grpc_address: str | None = None
        self.http_address: str | None = None
        self._grpc_hostport = parse_hostport(config.grpc_listen)
        self._http_hostport = parse_hostport(config.http_listen) if config.http_listen else None
        self._server: grpc.aio.Server | None = None
        self.guard: Guard | None = None
        """The token check (auth on), shared by the gRPC interceptor and the HTTP middleware."""
        self._health: health.aio.HealthServicer | None = None
        self._http: web.AppRunner | None = None
        self._committer: GroupCommitter | None = None
        self.dispatcher: Dispatcher | None = None
        self._decode_pool: ThreadPoolExecutor | None = None
        self._store_open = False
        self._bus_started = False
        self._started = 0.0

    async def start(self) -> None:
        self._started = time.monotonic()
        check_exposure(self.config)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            await self.store.open()
            self._store_open = True
            if self.config.auth:
                self.guard = Guard(self.store, self.config.rate_limit, self.config.rate_burst)
            self._decode_pool = ThreadPoolExecutor(server_limits.DECODE_THREADS, thread_name_prefix="runwire-decode")
            await self.live.start()
            self._bus_started = True
            peers = self.live if isinstance(self.live, Peers) else None
            self.dispatcher = Dispatcher(self.store, self.live, lease_ttl=self.config.lease_ttl, peers=peers)
            self.dispatcher.start()
            self._committer = GroupCommitter(
                self.store, self.telemetry, self.live, on_leases_ended=self.dispatcher.leases_ended
            )
            self._committer.start()
            await self._start_grpc()
            if self._http_hostport is not None:
                await self._start_http(*self._http_hostport)
        except BaseException:
            await self.stop(grace=0)
            raise
        log.info(
            "collector started",
            extra={
                "fields": {
                    "grpc": self.grpc_address,
                    "http": self.http_address or "off",
                    "store": self.store.describe(),
                    "bus": self.live.describe(),
                    "version": version(),
                    "auth": "on" if self.guard is not None else "off",
                }
            },
        )
        if self.guard is not None and not any(not t.revoked for t in await self.store.list_tokens()):
            log.warning(
                "auth is on and the store holds no valid token, so every client is refused; create one with "
                f"`runwire token create --scope admin --data-dir {self.data_dir}`"
            )

    async def _start_grpc(self) -> None:
        assert self._committer is not None and self._decode_pool is not None
        host, port = self._grpc_hostport
        server = grpc.aio.server(
            interceptors=[GrpcGate(self.guard)] if self.guard is not None else None,
            options=[
                ("grpc.max_receive_message_length", limits.MAX_GRPC_MESSAGE_BYTES),
                ("grpc.max_send_message_length", limits.MAX_GRPC_MESSAGE_BYTES),
            ],
        )
        ingest_pb2_grpc.add_IngestServicer_to_server(
            IngestService(self._committer, self.telemetry, self._decode_pool, agents=self.agents), server
        )
        runs_pb2_grpc.add_RunsServicer_to_server(RunsService(self.store, self.status, live=self.live), server)
        add_live_service(LiveService(self.store, self.live), server)
        if self.blobs is None:
            cfg = self.config
            self.blobs = await asyncio.to_thread(
                open_artifact_store, cfg.artifacts, self.data_dir, self.data_dir / ARTIFACTS_DIR, cfg.s3_endpoint
            )
        self.blobs.sweep_partials(server_limits.PARTIAL_UPLOAD_TTL_S)
        self._artifacts = ArtifactsService(self.store, self.blobs, live=self.live)
        add_artifacts_servicer(self._artifacts, server)
        assert self.dispatcher is not None
        add_compute_service(ComputeService(self.store, self.dispatcher, live=self.live), server)
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        self._server = server
        try:
            bound = add_grpc_port(server, format_hostport(host, port), self.config.tls)
        except RuntimeError as e:
            raise OSError(f"cannot listen for gRPC on {format_hostport(host, port)}: {e}") from None
        if not bound:
            raise OSError(f"cannot listen for gRPC on {format_hostport(host, port)}")
        await server.start()
        self.grpc_address = format_hostport(host, bound)
        for name in ("", *SERVICE_NAMES):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)

    async def _start_http(self, host: str, port: int) -> None:
        studio = StudioContext(store=self.store, live=self.live, blobs=lambda: self.blobs, agents=self.agents)
        runner = web.AppRunner(build_app(self.telemetry, self.status, studio, guard=self.guard), access_log=None)
        await runner.setup()
        self._http = runner
        tls = self.config.tls
        await web.TCPSite(runner, host, port, ssl_context=tls.ssl_context() if tls else None).start()
        bound = runner.addresses[0][1]
        self.http_address = format_hostport(host, bound)

    async def stop(self, grace: float | None = server_limits.STOP_GRACE_S) -> None:
        """Stop taking requests, let in-flight RPCs finish for up to `grace` seconds, commit
        what was already received, then close the store."""
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        if self.dispatcher is not None:
            await self.dispatcher.stop()  # ends the nodes' Work streams (they reconnect elsewhere or later)
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None
        if self.dispatcher is not None:
            await self.dispatcher.drain()
        if self._http is not None:
            await self._http.cleanup()
            self._http = None
        if self._artifacts is not None:
            self._artifacts.close()
            self._artifacts = None
        if self._committer is not None:
            await self._committer.stop()
            self._committer = None
        if self._bus_started:
            await self.live.stop()  # after the last commit: what it published still goes out
            self._bus_started = False
        self.dispatcher = None
        if self._decode_pool is not None:
            self._decode_pool.shutdown(wait=False, cancel_futures=True)
            self._decode_pool = None
        if self.guard is not None:
            await self.guard.close()
            self.guard = None
        if self._store_open:
            await self.store.close()
            self._store_open = False
        log.info("collector stopped")

    async def status(self) -> runs_pb2.CollectorStatus:
        t = self.telemetry
        return runs_pb2.CollectorStatus(
            version=version(),
            grpc_address=self.grpc_address or "",
            http_address=self.http_address or "",
            store=self.store.describe(),
            ingest_streams=t.ingest_streams,
            batches_committed=t.batches_committed,
            duplicate_batches=t.duplicate_batches,
            points_committed=t.points_committed,
            runs=await self.store.count_runs(),
            uptime_seconds=time.monotonic() - self._started,
            pid=os.getpid(),
        )
