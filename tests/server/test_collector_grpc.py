"""The gRPC services through a real in-process Collector on an ephemeral port."""

from __future__ import annotations

import asyncio

import aiohttp
import grpc
import numpy as np
import pytest
from collector_helpers import batch, column_values, decode_blobs, group_metric_data, points, request
from grpc_health.v1 import health_pb2, health_pb2_grpc

from runwire import codec, limits
from runwire.v1 import ingest_pb2, runs_pb2


async def create_run(runs, run_id="", experiment="exp", **kwargs) -> runs_pb2.RunInfo:
    kwargs.setdefault("status", "Running")
    return await runs.CreateRun(runs_pb2.CreateRunRequest(experiment_name=experiment, run_id=run_id, **kwargs))


class Stream:
    """One open Ingest stream: send a request, await its ack."""

    def __init__(self, ingest) -> None:
        self._queue: asyncio.Queue = asyncio.Queue()
        self.call = ingest.Ingest(self._requests())

    async def _requests(self):
        while (item := await self._queue.get()) is not None:
            yield item

    async def send(self, req: ingest_pb2.IngestRequest) -> ingest_pb2.IngestAck:
        await self._queue.put(req)
        return await asyncio.wait_for(self.call.read(), timeout=30)

    async def close(self) -> None:
        await self._queue.put(None)
        assert await self.call.read() == grpc.aio.EOF
        assert await self.call.code() == grpc.StatusCode.OK


async def metric_data(runs, run_id, recursive=False, names=()) -> list[runs_pb2.MetricData]:
    req = runs_pb2.GetMetricsRequest(run_id=run_id, recursive=recursive, names=names)
    return [m async for m in runs.GetMetrics(req)]


async def test_health_is_serving(channel):
    stub = health_pb2_grpc.HealthStub(channel)
    for service in ("", "runwire.v1.Ingest", "runwire.v1.Runs"):
        resp = await stub.Check(health_pb2.HealthCheckRequest(service=service))
        assert resp.status == health_pb2.HealthCheckResponse.SERVING


async def test_ingest_acks_after_commit_with_duplicates_and_rejections(runs, ingest):
    run = await create_run(runs, "r1")
    stream = Stream(ingest)
    ack = await stream.send(request(1, batch("prod", 1, points(run.run_id, "loss", [0.5, 0.4]))))
    assert (ack.seq, ack.status, ack.duplicate_batches, list(ack.warnings)) == (
        1,
        ingest_pb2.ACK_STATUS_COMMITTED,
        0,
        [],
    )
    # committed means readable
    (data,) = await metric_data(runs, "r1")
    assert column_values(decode_blobs(data.chunks)) == [0.5, 0.4]

    # a resent batch is skipped, the new one in the same request is stored
    ack = await stream.send(
        request(2, batch("prod", 1, points("r1", "loss", [0.5, 0.4])), batch("prod", 2, points("r1", "loss", [0.3])))
    )
    assert (ack.seq, ack.status, ack.duplicate_batches) == (2, ingest_pb2.ACK_STATUS_COMMITTED, 1)

    # garbage is rejected, and the stream goes on
    garbage = ingest_pb2.IngestRequest(agent_id="a", seq=3, codec=ingest_pb2.CODEC_ZSTD, payload=b"not zstd at all")
    ack = await stream.send(garbage)
    assert ack.seq == 3 and ack.status == ingest_pb2.ACK_STATUS_REJECTED and "decompress" in ack.reason
    broken = points("r1", "loss", [1.0])
    broken.count = 5
    ack = await stream.send(request(4, batch("prod", 3, points("r1", "loss", [9.9]), broken)))
    assert ack.status == ingest_pb2.ACK_STATUS_REJECTED and "'loss'" in ack.reason
    ack = await stream.send(request(5, batch("prod", 4, points("r1", "loss", [0.2]))))
    assert ack.seq == 5 and ack.status == ingest_pb2.ACK_STATUS_COMMITTED
    await stream.close()

    (data,) = await metric_data(runs, "r1")
    assert column_values(decode_blobs(data.chunks)) == [0.5, 0.4, 0.3, 0.2]  # nothing of a rejected request


