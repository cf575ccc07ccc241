"""The batcher: size, age and flush cuts; bundles wrap the SDK's batch bytes unchanged."""

from __future__ import annotations

import asyncio

import pytest

from runwire import codec
from runwire.agent.batcher import COMPRESS_INLINE_MAX_BYTES, Batcher, bundle_part
from runwire.agent.spool import Spool
from runwire.v1 import ingest_pb2, metrics_pb2
from tests.agent.agent_testlib import make_batch


@pytest.fixture
async def spool(tmp):
    s = Spool(tmp / "spool")
    s.open()
    await s.start()
    yield s
    await s.close()


async def make_batcher(spool, **kw) -> Batcher:
    b = Batcher(spool, "agent-x", **kw)
    await b.start()
    return b


def record(spool: Spool, seq: int) -> tuple[ingest_pb2.IngestRequest, metrics_pb2.BatchBundle]:
    req = ingest_pb2.IngestRequest.FromString(spool.read(seq))
    bundle = metrics_pb2.BatchBundle.FromString(codec.decompress(req.payload, 1 << 30))
    return req, bundle


def test_bundle_part_is_protobuf_framing():
    batches = [make_batch("p", i, n=10 + i * 50) for i in range(3)]
    raw = b"".join(bytes(x) for b in batches for x in bundle_part(b.SerializeToString()))
    assert raw == metrics_pb2.BatchBundle(batches=batches).SerializeToString()


async def test_size_cut(spool):
    batches = [make_batch("p", i, n=100) for i in range(1, 8)]
    size = len(batches[0].SerializeToString())
    max_bytes = int(size * 2.5)  # two batches per bundle
    batcher = await make_batcher(spool, max_bytes=max_bytes, max_delay_s=3600)
    futures = [batcher.add(b.SerializeToString(), "p", b.seq, 100) for b in batches]
    assert len({id(f) for f in futures}) == 4
    # no flush, no timer: the first three bundles are cut by size alone
    assert await asyncio.wait_for(asyncio.gather(*futures[:6]), 5) == [1, 1, 2, 2, 3, 3]
    assert not futures[6].done()
    batcher.cut()
    await asyncio.wait_for(futures[-1], 5)
    got = []
    for seq in spool.unacked_seqs():
        req, bundle = record(spool, seq)
        assert req.agent_id == "agent-x" and req.seq == seq and req.codec == ingest_pb2.CODEC_ZSTD
        assert req.batch_count == len(bundle.batches)
        assert req.point_count == 100 * len(bundle.batches)
        assert sum(len(b.SerializeToString()) for b in bundle.batches) <= max_bytes
        got.extend(bundle.batches)
    assert got == batches  # in order, bytes as sent
    assert spool.pending_records == 4
    await batcher.close()


async def test_age_cut(spool):
    batcher = await make_batcher(spool, max_delay_s=0.03)
    fut = batcher.add(make_batch("p", 1).SerializeToString(), "p", 1, 100)
    assert spool.pending_records == 0  # not cut yet
    assert await asyncio.wait_for(fut, 5) == 1
    assert spool.pending_records == 1
    await batcher.close()


async def test_flush_cut(spool):
    batcher = await make_batcher(spool, max_delay_s=3600)
    f1 = batcher.add(make_batch("p", 1).SerializeToString(), "p", 1, 100)
    f2 = batcher.add(make_batch("q", 1).SerializeToString(), "q", 1, 100)
    assert f1 is f2 and batcher.open_batches == 2
    assert batcher.cut() is f1
    assert batcher.cut() is None  # nothing open
    assert await asyncio.wait_for(f1, 5) == 1
    assert spool.get(1).producers == [("p", 1), ("q", 1)]
    await batcher.close()


async def test_big_bundle_compressed_in_a_thread_and_oversized_batch_alone(spool):
    batcher = await make_batcher(spool, max_bytes=200_000, max_delay_s=3600)
    big = make_batch("p", 1, n=20_000)  # one batch bigger than the bundle bound
    assert len(big.SerializeToString()) > max(COMPRESS_INLINE_MAX_BYTES, 200_000)
    small = make_batch("p", 2, n=10)
    f_small0 = batcher.add(make_batch("p", 0, n=10).SerializeToString(), "p", 0, 10)
    f_big = batcher.add(big.SerializeToString(), "p", 1, 20_000)  # cuts the small one first
    f_small = batcher.add(small.SerializeToString(), "p", 2, 10)
    assert f_small0 is not f_big and f_big is not f_small
    batcher.cut()
    seqs = await asyncio.wait_for(asyncio.gather(f_small0, f_big, f_small), 5)
    assert seqs == [1, 2, 3]
    req, bundle = record(spool, 2)
    assert list(bundle.batches) == [big] and req.point_count == 20_000
    assert len(req.payload) < len(big.SerializeToString()) / 2
    await batcher.close()


async def test_close_spools_the_open_bundle(spool):
    batcher = await make_batcher(spool, max_delay_s=3600)
    fut = batcher.add(make_batch("p", 1).SerializeToString(), "p", 1, 100)
    await batcher.close()
    assert fut.result() == 1 and spool.pending_records == 1
