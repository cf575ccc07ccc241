"""The disk spool: append, reload, acks, segment deletion, damaged files, record numbers."""

from __future__ import annotations

import asyncio
import json
import logging
import os

import pytest

from runwire.agent.spool import HEADER, Spool, decode_index, encode_index


def payload(i: int, size: int = 200) -> bytes:
    return bytes([i % 251]) * size


async def open_spool(path, **kw) -> Spool:
    spool = Spool(path, **kw)
    spool.open()
    await spool.start()
    return spool


def append(spool: Spool, i: int, producers=None, size: int = 200):
    return spool.append(spool.next_seq, payload(i, size), producers or [("p1", i)])


def test_index_roundtrip():
    entries = [("p1", 1), ("prod-é", 2**63), ("", 0)]
    assert decode_index(encode_index(entries)) == entries


async def test_append_read_reload(tmp):
    spool = await open_spool(tmp / "spool")
    recs = [append(spool, i, [("p1", i), ("p2", 10 + i)]) for i in range(1, 4)]
    assert [r.seq for r in recs] == [1, 2, 3]
    assert spool.read(2) == payload(2)
    assert spool.pending_records == 3
    await spool.close()

    spool = await open_spool(tmp / "spool")
    assert spool.unacked_seqs() == [1, 2, 3]
    assert [spool.read(s) for s in (1, 2, 3)] == [payload(1), payload(2), payload(3)]
    assert spool.get(3).producers == [("p1", 3), ("p2", 13)]
    assert spool.next_seq == 4
    assert append(spool, 4).seq == 4
    assert spool.oldest_unacked_age() >= 0
    await spool.close()


async def test_ack_deletes_full_segments_and_persists_watermark(tmp):
    spool = await open_spool(tmp / "spool", segment_bytes=1)  # one record per segment
    for i in range(1, 5):
        append(spool, i)
    assert spool.segment_count == 4
    assert spool.ack(1) and spool.ack(2)
    assert not spool.ack(2)  # already acked
    assert spool.segment_count == 2
    assert len(list((tmp / "spool").glob("seg-*.log"))) == 2
    assert spool.ack(4)  # out of order: the active segment stays, record 3 holds the watermark
    assert spool.watermark() == 2
    await spool.close()
    state = json.loads((tmp / "spool" / "state.json").read_text())
    assert state["acked_through"] == 2

    assert len(list((tmp / "spool").glob("seg-*.log"))) == 1  # the active segment, all acked, went at close

    spool = await open_spool(tmp / "spool", segment_bytes=1)
    assert spool.unacked_seqs() == [3]
    assert spool.next_seq == 5
    spool.ack(3)
    assert spool.pending_records == 0 and spool.pending_bytes == 0
    await spool.close()
    assert list((tmp / "spool").glob("seg-*.log")) == []


async def test_record_numbers_survive_restart_without_segments(tmp):
    spool = await open_spool(tmp / "spool")
    for i in range(1, 4):
        append(spool, i)
    for s in (1, 2, 3):
        spool.ack(s)
    await spool.close()
    assert list((tmp / "spool").glob("seg-*.log")) == []  # everything acked: nothing left on disk
    spool = await open_spool(tmp / "spool")
    assert spool.next_seq == 4
    assert append(spool, 4).seq == 4
    await spool.close()


async def test_truncated_tail_is_cut_off(tmp, caplog):
    spool = await open_spool(tmp / "spool")
    for i in range(1, 4):
        append(spool, i)
    await spool.close()
    (seg,) = (tmp / "spool").glob("seg-*.log")
    size = seg.stat().st_size
    os.truncate(seg, size - 50)  # a crash in the middle of writing record 3
    with caplog.at_level(logging.WARNING):
        spool = Spool(tmp / "spool")
        report = spool.open()
    assert spool.unacked_seqs() == [1, 2]
    assert len(report.truncated) == 1 and not report.corrupt
    assert seg.stat().st_size == size - 50 - (HEADER.size + 200 + len(encode_index([("p1", 3)])) - 50)
    assert "truncated tail" in caplog.text
    await spool.start()
    assert append(spool, 3).seq == 4  # record numbers never go back
    await spool.close()


