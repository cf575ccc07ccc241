"""The node's `Compute.Work` stream: this agent as a node of a compute target.

On connect the agent sends `NodeHello` (node id = agent id, target, slots, hostname, pid, and the
leases it still holds), then a `NodeHeartbeat` with its held leases every `NODE_HEARTBEAT_S`. The
collector sends `Lease` (run this job) and `CancelLease` (stop it), handed to the `Runner`. When
the stream breaks, the agent reconnects with the sender's jittered exponential backoff; jobs keep
running meanwhile and are listed in the next hello.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time

import grpc

from runwire._transports.channel import ClientSecurity
from runwire.agent.collectors import CollectorLink, Collectors, channel_factory
from runwire.agent.runner import Runner
from runwire.agent.sender import SESSION_STABLE_S, Backoff, channel_options
from runwire.limits import NODE_HEARTBEAT_S
from runwire.v1 import compute_pb2, compute_pb2_grpc

log = logging.getLogger("runwire.agent.work")


class WorkClient:
    def __init__(
        self,
        collector: str,
        node_id: str,
        runner: Runner,
        *,
        token: str | None = None,
        security: ClientSecurity | None = None,
        backoff: Backoff | None = None,
        heartbeat_s: float = NODE_HEARTBEAT_S,
        link: CollectorLink | None = None,
    ) -> None:
        self.collector = collector
        self.node_id = node_id
        self.runner = runner
        self.security = security if security is not None else ClientSecurity(token=token)
        # Which collector replica the work stream uses, and failover to the next (agent/collectors.py).
        self.link = link or CollectorLink(
            Collectors.parse(collector), "work", node_id, channel_factory(self.security, channel_options())
        )
        self.backoff = backoff or Backoff()
        self.heartbeat_s = heartbeat_s
        self.connected = False
        self.sessions = 0
        self.leases_received = 0
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="work-stream")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.link.close()
        self.connected = False

    def _hello(self) -> compute_pb2.NodeMessage:
        cfg = self.runner.config
        return compute_pb2.NodeMessage(
            hello=compute_pb2.NodeHello(
                node_id=self.node_id,
                target=cfg.target,
                slots=cfg.slots,
                hostname=socket.gethostname(),
                pid=os.getpid(),
                running_leases=self.runner.running_leases,
            )
        )

    async def _messages(self):
        yield self._hello()
        while True:
            await asyncio.sleep(self.heartbeat_s)  # the heartbeat period
            yield compute_pb2.NodeMessage(
                heartbeat=compute_pb2.NodeHeartbeat(running_leases=self.runner.running_leases)
            )

    async def _loop(self) -> None:
        while True:
            began = time.monotonic()
            channel = None
            try:
                channel = await self.link.channel()
                call = compute_pb2_grpc.ComputeStub(channel).Work(self._messages())  # the channel adds the token
                self.sessions += 1
                async for msg in call:
                    if not self.connected:
                        self.connected = True
                        self.backoff.reset()
                        log.info("joined the compute target", extra={"fields": {"target": self.runner.config.target}})
                    kind = msg.WhichOneof("body")
                    if kind == "lease":
                        self.leases_received += 1
                        self.runner.on_lease(msg.lease)
                    elif kind == "cancel":
                        self.runner.on_cancel(msg.cancel)
                reason = "the collector ended the work stream"
            except grpc.aio.AioRpcError as e:
                reason = f"{e.code().name}: {e.details()}"
            except asyncio.CancelledError:
                raise
            except Exception as e:  # never let the node silently leave its target
                log.exception("work stream failed")
                reason = repr(e)
            self.connected = False
            self.link.failed(channel)  # the next attempt goes to the next replica
            if time.monotonic() - began > SESSION_STABLE_S:
                self.backoff.reset()
            delay = self.backoff.next()
            log.info(
                "work stream down; reconnecting",
                extra={"fields": {"reason": reason, "retry_in": round(delay, 2)}},
            )
            await asyncio.sleep(delay)  # backoff between attempts to reach the collector