async def test_ingest_warnings_reach_the_ack_and_the_run(runs, ingest):
    await create_run(runs, "r1")
    stream = Stream(ingest)
    await stream.send(request(1, batch("p", 1, points("r1", "m", [1]))))
    ack = await stream.send(request(2, batch("p", 2, points("r1", "m", ["text"]), points("r1", "other", [2]))))
    assert ack.status == ingest_pb2.ACK_STATUS_COMMITTED
    (warning,) = ack.warnings
    assert "'r1'" in warning and "'m'" in warning and "cannot join" in warning
    await stream.close()
    info = await runs.GetRun(runs_pb2.GetRunRequest(run_id="r1"))
    assert list(info.warnings) == [warning]


async def test_acks_keep_request_order_across_a_pipelined_stream(runs, ingest):
    await create_run(runs, "r1")
    reqs = [request(i, batch("p", i, points("r1", "m", [float(i)] * 100))) for i in range(1, 41)]

    async def gen():
        for r in reqs:
            yield r

    acks = [a async for a in ingest.Ingest(gen())]
    assert [a.seq for a in acks] == list(range(1, 41))
    (data,) = await metric_data(runs, "r1")
    assert column_values(decode_blobs(data.chunks)) == [float(i) for i in range(1, 41) for _ in range(100)]


async def test_concurrent_streams_are_all_committed(runs, ingest, collector):
    await create_run(runs, "r1")

    async def one_stream(producer: str):
        reqs = [request(i, batch(producer, i, points("r1", producer, np.arange(1000.0)))) for i in range(1, 11)]

        async def gen():
            for r in reqs:
                yield r

        return [a async for a in ingest.Ingest(gen())]

    results = await asyncio.gather(*(one_stream(f"p{i}") for i in range(6)))
    assert all(len(acks) == 10 for acks in results)
    status = await runs.GetCollectorStatus(runs_pb2.CollectorStatusRequest())
    assert status.points_committed == 60_000 and status.batches_committed == 60
    grouped = group_metric_data(await metric_data(runs, "r1"))
    assert {name for _, name in grouped} == {f"p{i}" for i in range(6)}


async def test_get_metrics_streams_a_million_points_in_several_messages(runs, ingest):
    await create_run(runs, "r1")
    n = 1_000_000
    rng = np.random.default_rng(7)
    vals = rng.standard_normal(n)
    step = 131_072
    reqs = [
        request(i, batch("p", i, points("r1", "loss", vals[a : a + step], steps=np.arange(a, min(a + step, n)))))
        for i, a in enumerate(range(0, n, step), start=1)
    ]

    async def gen():
        for r in reqs:
            yield r

    acks = [a async for a in ingest.Ingest(gen())]
    assert all(a.status == ingest_pb2.ACK_STATUS_COMMITTED for a in acks)
    await create_run(runs, "r2")
    stream = Stream(ingest)
    await stream.send(request(1, batch("q", 1, points("r1", "loss", [0.0]), points("r1", "acc", [1], description="d"))))
    await stream.close()

    messages = await metric_data(runs, "r1")
    loss = [m for m in messages if m.name == "loss"]
    assert len(loss) >= 3
    assert [m.name for m in messages] == ["loss"] * len(loss) + ["acc"]
    for m in loss:
        assert m.run_id == "r1" and m.kind == codec.SCALAR and m.count == n + 1
        assert [(c.name, c.type) for c in m.columns] == [("", codec.FLOAT)]
        size = sum(len(c) for c in m.chunks)
        assert size <= limits.METRIC_DATA_MESSAGE_BYTES or len(m.chunks) == 1
    decoded = decode_blobs([c for m in loss for c in m.chunks])
    assert decoded.count == n + 1
    np.testing.assert_array_equal(decoded.columns[""].values[:n], vals)
    assert decoded.columns[""].values[n] == 0.0
    np.testing.assert_array_equal(decoded.steps[:n], np.arange(n))
    acc = messages[-1]
    assert acc.description == "d" and acc.kind == codec.SCALAR and acc.count == 1


