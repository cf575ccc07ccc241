"""Group commit: ingest requests waiting while the store commits are committed together next.

The store's writer commits one group at a time; whatever arrived meanwhile (from any stream)
becomes the next group, so a busy collector commits larger groups less often and a quiet one
commits each request at once. Requests are committed in the order they were submitted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from runwire.server import limits as server_limits
from runwire.server.bus import BusEvent, LiveBus, log_event, metric_events, status_event
from runwire.server.records import CommittedLog, EndedLease, IngestOutcome, IngestUnit
from runwire.server.store.base import Store
from runwire.server.telemetry import Telemetry

log = logging.getLogger(__name__)


class CommitterClosed(RuntimeError):
    """The collector is stopping and takes no more ingest requests."""


class GroupCommitter:
    def __init__(
        self,
        store: Store,
        telemetry: Telemetry,
        bus: LiveBus | None = None,
        on_leases_ended: Callable[[Sequence[EndedLease]], None] | None = None,
    ) -> None:
        """`on_leases_ended` hears of the leases that commits ended (the dispatcher frees their slots)."""
        self._store = store
        self._bus = bus
        self._on_leases_ended = on_leases_ended
        self._telemetry = telemetry
        self._queue: asyncio.Queue[tuple[IngestUnit, asyncio.Future[IngestOutcome]] | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="runwire-group-commit")

    async def stop(self) -> None:
        """Commit what was submitted, then stop."""
        if self._closed:
            return
        self._closed = True
        self._queue.put_nowait(None)
        if self._task is not None:
            await self._task

    def submit(self, unit: IngestUnit) -> asyncio.Future[IngestOutcome]:
        """Queue `unit`; the future resolves with its outcome once it is committed."""
        if self._closed:
            raise CommitterClosed("the collector is stopping")
        future: asyncio.Future[IngestOutcome] = asyncio.get_running_loop().create_future()
        # a stream that went away never reads its future: mark a failure as seen (it is logged here)
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._queue.put_nowait((unit, future))
        return future

    async def _run(self) -> None:
        stopping = False
        while not stopping:
            item = await self._queue.get()
            if item is None:
                break
            group = [item]
            points = item[0].point_count
            while (
                not self._queue.empty()
                and len(group) < server_limits.COMMIT_GROUP_MAX_REQUESTS
                and points < server_limits.COMMIT_GROUP_MAX_POINTS
            ):
                nxt = self._queue.get_nowait()
                if nxt is None:
                    stopping = True
                    break
                group.append(nxt)
                points += nxt[0].point_count
            await self._commit(group)

    async def _commit(self, group: list[tuple[IngestUnit, asyncio.Future[IngestOutcome]]]) -> None:
        started = time.perf_counter()
        try:
            outcomes = await self._store.commit([unit for unit, _ in group])
        except Exception as e:
            log.exception("ingest commit failed", extra={"fields": {"requests": len(group)}})
            for _, future in group:
                if not future.done():
                    future.set_exception(e)
            return
        seconds = time.perf_counter() - started
        if self._bus is not None and self._bus.wants_events:
            # after the commit, never before: subscribers only ever see durable points
            now = time.time()
            for outcome in outcomes:
                if outcome.committed:
                    self._bus.publish(metric_events(outcome.committed, now))
                if outcome.events:
                    self._bus.publish(_events(outcome.events))
        ended = [lease for o in outcomes for lease in o.ended_leases]
        if ended and self._on_leases_ended is not None:
            self._on_leases_ended(ended)
        self._telemetry.committed(
            requests=len(group),
            batches=sum(o.batches_committed for o in outcomes),
            duplicates=sum(o.duplicate_batches for o in outcomes),
            points=sum(o.points_committed for o in outcomes),
            dropped=sum(o.points_dropped for o in outcomes),
            seconds=seconds,
        )
        log.debug(
            "committed",
            extra={"fields": {"requests": len(group), "points": sum(o.points_committed for o in outcomes)}},
        )
        for (_, future), outcome in zip(group, outcomes, strict=True):
            if not future.done():
                future.set_result(outcome)


def _events(events: Sequence[object]) -> list[BusEvent]:
    """Bus events for committed log lines and status changes, in the order they were applied."""
    out = []
    for ev in events:
        if isinstance(ev, CommittedLog):
            out.append(log_event(ev.run_id, ev.path, ev.lines, ev.first_line))
        else:
            out.append(status_event(ev))  # type: ignore[arg-type]  # a RunRecord
    return out
