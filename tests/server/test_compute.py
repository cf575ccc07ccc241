"""The Compute service through a real in-process Collector: gRPC clients play the nodes (agents'
Work streams) and the job runners (status changes and log lines through a real Ingest stream)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import grpc
import pytest
from collector_helpers import request, wait_for

from runwire.server.app import Collector, CollectorConfig
from runwire.v1 import (
    compute_pb2,
    compute_pb2_grpc,
    ingest_pb2,
    ingest_pb2_grpc,
    live_pb2,
    live_pb2_grpc,
    metrics_pb2,
    runs_pb2,
    runs_pb2_grpc,
)

LEASE_TTL_S = 1.0
"""The collector's lease TTL in these tests (short, so lost nodes are noticed quickly)."""


@pytest.fixture
async def collector(tmp_path) -> AsyncIterator[Collector]:
    config = CollectorConfig(
        data_dir=tmp_path / "collector", grpc_listen="127.0.0.1:0", http_listen=None, lease_ttl=LEASE_TTL_S
    )
    c = Collector(config)
    await c.start()
    try:
        yield c
    finally:
        await c.stop(grace=1)


@pytest.fixture
def compute(channel) -> compute_pb2_grpc.ComputeStub:
    return compute_pb2_grpc.ComputeStub(channel)


@pytest.fixture
def live(channel) -> live_pb2_grpc.LiveStub:
    return live_pb2_grpc.LiveStub(channel)


class Node:
    """A node's Work stream: hello first, heartbeats on demand (or every `beat` seconds), and the
    collector's messages collected in order."""

    def __init__(
        self,
        compute: compute_pb2_grpc.ComputeStub,
        node_id: str,
        target: str = "gpu",
        slots: int = 1,
        running: tuple[str, ...] = (),
        beat: float | None = 0.1,
    ) -> None:
        self.node_id = node_id
        self.running: list[str] = list(running)
        self._out: asyncio.Queue = asyncio.Queue()
        hello = compute_pb2.NodeHello(
            node_id=node_id, target=target, slots=slots, hostname=f"host-{node_id}", pid=1234, running_leases=running
        )
        self._out.put_nowait(compute_pb2.NodeMessage(hello=hello))
        self.call = compute.Work(self._messages())
        self.received: list[compute_pb2.WorkMessage] = []
        self._reader = asyncio.create_task(self._read())
        self._beater = asyncio.create_task(self._beat(beat)) if beat else None

    async def _messages(self):
        while (m := await self._out.get()) is not None:
            yield m

    async def _read(self) -> None:
        try:
            async for m in self.call:
                self.received.append(m)
                if m.HasField("lease"):
                    self.running.append(m.lease.lease_id)
        except grpc.aio.AioRpcError:
            pass

    async def _beat(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)  # a heartbeat period, not a wait for a condition
            self.heartbeat()

    def heartbeat(self) -> None:
        self._out.put_nowait(compute_pb2.NodeMessage(heartbeat=compute_pb2.NodeHeartbeat(running_leases=self.running)))

    @property
    def leases(self) -> list[compute_pb2.Lease]:
        return [m.lease for m in self.received if m.HasField("lease")]

    @property
    def cancels(self) -> list[compute_pb2.CancelLease]:
        return [m.cancel for m in self.received if m.HasField("cancel")]

    async def close(self) -> None:
        """Drop the stream like a killed agent (no more heartbeats)."""
        if self._beater is not None:
            self._beater.cancel()
        self.call.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)


