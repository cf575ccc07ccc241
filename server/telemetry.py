"""The collector's own counters: plain numbers for `GetCollectorStatus`, and the same values as
Prometheus metrics (one registry per collector, so several collectors can share a process)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Telemetry:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.batches_committed = 0
        self.duplicate_batches = 0
        self.points_committed = 0
        self.points_dropped = 0
        self.requests_committed = 0
        self.requests_rejected = 0
        self.ingest_streams = 0
        self.live_lagged_events = 0
        r = self.registry
        self._live_subscribers = Gauge("runwire_collector_live_subscribers", "Open live subscriptions", registry=r)
        self._live_lagged = Counter(
            "runwire_collector_live_lagged_events",
            "Live events not sent to subscribers that fell behind (each was told with a lagged event)",
            registry=r,
        )
        self._batches = Counter(
            "runwire_collector_batches_committed", "SDK batches stored (duplicates excluded)", registry=r
        )
        self._duplicates = Counter(
            "runwire_collector_duplicate_batches", "SDK batches skipped as already stored", registry=r
        )
        self._points = Counter("runwire_collector_points_committed", "Metric rows stored", registry=r)
        self._dropped = Counter(
            "runwire_collector_points_dropped", "Metric rows refused (kind/type conflicts, limits)", registry=r
        )
        self._requests = Counter("runwire_collector_ingest_requests_committed", "Ingest requests acked", registry=r)
        self._rejected = Counter(
            "runwire_collector_ingest_requests_rejected", "Ingest requests rejected as never storable", registry=r
        )
        self._streams = Gauge("runwire_collector_ingest_streams", "Open ingest streams", registry=r)
        self._commit_seconds = Histogram(
            "runwire_collector_ingest_commit_seconds",
            "Time to commit one group of ingest requests",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=r,
        )
        self._commit_requests = Histogram(
            "runwire_collector_ingest_commit_requests",
            "Ingest requests committed together in one transaction",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=r,
        )

    def stream_opened(self) -> None:
        self.ingest_streams += 1
        self._streams.inc()

    def stream_closed(self) -> None:
        self.ingest_streams -= 1
        self._streams.dec()

    def rejected(self) -> None:
        self.requests_rejected += 1
        self._rejected.inc()

    def committed(
        self, requests: int, batches: int, duplicates: int, points: int, dropped: int, seconds: float
    ) -> None:
        self.requests_committed += requests
        self.batches_committed += batches
        self.duplicate_batches += duplicates
        self.points_committed += points
        self.points_dropped += dropped
        self._requests.inc(requests)
        self._batches.inc(batches)
        self._duplicates.inc(duplicates)
        self._points.inc(points)
        self._dropped.inc(dropped)
        self._commit_seconds.observe(seconds)
        self._commit_requests.observe(requests)

    def watch_live_subscribers(self, count: Callable[[], int]) -> None:
        self._live_subscribers.set_function(count)

    def live_lagged(self, events: int) -> None:
        self.live_lagged_events += events
        self._live_lagged.inc(events)

    def prometheus_text(self) -> bytes:
        return generate_latest(self.registry)