async def test_get_metrics_names_recursion_and_errors(runs, ingest):
    await create_run(runs, "parent", name="train")
    await create_run(runs, "child", parent_run_id="parent", name="train>fold")
    stream = Stream(ingest)
    await stream.send(
        request(
            1,
            batch(
                "p",
                1,
                points("parent", "alpha", [0.1]),
                points("child", "mse", [3295.71]),
                points("child", "Cosine Wave", table={"angle": [0.0, 1.0], "cos": [1.0, 0.54]}),
            ),
        )
    )
    await stream.close()
    assert [(m.run_id, m.name) for m in await metric_data(runs, "parent")] == [("parent", "alpha")]
    assert [(m.run_id, m.name) for m in await metric_data(runs, "parent", recursive=True)] == [
        ("parent", "alpha"),
        ("child", "mse"),
        ("child", "Cosine Wave"),
    ]
    assert await metric_data(runs, "parent", names=["nope"]) == []
    (table,) = await metric_data(runs, "child", names=["Cosine Wave"])
    assert table.kind == codec.TABLE and [c.name for c in table.columns] == ["angle", "cos"]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await metric_data(runs, "missing")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_run_lifecycle_over_grpc(runs):
    exp = await runs.GetOrCreateExperiment(runs_pb2.GetOrCreateExperimentRequest(name="logging-api-test"))
    assert exp.name == "logging-api-test" and exp.id
    again = await runs.GetOrCreateExperiment(runs_pb2.GetOrCreateExperimentRequest(name="logging-api-test"))
    assert again.id == exp.id
    listed = await runs.ListExperiments(runs_pb2.ListExperimentsRequest())
    assert [e.name for e in listed.experiments] == ["logging-api-test"]

    run = await create_run(runs, experiment="logging-api-test", tags=[runs_pb2.KeyValue(key="fav")])
    assert len(run.run_id) == 36 and run.number == 1 and run.start_time > 0 and run.end_time == 0
    assert not run.tags[0].HasField("value")

    info = await runs.SetTags(
        runs_pb2.SetTagsRequest(
            run_id=run.run_id, tags=[runs_pb2.KeyValue(key="Competition Rank", value="1")], remove=["fav"]
        )
    )
    assert [(t.key, t.value) for t in info.tags] == [("Competition Rank", "1")]
    info = await runs.AddProperties(
        runs_pb2.AddPropertiesRequest(run_id=run.run_id, properties=[runs_pb2.KeyValue(key="p", value="v")])
    )
    assert [(p.key, p.value) for p in info.properties] == [("p", "v")]
    info = await runs.UpdateRun(
        runs_pb2.UpdateRunRequest(
            run_id=run.run_id,
            status="Failed",
            error=runs_pb2.RunError(code="UserError", message="User program failed with ValueError: x"),
        )
    )
    assert info.status == "Failed" and info.end_time > 0 and info.error.code == "UserError"
    fetched = await runs.GetRun(runs_pb2.GetRunRequest(run_id=run.run_id))
    assert fetched == info

    child = await create_run(runs, experiment="logging-api-test", parent_run_id=run.run_id, name="c")
    listed = await runs.ListRuns(runs_pb2.ListRunsRequest(experiment_name="logging-api-test"))
    assert [r.run_id for r in listed.runs] == [run.run_id]
    listed = await runs.ListRuns(runs_pb2.ListRunsRequest(parent_run_id=run.run_id))
    assert [r.run_id for r in listed.runs] == [child.run_id]
    listed = await runs.ListRuns(
        runs_pb2.ListRunsRequest(experiment_name="logging-api-test", include_children=True, statuses=["Running"])
    )
    assert [r.run_id for r in listed.runs] == [child.run_id]
    listed = await runs.ListRuns(
        runs_pb2.ListRunsRequest(
            experiment_name="logging-api-test", tags=[runs_pb2.KeyValue(key="Competition Rank", value="1")]
        )
    )
    assert [r.run_id for r in listed.runs] == [run.run_id]


