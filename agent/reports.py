"""The agent as a producer of its own: run status changes and captured log lines.

The job runner and the process watch report through ingest exactly like an SDK: each report is a
`metrics_pb2.Batch` with this agent start's own `producer_id` and seq 1, 2, 3..., handed to the
batcher as serialized bytes. So reports are spooled to disk, sent, acknowledged and deduplicated
(by (producer_id, seq)) like metric points, and they reach the collector in the order they were
made, after every batch an SDK connection had sent before them.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable

from runwire.agent.batcher import Batcher
from runwire.agent.spool import Spool
from runwire.v1 import metrics_pb2


def make_producer_id(agent_id: str) -> str:
    """A producer id for one start of the agent (a restart starts a new seq series)."""
    return f"agent-{agent_id}-{uuid.uuid4().hex[:8]}"


class Reporter:
    """Adds the agent's own batches to the batcher, numbered in order."""

    def __init__(self, batcher: Batcher, spool: Spool, agent_id: str, producer_id: str | None = None) -> None:
        self.batcher = batcher
        self.spool = spool
        self.producer_id = producer_id or make_producer_id(agent_id)
        self.last_seq = 0
        self.batches = 0

    def add(self, batch: metrics_pb2.Batch) -> int:
        """Number `batch`, hand it to the batcher; returns its seq (see `wait_committed`)."""
        self.last_seq += 1
        batch.producer_id = self.producer_id
        batch.seq = self.last_seq
        self.batcher.add(batch.SerializeToString(), self.producer_id, batch.seq, 0)
        self.batches += 1
        return batch.seq

    def status(
        self,
        run_id: str,
        status: str,
        *,
        lease_id: str = "",
        only_if_active: bool = False,
        error_code: str = "",
        error_message: str = "",
        error_details_json: str = "",
    ) -> int:
        """Report one run status change; returns the batch's seq."""
        change = metrics_pb2.StatusChange(
            run_id=run_id,
            status=status,
            lease_id=lease_id,
            only_if_active=only_if_active,
            error_code=error_code,
            error_message=error_message,
            error_details_json=error_details_json,
            time=time.time(),
        )
        return self.add(metrics_pb2.Batch(statuses=[change]))

    def statuses(self, changes: Iterable[metrics_pb2.StatusChange]) -> int:
        """Report several status changes in one batch; returns its seq."""
        return self.add(metrics_pb2.Batch(statuses=list(changes)))

    def logs(self, run_id: str, path: str, first_line: int, lines: list[str]) -> int:
        """Report log lines `first_line`, `first_line + 1`, ... of a run's log file; returns the seq."""
        return self.add(
            metrics_pb2.Batch(logs=[metrics_pb2.LogLines(run_id=run_id, path=path, first_line=first_line, lines=lines)])
        )

    async def wait_committed(self, seq: int, timeout: float | None = None) -> bool:
        """Wait until the batch `seq` (and every one before it) is committed at the collector.
        Returns False when `timeout` passed first."""
        # Everything this producer added is cut by now or soon (the batch delay); cut it at once.
        self.batcher.cut()
        await self.batcher.wait_idle()
        try:
            await asyncio.wait_for(self.spool.wait_committed(self.producer_id, seq), timeout)
        except TimeoutError:
            return False
        return True
