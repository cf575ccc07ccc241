"""Sender and the whole agent against an in-test collector double: order, acks, flushes,
collector failures, restarts, rejections, tokens, status and metrics."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from runwire.agent.app import Agent, AgentConfig
from runwire.v1 import frames_pb2
from tests.agent.agent_testlib import Client, FakeCollector, FakeIngest, wait_until


def config(tmp, collector_target: str, **kw) -> AgentConfig:
    defaults = {
        "socket_path": tmp / "a.sock",
        "spool_dir": tmp / "spool",
        "collector": collector_target,
        "agent_id": "agent-t",
        "batch_delay_s": 0.005,
        "backoff": (0.01, 0.2),
        "stop_grace_s": 2.0,
    }
    defaults.update(kw)
    return AgentConfig(**defaults)


async def start_agent(tmp, target: str, **kw) -> Agent:
    agent = Agent(config(tmp, target, **kw))
    await agent.start()
    return agent


async def flush(client: Client, token: int, timeout: float = 10.0) -> None:
    await client.send(frames_pb2.ClientFrame(flush=frames_pb2.FlushRequest(token=token)))
    frame, _ = await client.recv_until("flush_ack", timeout)
    assert frame.flush_ack.token == token


async def test_records_reach_the_collector_in_order_and_acks_delete_segments(tmp, collector):
    agent = await start_agent(tmp, collector.target, segment_bytes=2048, batch_max_bytes=5000)
    client = await Client.connect(agent.config.socket_path, "p1")
    for seq in range(1, 41):
        await client.send_batch(seq)
    await client.wait_ack(40)
    await flush(client, 1)
    fake = collector.servicer
    assert set(fake.committed) == {("p1", s) for s in range(1, 41)}
    seqs = [r.seq for r in fake.requests]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)  # in order, each once
    assert all(r.agent_id == "agent-t" for r in fake.requests)
    assert agent.stats.records_spooled >= 4  # several segments were used ...
    await wait_until(lambda: agent.spool.pending_records == 0, what="all acked")
    assert agent.spool.segment_count <= 1  # ... and deleted once acked (the active one stays)
    assert len(list((tmp / "spool").glob("seg-*.log"))) == agent.spool.segment_count
    st = await client.status()
    assert st.collector_connected and st.clients == 1 and st.batches_received == 40
    assert st.records_acked == agent.stats.records_spooled and st.spool_records == 0
    assert st.oldest_unacked_age_seconds == 0
    await client.close()
    await agent.stop()


async def test_flush_ack_only_after_the_collector_acked(tmp, collector):
    fake = collector.servicer
    fake.gate.clear()  # the collector holds its acks
    agent = await start_agent(tmp, collector.target, batch_delay_s=3600)
    client = await Client.connect(agent.config.socket_path, "p1")
    await client.send_batch(1)
    await client.send(frames_pb2.ClientFrame(flush=frames_pb2.FlushRequest(token=42)))
    await client.wait_ack(1)  # spooled (the flush cut the bundle) ...
    await wait_until(lambda: fake.requests, what="record at the collector")
    st = await client.status()  # ... but not committed: no flush_ack before this status reply
    assert st.spool_records == 1 and st.oldest_unacked_age_seconds > 0
    assert ("p1", 1) not in fake.committed
    fake.gate.set()
    frame, _ = await client.recv_until("flush_ack")
    assert frame.flush_ack.token == 42
    assert ("p1", 1) in fake.committed
    await client.close()
    await agent.stop()


async def test_collector_dies_mid_stream_and_comes_back(tmp):
    fake = FakeIngest()
    fake.die_after = 3  # the stream breaks after the third record arrives
    collector = await FakeCollector(fake).start()
    agent = await start_agent(tmp, collector.target)
    client = await Client.connect(agent.config.socket_path, "p1")
    try:
        for seq in range(1, 11):
            await client.send_batch(seq)
            await client.wait_ack(seq)  # one record per batch
        await flush(client, 1)
        assert agent.stats.reconnects >= 1
        seqs = [r.seq for r in fake.requests]
        assert len(seqs) > len(set(seqs))  # the record in flight when the stream broke was sent again
        # now the collector goes away entirely ...
        await collector.stop()
        await wait_until(lambda: not agent.sender.connected, what="disconnect")
        for seq in range(11, 21):
            await client.send_batch(seq)
        await client.wait_ack(20)  # the agent keeps accepting: it spools
        await client.send(frames_pb2.ClientFrame(flush=frames_pb2.FlushRequest(token=2)))
        assert agent.spool.pending_records > 0
        # ... and comes back on the same port (same store: the double keeps what it committed)
        await collector.start()
        frame, _ = await client.recv_until("flush_ack", timeout=20)
        assert frame.flush_ack.token == 2
        assert set(fake.committed) == {("p1", s) for s in range(1, 21)}  # nothing missing
        assert agent.spool.pending_records == 0
    finally:
        await client.close()
        await agent.stop()
        await collector.stop()


async def test_agent_restart_resends_unacked_records(tmp):
    collector = await FakeCollector().start()
    await collector.stop()  # the port is known, nothing listens on it
    agent = await start_agent(tmp, collector.target, stop_grace_s=0.1)
    client = await Client.connect(agent.config.socket_path, "p1")
    for seq in range(1, 6):
        await client.send_batch(seq)
    await client.wait_ack(5)
    first_records = agent.spool.unacked_seqs()
    assert first_records
    await client.close()
    await agent.stop()  # cannot drain: the records stay in the spool

    await collector.start()
    agent = await start_agent(tmp, collector.target)
    fake = collector.servicer
    try:
        await wait_until(lambda: agent.spool.pending_records == 0, what="resend after restart")
        assert set(fake.committed) == {("p1", s) for s in range(1, 6)}
        assert [r.seq for r in fake.requests] == first_records
        # a flush after the restart waits on the reloaded records of its producer, and new
        # records continue the numbering
        client = await Client.connect(agent.config.socket_path, "p1")
        await client.send_batch(6)
        await flush(client, 9)
        assert fake.requests[-1].seq > first_records[-1]
        await client.close()
    finally:
        await agent.stop()
        await collector.stop()


async def test_flush_after_restart_waits_for_reloaded_records(tmp):
    collector = await FakeCollector().start()
    await collector.stop()
    agent = await start_agent(tmp, collector.target, stop_grace_s=0.05)
    client = await Client.connect(agent.config.socket_path, "p1")
    await client.send_batch(1)
    await client.wait_ack(1)
    await client.close()
    await agent.stop()

    fake = collector.servicer
    fake.gate.clear()
    await collector.start()
    agent = await start_agent(tmp, collector.target)
    try:
        client = await Client.connect(agent.config.socket_path, "p1")
        await client.send(frames_pb2.ClientFrame(flush=frames_pb2.FlushRequest(token=5)))
        await wait_until(lambda: fake.requests, what="resend")
        st = await client.status()
        assert st.spool_records == 1
        assert ("p1", 1) not in fake.committed
        fake.gate.set()
        frame, _ = await client.recv_until("flush_ack")
        assert frame.flush_ack.token == 5 and ("p1", 1) in fake.committed
        await client.close()
    finally:
        await agent.stop()
        await collector.stop()


async def test_rejected_record_is_set_aside_and_the_pipeline_moves_on(tmp, collector):
    fake = collector.servicer
    fake.reject = {1}
    agent = await start_agent(tmp, collector.target)
    client = await Client.connect(agent.config.socket_path, "p1")
    await client.send_batch(1)
    await client.wait_ack(1)
    await client.send_batch(2)
    await flush(client, 3)
    assert ("p1", 2) in fake.committed and ("p1", 1) not in fake.committed
    assert (tmp / "spool" / "rejected" / f"{1:020d}.json").exists()
    assert agent.stats.records_rejected == 1
    await client.close()
    await agent.stop()


async def test_bearer_token(tmp):
    fake = FakeIngest(token="s3cret")
    collector = await FakeCollector(fake).start()
    wrong = await start_agent(tmp, collector.target, token="nope", stop_grace_s=0.05)
    try:
        client = await Client.connect(wrong.config.socket_path, "p1")
        await client.send_batch(1)
        await client.wait_ack(1)
        await wait_until(lambda: fake.auth_failures >= 2, what="retries after an auth failure")
        assert not fake.committed
        await client.close()
    finally:
        await wrong.stop()
    right = await start_agent(tmp, collector.target, token="s3cret")  # same spool: the record is sent now
    try:
        await wait_until(lambda: ("p1", 1) in fake.committed, what="delivery with the right token")
    finally:
        await right.stop()
        await collector.stop()


async def test_graceful_stop_spools_and_drains_the_open_bundle(tmp, collector):
    agent = await start_agent(tmp, collector.target, batch_delay_s=3600)
    client = await Client.connect(agent.config.socket_path, "p1")
    await client.send_batch(1)
    await wait_until(lambda: agent.stats.batches_received == 1, what="batch received")
    await agent.stop()
    frame, _ = await client.recv_until("batch_ack")  # acked before the connection closed
    assert frame.batch_ack.seq == 1
    assert ("p1", 1) in collector.servicer.committed
    assert not (tmp / "a.sock").exists()
    await client.close()


async def test_http_metrics_and_healthz(tmp, collector):
    agent = await start_agent(tmp, collector.target, http_listen=("127.0.0.1", 0))
    client = await Client.connect(agent.config.socket_path, "p1")
    await client.send_batch(1)
    await flush(client, 1)
    host, port = agent.http_address
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://{host}:{port}/metrics") as resp:
            text = await resp.text()
        async with http.get(f"http://{host}:{port}/healthz") as resp:
            health = await resp.json()
    assert "runwire_agent_batches_received_total 1.0" in text
    assert "runwire_agent_points_received_total 100.0" in text
    assert "runwire_agent_records_acked_total" in text and "runwire_agent_spool_bytes" in text
    assert health["status"] == "ok" and health["agent_id"] == "agent-t"
    await client.close()
    await agent.stop()


@pytest.mark.parametrize("clients", [4])
async def test_many_producers_all_committed(tmp, collector, clients):
    agent = await start_agent(tmp, collector.target)
    conns = [await Client.connect(agent.config.socket_path, f"p{i}") for i in range(clients)]

    async def work(i: int, c: Client) -> None:
        for seq in range(1, 26):
            await c.send_batch(seq, n=200, metrics=3)
        await c.wait_ack(25)
        await flush(c, i)

    await asyncio.wait_for(asyncio.gather(*(work(i, c) for i, c in enumerate(conns))), 30)
    assert len(collector.servicer.committed) == clients * 25
    for c in conns:
        await c.close()
    await agent.stop()


async def test_sender_alone_keeps_a_bounded_window(tmp, collector):
    from runwire.agent.sender import Backoff, Sender
    from runwire.agent.spool import Spool
    from runwire.v1 import ingest_pb2

    spool = Spool(tmp / "spool")
    spool.open()
    await spool.start()
    for seq in range(1, 11):
        req = ingest_pb2.IngestRequest(agent_id="a", seq=seq, codec=ingest_pb2.CODEC_ZSTD, batch_count=0)
        req.payload = codec_bundle()
        spool.append(seq, req.SerializeToString(), [("p", seq)])
    fake = collector.servicer
    fake.gate.clear()
    sender = Sender(spool, collector.target, max_in_flight=3, backoff=Backoff(0.01, 0.1))
    await sender.start()
    try:
        await wait_until(lambda: sender.stats.records_sent >= 3, what="a full window")
        with pytest.raises(TimeoutError):  # the window is full: nothing more is sent
            await asyncio.wait_for(wait_until(lambda: sender.stats.records_sent > 3), 0.3)
        fake.gate.set()
        assert await sender.drain(10)
        assert [r.seq for r in fake.requests] == list(range(1, 11))
        assert fake.acked == list(range(1, 11))
        assert sender.stats.records_acked == 10 and sender.connected
    finally:
        await sender.stop()
        await spool.close()


def codec_bundle() -> bytes:
    from runwire import codec
    from runwire.v1 import metrics_pb2

    return codec.compress(metrics_pb2.BatchBundle().SerializeToString())
