"""The dispatcher: the nodes connected to this collector, and the leasing of queued jobs to them.

The store holds the truth about jobs and leases (several collectors may share one database);
the dispatcher only holds, per node whose `Work` stream is open here, the queue of messages to
send it. Whenever something may have freed a slot or queued a job (a submission, a node joining,
a lease ending, a heartbeat) it runs a grant pass for that target: while a connected node has a
free slot (its slots minus the leases the store says it holds), the node with the most free
slots (ties: the one leased to least recently) gets the target's oldest queued job
(`Store.lease_next`, race-safe), sent on its stream as a `Lease`.

Leases live while their node's heartbeats arrive (`nodes.last_seen` in the store). A sweeper
releases the leases of nodes silent for the lease TTL; a node that reconnects says which leases
it still runs, and the others it held are released at once.

With several collector replicas (`Peers`: the NATS live bus), a node's stream is open on one of
them only: a job queued, a lease ended or released elsewhere is announced so that every replica
runs a grant pass for its target at once, and a cancel on a replica the node is not connected to
reaches the one it is connected to (which reads the lease back from the store before telling the
node). Heartbeats (every `NODE_HEARTBEAT_S`) repair what a lost announcement would have done.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

from runwire.server import limits as server_limits
from runwire.server.bus import LiveBus, status_event
from runwire.server.errors import InvalidArgument
from runwire.server.records import (
    JOB_LEASED,
    EndedLease,
    JobRecord,
    LeaseGrant,
    NodeRecord,
    ReleasedLease,
    RunRecord,
)
from runwire.server.store.base import Store
from runwire.v1 import compute_pb2

log = logging.getLogger(__name__)

STALE_LEASE_REASON = "the lease is no longer this node's (it was released, or its run finished)"
CANCEL_REASON = "the run was canceled"


@runtime_checkable
class Peers(Protocol):
    """The other collector replicas (`bus_nats.NatsBus`): best-effort messages to all of them."""

    def announce(self, message: dict) -> None: ...

    def listen(self, callback: Callable[[dict], None]) -> None: ...


class NodeSession:
    """One open `Work` stream: what the collector sends the node, in order."""

    def __init__(self, node_id: str, target: str, slots: int, hostname: str, pid: int) -> None:
        self.node_id = node_id
        self.target = target
        self.slots = slots
        self.hostname = hostname
        self.pid = pid
        self.last_lease = 0.0
        """monotonic time of the last lease granted to it (the fairness tie-break)."""
        self.last_heard = time.monotonic()
        """monotonic time of its hello or last heartbeat (a silent node is leased nothing)."""
        self.joined_at = time.time()
        """wall-clock time of its hello (another replica's newer session of the node replaces it)."""
        self.cancels_sent: set[str] = set()
        """Leases this session was already told to stop (not repeated at every heartbeat)."""
        self.closed = False
        self._queue: asyncio.Queue[compute_pb2.WorkMessage | None] = asyncio.Queue()

    def send(self, message: compute_pb2.WorkMessage) -> None:
        if not self.closed:
            self._queue.put_nowait(message)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._queue.put_nowait(None)

    async def next(self) -> compute_pb2.WorkMessage | None:
        """The next message to send, or None once the session is closed."""
        if self.closed and self._queue.empty():
            return None
        return await self._queue.get()


def lease_message(grant: LeaseGrant) -> compute_pb2.WorkMessage:
    return compute_pb2.WorkMessage(
        lease=compute_pb2.Lease(
            lease_id=grant.lease_id,
            run_id=grant.job.run_id,
            experiment_name=grant.run.experiment_name,
            parent_run_id=grant.run.parent_run_id or "",
            definition=compute_pb2.JobDefinition.FromString(grant.job.definition),
        )
    )


def cancel_message(lease_id: str, run_id: str, reason: str, canceled: bool) -> compute_pb2.WorkMessage:
    return compute_pb2.WorkMessage(
        cancel=compute_pb2.CancelLease(lease_id=lease_id, run_id=run_id, reason=reason, canceled=canceled)
    )


class Dispatcher:
    def __init__(
        self,
        store: Store,
        bus: LiveBus | None = None,
        lease_ttl: float = server_limits.LEASE_TTL_S,
        peers: Peers | None = None,
    ) -> None:
        if lease_ttl <= 0:
            raise ValueError(f"the lease TTL must be positive, not {lease_ttl}")
        self._store = store
        self._bus = bus
        self._peers = peers
        self.lease_ttl = lease_ttl
        self._sessions: dict[str, NodeSession] = {}
        self._granting: dict[str, asyncio.Task[None]] = {}
        self._dirty: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._started = time.time()

    # --- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> None:
        self._started = time.time()
        if self._peers is not None:
            self._peers.listen(self._on_peer)
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="runwire-lease-sweeper")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None
        for session in list(self._sessions.values()):
            session.close()
        grants = list(self._granting.values())
        for task in grants:
            task.cancel()
        await asyncio.gather(*grants, return_exceptions=True)

    async def drain(self) -> None:
        """Wait for the store writes of streams that ended (call after the gRPC server stopped)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def session(self, node_id: str) -> NodeSession | None:
        return self._sessions.get(node_id)

    # --- nodes ---------------------------------------------------------------------------------------

    async def join(self, hello: compute_pb2.NodeHello) -> NodeSession:
        """A node opened its Work stream: record it, reconcile its leases, lease it work."""
        if not hello.node_id:
            raise InvalidArgument("NodeHello.node_id must not be empty (the agent id)")
        if not hello.target:
            raise InvalidArgument("NodeHello.target must not be empty (the compute target the node joins)")
        slots = max(hello.slots, 1)
        old = self._sessions.pop(hello.node_id, None)
        if old is not None:
            old.close()  # the node reconnected before its old stream was noticed gone
        session = NodeSession(hello.node_id, hello.target, slots, hello.hostname, hello.pid)
        await self._store.upsert_node(
            NodeRecord(hello.node_id, hello.target, slots, hello.hostname, hello.pid, connected=True)
        )
        log.info(
            "node joined",
            extra={
                "fields": {
                    "node_id": hello.node_id,
                    "target": hello.target,
                    "slots": slots,
                    "hostname": hello.hostname,
                    "running_leases": len(hello.running_leases),
                }
            },
        )
        await self._reconcile(session, list(hello.running_leases))
        # only now may grant passes lease to it (a lease granted during the reconciliation would
        # look like one the node no longer runs)
        self._sessions[hello.node_id] = session
        self.kick(session.target)
        # a replica that still holds an older stream of this node (not yet noticed broken) drops it,
        # so that it leases nothing more into a stream the node no longer reads
        self._announce({"op": "node", "node_id": hello.node_id, "joined_at": session.joined_at})
        return session

    async def _reconcile(self, session: NodeSession, running: list[str]) -> None:
        """After a (re)connect: leases the store gives this node that it no longer runs are lost
        now; leases it runs that are not its current ones are stopped."""
        listed = set(running)
        for job in await self._store.jobs_of_node(session.node_id):
            if job.lease_id not in listed:
                await self._release(
                    job,
                    "reconnected without this job's process (its agent restarted, and a job's process dies "
                    "with its agent)",
                    tell_node=False,
                )
        await self._check_listed(session, running)

    async def heartbeat(self, session: NodeSession, running: Sequence[str]) -> None:
        """A heartbeat renews the node's leases; a lease it runs that is not current is stopped, a
        canceled one is (re)told to stop."""
        session.last_heard = time.monotonic()
        await self._store.node_seen(session.node_id)
        if running:
            await self._check_listed(session, list(running))
        self.kick(session.target)

    async def _check_listed(self, session: NodeSession, running: list[str]) -> None:
        if not running:
            return
        jobs = await self._store.jobs_by_lease(running)
        for lease_id in running:
            if lease_id in session.cancels_sent:
                continue
            job = jobs.get(lease_id)
            if job is None or job.state != JOB_LEASED or job.lease_id != lease_id or job.node_id != session.node_id:
                session.cancels_sent.add(lease_id)
                session.send(cancel_message(lease_id, job.run_id if job else "", STALE_LEASE_REASON, False))
                log.info("stale lease stopped", extra={"fields": {"node_id": session.node_id, "lease_id": lease_id}})
            elif job.cancel_requested:
                session.cancels_sent.add(lease_id)
                session.send(cancel_message(lease_id, job.run_id, CANCEL_REASON, True))

    def leave(self, session: NodeSession) -> None:
        """The node's stream ended: it is disconnected; its leases live until the lease TTL."""
        session.close()
        if self._sessions.get(session.node_id) is session:
            del self._sessions[session.node_id]
            self._spawn(self._store.set_node_connected(session.node_id, False))
        log.info("node left", extra={"fields": {"node_id": session.node_id, "target": session.target}})

    # --- leases ------------------------------------------------------------------------------------

    def cancel(self, job: JobRecord) -> bool:
        """Tell the node holding `job`'s lease to stop it (the run was canceled); False when that
        node is not connected here (the other replicas are told, and the node hears it at its next
        heartbeat wherever it is connected in any case)."""
        if job.state != JOB_LEASED:
            return False
        session = self._sessions.get(job.node_id)
        if session is None:
            self._announce({"op": "cancel", "lease_id": job.lease_id, "node_id": job.node_id})
            return False
        session.cancels_sent.add(job.lease_id)
        session.send(cancel_message(job.lease_id, job.run_id, CANCEL_REASON, True))
        return True

    def job_queued(self, target: str) -> None:
        """A job was queued for `target`: a grant pass here and on every other replica."""
        self.kick(target)
        self._announce({"op": "kick", "target": target})

    def leases_ended(self, leases: Iterable[EndedLease]) -> None:
        """Leases ended by committed status changes: their nodes have a slot free again (wherever
        they are connected)."""
        for target in {lease.target for lease in leases}:
            self.kick(target)
            self._announce({"op": "kick", "target": target})

    def kick(self, target: str) -> None:
        """Run a grant pass for `target` soon (one at a time per target; a kick during a pass runs
        another pass after it)."""
        if target in self._granting:
            self._dirty.add(target)
            return
        task = asyncio.create_task(self._grant_passes(target), name=f"runwire-grant-{target}")
        self._granting[target] = task

    async def _grant_passes(self, target: str) -> None:
        try:
            while True:
                self._dirty.discard(target)
                try:
                    await self._grant(target)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("granting leases failed", extra={"fields": {"target": target}})
                if target not in self._dirty:
                    break
        finally:
            self._granting.pop(target, None)

    async def _grant(self, target: str) -> None:
        heard = time.monotonic() - self.lease_ttl
        sessions = [s for s in self._sessions.values() if s.target == target and not s.closed and s.last_heard >= heard]
        if not sessions:
            return
        busy = {n.node_id: n.busy for n in await self._store.list_nodes(target)}
        free = {s.node_id: s.slots - busy.get(s.node_id, 0) for s in sessions}
        while True:
            open_ = [s for s in sessions if not s.closed and free[s.node_id] > 0]
            if not open_:
                return
            node = max(open_, key=lambda s: (free[s.node_id], -s.last_lease))
            grant = await self._store.lease_next(target, node.node_id)
            if grant is None:
                return
            node.last_lease = time.monotonic()
            free[node.node_id] -= 1
            node.send(lease_message(grant))
            self._publish_status(grant.run)
            log.info(
                "job leased",
                extra={
                    "fields": {
                        "run_id": grant.job.run_id,
                        "node_id": node.node_id,
                        "lease_id": grant.lease_id,
                        "attempt": grant.job.attempts,
                    }
                },
            )

    async def _release(self, job: JobRecord, reason: str, tell_node: bool = True) -> ReleasedLease | None:
        """Release a lost lease; with `tell_node`, a node connected here is told to stop it (in case
        it still runs it)."""
        released = await self._store.release_lease(job.lease_id, reason)
        if released is None:
            return None
        log.warning(
            "lease lost",
            extra={
                "fields": {
                    "run_id": job.run_id,
                    "node_id": job.node_id,
                    "lease_id": job.lease_id,
                    "requeued": released.requeued,
                    "status": released.run.status,
                    "reason": reason,
                }
            },
        )
        self._publish_status(released.run)
        session = self._sessions.get(job.node_id) if tell_node else None
        if session is not None and job.lease_id not in session.cancels_sent:
            session.cancels_sent.add(job.lease_id)
            session.send(cancel_message(job.lease_id, job.run_id, "the lease was lost: " + reason, False))
        self.kick(job.target)
        if released.requeued:
            self._announce({"op": "kick", "target": job.target})
        return released

    # --- the sweeper ---------------------------------------------------------------------------------

    async def sweep(self) -> int:
        """Release the leases of nodes whose heartbeats stopped for the lease TTL; how many.

        Nothing is released during the first TTL after this dispatcher started: after a collector
        restart (or outage) every node gets a whole TTL to reconnect and list its running leases."""
        now = time.time()
        if now < self._started + self.lease_ttl:
            return 0
        expired = await self._store.expired_leases(now - self.lease_ttl)
        n = 0
        for job in expired:
            reason = (
                f"stopped answering while running this job (no heartbeat for {self.lease_ttl:g} s); "
                "a job's process dies with its agent"
            )
            if await self._release(job, reason) is not None:
                n += 1
        return n

    async def _sweep_forever(self) -> None:
        interval = min(server_limits.LEASE_SWEEP_INTERVAL_S, self.lease_ttl / 4)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("lease sweep failed")

    # --- other replicas ----------------------------------------------------------------------------

    def _announce(self, message: dict) -> None:
        if self._peers is not None:
            self._peers.announce(message)

    def _on_peer(self, message: dict) -> None:
        """What another replica announced (`Peers.listen`)."""
        op = message.get("op")
        if op == "kick":
            target = message.get("target")
            if isinstance(target, str) and any(s.target == target for s in self._sessions.values()):
                self.kick(target)
        elif op == "node":
            node_id, joined_at = message.get("node_id"), message.get("joined_at")
            session = self._sessions.get(node_id) if isinstance(node_id, str) else None
            if session is not None and isinstance(joined_at, int | float) and session.joined_at < joined_at:
                del self._sessions[session.node_id]  # not `leave`: the node is connected, elsewhere
                session.close()
                log.info("node moved to another replica", extra={"fields": {"node_id": session.node_id}})
        elif op == "cancel":
            lease_id, node_id = message.get("lease_id"), message.get("node_id")
            if isinstance(lease_id, str) and isinstance(node_id, str) and node_id in self._sessions:
                self._spawn(self._cancel_for_peer(lease_id))

    async def _cancel_for_peer(self, lease_id: str) -> None:
        """Another replica canceled a run whose node is connected here: the store says whether the
        lease is still this node's and canceled (never trust the message alone)."""
        job = (await self._store.jobs_by_lease([lease_id])).get(lease_id)
        if job is None or not job.cancel_requested or job.lease_id != lease_id:
            return
        session = self._sessions.get(job.node_id)
        if session is not None and lease_id not in session.cancels_sent and self.cancel(job):
            log.info("run cancel from another replica", extra={"fields": {"run_id": job.run_id, "lease_id": lease_id}})

    # --- helpers -------------------------------------------------------------------------------------

    def _publish_status(self, run: RunRecord) -> None:
        if self._bus is not None:
            self._bus.publish([status_event(run)])

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("dispatcher task failed", exc_info=task.exception())
