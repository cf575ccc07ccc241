"""The `Compute` service (compute.proto): script run submission, jobs, cancel, the nodes' `Work`
streams, and the runs and nodes of each compute target (RUN_API.md §9, §13, §15)."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator

import grpc

from runwire import limits
from runwire.jobs import SCRIPT_RUN_TYPE
from runwire.server import rules
from runwire.server.bus import LiveBus, status_event
from runwire.server.dispatch import Dispatcher, NodeSession
from runwire.server.errors import CollectorError, InvalidArgument, refusals, refuse
from runwire.server.query import key_values, run_info
from runwire.server.records import JOB_DONE, JOB_LEASED, JOB_QUEUED, JobRecord, NewRun, NodeRecord
from runwire.server.store.base import Store
from runwire.v1 import compute_pb2, compute_pb2_grpc, runs_pb2

log = logging.getLogger(__name__)

COMPUTE_SERVICE_NAME = compute_pb2.DESCRIPTOR.services_by_name["Compute"].full_name

_JOB_STATES = {
    JOB_QUEUED: compute_pb2.JOB_STATE_QUEUED,
    JOB_LEASED: compute_pb2.JOB_STATE_LEASED,
    JOB_DONE: compute_pb2.JOB_STATE_DONE,
}


def default_run_id(experiment_name: str) -> str:
    """Azure ML's id form for submitted runs: `<experiment>_<unix seconds>_<8 hex>`."""
    return f"{experiment_name}_{int(time.time())}_{secrets.token_hex(4)}"


def check_definition(d: compute_pb2.JobDefinition) -> None:
    if not d.script and not d.command:
        raise InvalidArgument("a job needs definition.script (a path in the snapshot) or definition.command")
    if d.script and d.command:
        raise InvalidArgument("definition.script and definition.command are mutually exclusive (RUN_API.md §13)")
    if d.command and d.arguments:
        raise InvalidArgument("definition.arguments go with definition.script; a command carries its own argv")
    n = len(d.arguments) + len(d.command)
    if n > limits.MAX_JOB_ARGUMENTS:
        raise InvalidArgument(f"{n} job arguments is more than MAX_JOB_ARGUMENTS ({limits.MAX_JOB_ARGUMENTS})")


def job_info(job: JobRecord) -> compute_pb2.JobInfo:
    return compute_pb2.JobInfo(
        run_id=job.run_id,
        target=job.target,
        definition=compute_pb2.JobDefinition.FromString(job.definition),
        state=_JOB_STATES.get(job.state, compute_pb2.JOB_STATE_UNSPECIFIED),
        node_id=job.node_id,
        lease_id=job.lease_id,
        queued_time=job.queued_time,
        leased_time=job.leased_time,
        attempts=job.attempts,
    )


