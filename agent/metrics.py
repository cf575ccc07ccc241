"""The agent's counters: plain integers on the hot path, exposed to Prometheus by a collector.

Every stage bumps fields of one shared `AgentStats` (an integer add, no locks: everything runs on
the event loop). `StatsCollector` turns them into Prometheus metric families when `/metrics` is
scraped, so each `Agent` gets its own registry and several agents can live in one process (tests).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


@dataclass
class AgentStats:
    """Counters (only ever increase) of one agent process."""

    started: float = field(default_factory=time.time)
    connections: int = 0
    batches_received: int = 0
    points_received: int = 0
    bytes_received: int = 0
    frames_rejected: int = 0
    peers_refused: int = 0
    bundles_cut: int = 0
    records_spooled: int = 0
    spool_bytes_written: int = 0
    records_acked: int = 0
    records_rejected: int = 0
    records_sent: int = 0
    reconnects: int = 0
    ack_timeouts: int = 0
    corrupt_records: int = 0
    jobs_started: int = 0
    jobs_finished: int = 0

    def uptime(self) -> float:
        return time.time() - self.started


_COUNTERS = {
    "connections": "SDK connections accepted on the agent socket",
    "batches_received": "SDK batches received and validated",
    "points_received": "metric points (rows) in received batches",
    "bytes_received": "bytes of batch frames received",
    "frames_rejected": "frames refused (malformed, oversized, out of protocol); each closed its connection",
    "peers_refused": "connections refused because the peer's uid/groups may not use this agent (SO_PEERCRED)",
    "bundles_cut": "bundles of batches cut by the batcher",
    "records_spooled": "records written to the disk spool",
    "spool_bytes_written": "bytes written to the disk spool",
    "records_acked": "spool records acknowledged by the collector (committed or set aside)",
    "records_rejected": "spool records the collector rejected (moved to spool/rejected)",
    "records_sent": "spool records sent to the collector, resends included",
    "reconnects": "reconnections of the ingest stream to the collector",
    "ack_timeouts": "ingest streams abandoned because nothing was acknowledged for the ack timeout (a hung collector)",
    "corrupt_records": "spool records found damaged (checksum mismatch, torn segment) and skipped, loudly",
    "jobs_started": "job processes started on this node",
    "jobs_finished": "job processes that exited on this node",
}


class StatsCollector(Collector):
    """Prometheus view of an `AgentStats` plus gauges read from `gauges()` at scrape time."""

    def __init__(self, stats: AgentStats, gauges: Callable[[], dict[str, tuple[float, str]]]) -> None:
        self._stats = stats
        self._gauges = gauges

    def collect(self) -> Iterator[Metric]:
        for name, doc in _COUNTERS.items():
            family = CounterMetricFamily(f"runwire_agent_{name}", doc)
            family.add_metric([], getattr(self._stats, name))
            yield family
        for name, (value, doc) in self._gauges().items():
            family = GaugeMetricFamily(f"runwire_agent_{name}", doc)
            family.add_metric([], value)
            yield family


def make_registry(stats: AgentStats, gauges: Callable[[], dict[str, tuple[float, str]]]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatsCollector(stats, gauges))
    return registry
