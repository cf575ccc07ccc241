"""Two collector replicas in one process: one PostgreSQL database, one NATS JetStream stream. A node
connected to B is leased a job submitted on A, and told of a cancel issued on A, with no heartbeat
to help (only the announcement between replicas can do it); a live subscriber on A sees what B
commits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import numpy as np
import pytest
from collector_helpers import batch, points, request
from test_compute import Node, submit, wait_status

from runwire import codec
from runwire.server.app import Collector, CollectorConfig
from runwire.server.store.postgres import PostgresStore
from runwire.v1 import compute_pb2, compute_pb2_grpc, ingest_pb2_grpc, live_pb2, live_pb2_grpc, runs_pb2, runs_pb2_grpc
from tests import pgtest
from tests.natsd import NATS_URL, delete_stream, fresh_stream, skip_reason

WAIT_S = 20.0
"""Far less than the lease TTL below: a node leased work within it was not helped by a sweep."""


async def until(condition, what: str, timeout: float = WAIT_S) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.01)


@pytest.fixture
async def replicas(tmp_path) -> AsyncIterator[tuple[Collector, Collector]]:
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    with pgtest.throwaway_database() as url:
        stream = fresh_stream()
        started: list[Collector] = []
        try:
            for name in ("a", "b"):
                config = CollectorConfig(
                    data_dir=tmp_path / name,
                    grpc_listen="127.0.0.1:0",
                    http_listen="127.0.0.1:0",
                    lease_ttl=300.0,
                    bus=NATS_URL,
                    bus_stream=stream,
                )
                c = Collector(config, store=PostgresStore(url))
                await c.start()
                started.append(c)
            yield started[0], started[1]
        finally:
            for c in started:
                await c.stop(grace=1)
            await delete_stream(NATS_URL, stream)


async def test_a_job_submitted_on_a_is_leased_to_a_node_on_b_and_canceled_from_a(replicas):
    a, b = replicas
    async with grpc.aio.insecure_channel(a.grpc_address) as ch_a, grpc.aio.insecure_channel(b.grpc_address) as ch_b:
        compute_a, compute_b = compute_pb2_grpc.ComputeStub(ch_a), compute_pb2_grpc.ComputeStub(ch_b)
        runs_a = runs_pb2_grpc.RunsStub(ch_a)
        node = Node(compute_b, "node-b", beat=None)  # no heartbeats: nothing on B would grant otherwise
        try:
            await until(lambda: b.dispatcher.session("node-b") is not None, "the node to join B")
            run = await submit(compute_a)
            await until(lambda: node.leases, "the node on B to be leased the job submitted on A")
            (lease,) = node.leases
            assert lease.run_id == run.run_id
            await wait_status(runs_a, run.run_id, "Preparing")
            await compute_a.CancelRun(compute_pb2.CancelRunRequest(run_id=run.run_id))
            await until(lambda: node.cancels, "the cancel issued on A to reach the node on B")
            (cancel,) = node.cancels
            assert (cancel.lease_id, cancel.run_id, cancel.canceled) == (lease.lease_id, run.run_id, True)
        finally:
            await node.close()


async def test_a_subscriber_on_a_sees_points_committed_on_b_in_order_once(replicas):
    a, b = replicas
    async with grpc.aio.insecure_channel(a.grpc_address) as ch_a, grpc.aio.insecure_channel(b.grpc_address) as ch_b:
        runs_b = runs_pb2_grpc.RunsStub(ch_b)
        run = await runs_b.CreateRun(runs_pb2.CreateRunRequest(experiment_name="replicas"))
        sub = live_pb2_grpc.LiveStub(ch_a).Subscribe(live_pb2.SubscribeRequest(run_id=run.run_id, kinds=[1]))
        assert (await sub.read()).kind == live_pb2.EVENT_KIND_LIVE
        ingest = ingest_pb2_grpc.IngestStub(ch_b).Ingest()
        for seq in range(1, 51):
            values = np.arange((seq - 1) * 10, seq * 10, dtype=np.float64)
            await ingest.write(request(seq, batch("p", seq, points(run.run_id, "loss", values))))
            await ingest.read()  # acked: committed on B
        await ingest.done_writing()
        got: list[float] = []
        while len(got) < 500:
            message = await asyncio.wait_for(sub.read(), WAIT_S)
            assert message.kind == live_pb2.EVENT_KIND_METRIC, message
            for m in message.metrics:
                assert m.first_row == len(got), "a gap or a duplicate"
                got += codec.decode_points(m.points).columns[""].values.tolist()
        assert got == [float(i) for i in range(500)]
        sub.cancel()


async def test_a_node_that_moved_to_b_is_dropped_by_a_and_leased_only_through_b(replicas):
    """The node's old stream on A is not noticed broken yet when it joins B: A drops that session (it
    would lease work into a stream the node no longer reads) without marking the node disconnected."""
    a, b = replicas
    async with grpc.aio.insecure_channel(a.grpc_address) as ch_a, grpc.aio.insecure_channel(b.grpc_address) as ch_b:
        compute_a, compute_b = compute_pb2_grpc.ComputeStub(ch_a), compute_pb2_grpc.ComputeStub(ch_b)
        old = Node(compute_a, "mover", beat=None)
        await until(lambda: a.dispatcher.session("mover") is not None, "the node to join A")
        new = Node(compute_b, "mover", beat=None)
        try:
            await until(lambda: b.dispatcher.session("mover") is not None, "the node to join B")
            await until(lambda: a.dispatcher.session("mover") is None, "A to drop its older session of the node")
            await until(lambda: old._reader.done(), "A to end the old stream")
            run = await submit(compute_a)
            await until(lambda: new.leases, "the node to be leased the job through B")
            assert [x.run_id for x in new.leases] == [run.run_id] and old.leases == []
            (node,) = await a.store.list_nodes("gpu")
            assert node.connected and node.busy == 1
        finally:
            await old.close()
            await new.close()


async def test_a_run_created_on_a_joins_an_experiment_subscription_on_b_before_its_points(replicas):
    """CreateRun on A returns once its `created` event is in the stream (`LiveBus.flush`), so B's
    experiment subscriber knows the run before B commits its points. (The race this closes is a few
    milliseconds wide here; the bus tests check that flush waits for JetStream's ack.)"""
    a, b = replicas
    async with grpc.aio.insecure_channel(a.grpc_address) as ch_a, grpc.aio.insecure_channel(b.grpc_address) as ch_b:
        sub = live_pb2_grpc.LiveStub(ch_b).Subscribe(live_pb2.SubscribeRequest(experiment_name="joined"))
        assert (await sub.read()).kind == live_pb2.EVENT_KIND_LIVE
        ingest = ingest_pb2_grpc.IngestStub(ch_b).Ingest()
        run_ids = []
        for seq in range(1, 11):
            run = await runs_pb2_grpc.RunsStub(ch_a).CreateRun(runs_pb2.CreateRunRequest(experiment_name="joined"))
            run_ids.append(run.run_id)
            await ingest.write(request(seq, batch("p", seq, points(run.run_id, "loss", np.arange(3.0)))))
            await ingest.read()
        await ingest.done_writing()
        seen: dict[str, list[str]] = {r: [] for r in run_ids}
        while sum(len(v) for v in seen.values()) < 20:
            message = await asyncio.wait_for(sub.read(), WAIT_S)
            if message.kind == live_pb2.EVENT_KIND_STATUS:
                seen[message.run_id].append("created" if message.status.created else message.status.status)
            elif message.kind == live_pb2.EVENT_KIND_METRIC:
                for m in message.metrics:
                    seen[m.points.run_id].append(f"{m.points.name}:{m.points.count}")
        assert seen == {r: ["created", "loss:3"] for r in run_ids}
        sub.cancel()


async def test_the_studio_events_of_a_show_the_points_committed_on_b(replicas):
    import json

    import aiohttp

    a, b = replicas
    async with grpc.aio.insecure_channel(b.grpc_address) as ch_b:
        run = await runs_pb2_grpc.RunsStub(ch_b).CreateRun(runs_pb2.CreateRunRequest(experiment_name="sse"))
        url = f"http://{a.http_address}/api/v1/events?run={run.run_id}&kinds=metric"
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            assert resp.status == 200
            assert await resp.content.readline() == b"event: live\n"
            ingest = ingest_pb2_grpc.IngestStub(ch_b).Ingest()
            for seq in range(1, 6):
                values = np.arange((seq - 1) * 4, seq * 4, dtype=np.float64)
                await ingest.write(request(seq, batch("p", seq, points(run.run_id, "acc", values))))
                await ingest.read()
            await ingest.done_writing()
            ys: list[float] = []
            while len(ys) < 20:
                line = await asyncio.wait_for(resp.content.readline(), WAIT_S)
                if line.startswith(b"data: ") and b'"name":"acc"' in line:
                    data = json.loads(line[6:])
                    assert data["first_row"] == len(ys)
                    ys += data["y"]
            assert ys == [float(i) for i in range(20)]
