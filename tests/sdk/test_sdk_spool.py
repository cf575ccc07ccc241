"""The SDK's spool file: append, hand out in slices, rewind, skip damage, tell orphans apart."""

from __future__ import annotations

import os

from runwire._transports.sdk_spool import SdkSpool, orphan_spools, read_records


def test_slices_rewind_and_membership(tmp_path):
    spool = SdkSpool(tmp_path, "p1")
    for seq in (6, 7, 8, 16, 17):
        spool.append(seq, bytes([seq]) * 100)
    assert [spool.holds(q) for q in (5, 6, 8, 9, 15, 16, 17, 18)] == [
        False,
        True,
        True,
        False,
        False,
        True,
        True,
        False,
    ]
    assert [q for q, _ in spool.read_next(150)] == [6, 7] and spool.records == 3
    assert [q for q, _ in spool.read_next(10_000)] == [8, 16, 17] and spool.records == 0
    assert spool.read_next(10_000) == []
    spool.rewind()
    assert spool.records == 5 and [q for q, _ in spool.read_next(10_000)] == [6, 7, 8, 16, 17]
    spool.remove()
    assert not spool.path.exists() and spool.total == 0


def test_damaged_record_is_skipped_and_the_rest_delivered(tmp_path):
    spool = SdkSpool(tmp_path, "p2")
    for seq in (1, 2, 3):
        spool.append(seq, b"abc" * 10)
    data = bytearray(spool.path.read_bytes())
    data[16 + 30 + 16 + 5] ^= 0xFF  # a byte inside the second record's body
    spool.path.write_bytes(bytes(data))
    assert [q for q, _ in read_records(spool.path)] == [1, 3]
    assert [q for q, _ in spool.read_next(10_000)] == [1, 3]


def test_only_files_of_gone_producers_are_orphans(tmp_path):
    live = SdkSpool(tmp_path, "live")
    live.append(1, b"x")
    gone = SdkSpool(tmp_path, "gone")
    gone.append(1, b"y")
    gone.release()
    assert [p.name for p in orphan_spools(tmp_path)] == ["gone.spool"]
    live.release()
    assert sorted(p.name for p in orphan_spools(tmp_path)) == ["gone.spool", "live.spool"]
    assert os.stat(tmp_path / "gone.spool").st_mode & 0o777 == 0o600
