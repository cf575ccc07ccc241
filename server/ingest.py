"""The `Ingest` service: agents stream compressed batch bundles, the collector acks each after commit.

Per stream, requests are decoded (on a thread pool) and handed to the group committer in the
order they arrive, while earlier ones are still committing; acks go back in the same order.
A request whose content can never be stored is answered REJECTED and the stream goes on.
If the store itself fails, the stream is aborted with UNAVAILABLE so the agent retries later
(nothing is acked that was not committed). A request carrying an `AgentReport` instead of a payload
is the agent's health: it goes to `AgentReports` (the studio's Agents panel) and is not acked.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from concurrent.futures import Executor

import grpc

from runwire.server import limits as server_limits
from runwire.server.agents import AgentReports
from runwire.server.batches import RejectedRequest, decode_request
from runwire.server.committer import CommitterClosed, GroupCommitter
from runwire.server.records import IngestOutcome
from runwire.server.telemetry import Telemetry
from runwire.v1 import ingest_pb2, ingest_pb2_grpc

log = logging.getLogger(__name__)

_Pending = tuple[ingest_pb2.IngestRequest, "asyncio.Future[IngestOutcome] | ingest_pb2.IngestAck"]


class IngestService(ingest_pb2_grpc.IngestServicer):
    def __init__(
        self,
        committer: GroupCommitter,
        telemetry: Telemetry,
        decode_pool: Executor,
        agents: AgentReports | None = None,
    ) -> None:
        self._committer = committer
        self._telemetry = telemetry
        self._decode_pool = decode_pool
        self._agents = agents if agents is not None else AgentReports()

    async def Ingest(
        self, request_iterator: AsyncIterator[ingest_pb2.IngestRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[ingest_pb2.IngestAck]:
        self._telemetry.stream_opened()
        peer = context.peer()
        log.info("ingest stream opened", extra={"fields": {"peer": peer}})
        pending: asyncio.Queue[_Pending | None] = asyncio.Queue()
        window = asyncio.Semaphore(server_limits.INGEST_STREAM_WINDOW)
        agent: list[str] = []  # the agent id of this stream, once its first report names it
        reader = asyncio.create_task(self._read(request_iterator, pending, window, agent, peer))
        try:
            while True:
                item = await pending.get()
                if item is None:
                    break
                request, result = item
                if isinstance(result, ingest_pb2.IngestAck):
                    ack = result
                else:
                    try:
                        outcome = await result
                    except Exception as e:
                        await context.abort(grpc.StatusCode.UNAVAILABLE, f"the collector could not commit: {e}")
                    ack = ingest_pb2.IngestAck(
                        seq=request.seq,
                        status=ingest_pb2.ACK_STATUS_COMMITTED,
                        duplicate_batches=outcome.duplicate_batches,
                        warnings=outcome.warnings,
                    )
                window.release()
                yield ack
            await reader  # re-raises a failure to read the stream
        finally:
            reader.cancel()
            if agent:
                self._agents.stream_closed(agent[0])
            self._telemetry.stream_closed()
            log.info("ingest stream closed", extra={"fields": {"peer": peer}})

    async def _read(
        self,
        requests: AsyncIterator[ingest_pb2.IngestRequest],
        pending: asyncio.Queue[_Pending | None],
        window: asyncio.Semaphore,
        agent: list[str],
        peer: str,
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                await window.acquire()
                try:
                    request = await anext(requests)
                except StopAsyncIteration:
                    break
                if request.HasField("report"):
                    window.release()
                    self._agents.report(request.report, peer)
                    if not agent and request.report.agent_id:
                        agent.append(request.report.agent_id)
                        self._agents.stream_opened(agent[0])
                    continue
                result: asyncio.Future[IngestOutcome] | ingest_pb2.IngestAck
                try:
                    unit = await loop.run_in_executor(self._decode_pool, decode_request, request)
                except RejectedRequest as e:
                    self._telemetry.rejected()
                    log.warning(
                        "ingest request rejected",
                        extra={"fields": {"agent_id": request.agent_id, "seq": request.seq, "reason": str(e)}},
                    )
                    result = ingest_pb2.IngestAck(seq=request.seq, status=ingest_pb2.ACK_STATUS_REJECTED, reason=str(e))
                else:
                    try:
                        result = self._committer.submit(unit)
                    except CommitterClosed as e:
                        result = asyncio.get_running_loop().create_future()
                        result.set_exception(e)
                pending.put_nowait((request, result))
        finally:
            pending.put_nowait(None)