@pytest.mark.parametrize(
    ("call", "code", "text"),
    [
        (lambda r: r.GetRun(runs_pb2.GetRunRequest(run_id="nope")), grpc.StatusCode.NOT_FOUND, "run nope not found"),
        (lambda r: r.GetRun(runs_pb2.GetRunRequest()), grpc.StatusCode.INVALID_ARGUMENT, "run_id"),
        (
            lambda r: r.GetOrCreateExperiment(runs_pb2.GetOrCreateExperimentRequest(name="bad name")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "[a-zA-Z0-9]",
        ),
        (
            lambda r: r.CreateRun(runs_pb2.CreateRunRequest(experiment_name="exp", run_id="r1")),
            grpc.StatusCode.ALREADY_EXISTS,
            "r1",
        ),
        (
            lambda r: r.CreateRun(runs_pb2.CreateRunRequest(experiment_name="exp", run_id="x" * 300)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "MAX_RUN_ID_LENGTH",
        ),
        (
            lambda r: r.CreateRun(runs_pb2.CreateRunRequest(experiment_name="exp", parent_run_id="nope")),
            grpc.StatusCode.NOT_FOUND,
            "nope",
        ),
        (
            lambda r: r.UpdateRun(runs_pb2.UpdateRunRequest(run_id="r1", status="Bogus")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "Bogus",
        ),
        (
            lambda r: r.UpdateRun(runs_pb2.UpdateRunRequest(run_id="r1", status="Running")),
            grpc.StatusCode.FAILED_PRECONDITION,
            "run r1 is already Completed",
        ),
        (
            lambda r: r.AddProperties(
                runs_pb2.AddPropertiesRequest(run_id="r1", properties=[runs_pb2.KeyValue(key="p", value="other")])
            ),
            grpc.StatusCode.ALREADY_EXISTS,
            "'p'",
        ),
        (
            lambda r: r.SetTags(runs_pb2.SetTagsRequest(run_id="r1", tags=[runs_pb2.KeyValue(key="k" * 300)])),
            grpc.StatusCode.INVALID_ARGUMENT,
            "MAX_TAG_KEY_LENGTH",
        ),
        (
            lambda r: r.ListRuns(runs_pb2.ListRunsRequest(experiment_name="exp", statuses=["Done"])),
            grpc.StatusCode.INVALID_ARGUMENT,
            "Done",
        ),
    ],
)
async def test_refusals_map_to_status_codes(runs, call, code, text):
    await create_run(runs, "r1", status="Completed", properties=[runs_pb2.KeyValue(key="p", value="v")])
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call(runs)
    assert err.value.code() == code
    assert text in err.value.details()


async def test_collector_status_and_http(collector, runs, ingest):
    await create_run(runs, "r1")
    stream = Stream(ingest)
    await stream.send(request(1, batch("p", 1, points("r1", "m", [1.0, 2.0]))))
    await stream.send(request(2, batch("p", 1, points("r1", "m", [1.0, 2.0]))))
    await stream.send(ingest_pb2.IngestRequest(seq=3, codec=ingest_pb2.CODEC_ZSTD, payload=b"x"))
    status = await runs.GetCollectorStatus(runs_pb2.CollectorStatusRequest())
    assert status.ingest_streams == 1
    await stream.close()
    status = await runs.GetCollectorStatus(runs_pb2.CollectorStatusRequest())
    assert status.grpc_address == collector.grpc_address and status.http_address == collector.http_address
    assert status.store.startswith("sqlite:") and status.pid > 0 and status.uptime_seconds > 0
    assert (status.batches_committed, status.duplicate_batches, status.points_committed, status.runs) == (1, 1, 2, 1)
    assert status.ingest_streams == 0

    async with aiohttp.ClientSession(f"http://{collector.http_address}") as http:
        async with http.get("/healthz") as resp:
            assert resp.status == 200 and await resp.json() == {"status": "ok"}
        async with http.get("/metrics") as resp:
            text = await resp.text()
            assert resp.status == 200 and resp.content_type == "text/plain"
        async with http.get("/api/v1/status") as resp:
            body = await resp.json()
    assert "runwire_collector_points_committed_total 2.0" in text
    assert "runwire_collector_duplicate_batches_total 1.0" in text
    assert "runwire_collector_ingest_requests_rejected_total 1.0" in text
    assert "runwire_collector_ingest_streams 0.0" in text
    assert "runwire_collector_ingest_commit_seconds_count" in text
    assert body["points_committed"] == 2 and body["runs"] == 1 and body["grpc_address"] == collector.grpc_address
