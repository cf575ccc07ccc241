"""A real agent process restarted over a damaged spool: a segment truncated in the middle, a bit flipped inside a
record, and a record damaged on disk after the reload. Each is found by its checksum, reported loudly (an ERROR
log line naming the segment and offset, `spool_corrupt_records` in the status, the metrics and the report to the
collector), and everything else is delivered, once."""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path

from runwire.agent.spool import HEADER, _parse_at, decode_index
from tests.agent.agent_testlib import Client, FakeCollector, wait_until
from tests.procs import Proc


def start_agent(tmp: Path, collector: str, name: str) -> Proc:
    return Proc(
        name,
        ["runwire.agent", "--socket", str(tmp / "a.sock"), "--collector", collector, "--spool-dir",
         str(tmp / "spool"), "--stop-grace", "0.2", "--report-interval", "0.2", "--http-listen", "127.0.0.1:0",
         "--log-level", "info"],
        tmp / f"{name}.json",
        tmp / f"{name}.log",
    ).start()  # fmt: skip


async def spool_batches(tmp: Path, collector: str, name: str, seqs: range) -> None:
    """One agent lifetime: each batch acked (so: one record each), then a stop with the collector away (the
    records stay; the next start writes a new segment)."""
    agent = await asyncio.to_thread(start_agent, tmp, collector, name)
    try:
        client = await Client.connect(tmp / "a.sock", "prod")
        for seq in seqs:
            await client.send_batch(seq, n=50)
            await client.wait_ack(seq)
        await client.close()
    finally:
        await asyncio.to_thread(agent.stop)


def records(segment: Path) -> list[tuple[int, int, list[int]]]:
    """(offset, bytes, SDK batch seqs) of each record of a segment file."""
    data = memoryview(segment.read_bytes())
    out = []
    off = 0
    while off < len(data):
        _seq, _created, index_len, body_len = _parse_at(data, off)
        index = decode_index(data[off + HEADER.size : off + HEADER.size + index_len])
        out.append((off, HEADER.size + body_len, [s for _, s in index]))
        off += HEADER.size + body_len
    return out


def flip_bit(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:  # in place: a running agent reads the same file
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0x10]))


async def test_damaged_spool_is_reported_and_the_rest_delivered(tmp):
    collector = FakeCollector()
    await collector.start()
    target = collector.target
    await collector.stop()  # away while the spool fills

    await spool_batches(tmp, target, "agent1", range(1, 6))
    await spool_batches(tmp, target, "agent2", range(6, 11))
    seg_a, seg_b = sorted((tmp / "spool").glob("seg-*.log"))
    recs_a, recs_b = records(seg_a), records(seg_b)
    assert [r[2] for r in recs_a] == [[1], [2], [3], [4], [5]] and [r[2] for r in recs_b] == [[6], [7], [8], [9], [10]]

    # segment A (not the newest) cut in the middle of batch 4's record: 4 and 5 are gone
    off4, len4, _ = recs_a[3]
    with open(seg_a, "r+b") as f:
        f.truncate(off4 + len4 // 2)
    # one bit flipped in the payload of batch 7's record
    off7, len7, _ = recs_b[1]
    flip_bit(seg_b, off7 + len7 - 10)

    agent = await asyncio.to_thread(start_agent, tmp, target, "agent3")
    try:
        client = await Client.connect(tmp / "a.sock", "reader")
        st = await client.status()
        assert st.spool_corrupt_records == 2 and st.spool_records == 7, st
        log = agent.log_tail(100_000)
        assert log.count("CORRUPT SPOOL RECORD") == 2, log
        assert f"in {seg_a} at offset {off4}" in log and f"in {seg_b} at offset {off7}" in log
        corrupt_lines = [line for line in log.splitlines() if "CORRUPT SPOOL RECORD" in line]
        assert all(line.split()[1] == "level=error" for line in corrupt_lines), corrupt_lines

        # damage after the reload: the record is checked again when it is read for sending
        off9, len9, _ = recs_b[3]
        flip_bit(seg_b, off9 + len9 - 3)

        collector = FakeCollector()
        collector.port = int(target.rsplit(":", 1)[1])
        await collector.start()
        try:
            delivered = {1, 2, 3, 6, 8, 10}
            await wait_until(
                lambda: {s for _, s in collector.servicer.committed} >= delivered, 30, "the intact batches"
            )
            st = await _wait_status(client, lambda s: s.spool_records == 0)
            assert {s for _, s in collector.servicer.committed} == delivered
            assert st.spool_corrupt_records == 3
            assert "CORRUPT SPOOL RECORD" in agent.log_tail(100_000).split("agent started", 1)[-1]
            assert f"at offset {off9}" in agent.log_tail(100_000)
            # the collector hears it too, in the agent's health report
            await wait_until(
                lambda: collector.servicer.reports and collector.servicer.reports[-1].spool_corrupt_records == 3,
                10,
                "a report with the corrupt count",
            )
            with urllib.request.urlopen(f"http://{agent.info['http']}/metrics", timeout=10) as resp:
                metrics = resp.read().decode()
            assert "runwire_agent_corrupt_records_total 3.0" in metrics
        finally:
            await collector.stop()
        await client.close()
    finally:
        await asyncio.to_thread(agent.stop)
    # the segments that held damage are kept for inspection
    assert {p.name for p in (tmp / "spool" / "corrupt").glob("seg-*.log")} == {seg_a.name, seg_b.name}


async def _wait_status(client: Client, cond, timeout: float = 30.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        st = await client.status()
        if cond(st):
            return st
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"agent status never satisfied the condition: {st}")
        await asyncio.sleep(0.02)