class ComputeService(compute_pb2_grpc.ComputeServicer):
    def __init__(self, store: Store, dispatcher: Dispatcher, live: LiveBus | None = None) -> None:
        self._store = store
        self._dispatcher = dispatcher
        self._live = live

    @refusals
    async def SubmitRun(
        self, request: compute_pb2.SubmitRunRequest, context: grpc.aio.ServicerContext
    ) -> runs_pb2.RunInfo:
        r = request.run
        check_definition(request.definition)
        if not r.target:
            raise InvalidArgument("run.target must name the compute target to run on (e.g. 'local')")
        if not r.experiment_name:
            raise InvalidArgument("run.experiment_name must not be empty")
        new = NewRun(
            experiment_name=r.experiment_name,
            run_id=r.run_id or default_run_id(r.experiment_name),
            status="Queued",
            parent_run_id=r.parent_run_id or None,
            name=r.name,
            display_name=r.display_name,
            description=r.description,
            type=SCRIPT_RUN_TYPE,
            target=r.target,
            tags=key_values(r.tags),
            properties=key_values(r.properties),
            request_id=r.request_id,
        )
        record = await self._store.submit_run(new, request.definition.SerializeToString())
        if self._live is not None:
            self._live.publish([status_event(record, created=True)])
        log.info(
            "run submitted",
            extra={"fields": {"run_id": record.run_id, "experiment": record.experiment_name, "target": record.target}},
        )
        self._dispatcher.job_queued(record.target)
        return run_info(record)

    @refusals
    async def GetJob(
        self, request: compute_pb2.GetJobRequest, context: grpc.aio.ServicerContext
    ) -> compute_pb2.JobInfo:
        rules.require_run_id(request.run_id)
        return job_info(await self._store.get_job(request.run_id))

    @refusals
    async def CancelRun(
        self, request: compute_pb2.CancelRunRequest, context: grpc.aio.ServicerContext
    ) -> runs_pb2.RunInfo:
        rules.require_run_id(request.run_id)
        record, job, changed = await self._store.cancel_run(request.run_id)
        if changed and self._live is not None:
            self._live.publish([status_event(record)])
        if job is not None and job.state == JOB_LEASED and job.cancel_requested:
            self._dispatcher.cancel(job)
        log.info("run cancel", extra={"fields": {"run_id": record.run_id, "status": record.status}})
        return run_info(record)

    @refusals
    async def ListComputeTargets(
        self, request: compute_pb2.ListComputeTargetsRequest, context: grpc.aio.ServicerContext
    ) -> compute_pb2.ListComputeTargetsResponse:
        targets = await self._store.list_compute_targets(request.name)
        out = compute_pb2.ListComputeTargetsResponse()
        for t in targets:
            nodes = [self._node_info(n) for n in t.nodes]
            out.targets.append(
                compute_pb2.ComputeTargetInfo(
                    name=t.name,
                    nodes=nodes,
                    slots=sum(n.slots for n in nodes if n.connected),
                    queued=t.queued,
                    active=t.active,
                )
            )
        return out

    def _node_info(self, n: NodeRecord) -> compute_pb2.NodeInfo:
        # a node counts as connected while its stream is open and its heartbeats arrive (a flag
        # left set by a collector that crashed does not keep it connected)
        connected = n.connected and n.last_seen >= time.time() - self._dispatcher.lease_ttl
        return compute_pb2.NodeInfo(
            node_id=n.node_id,
            target=n.target,
            slots=n.slots,
            busy=n.busy,
            hostname=n.hostname,
            connected=connected,
            last_seen=n.last_seen,
            run_ids=n.run_ids,
        )

    @refusals
    async def ListActiveRuns(
        self, request: compute_pb2.ListActiveRunsRequest, context: grpc.aio.ServicerContext
    ) -> compute_pb2.ListActiveRunsResponse:
        if not request.target:
            raise InvalidArgument("target must name a compute target")
        found = await self._store.list_active_runs(request.target, list(request.statuses))
        out = compute_pb2.ListActiveRunsResponse()
        for a in found:
            info = run_info(a.run)
            out.runs.append(
                compute_pb2.ActiveRun(
                    run_id=a.run.run_id,
                    status=a.run.status,
                    experiment_id=a.run.experiment_id,
                    experiment_name=a.run.experiment_name,
                    target=a.run.target,
                    node_id=a.node_id,
                    parent_run_id=a.run.parent_run_id or "",
                    type=a.run.type,
                    created_time=a.run.created_time,
                    tags=info.tags,
                    properties=info.properties,
                )
            )
        return out

    async def Work(
        self, request_iterator: AsyncIterator[compute_pb2.NodeMessage], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[compute_pb2.WorkMessage]:
        try:
            first = await anext(request_iterator)
        except StopAsyncIteration:
            return
        if not first.HasField("hello"):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "the first message of a Work stream must be a NodeHello"
            )
        try:
            session = await self._dispatcher.join(first.hello)
        except Exception as e:
            await refuse(context, "Work", e)
            raise  # not reached
        reader = asyncio.create_task(self._read(request_iterator, session), name=f"runwire-work-{session.node_id}")
        try:
            while True:
                message = await session.next()
                if message is None:
                    break
                yield message
        finally:
            reader.cancel()
            self._dispatcher.leave(session)

    async def _read(self, requests: AsyncIterator[compute_pb2.NodeMessage], session: NodeSession) -> None:
        try:
            async for message in requests:
                if message.HasField("heartbeat"):
                    await self._dispatcher.heartbeat(session, list(message.heartbeat.running_leases))
                elif message.HasField("hello"):  # a repeated hello counts as a heartbeat
                    await self._dispatcher.heartbeat(session, list(message.hello.running_leases))
        except asyncio.CancelledError:
            raise
        except CollectorError as e:
            log.warning("node message refused", extra={"fields": {"node_id": session.node_id, "reason": str(e)}})
        except Exception as e:  # the stream broke, or the store failed: the node reconnects
            log.info("work stream ended", extra={"fields": {"node_id": session.node_id, "error": str(e)}})
        finally:
            session.close()


def add_compute_service(service: ComputeService, server: grpc.aio.Server) -> None:
    compute_pb2_grpc.add_ComputeServicer_to_server(service, server)