class Runner:
    """A job runner's ingest producer: status changes and log lines, one batch per send."""

    def __init__(self, ingest: ingest_pb2_grpc.IngestStub, producer: str = "runner") -> None:
        self.producer = producer
        self.seq = 0
        self._queue: asyncio.Queue = asyncio.Queue()
        self.call = ingest.Ingest(self._requests())

    async def _requests(self):
        while (item := await self._queue.get()) is not None:
            yield item

    async def send(self, b: metrics_pb2.Batch) -> ingest_pb2.IngestAck:
        await self._queue.put(request(b.seq, b))
        return await asyncio.wait_for(self.call.read(), timeout=30)

    def batch(self) -> metrics_pb2.Batch:
        self.seq += 1
        return metrics_pb2.Batch(producer_id=self.producer, seq=self.seq)

    async def status(self, run_id: str, status: str, lease_id: str = "", **kwargs) -> ingest_pb2.IngestAck:
        b = self.batch()
        b.statuses.append(metrics_pb2.StatusChange(run_id=run_id, status=status, lease_id=lease_id, **kwargs))
        return await self.send(b)

    async def lines(self, run_id: str, first: int, lines: list[str], path: str = "user_logs/std_log.txt"):
        b = self.batch()
        b.logs.append(metrics_pb2.LogLines(run_id=run_id, path=path, first_line=first, lines=lines))
        return await self.send(b)

    async def close(self) -> None:
        await self._queue.put(None)
        await self.call.read()


async def submit(compute, experiment="exp", target="gpu", **run) -> runs_pb2.RunInfo:
    return await compute.SubmitRun(
        compute_pb2.SubmitRunRequest(
            run=runs_pb2.CreateRunRequest(experiment_name=experiment, target=target, **run),
            definition=compute_pb2.JobDefinition(script="train.py", arguments=["--alpha", "0.5"], snapshot_id="s1"),
        )
    )


async def status_of(runs, run_id: str) -> str:
    return (await runs.GetRun(runs_pb2.GetRunRequest(run_id=run_id))).status


async def wait_status(runs, run_id: str, status: str, timeout: float = 10.0) -> runs_pb2.RunInfo:
    last = None

    async def check() -> bool:
        nonlocal last
        last = await runs.GetRun(runs_pb2.GetRunRequest(run_id=run_id))
        return last.status == status

    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"run {run_id} is {last.status}, not {status}")
        await asyncio.sleep(0.02)
    return last


async def get_log(runs, run_id: str, path: str = "", **kwargs) -> list[runs_pb2.LogChunk]:
    return [c async for c in runs.GetLog(runs_pb2.GetLogRequest(run_id=run_id, path=path, **kwargs))]


# --- submission and leasing ------------------------------------------------------------------------


async def test_submit_queues_and_a_joining_node_gets_the_lease(compute, runs):
    run = await submit(compute, tags=[runs_pb2.KeyValue(key="k", value="v")])
    assert re.fullmatch(r"exp_\d{10}_[0-9a-f]{8}", run.run_id)
    assert (run.status, run.type, run.target) == ("Queued", "azureml.scriptrun", "gpu")
    job = await compute.GetJob(compute_pb2.GetJobRequest(run_id=run.run_id))
    assert (job.state, job.target, job.definition.script, list(job.definition.arguments)) == (
        compute_pb2.JOB_STATE_QUEUED,
        "gpu",
        "train.py",
        ["--alpha", "0.5"],
    )
    node = Node(compute, "n1")
    try:
        await wait_for(lambda: len(node.leases) == 1)
        (lease,) = node.leases
        assert (lease.run_id, lease.experiment_name, lease.definition.script) == (run.run_id, "exp", "train.py")
        assert await status_of(runs, run.run_id) == "Preparing"
        job = await compute.GetJob(compute_pb2.GetJobRequest(run_id=run.run_id))
        assert (job.state, job.node_id, job.lease_id, job.attempts) == (
            compute_pb2.JOB_STATE_LEASED,
            "n1",
            lease.lease_id,
            1,
        )
    finally:
        await node.close()


