"""The agent's health as one `AgentReport`: what `runwire status` shows locally, sent to the collector.

The sender writes a report on the ingest stream when the stream comes up, every
`AGENT_REPORT_INTERVAL_S`, and at once when the spool reaches its cap or drops below it, so the
studio's Agents panel (`GET /api/v1/agents`) shows spool fill, backpressure and outages of every
agent without a scrape of each agent's `/metrics`.
"""

from __future__ import annotations

import os
import socket
import time
from typing import TYPE_CHECKING

from runwire.v1 import ingest_pb2

if TYPE_CHECKING:
    from runwire.agent.app import Agent

AGENT_REPORT_INTERVAL_S = 5.0
"""Default seconds between two health reports of an agent to the collector (`runwire agent --report-interval`)."""


def _version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("runwire")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


_VERSION = _version()
_HOSTNAME = socket.gethostname()


def build_report(agent: Agent) -> ingest_pb2.AgentReport:
    spool = agent.spool
    sender = agent.sender
    receiver = agent.receiver
    return ingest_pb2.AgentReport(
        agent_id=agent.agent_id,
        hostname=_HOSTNAME,
        pid=os.getpid(),
        sent_at=time.time(),
        spool_bytes=spool.pending_bytes if spool else 0,
        spool_records=spool.pending_records if spool else 0,
        spool_max_bytes=spool.max_bytes if spool else 0,
        spool_peak_bytes=spool.peak_bytes if spool else 0,
        spool_full=bool(spool and spool.full),
        spool_full_count=spool.full_count if spool else 0,
        spool_full_seconds=spool.full_seconds if spool else 0.0,
        spool_corrupt_records=agent.stats.corrupt_records,
        oldest_unacked_age_seconds=spool.oldest_unacked_age() if spool else 0.0,
        collector_connected_since=(sender.connected_since or 0.0) if sender else 0.0,
        last_outage_seconds=sender.last_outage_s if sender else 0.0,
        clients=receiver.clients if receiver else 0,
        uptime_seconds=agent.stats.uptime(),
        version=_VERSION,
    )
