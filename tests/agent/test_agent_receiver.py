"""The socket receiver: handshake, acks, flushes, and bad clients closed one by one."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import struct

import pytest

from runwire.agent.batcher import Batcher
from runwire.agent.receiver import AgentAlreadyRunning, Receiver, peer_allowed, raw_batch
from runwire.agent.spool import Spool
from runwire.frames import pack
from runwire.limits import MAX_FRAME_BYTES, PROTOCOL_VERSION
from runwire.v1 import frames_pb2, metrics_pb2
from tests.agent.agent_testlib import Client, batch_frame, make_batch, make_points


class Pipeline:
    """Receiver + batcher + spool, no sender: tests ack records in the spool by hand."""

    def __init__(self, tmp, **batcher_kw) -> None:
        self.path = tmp / "a.sock"
        self.spool = Spool(tmp / "spool", max_bytes=batcher_kw.pop("spool_max_bytes", 1 << 30))
        self.batcher_kw = {"max_delay_s": 0.005, **batcher_kw}

    async def start(self) -> Pipeline:
        self.spool.open()
        await self.spool.start()
        self.batcher = Batcher(self.spool, "agent-t", **self.batcher_kw)
        await self.batcher.start()
        self.receiver = Receiver(self.path, self.batcher, self.spool, agent_id="agent-t")
        await self.receiver.start()
        return self

    async def stop(self) -> None:
        await self.receiver.close()
        await self.batcher.close()
        await self.spool.close()

    def spooled_batches(self) -> list[tuple[str, int]]:
        return [p for seq in self.spool.unacked_seqs() for p in self.spool.get(seq).producers]


@pytest.fixture
async def pipe(tmp):
    p = await Pipeline(tmp).start()
    yield p
    await p.stop()


async def expect_error(client: Client, contains: str) -> None:
    frame, _ = await client.recv_until("error")
    assert contains in frame.error.reason, frame.error.reason
    assert await client.recv() is None  # and the agent closed the connection
    await client.close()


async def test_socket_is_private_and_handshake(pipe):
    assert stat.S_IMODE(os.stat(pipe.path).st_mode) == 0o600
    client = await Client.connect(pipe.path, "p1")
    assert client.hello_ack.protocol_version == PROTOCOL_VERSION
    assert client.hello_ack.agent_id == "agent-t"
    assert client.hello_ack.max_frame_bytes == MAX_FRAME_BYTES
    await client.close()


async def test_cumulative_acks_after_spool(pipe):
    client = await Client.connect(pipe.path, "p1")
    sent = [await client.send_batch(seq) for seq in range(1, 21)]
    acks = await client.wait_ack(20)
    assert acks == sorted(acks) and acks[-1] == 20
    assert pipe.spooled_batches() == [("p1", s) for s in range(1, 21)]
    assert pipe.receiver.stats.batches_received == 20
    assert pipe.receiver.stats.points_received == 20 * 100
    st = await client.status()
    assert st.agent_id == "agent-t" and st.pid == os.getpid()
    assert [b.seq for b in sent] == list(range(1, 21))
    await client.close()


async def test_resent_seq_is_spooled_again(pipe):
    client = await Client.connect(pipe.path, "p1")
    await client.send_batch(1)
    await client.wait_ack(1)
    await client.close()
    client = await Client.connect(pipe.path, "p1")  # a reconnect resends what had no ack
    await client.send_batch(1)
    await client.send_batch(2)
    assert (await client.wait_ack(2))[-1] == 2
    assert pipe.spooled_batches() == [("p1", 1), ("p1", 1), ("p1", 2)]
    await client.close()


async def test_flush_waits_for_the_collector(pipe):
    client = await Client.connect(pipe.path, "p1")
    other = await Client.connect(pipe.path, "p2")
    await other.send_batch(1)
    await other.wait_ack(1)
    # nothing of p1 pending: answered at once, although p2's record is not committed
    await client.send(frames_pb2.ClientFrame(flush=frames_pb2.FlushRequest(token=7)))
    frame, _ = await client.recv_until("flush_ack")
    assert frame.flush_ack.token == 7

    pipe.batcher.max_delay_s = 3600  # only the flush can cut the bundle now
    await client.send_batch(1)
    await client.send_batch(2)
    await client.send(frames_pb2.ClientFrame(flush=frames_pb2.FlushRequest(token=8)))
    await client.wait_ack(2)  # the flush cut the bundle: spooled without waiting for the age bound
    # not committed yet: a status round trip shows no flush_ack came first
    await client.send(frames_pb2.ClientFrame(status=frames_pb2.StatusRequest()))
    _, before = await client.recv_until("status")
    assert not any(f.WhichOneof("body") == "flush_ack" for f in before)
    for seq in pipe.spool.unacked_seqs():
        pipe.spool.ack(seq)  # what the sender does when the collector commits
    frame, _ = await client.recv_until("flush_ack")
    assert frame.flush_ack.token == 8
    await client.close()
    await other.close()


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (struct.pack(">I", MAX_FRAME_BYTES + 1) + b"x" * 100, "exceeds MAX_FRAME_BYTES"),
        (struct.pack(">I", 9) + b"\xff" * 9, "undecodable frame"),
        (pack(frames_pb2.ClientFrame(hello=frames_pb2.Hello(protocol_version=1, producer_id="p"))), "second hello"),
        (batch_frame(make_batch("someone-else", 1)), "producer_id"),
        (batch_frame(metrics_pb2.Batch(producer_id="p1", seq=1, metrics=[metrics_pb2.MetricPoints()])), "run_id"),
    ],
    ids=["oversized", "garbage", "second-hello", "wrong-producer", "empty-run-id"],
)
async def test_bad_frame_closes_only_that_connection(pipe, bad, reason):
    good = await Client.connect(pipe.path, "good")
    await good.send_batch(1)
    await good.wait_ack(1)
    bad_client = await Client.connect(pipe.path, "p1")
    await bad_client.send_batch(1)
    await bad_client.wait_ack(1)
    await bad_client.send_raw(bad)
    await expect_error(bad_client, reason)
    assert pipe.receiver.stats.frames_rejected == 1
    # the other client keeps being served; what was spooled is untouched
    await good.send_batch(2)
    assert (await good.wait_ack(2))[-1] == 2
    assert set(pipe.spooled_batches()) == {("good", 1), ("p1", 1), ("good", 2)}
    await good.close()


async def test_undecodable_points_are_refused(pipe):
    client = await Client.connect(pipe.path, "p1")
    mp = make_points(n=10)
    mp.timestamps = mp.timestamps[:-3]  # wrong length for count=10
    await client.send(frames_pb2.ClientFrame(batch=metrics_pb2.Batch(producer_id="p1", seq=1, metrics=[mp])))
    await expect_error(client, "metric 'loss' of run 'run-1'")


async def test_wrong_protocol_version(pipe):
    client = await Client.connect(pipe.path, "p1", hello=False)
    await client.send(frames_pb2.ClientFrame(hello=frames_pb2.Hello(protocol_version=PROTOCOL_VERSION + 1)))
    await expect_error(client, "protocol version")


async def test_batch_before_hello(pipe):
    client = await Client.connect(pipe.path, "p1", hello=False)
    await client.send(frames_pb2.ClientFrame(batch=make_batch("p1", 1)))
    await expect_error(client, "batch before hello")
    assert pipe.spool.pending_records == 0


async def test_many_concurrent_clients(pipe):
    clients = [await Client.connect(pipe.path, f"p{i}") for i in range(20)]

    async def work(c: Client) -> None:
        for seq in range(1, 6):
            await c.send_batch(seq, n=50)
        await c.wait_ack(5)

    await asyncio.wait_for(asyncio.gather(*(work(c) for c in clients)), 20)
    assert len(pipe.spooled_batches()) == 100
    assert pipe.receiver.clients == 20
    for c in clients:
        await c.close()


async def test_full_spool_stops_reading(tmp):
    pipe = await Pipeline(tmp, spool_max_bytes=1).start()
    try:
        client = await Client.connect(pipe.path, "p1")
        await client.send_batch(1)
        await client.wait_ack(1)
        assert pipe.spool.full
        # The read already waiting may take one more frame; after it the agent stops reading.
        await client.send_batch(2)
        await client.send_batch(3)
        await client.send(frames_pb2.ClientFrame(status=frames_pb2.StatusRequest()))
        seen = []
        with pytest.raises(TimeoutError):
            while True:
                seen.append((await client.recv(timeout=0.3)).WhichOneof("body"))
        assert "status" not in seen
        assert pipe.receiver.stats.batches_received <= 2
        for seq in pipe.spool.unacked_seqs():
            pipe.spool.ack(seq)  # the collector catches up
        await client.recv_until("status")
        assert (await client.wait_ack(3))[-1] == 3
        await client.close()
    finally:
        await pipe.stop()


def test_raw_batch_extraction():
    batch = make_batch("p", 3, n=1000)
    body = frames_pb2.ClientFrame(batch=batch).SerializeToString()
    assert bytes(raw_batch(body)) == batch.SerializeToString()
    assert raw_batch(frames_pb2.ClientFrame(status=frames_pb2.StatusRequest()).SerializeToString()) is None
    assert raw_batch(body + b"\x08\x01") is None  # anything after the field: fall back to re-encoding


def test_peer_policy():
    assert peer_allowed(1000, 1000)
    assert peer_allowed(0, 1000)
    assert not peer_allowed(1001, 1000)
    assert peer_allowed(1001, 1000, frozenset({50, 1001}), 50)  # a member of the --socket-group
    assert not peer_allowed(1001, 1000, frozenset({51}), 50)
    assert not peer_allowed(1001, 1000, frozenset({50}), None)  # no socket group: groups do not matter


async def test_stale_socket_removed_live_one_refused(tmp):
    path = tmp / "a.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # a socket file nobody listens on
    pipe = Pipeline(tmp)
    pipe.path = path
    await pipe.start()
    try:
        second = Receiver(path, pipe.batcher, pipe.spool, agent_id="other")
        with pytest.raises(AgentAlreadyRunning):
            await second.start()
        client = await Client.connect(path, "p1")  # the first agent is unharmed
        await client.close()
    finally:
        await pipe.stop()
    assert not path.exists()  # removed on close
    path.write_text("not a socket")
    with pytest.raises(AgentAlreadyRunning, match="not a socket"):
        await Receiver(path, None, None, agent_id="x").start()