@pytest.mark.parametrize("where", ["payload", "length"])
async def test_corrupt_record_in_the_middle_is_skipped_and_reported(tmp, caplog, where):
    spool = await open_spool(tmp / "spool")
    recs = [append(spool, i) for i in range(1, 5)]
    await spool.close()
    (seg,) = (tmp / "spool").glob("seg-*.log")
    data = bytearray(seg.read_bytes())
    start_of_2 = recs[0].nbytes
    if where == "payload":
        data[recs[1].offset + 17] ^= 0x04  # one flipped bit inside record 2's payload
    else:
        data[start_of_2 + 5] ^= 0x40  # the length field of record 2
    seg.write_bytes(bytes(data))

    with caplog.at_level(logging.ERROR):
        spool = Spool(tmp / "spool")
        report = spool.open()
    assert spool.unacked_seqs() == [1, 3, 4]
    assert spool.read(3) == payload(3) and spool.read(4) == payload(4)
    assert len(report.corrupt) == 1
    seg_name, offset, _ = report.corrupt[0]
    assert seg_name == str(seg) and offset == start_of_2
    assert "CORRUPT SPOOL RECORD" in caplog.text and str(seg) in caplog.text
    await spool.start()
    for s in (1, 3, 4):
        spool.ack(s)
    await spool.close()
    # a segment that held corrupt data is kept aside for inspection rather than deleted
    assert (tmp / "spool" / "corrupt" / seg.name).exists()


async def test_flush_waiters_follow_the_producer_index(tmp):
    spool = await open_spool(tmp / "spool")
    append(spool, 1, [("a", 1), ("b", 1)])
    append(spool, 2, [("b", 2)])
    assert spool.producer_pending("a", 2) and spool.producer_pending("b", 1)
    assert not spool.producer_pending("c", 2)
    await spool.wait_committed("c", 2)  # nothing of this producer: at once
    await spool.close()

    spool = await open_spool(tmp / "spool")  # the index is rebuilt from disk
    wait_a = asyncio.create_task(spool.wait_committed("a", 2))
    wait_b = asyncio.create_task(spool.wait_committed("b", 2))
    await asyncio.sleep(0)
    spool.ack(2)
    await asyncio.sleep(0)
    assert not wait_a.done() and not wait_b.done()
    spool.ack(1)
    await asyncio.wait_for(asyncio.gather(wait_a, wait_b), 5)
    await spool.close()


async def test_size_bound_blocks_writers_until_acks(tmp, caplog):
    spool = await open_spool(tmp / "spool", max_bytes=1000)
    append(spool, 1, size=600)
    assert not spool.full
    with caplog.at_level(logging.WARNING):
        append(spool, 2, size=600)
    assert spool.full and "spool full" in caplog.text
    waiter = asyncio.create_task(spool.wait_writable())
    await asyncio.sleep(0)
    assert not waiter.done()
    spool.ack(1)
    await asyncio.wait_for(waiter, 5)
    assert not spool.full
    await spool.close()


async def test_reject_sets_the_record_aside(tmp):
    spool = await open_spool(tmp / "spool")
    append(spool, 1)
    append(spool, 2)
    assert spool.reject(1, "bad run id")
    assert spool.unacked_seqs() == [2]
    info = json.loads((tmp / "spool" / "rejected" / f"{1:020d}.json").read_text())
    assert info["reason"] == "bad run id" and info["batches"] == [["p1", 1]]
    assert (tmp / "spool" / "rejected" / f"{1:020d}.ingest").read_bytes() == payload(1)
    await spool.close()


@pytest.mark.parametrize("mode", ["always", "never"])
async def test_fsync_modes(tmp, mode):
    spool = await open_spool(tmp / "spool", fsync=mode)
    append(spool, 1)
    await spool.commit()
    await spool.close()
    spool = await open_spool(tmp / "spool", fsync=mode)
    assert spool.unacked_seqs() == [1]
    await spool.close()


async def test_wrong_record_number_is_refused(tmp):
    spool = await open_spool(tmp / "spool")
    with pytest.raises(Exception, match="out of order"):
        spool.append(5, b"x", [])
    await spool.close()
