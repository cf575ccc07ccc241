"""Bad input on the collector's Ingest stream, against a real collector process: fuzzed requests
(hypothesis), replayed, out-of-order and oversized ones. Every request gets an ack in order
(COMMITTED or REJECTED) or, for an oversized one, RESOURCE_EXHAUSTED; the collector never crashes and
a well-behaved producer writing between the bad requests finds its data exactly once, in order."""

from __future__ import annotations

import itertools
import os

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runwire import codec, limits
from runwire.v1 import ingest_pb2, ingest_pb2_grpc, metrics_pb2, runs_pb2, runs_pb2_grpc
from tests.procs import Cluster
from tests.server.collector_helpers import batch, column_values, decode_blobs, points, request

EXAMPLES = int(os.environ.get("RUNWIRE_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
OPTIONS = [("grpc.max_send_message_length", 2 * limits.MAX_GRPC_MESSAGE_BYTES)]


@pytest.fixture(scope="module")
def collector():
    cluster = Cluster(log_level="warning")
    cluster.start_server()
    with grpc.insecure_channel(cluster.collector, options=OPTIONS) as channel:
        runs = runs_pb2_grpc.RunsStub(channel)
        for run_id in ("fuzz", "control", "replay", "order"):
            runs.CreateRun(runs_pb2.CreateRunRequest(experiment_name="fuzz", run_id=run_id, status="Running"))
        yield cluster, channel
    code = cluster.server.stop()
    assert code == 0, f"collector exited with {code}:\n{cluster.logs()}"


def stored(channel: grpc.Channel, run_id: str, name: str) -> list:
    runs = runs_pb2_grpc.RunsStub(channel)
    msgs = list(runs.GetMetrics(runs_pb2.GetMetricsRequest(run_id=run_id, names=[name])))
    return column_values(decode_blobs([c for m in msgs for c in m.chunks])) if msgs else []


def flip(data: bytes, positions: list[int]) -> bytes:
    out = bytearray(data)
    for p in positions:
        if out:
            out[p % len(out)] ^= 1 << (p % 8)
    return bytes(out)


run_ids = st.sampled_from(["fuzz", "no-such-run", "", "control/../x", "\x00"])
metric_points = st.builds(
    lambda run_id, name, values: points(run_id, name, values),
    run_ids,
    st.text(max_size=6),
    st.lists(st.floats(allow_nan=True), min_size=1, max_size=4),
)
bundles = st.lists(
    st.builds(
        metrics_pb2.Batch,
        producer_id=st.text(max_size=4).filter(lambda p: p != "control"),
        seq=st.integers(0, 2**64 - 1),
        metrics=st.lists(metric_points, max_size=2),
    ),
    max_size=3,
).map(lambda bs: metrics_pb2.BatchBundle(batches=bs).SerializeToString())
payloads = st.one_of(
    st.binary(max_size=512),
    bundles,
    bundles.map(codec.compress),
    st.tuples(bundles.map(codec.compress), st.lists(st.integers(0, 10_000), min_size=1, max_size=3)).map(
        lambda t: flip(*t)
    ),
)
bad_requests = st.builds(
    ingest_pb2.IngestRequest,
    agent_id=st.text(max_size=8),
    seq=st.integers(0, 2**64 - 1),
    codec=st.sampled_from([ingest_pb2.CODEC_NONE, ingest_pb2.CODEC_ZSTD, 7]),
    payload=payloads,
    batch_count=st.integers(0, 2**32 - 1),
    point_count=st.integers(0, 2**64 - 1),
)


def test_fuzzed_requests_never_harm_the_stream_or_other_producers(collector):
    cluster, channel = collector
    ingest = ingest_pb2_grpc.IngestStub(channel)
    control_seq = itertools.count(1)
    expected: list[float] = []
    outcomes = {"committed": 0, "rejected": 0}

    @FUZZ
    @given(st.lists(bad_requests, min_size=1, max_size=4))
    def one(reqs):
        seq = next(control_seq)
        good = request(10**9 + seq, batch("control", seq, points("control", "loss", [float(seq)])))
        sent = [*reqs, good]
        acks = list(ingest.Ingest(iter(sent), timeout=60))
        assert [a.seq for a in acks] == [r.seq for r in sent]
        for ack in acks[:-1]:
            assert ack.status in (ingest_pb2.ACK_STATUS_COMMITTED, ingest_pb2.ACK_STATUS_REJECTED)
            if ack.status == ingest_pb2.ACK_STATUS_REJECTED:
                assert ack.reason
                outcomes["rejected"] += 1
            else:
                outcomes["committed"] += 1
        assert acks[-1].status == ingest_pb2.ACK_STATUS_COMMITTED, acks[-1].reason
        expected.append(float(seq))

    one()
    assert stored(channel, "control", "loss") == expected
    assert cluster.server.popen.poll() is None
    assert outcomes["rejected"] > 0  # the strategies do reach the refusals


def test_replayed_requests_are_stored_once(collector):
    _, channel = collector
    ingest = ingest_pb2_grpc.IngestStub(channel)
    req = request(
        1, batch("replayer", 1, points("replay", "m", [1.0, 2.0])), batch("replayer", 2, points("replay", "m", [3.0]))
    )
    first = list(ingest.Ingest(iter([req])))
    again = list(ingest.Ingest(iter([req, req])))  # a new stream (an agent after a reconnect) and twice in one
    assert [a.duplicate_batches for a in first + again] == [0, 2, 2]
    assert stored(channel, "replay", "m") == [1.0, 2.0, 3.0]


def test_out_of_order_batches_are_all_stored_and_still_deduplicated(collector):
    _, channel = collector
    ingest = ingest_pb2_grpc.IngestStub(channel)
    reqs = [
        request(i, batch("shuffler", s, points("order", "m", [float(s)]))) for i, s in enumerate([3, 1, 5, 2, 4], 1)
    ]
    acks = list(ingest.Ingest(iter(reqs)))
    assert all(a.status == ingest_pb2.ACK_STATUS_COMMITTED and a.duplicate_batches == 0 for a in acks)
    replay = list(ingest.Ingest(iter([request(9, batch("shuffler", 2, points("order", "m", [2.0])))])))
    assert replay[0].duplicate_batches == 1
    assert stored(channel, "order", "m") == [3.0, 1.0, 5.0, 2.0, 4.0]  # arrival order, each once


def test_oversized_request_is_refused_and_the_collector_serves_on(collector):
    cluster, channel = collector
    ingest = ingest_pb2_grpc.IngestStub(channel)
    huge = ingest_pb2.IngestRequest(agent_id="big", seq=1, codec=ingest_pb2.CODEC_NONE)
    huge.payload = b"\0" * (limits.MAX_GRPC_MESSAGE_BYTES + 1)
    with pytest.raises(grpc.RpcError) as err:
        list(ingest.Ingest(iter([huge])))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    ok = list(ingest.Ingest(iter([request(1, batch("after-big", 1, points("fuzz", "after", [1.0])))])))
    assert ok[0].status == ingest_pb2.ACK_STATUS_COMMITTED
    assert cluster.server.popen.poll() is None
