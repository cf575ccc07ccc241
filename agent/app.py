"""The agent process: receiver -> batcher -> spool -> sender, wired together.

`Agent(config)`, `await agent.start()`, and `await agent.stop()` for a graceful stop: stop
accepting connections and reading frames, cut and spool the open bundle, acknowledge clients,
give the sender up to `stop_grace_s` to drain the spool to the collector (pending flushes are
answered when that happens), then close everything. What is not drained stays in the spool and
is sent by the next agent started on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from runwire._transports.channel import ClientSecurity
from runwire.agent.batcher import Batcher
from runwire.agent.collectors import ROLES, CollectorLink, Collectors, channel_factory
from runwire.agent.health import AGENT_REPORT_INTERVAL_S, build_report
from runwire.agent.metrics import AgentStats, make_registry
from runwire.agent.receiver import Receiver
from runwire.agent.reports import Reporter
from runwire.agent.runner import Runner, RunnerConfig
from runwire.agent.sender import SENDER_ACK_TIMEOUT_S, Backoff, Sender, channel_options
from runwire.agent.spool import FSYNC_INTERVAL_S, SPOOL_MAX_BYTES_DEFAULT, Spool
from runwire.agent.uploads import UPLOADS_DIR, Uploads
from runwire.agent.watch import CLAIMS_DIR, ClaimStore, Watch
from runwire.agent.work import WorkClient
from runwire.limits import (
    AGENT_BATCH_MAX_BYTES,
    AGENT_BATCH_MAX_DELAY_S,
    JOB_CANCEL_GRACE_S,
    MAX_FRAME_BYTES,
    NODE_HEARTBEAT_S,
    SPOOL_SEGMENT_BYTES,
)
from runwire.v1 import frames_pb2

log = logging.getLogger("runwire.agent")

AGENT_STOP_GRACE_S = 5.0
"""How long a stopping agent waits for the collector to acknowledge what is spooled."""
AGENT_ID_FILE = "agent_id"


@dataclass
class AgentConfig:
    socket_path: Path
    spool_dir: Path
    collector: str = "127.0.0.1:7420"
    agent_id: str | None = None  # None: the id persisted in the spool folder (made on first start)
    token: str | None = None
    batch_delay_s: float = AGENT_BATCH_MAX_DELAY_S
    batch_max_bytes: int = AGENT_BATCH_MAX_BYTES
    fsync: str = "interval"
    fsync_interval_s: float = FSYNC_INTERVAL_S
    spool_max_bytes: int = SPOOL_MAX_BYTES_DEFAULT
    segment_bytes: int = SPOOL_SEGMENT_BYTES
    max_frame_bytes: int = MAX_FRAME_BYTES
    http_listen: tuple[str, int] | None = None
    stop_grace_s: float = AGENT_STOP_GRACE_S
    backoff: tuple[float, float] | None = None  # (min, max) seconds; None: the sender's defaults
    compute_target: str | None = None  # None: this agent runs no jobs
    slots: int = 1  # jobs run at once (with a compute target)
    keep_job_dirs: bool = False  # keep jobs' working folders after they end
    job_cancel_grace_s: float = JOB_CANCEL_GRACE_S  # SIGTERM -> SIGKILL of a stopped job
    heartbeat_s: float = NODE_HEARTBEAT_S
    tls_ca: str | None = None  # --tls-ca: the collector speaks TLS, signed by this CA (PEM)
    tls_cert: str | None = None  # --tls-cert / --tls-key: this agent's client certificate (mutual TLS)
    tls_key: str | None = None
    socket_group: str | None = None  # --socket-group: socket 0660 owned by this group, whose members may connect
    report_interval_s: float = AGENT_REPORT_INTERVAL_S  # health reports to the collector
    ack_timeout_s: float = SENDER_ACK_TIMEOUT_S  # abandon a stream with no ack for this long (--ack-timeout)

    def __post_init__(self) -> None:
        self.socket_path = Path(self.socket_path)
        self.spool_dir = Path(self.spool_dir)

    @property
    def security(self) -> ClientSecurity:
        """Token and TLS of every channel to the collector (ingest, uploads, work, snapshots), and of jobs."""
        return ClientSecurity(self.token, self.tls_ca, self.tls_cert, self.tls_key)


def stable_agent_id(spool_dir: Path) -> str:
    """The id kept in `<spool>/agent_id`, created as `<hostname>-<random>` the first time."""
    path = spool_dir / AGENT_ID_FILE
    try:
        value = path.read_text().strip()
        if value:
            return value
    except FileNotFoundError:
        pass
    value = f"{socket.gethostname()}-{secrets.token_hex(4)}"
    spool_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f"{AGENT_ID_FILE}.{os.getpid()}.tmp")
    tmp.write_text(value + "\n")
    os.replace(tmp, path)
    return value


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.stats = AgentStats()
        self.agent_id = config.agent_id or ""
        self.spool: Spool | None = None
        self.batcher: Batcher | None = None
        self.receiver: Receiver | None = None
        self.sender: Sender | None = None
        self.uploads: Uploads | None = None
        self.reporter: Reporter | None = None
        self.watch: Watch | None = None
        self.runner: Runner | None = None
        self.work: WorkClient | None = None
        self.registry = make_registry(self.stats, self._gauges)
        self._http = None
        self.http_address: tuple[str, int] | None = None
        self._started = False
        self.collectors: Collectors | None = None
        self.links: dict[str, CollectorLink] = {}

    async def start(self) -> None:
        cfg = self.config
        if not self.agent_id:
            self.agent_id = stable_agent_id(cfg.spool_dir)

        def count_corrupt() -> None:
            self.stats.corrupt_records += 1

        self.spool = Spool(
            cfg.spool_dir,
            segment_bytes=cfg.segment_bytes,
            max_bytes=cfg.spool_max_bytes,
            fsync=cfg.fsync,
            fsync_interval_s=cfg.fsync_interval_s,
            on_corrupt=count_corrupt,
        )
        self.spool.open()
        await self.spool.start()
        self.batcher = Batcher(
            self.spool,
            self.agent_id,
            max_bytes=cfg.batch_max_bytes,
            max_delay_s=cfg.batch_delay_s,
            stats=self.stats,
        )
        await self.batcher.start()
        # The collector replicas and the one each stream uses (agent/collectors.py).
        self.collectors = Collectors.parse(cfg.collector)
        make_channel = channel_factory(cfg.security, channel_options())
        self.links = {role: CollectorLink(self.collectors, role, self.agent_id, make_channel) for role in ROLES}
        self.sender = Sender(
            self.spool,
            cfg.collector,
            security=cfg.security,
            stats=self.stats,
            backoff=Backoff(*cfg.backoff) if cfg.backoff else None,
            report_fn=lambda: build_report(self),
            report_interval_s=cfg.report_interval_s,
            link=self.links["ingest"],
            ack_timeout_s=cfg.ack_timeout_s,
        )
        self.spool.add_full_listener(lambda _full: self.sender.request_report())
        await self.sender.start()
        self.uploads = Uploads(
            cfg.spool_dir / UPLOADS_DIR,
            cfg.collector,
            backoff=Backoff(*cfg.backoff) if cfg.backoff else None,
            security=cfg.security,
            link=self.links["uploads"],
        )
        await self.uploads.start()
        self.reporter = Reporter(self.batcher, self.spool, self.agent_id)
        self.watch = Watch(self.reporter, claims=ClaimStore(cfg.spool_dir / CLAIMS_DIR))
        self.receiver = Receiver(
            cfg.socket_path,
            self.batcher,
            self.spool,
            agent_id=self.agent_id,
            stats=self.stats,
            status_fn=self.status,
            max_frame_bytes=cfg.max_frame_bytes,
            uploads=self.uploads,
            on_claims_closed=self.watch.watch,
            on_claims=self.watch.claimed,
            socket_group=cfg.socket_group,
        )
        try:
            # Claims left by the previous start: report the runs of processes that died meanwhile,
            # watch the others (before any of them can reconnect).
            self.watch.restore()
            await self.receiver.start()
            if cfg.http_listen is not None:
                await self._start_http(*cfg.http_listen)
            if cfg.compute_target:
                await self._start_jobs()
        except BaseException:
            if self.work is not None:
                await self.work.stop()
            await self.uploads.stop()
            await self.sender.stop()
            await self.batcher.close()
            await self.spool.close()
            raise
        self._started = True
        log.info(
            "agent started",
            extra={
                "fields": {
                    "agent_id": self.agent_id,
                    "socket": str(cfg.socket_path),
                    "collector": cfg.collector,
                    "spool": str(cfg.spool_dir),
                    "pending_records": self.spool.pending_records,
                }
            },
        )

    async def _start_jobs(self) -> None:
        cfg = self.config
        self.runner = Runner(
            RunnerConfig(
                target=cfg.compute_target or "",
                slots=cfg.slots,
                spool_dir=cfg.spool_dir.absolute(),
                collector=self.links["work"].collectors.entries[0].text,  # jobs' SDK takes one address
                socket_path=cfg.socket_path.absolute(),
                security=cfg.security,
                keep_job_dirs=cfg.keep_job_dirs,
                cancel_grace_s=cfg.job_cancel_grace_s,
                log_batch_delay_s=cfg.batch_delay_s,
            ),
            self.reporter,
            self.uploads,
            self.stats,
        )
        await asyncio.to_thread(self.runner.start)
        self.work = WorkClient(
            cfg.collector,
            self.agent_id,
            self.runner,
            security=cfg.security,
            backoff=Backoff(*cfg.backoff) if cfg.backoff else None,
            heartbeat_s=cfg.heartbeat_s,
            link=self.links["work"],
        )
        await self.work.start()

    async def stop(self, grace_s: float | None = None) -> None:
        if not self._started:
            return
        self._started = False
        grace = self.config.stop_grace_s if grace_s is None else grace_s
        if self.work is not None:
            await self.work.stop()  # no new leases; then stop the jobs and report them
        if self.runner is not None:
            await self.runner.stop()
        await self.receiver.stop()
        self.watch.close()
        self.batcher.cut()
        await self.batcher.wait_idle()
        await self.receiver.wait_acks(1.0)
        drained = await self.sender.drain(grace)
        if not await self.uploads.drain(grace):
            log.warning(
                "stopping with files not yet uploaded; the next start uploads them",
                extra={"fields": {"files": self.uploads.pending}},
            )
        if not drained:
            log.warning(
                "stopping with records the collector has not acknowledged; the next start sends them",
                extra={"fields": {"records": self.spool.pending_records, "bytes": self.spool.pending_bytes}},
            )
        await self.receiver.close()
        await self.uploads.stop()
        await self.sender.stop()
        await self.batcher.close()
        await self.spool.close()
        if self._http is not None:
            with contextlib.suppress(Exception):
                await self._http.cleanup()
            self._http = None
        log.info("agent stopped", extra={"fields": {"agent_id": self.agent_id, "drained": drained}})

    # --- status and metrics -----------------------------------------------------------------------

    def status(self) -> frames_pb2.AgentStatus:
        spool = self.spool
        return frames_pb2.AgentStatus(
            agent_id=self.agent_id,
            socket_path=str(self.config.socket_path),
            collector=self.links["ingest"].address if self.links else self.config.collector,
            collector_connected=bool(self.sender and self.sender.connected),
            clients=self.receiver.clients if self.receiver else 0,
            spool_records=spool.pending_records if spool else 0,
            spool_bytes=spool.pending_bytes if spool else 0,
            batches_received=self.stats.batches_received,
            points_received=self.stats.points_received,
            records_acked=self.stats.records_acked,
            oldest_unacked_age_seconds=spool.oldest_unacked_age() if spool else 0.0,
            frames_rejected=self.stats.frames_rejected,
            pid=os.getpid(),
            uptime_seconds=self.stats.uptime(),
            uploads_pending=self.uploads.pending if self.uploads else 0,
            uploads_bytes=self.uploads.pending_bytes if self.uploads else 0,
            files_committed=self.uploads.files_committed if self.uploads else 0,
            spool_max_bytes=spool.max_bytes if spool else self.config.spool_max_bytes,
            spool_full=bool(spool and spool.full),
            spool_full_count=spool.full_count if spool else 0,
            spool_full_seconds=spool.full_seconds if spool else 0.0,
            spool_peak_bytes=spool.peak_bytes if spool else 0,
            spool_corrupt_records=self.stats.corrupt_records,
            collector_connected_seconds=(
                max(0.0, time.time() - self.sender.connected_since)
                if self.sender and self.sender.connected and self.sender.connected_since
                else 0.0
            ),
            collector_down_seconds=self.sender.down_seconds() if self.sender else 0.0,
            socket_mode=self.receiver.socket_mode if self.receiver else 0,
            socket_group=self.config.socket_group or "",
            collectors=[e.text for e in self.collectors.entries] if self.collectors else [self.config.collector],
            collector_addresses=[t.address for t in self.collectors.targets] if self.collectors else [],
            collector_links=self._link_statuses(),
        )

    def _link_statuses(self) -> list[frames_pb2.CollectorLinkStatus]:
        """The replica each stream uses; the work stream only with a compute target."""
        connected = {
            "ingest": bool(self.sender and self.sender.connected),
            "uploads": bool(self.links and self.links["uploads"].connected),
            "work": bool(self.work and self.work.connected),
        }
        return [
            frames_pb2.CollectorLinkStatus(
                role=role, address=link.address, connected=connected[role], failovers=link.failovers
            )
            for role, link in self.links.items()
            if role != "work" or self.work is not None
        ]

    def _gauges(self) -> dict[str, tuple[float, str]]:
        spool = self.spool
        return {
            "clients": (self.receiver.clients if self.receiver else 0, "connected SDK clients"),
            "spool_records": (spool.pending_records if spool else 0, "spool records not yet acknowledged"),
            "spool_bytes": (spool.pending_bytes if spool else 0, "bytes of spool records not yet acknowledged"),
            "spool_disk_bytes": (spool.disk_bytes if spool else 0, "bytes of spool segment files"),
            "spool_segments": (spool.segment_count if spool else 0, "spool segment files"),
            "lag_seconds": (spool.oldest_unacked_age() if spool else 0.0, "age of the oldest unacknowledged record"),
            "collector_connected": (
                1.0 if self.sender and self.sender.connected else 0.0,
                "1 while the ingest stream to the collector is up",
            ),
            "uploads_pending": (
                self.uploads.pending if self.uploads else 0,
                "files received from SDKs and not yet committed at the collector",
            ),
            "uploads_pending_bytes": (self.uploads.pending_bytes if self.uploads else 0, "bytes of those files"),
            "jobs_running": (self.runner.running if self.runner else 0, "job processes running on this node"),
            "jobs_held": (
                len(self.runner.jobs) if self.runner else 0,
                "leases this node holds (waiting, running, ending)",
            ),
            "clients_watched": (
                self.watch.watching if self.watch else 0,
                "exited-connection processes watched for claimed runs",
            ),
            "backpressure": (
                1.0 if spool and spool.full else 0.0,
                "1 while the spool is full (SDK sockets not read)",
            ),
            "spool_max_bytes": (spool.max_bytes if spool else 0, "the spool cap (--spool-max-bytes)"),
            "spool_peak_bytes": (spool.peak_bytes if spool else 0, "most unacknowledged spool bytes since start"),
            "spool_full_count": (spool.full_count if spool else 0, "times the spool reached its cap since start"),
            "spool_full_seconds": (
                spool.full_seconds if spool else 0.0,
                "seconds spent at the spool cap since start (SDKs kept their points in their own spool)",
            ),
            "collector_down_seconds": (
                self.sender.down_seconds() if self.sender else 0.0,
                "seconds the collector has been unreachable (0 while connected)",
            ),
        }

    async def _start_http(self, host: str, port: int) -> None:
        from aiohttp import web
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        async def metrics(_request: web.Request) -> web.Response:
            body = generate_latest(self.registry)
            return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

        async def healthz(_request: web.Request) -> web.Response:
            st = self.status()
            return web.json_response(
                {
                    "status": "ok",
                    "agent_id": st.agent_id,
                    "collector_connected": st.collector_connected,
                    "clients": st.clients,
                    "spool_records": st.spool_records,
                    "lag_seconds": st.oldest_unacked_age_seconds,
                }
            )

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        app.router.add_get("/healthz", healthz)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._http = runner
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.http_address = sockets[0].getsockname()[:2] if sockets else (host, port)