async def test_submit_is_validated(compute):
    for definition, target, rule in (
        (compute_pb2.JobDefinition(), "gpu", "script"),
        (compute_pb2.JobDefinition(script="a.py", command=["ls"]), "gpu", "mutually exclusive"),
        (compute_pb2.JobDefinition(script="a.py"), "", "target"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await compute.SubmitRun(
                compute_pb2.SubmitRunRequest(
                    run=runs_pb2.CreateRunRequest(experiment_name="exp", target=target), definition=definition
                )
            )
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and rule in e.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await submit(compute, experiment="bad name!")
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await compute.GetJob(compute_pb2.GetJobRequest(run_id="missing"))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


async def test_work_stream_must_start_with_hello(compute):
    async def messages():
        yield compute_pb2.NodeMessage(heartbeat=compute_pb2.NodeHeartbeat())

    call = compute.Work(messages())
    with pytest.raises(grpc.aio.AioRpcError) as e:
        async for _ in call:
            pass
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "NodeHello" in e.value.details()


async def test_job_runs_through_ingest_statuses_and_logs_and_frees_its_slot(compute, runs, ingest):
    first = await submit(compute)
    second = await submit(compute)
    node = Node(compute, "n1", slots=1)
    runner = Runner(ingest)
    try:
        await wait_for(lambda: len(node.leases) == 1)
        lease = node.leases[0]
        assert lease.run_id == first.run_id
        await runner.status(first.run_id, "Running", lease.lease_id, time=1.0)
        info = await runs.GetRun(runs_pb2.GetRunRequest(run_id=first.run_id))
        assert info.status == "Running" and info.start_time > 0
        ack = await runner.lines(first.run_id, 0, ["epoch 1", "epoch 2"])
        assert ack.status == ingest_pb2.ACK_STATUS_COMMITTED
        # a resent batch stores nothing twice
        again = metrics_pb2.Batch(producer_id=runner.producer, seq=runner.seq)
        again.logs.append(
            metrics_pb2.LogLines(
                run_id=first.run_id, path="user_logs/std_log.txt", first_line=0, lines=["epoch 1", "epoch 2"]
            )
        )
        ack = await runner.send(again)
        assert ack.duplicate_batches == 1
        await runner.lines(first.run_id, 1, ["epoch 2", "epoch 3"])  # an overlapping resend: only the new line
        (chunk,) = await get_log(runs, first.run_id)
        assert (chunk.path, list(chunk.lines), chunk.total_lines) == (
            "user_logs/std_log.txt",
            ["epoch 1", "epoch 2", "epoch 3"],
            3,
        )
        info = await runs.GetRun(runs_pb2.GetRunRequest(run_id=first.run_id))
        assert list(info.log_files) == ["user_logs/std_log.txt"]
        # the second job waits for the slot
        assert len(node.leases) == 1 and await status_of(runs, second.run_id) == "Queued"
        await runner.status(first.run_id, "Finalizing", lease.lease_id)
        await runner.status(first.run_id, "Completed", lease.lease_id)
        assert await status_of(runs, first.run_id) == "Completed"
        job = await compute.GetJob(compute_pb2.GetJobRequest(run_id=first.run_id))
        assert job.state == compute_pb2.JOB_STATE_DONE
        await wait_for(lambda: len(node.leases) == 2)
        assert node.leases[1].run_id == second.run_id
        assert await status_of(runs, second.run_id) == "Preparing"
    finally:
        await runner.close()
        await node.close()


async def test_get_log_pages_and_unknown_run(runs, ingest, compute, monkeypatch):
    from runwire.server import limits as server_limits

    monkeypatch.setattr(server_limits, "LOG_MESSAGE_MAX_BYTES", 100)
    monkeypatch.setattr(server_limits, "LOG_READ_PAGE_LINES", 7)
    run = await submit(compute)
    runner = Runner(ingest)
    try:
        expected = [f"line {i:04d} " + "x" * 20 for i in range(50)]
        for lo in range(0, 50, 10):
            await runner.lines(run.run_id, lo, expected[lo : lo + 10])
        chunks = await get_log(runs, run.run_id)
        assert len(chunks) > 5 and all(c.total_lines == 50 for c in chunks)
        got = [line for c in chunks for line in c.lines]
        assert got == expected
        assert [c.first_line for c in chunks] == [sum(len(x.lines) for x in chunks[:i]) for i in range(len(chunks))]
        part = await get_log(runs, run.run_id, "user_logs/std_log.txt", from_line=45, max_lines=3)
        assert [line for c in part for line in c.lines] == expected[45:48]
        (empty,) = await get_log(runs, run.run_id, "other.txt")
        assert (list(empty.lines), empty.total_lines) == ([], 0)
    finally:
        await runner.close()
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await get_log(runs, "missing")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


async def test_two_nodes_share_the_work_fairly_and_no_job_is_leased_twice(compute, runs, ingest):
    a = Node(compute, "a", slots=2)
    b = Node(compute, "b", slots=2)
    runner = Runner(ingest)
    try:
        await wait_for_connected(compute, 2)
        ids = [(await submit(compute)).run_id for _ in range(7)]
        await wait_for(lambda: len(a.leases) + len(b.leases) == 4)
        assert (len(a.leases), len(b.leases)) == (2, 2)
        targets = await compute.ListComputeTargets(compute_pb2.ListComputeTargetsRequest(name="gpu"))
        (t,) = targets.targets
        assert (t.name, t.slots, t.queued, t.active) == ("gpu", 4, 3, 4)
        assert sorted(n.busy for n in t.nodes) == [2, 2] and all(n.connected for n in t.nodes)
        # finish the jobs one by one: each freed slot takes the next queued job
        finished: set[str] = set()
        while len(finished) < len(ids):
            lease = next(lease for lease in [*a.leases, *b.leases] if lease.run_id not in finished)
            await runner.status(lease.run_id, "Running", lease.lease_id)
            await runner.status(lease.run_id, "Completed", lease.lease_id)
            finished.add(lease.run_id)
            await wait_for(lambda n=len(finished): len(a.leases) + len(b.leases) == min(len(ids), n + 4))
        leased = [lease.run_id for lease in [*a.leases, *b.leases]]
        assert sorted(leased) == sorted(ids)  # each job leased exactly once
        for run_id in ids:
            assert await status_of(runs, run_id) == "Completed"
    finally:
        await runner.close()
        await a.close()
        await b.close()


async def wait_for_connected(compute, n: int, target: str = "gpu") -> None:
    for _ in range(500):
        resp = await compute.ListComputeTargets(compute_pb2.ListComputeTargetsRequest(name=target))
        if resp.targets and sum(node.connected for node in resp.targets[0].nodes) == n:
            return
        await asyncio.sleep(0.02)
    raise TimeoutError(f"{n} nodes did not connect")


# --- cancel -----------------------------------------------------------------------------------------


async def test_cancel_queued_and_leased_runs(compute, runs, ingest):
    queued = await submit(compute, target="nowhere")
    info = await compute.CancelRun(compute_pb2.CancelRunRequest(run_id=queued.run_id))
    assert info.status == "Canceled" and info.end_time > 0
    job = await compute.GetJob(compute_pb2.GetJobRequest(run_id=queued.run_id))
    assert job.state == compute_pb2.JOB_STATE_DONE

    run = await submit(compute)
    node = Node(compute, "n1")
    runner = Runner(ingest)
    try:
        await wait_for(lambda: len(node.leases) == 1)
        lease = node.leases[0]
        await runner.status(run.run_id, "Running", lease.lease_id)
        info = await compute.CancelRun(compute_pb2.CancelRunRequest(run_id=run.run_id))
        assert info.status == "CancelRequested"
        await wait_for(lambda: len(node.cancels) == 1)
        (cancel,) = node.cancels
        assert (cancel.lease_id, cancel.run_id, cancel.canceled) == (lease.lease_id, run.run_id, True)
        await runner.status(run.run_id, "Canceled", lease.lease_id)
        assert await status_of(runs, run.run_id) == "Canceled"
        # canceling a finished run changes nothing and is no error
        info = await compute.CancelRun(compute_pb2.CancelRunRequest(run_id=run.run_id))
        assert info.status == "Canceled"
        # a plain (interactive) run is canceled at once
        plain = await runs.CreateRun(runs_pb2.CreateRunRequest(experiment_name="exp", status="Running"))
        info = await compute.CancelRun(compute_pb2.CancelRunRequest(run_id=plain.run_id))
        assert info.status == "Canceled"
    finally:
        await runner.close()
        await node.close()


# --- lost nodes ---------------------------------------------------------------------------------------


async def test_lost_node_requeues_preparing_job_and_fails_running_one(compute, runs, ingest):
    steady = Node(compute, "steady", target="cpu")  # heartbeats: its lease must outlive the lost node's
    lost = Node(compute, "lost", slots=2)
    runner = Runner(ingest)
    try:
        cpu_run = await submit(compute, target="cpu")
        prep = await submit(compute)
        running = await submit(compute)
        await wait_for(lambda: len(lost.leases) == 2 and len(steady.leases) == 1)
        by_run = {lease.run_id: lease for lease in lost.leases}
        await runner.status(running.run_id, "Running", by_run[running.run_id].lease_id)
        await lost.close()

        failed = await wait_status(runs, running.run_id, "Failed", timeout=10 * LEASE_TTL_S)
        assert failed.error.code == "NodeLost"
        assert "host-lost" in failed.error.message and "no heartbeat for 1 s" in failed.error.message
        assert await status_of(runs, prep.run_id) == "Queued"
        assert await status_of(runs, cpu_run.run_id) == "Preparing"  # the heartbeating node kept its lease

        # the requeued job goes to the next node that joins, under a new lease
        again = Node(compute, "again")
        try:
            await wait_for(lambda: len(again.leases) == 1)
            assert again.leases[0].run_id == prep.run_id
            assert again.leases[0].lease_id != by_run[prep.run_id].lease_id
            job = await compute.GetJob(compute_pb2.GetJobRequest(run_id=prep.run_id))
            assert (job.attempts, job.node_id) == (2, "again")
            # the lost node's late report is stale and ignored
            await runner.status(prep.run_id, "Running", by_run[prep.run_id].lease_id)
            assert await status_of(runs, prep.run_id) == "Preparing"
        finally:
            await again.close()
    finally:
        await runner.close()
        await steady.close()
        await lost.close()


async def test_reconnect_releases_unlisted_leases_and_stops_stale_ones(compute, runs):
    first = await submit(compute)
    second = await submit(compute)
    node = Node(compute, "n1", slots=2, beat=None)
    await wait_for(lambda: len(node.leases) == 2)
    leases = {lease.run_id: lease.lease_id for lease in node.leases}
    await node.close()
    # the agent restarted: it still runs the first job only, and lists a lease it should not have
    back = Node(compute, "n1", slots=2, running=(leases[first.run_id], "bogus-lease"))
    try:
        await wait_for(lambda: len(back.cancels) == 1 and len(back.leases) == 1)
        (cancel,) = back.cancels
        assert (cancel.lease_id, cancel.canceled) == ("bogus-lease", False)
        # the unlisted lease was released at once (never Running: queued again) and re-leased
        assert back.leases[0].run_id == second.run_id and back.leases[0].lease_id != leases[second.run_id]
        job = await compute.GetJob(compute_pb2.GetJobRequest(run_id=first.run_id))
        assert (job.lease_id, job.state) == (leases[first.run_id], compute_pb2.JOB_STATE_LEASED)
        assert (await compute.GetJob(compute_pb2.GetJobRequest(run_id=second.run_id))).attempts == 2
    finally:
        await back.close()


# --- compute targets and active runs ----------------------------------------------------------------


async def test_list_active_runs_and_compute_targets(compute, runs, ingest):
    node = Node(compute, "n1")
    runner = Runner(ingest)
    try:
        a = await submit(compute)
        b = await submit(compute)
        await wait_for(lambda: len(node.leases) == 1)
        await runner.status(a.run_id, "Running", node.leases[0].lease_id)
        child = await runs.CreateRun(
            runs_pb2.CreateRunRequest(experiment_name="exp", parent_run_id=a.run_id, status="Running")
        )
        resp = await compute.ListActiveRuns(compute_pb2.ListActiveRunsRequest(target="gpu"))
        assert [(r.run_id, r.status, r.node_id) for r in resp.runs] == [
            (child.run_id, "Running", ""),
            (b.run_id, "Queued", ""),
            (a.run_id, "Running", "n1"),
        ]
        queued = await compute.ListActiveRuns(compute_pb2.ListActiveRunsRequest(target="gpu", statuses=["Queued"]))
        assert [r.run_id for r in queued.runs] == [b.run_id]
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await compute.ListActiveRuns(compute_pb2.ListActiveRunsRequest(target="gpu", statuses=["Completed"]))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        await runner.status(a.run_id, "Completed", node.leases[0].lease_id)
        resp = await compute.ListActiveRuns(compute_pb2.ListActiveRunsRequest(target="gpu"))
        assert a.run_id not in [r.run_id for r in resp.runs]

        targets = await compute.ListComputeTargets(compute_pb2.ListComputeTargetsRequest())
        (t,) = targets.targets
        (n,) = t.nodes
        assert (n.node_id, n.hostname, n.slots, n.connected) == ("n1", "host-n1", 1, True)
    finally:
        await runner.close()
        await node.close()


# --- live logs ------------------------------------------------------------------------------------------


async def read_job_log(live, run_id: str) -> tuple[list[str], list[str]]:
    """Subscribe (logs and statuses, from the start) and read until the run is finished: the lines
    in the order received (checked consecutive), and the statuses seen."""
    call = live.Subscribe(
        live_pb2.SubscribeRequest(
            run_id=run_id, kinds=[live_pb2.EVENT_KIND_LOG, live_pb2.EVENT_KIND_STATUS], from_start=True
        )
    )
    lines: list[str] = []
    statuses: list[str] = []
    async for ev in call:
        if ev.kind == live_pb2.EVENT_KIND_LOG:
            assert ev.log.first_line == len(lines), "a gap or a duplicate at the seam"
            lines.extend(ev.log.lines)
        elif ev.kind == live_pb2.EVENT_KIND_STATUS:
            statuses.append(ev.status.status)
            if ev.status.status in ("Completed", "Failed", "Canceled"):
                break
        elif ev.kind == live_pb2.EVENT_KIND_LAGGED:
            raise AssertionError("lagged")
    call.cancel()
    return lines, statuses


async def test_log_subscription_from_any_moment_prints_every_line_exactly_once(compute, runs, ingest, live):
    run = await submit(compute)
    node = Node(compute, "n1")
    runner = Runner(ingest)
    try:
        await wait_for(lambda: len(node.leases) == 1)
        lease = node.leases[0].lease_id
        await runner.status(run.run_id, "Running", lease)
        expected = [f"step {i}" for i in range(3000)]
        readers = [asyncio.create_task(read_job_log(live, run.run_id))]
        for lo in range(0, len(expected), 30):
            await runner.lines(run.run_id, lo, expected[lo : lo + 30])
            if lo % 600 == 0:  # subscribers joining while lines are committed
                readers.append(asyncio.create_task(read_job_log(live, run.run_id)))
            if lo % 900 == 0:
                await asyncio.sleep(0)
        await runner.status(run.run_id, "Completed", lease)
        readers.append(asyncio.create_task(read_job_log(live, run.run_id)))  # after the end
        results = await asyncio.wait_for(asyncio.gather(*readers), timeout=30)
        for lines, statuses in results:
            assert lines == expected
            assert statuses[-1] == "Completed"
    finally:
        await runner.close()
        await node.close()


async def test_lease_ttl_server_flag():
    import argparse

    from runwire.server.main import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert parser.parse_args([]).lease_ttl == 30.0
    assert parser.parse_args(["--lease-ttl", "2.5"]).lease_ttl == 2.5
    with pytest.raises(SystemExit):
        parser.parse_args(["--lease-ttl", "0"])


async def test_a_restarted_collector_gives_nodes_a_lease_ttl_to_come_back(tmp_path):
    """Leases whose node was last seen long ago (the collector was down) are not released before
    the node had a whole TTL to reconnect; a node that comes back listing its lease keeps it."""
    config = CollectorConfig(data_dir=tmp_path / "c", grpc_listen="127.0.0.1:0", http_listen=None, lease_ttl=5.0)
    first = Collector(config)
    await first.start()
    async with grpc.aio.insecure_channel(first.grpc_address) as ch:
        compute = compute_pb2_grpc.ComputeStub(ch)
        run = await submit(compute)
        node = Node(compute, "n1")
        await wait_for(lambda: len(node.leases) == 1)
        lease = node.leases[0].lease_id
        await node.close()
    await first.stop(grace=0)
    # the collector was down for longer than the TTL
    import sqlite3

    con = sqlite3.connect(tmp_path / "c" / "runwire.sqlite3")
    con.execute("UPDATE nodes SET last_seen = last_seen - 3600")
    con.commit()
    con.close()

    second = Collector(config)
    await second.start()
    try:
        assert second.dispatcher is not None
        assert await second.dispatcher.sweep() == 0  # within the grace: nothing released
        async with grpc.aio.insecure_channel(second.grpc_address) as ch:
            compute = compute_pb2_grpc.ComputeStub(ch)
            runs = runs_pb2_grpc.RunsStub(ch)
            back = Node(compute, "n1", running=(lease,))
            try:
                await wait_for_connected(compute, 1)
                job = await compute.GetJob(compute_pb2.GetJobRequest(run_id=run.run_id))
                assert (job.lease_id, job.state, job.attempts) == (lease, compute_pb2.JOB_STATE_LEASED, 1)
                assert await status_of(runs, run.run_id) == "Preparing"
                assert back.cancels == []
            finally:
                await back.close()
    finally:
        await second.stop(grace=0)


async def test_work_stream_hello_is_validated(compute):
    async def messages():
        yield compute_pb2.NodeMessage(hello=compute_pb2.NodeHello(node_id="", target="gpu", slots=1))

    with pytest.raises(grpc.aio.AioRpcError) as e:
        async for _ in compute.Work(messages()):
            pass
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "node_id" in e.value.details()


async def test_server_process_honours_lease_ttl_flag(tmp_path):
    """`python -m runwire.server --lease-ttl 1`: a lost node's Preparing job is queued again."""
    import json
    import signal
    import sys

    ready = tmp_path / "ready.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "runwire.server",
        "--grpc-listen",
        "127.0.0.1:0",
        "--http-listen",
        "off",
        "--data-dir",
        str(tmp_path / "data"),
        "--ready-file",
        str(ready),
        "--lease-ttl",
        "1",
        "--auth",
        "off",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await wait_for(lambda: ready.exists() or proc.returncode is not None, timeout=30)
        assert proc.returncode is None, (await proc.stderr.read()).decode()
        address = json.loads(ready.read_text())["grpc"]
        async with grpc.aio.insecure_channel(address) as ch:
            compute = compute_pb2_grpc.ComputeStub(ch)
            runs = runs_pb2_grpc.RunsStub(ch)
            run = await submit(compute)
            node = Node(compute, "n1")
            await wait_for(lambda: len(node.leases) == 1)
            await node.close()
            await wait_status(runs, run.run_id, "Queued", timeout=15)
            job = await compute.GetJob(compute_pb2.GetJobRequest(run_id=run.run_id))
            assert (job.state, job.attempts) == (compute_pb2.JOB_STATE_QUEUED, 1)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
