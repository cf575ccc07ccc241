"""The store alone (SQLite and PostgreSQL): metric series as chunks, types, kinds, limits, warnings, dedup."""

from __future__ import annotations

import math
import sqlite3
import sys

import numpy as np
import pytest
from collector_helpers import batch, column_values, decode_blobs, points, request
from store_sql import rows

from runwire import codec, limits
from runwire.server import limits as server_limits
from runwire.server.batches import RejectedRequest, decode_request
from runwire.server.records import IngestOutcome, NewRun
from runwire.server.store.base import Store
from runwire.server.store.factory import make_store
from runwire.server.store.sqlite import SCHEMA_VERSION, SqliteStore
from runwire.v1 import ingest_pb2, metrics_pb2

_seq = iter(range(1, 1_000_000))


async def log(store: Store, *metrics: metrics_pb2.MetricPoints, producer: str = "p") -> IngestOutcome:
    """Commit one batch holding `metrics`."""
    unit = decode_request(request(1, batch(producer, next(_seq), *metrics)))
    (outcome,) = await store.commit([unit])
    return outcome


async def read(store: Store, run_id: str, recursive: bool = False, names=()) -> dict:
    """{(run_id, name): (snapshot, decoded points)} in read order, fetching sealed chunks as a client would."""
    out = {}
    async for snap in store.read_metrics(run_id, recursive, names):
        blobs = list(snap.blobs)
        missing = [i for i, b in enumerate(blobs) if b is None]
        if missing:
            fetched = await store.read_chunks(snap.series_id, [snap.chunks[i].chunk_no for i in missing])
            for i, b in zip(missing, fetched, strict=True):
                blobs[i] = b
        out[(snap.run_id, snap.name)] = (snap, decode_blobs(blobs))
    return out


async def values(store: Store, run_id: str, name: str, col: str = "") -> list:
    _, decoded = (await read(store, run_id, names=[name]))[(run_id, name)]
    return column_values(decoded, col)


@pytest.fixture
async def run(store):
    await store.create_run(NewRun(experiment_name="exp", run_id="r", status="Running"))
    return "r"


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(limits, "STORE_CHUNK_ROWS", 4)


# --- chunking ------------------------------------------------------------------------------------------


async def test_appends_merge_the_open_tail_and_split_long_runs(store, run, small_chunks):
    await log(store, points(run, "loss", [0.0, 1.0, 2.0]))
    await log(store, points(run, "loss", [3.0, 4.0, 5.0]))
    snap, decoded = (await read(store, run))[(run, "loss")]
    assert [(c.chunk_no, c.first_row, c.row_count) for c in snap.chunks] == [(0, 0, 4), (1, 4, 2)]
    await log(store, points(run, "loss", [float(i) for i in range(6, 17)]))
    snap, decoded = (await read(store, run))[(run, "loss")]
    assert [(c.first_row, c.row_count) for c in snap.chunks] == [(0, 4), (4, 4), (8, 4), (12, 4), (16, 1)]
    assert snap.count == 17
    assert column_values(decoded) == [float(i) for i in range(17)]
    assert decoded.timestamps.dtype == np.int64 and decoded.timestamps.size == 17


async def test_tail_is_merged_after_reopening_the_store(store_url, tmp_path, small_chunks):
    s = make_store(store_url, tmp_path)
    await s.open()
    await s.create_run(NewRun(experiment_name="exp", run_id="r", status="Running"))
    await log(s, points("r", "x", [1, 2, 3, 4, 5]))
    await s.close()
    s = make_store(store_url, tmp_path)
    await s.open()
    try:
        await log(s, points("r", "x", [6, 7]))
        snap, decoded = (await read(s, "r"))[("r", "x")]
        assert [c.row_count for c in snap.chunks] == [4, 3]
        assert column_values(decoded) == [1, 2, 3, 4, 5, 6, 7]
    finally:
        await s.close()


async def test_many_batches_in_one_commit_are_appended_in_order(store, run, small_chunks):
    units = [decode_request(request(i, batch("p", 100 + i, points(run, "m", [i, i + 0.5])))) for i in range(5)]
    outcomes = await store.commit(units)
    assert [o.points_committed for o in outcomes] == [2] * 5
    assert await values(store, run, "m") == [v for i in range(5) for v in (float(i), i + 0.5)]


async def test_chunks_are_also_bounded_by_bytes(store, run, monkeypatch):
    monkeypatch.setattr(server_limits, "STORE_CHUNK_MAX_BYTES", 1000)
    text = ["s" * 300] * 7
    await log(store, points(run, "notes", text))
    snap, decoded = (await read(store, run))[(run, "notes")]
    assert len(snap.chunks) >= 3 and all(c.row_count <= 3 for c in snap.chunks)
    assert column_values(decoded) == text


async def test_evicted_tails_are_reloaded(store, run, small_chunks, monkeypatch):
    monkeypatch.setattr(server_limits, "STORE_TAIL_CACHE_BYTES", 1)
    await log(store, points(run, "a", [1, 2]), points(run, "b", [10]))
    await log(store, points(run, "a", [3]), points(run, "b", [20, 30]))
    assert await values(store, run, "a") == [1, 2, 3]
    assert await values(store, run, "b") == [10, 20, 30]


# --- value types -----------------------------------------------------------------------------------------


async def test_int_then_float_promotes_across_chunks(store, run, small_chunks):
    await log(store, points(run, "v", [1, 2, 3, 4, 5]))  # chunk 0 sealed with ints, tail [5]
    await log(store, points(run, "v", [6.5]))
    snap, decoded = (await read(store, run))[(run, "v")]
    assert snap.columns == [("", codec.FLOAT)]
    first, tail = codec.decode_chunk(snap.blobs[0]), codec.decode_chunk(snap.blobs[-1])
    assert first.columns[""].type == codec.INT  # sealed chunks are never rewritten
    assert tail.columns[""].type == codec.FLOAT  # the merged tail was promoted
    merged = column_values(decoded)
    assert merged == [1.0, 2.0, 3.0, 4.0, 5.0, 6.5] and all(type(v) is float for v in merged)


async def test_ints_stay_ints_and_floats_stay_floats(store, run):
    await log(store, points(run, "i", [1, 2]), points(run, "f", [-10.0]))
    read_back = await read(store, run)
    assert read_back[(run, "i")][0].columns == [("", codec.INT)]
    assert column_values(read_back[(run, "i")][1]) == [1, 2]
    f = column_values(read_back[(run, "f")][1])
    assert f == [-10.0] and type(f[0]) is float


async def test_none_nan_and_infinities_round_trip(store, run):
    await log(store, points(run, "x", [1.5, None, float("nan"), float("inf"), float("-inf")]))
    await log(store, points(run, "x", [None]))
    await log(store, points(run, "n", [None, None]))
    await log(store, points(run, "n", [7]))
    got = await values(store, run, "x")
    assert got[0] == 1.5 and got[1] is None and math.isnan(got[2])
    assert got[3:] == [math.inf, -math.inf, None]
    assert await values(store, run, "n") == [None, None, 7]
    snap, _ = (await read(store, run))[(run, "n")]
    assert snap.columns == [("", codec.INT)]


async def test_strings_and_bools(store, run):
    await log(store, points(run, "Category", ["Red"]), points(run, "flag", [True, False]))
    await log(store, points(run, "Category", ["Blue", None, "ünïcode"]))
    assert await values(store, run, "Category") == ["Red", "Blue", None, "ünïcode"]
    assert await values(store, run, "flag") == [True, False]


async def test_table_columns_vary_between_appends(store, run, small_chunks):
    await log(store, points(run, "t", table={"a": [1, 2, 3], "b": [0.5, 0.25, 0.125]}))
    await log(store, points(run, "t", table={"b": [1.0, 2.0], "c": ["x", "y"]}))
    await log(store, points(run, "t", table={"a": [9.5]}))
    snap, decoded = (await read(store, run))[(run, "t")]
    assert snap.kind == codec.TABLE
    assert snap.columns == [("a", codec.FLOAT), ("b", codec.FLOAT), ("c", codec.STRING)]
    assert snap.count == 6
    assert column_values(decoded, "a") == [1, 2, 3, None, None, 9.5]
    assert column_values(decoded, "b") == [0.5, 0.25, 0.125, 1.0, 2.0, None]
    assert column_values(decoded, "c") == [None, None, None, "x", "y", None]


async def test_steps_are_kept(store, run):
    await log(store, points(run, "s", [1.0, 2.0], steps=[10, 20]))
    await log(store, points(run, "s", [3.0]))
    _, decoded = (await read(store, run))[(run, "s")]
    assert decoded.steps.tolist() == [10, 20, codec.NO_STEP]


# --- conflicts, limits and warnings -----------------------------------------------------------------------


async def test_kind_conflict_drops_points_with_a_warning(store, run):
    out = await log(store, points(run, "m", [1.0]))
    assert out.warnings == []
    out = await log(store, points(run, "m", [2.0, 3.0], kind=codec.LIST), points(run, "ok", [5]))
    assert out.points_committed == 1 and out.points_dropped == 2
    (warning,) = out.warnings
    assert "'r'" in warning and "'m'" in warning and "first kind wins" in warning and "2 points dropped" in warning
    assert await values(store, run, "m") == [1.0]
    assert await values(store, run, "ok") == [5]
    assert (await store.get_run(run)).warnings == [warning]


@pytest.mark.parametrize(
    ("first", "second"),
    [([1, 2], ["a"]), (["a"], [1.5]), ([True], [1]), ([1.5], [False])],
)
async def test_type_conflicts_are_refused(store, run, first, second):
    await log(store, points(run, "m", first))
    out = await log(store, points(run, "m", second))
    (warning,) = out.warnings
    assert "cannot join" in warning and "'m'" in warning
    assert await values(store, run, "m") == first
    assert (await store.get_run(run)).warnings == [warning]


async def test_table_column_type_conflict_names_the_column(store, run):
    await log(store, points(run, "t", table={"a": [1], "b": ["x"]}))
    out = await log(store, points(run, "t", table={"a": [2.5], "b": [3]}))
    assert "column 'b'" in out.warnings[0]
    _, decoded = (await read(store, run))[(run, "t")]
    assert decoded.count == 1


async def test_points_for_an_unknown_run_are_dropped(store, run):
    out = await log(store, points("ghost", "m", [1.0]), points(run, "m", [2.0]))
    assert out.points_committed == 1 and out.batches_committed == 1
    assert "'ghost'" in out.warnings[0] and "no run" in out.warnings[0]
    assert await values(store, run, "m") == [2.0]


async def test_metric_names_per_run_limit(store, run, monkeypatch):
    monkeypatch.setattr(limits, "MAX_METRIC_NAMES_PER_RUN", 2)
    out = await log(store, points(run, "a", [1]), points(run, "b", [1]), points(run, "c", [1]))
    assert len(out.warnings) == 1 and "MAX_METRIC_NAMES_PER_RUN" in out.warnings[0] and "'c'" in out.warnings[0]
    out = await log(store, points(run, "a", [2]), points(run, "d", [1]))
    assert len(out.warnings) == 1 and "'d'" in out.warnings[0]
    assert [name for _, name in await read(store, run)] == ["a", "b"]
    assert await values(store, run, "a") == [1, 2]


async def test_rows_per_metric_limit_keeps_what_fits(store, run, monkeypatch):
    monkeypatch.setattr(limits, "MAX_ROWS_PER_METRIC", 5)
    out = await log(store, points(run, "m", [1, 2, 3]))
    assert out.warnings == []
    out = await log(store, points(run, "m", [4, 5, 6, 7]))
    assert out.points_committed == 2 and out.points_dropped == 2 and "MAX_ROWS_PER_METRIC" in out.warnings[0]
    out = await log(store, points(run, "m", [8]))
    assert out.points_committed == 0 and "1 points dropped" in out.warnings[0]
    assert await values(store, run, "m") == [1, 2, 3, 4, 5]


async def test_per_metric_rules_checked_at_decode(store, run):
    out = await log(
        store,
        points(run, "n" * (limits.MAX_NAME_LENGTH + 1), [1.0]),
        points(run, "", [1.0]),
        points(run, "long", ["x" * (limits.MAX_STRING_VALUE_LENGTH + 1)]),
        points(run, "fine", [1.0]),
    )
    assert out.points_committed == 1 and len(out.warnings) == 3
    assert "MAX_NAME_LENGTH" in out.warnings[0]
    assert "empty" in out.warnings[1]
    assert "MAX_STRING_VALUE_LENGTH" in out.warnings[2]
    assert [name for _, name in await read(store, run)] == ["fine"]


# --- dedup ---------------------------------------------------------------------------------------------


async def test_duplicate_batches_are_skipped(store, run):
    req = request(1, batch("prod", 7, points(run, "m", [1.0, 2.0])))
    (first,) = await store.commit([decode_request(req)])
    (again,) = await store.commit([decode_request(req)])
    assert (first.batches_committed, first.duplicate_batches) == (1, 0)
    assert (again.batches_committed, again.duplicate_batches, again.points_committed) == (0, 1, 0)
    # a duplicate inside one commit group, and a new seq of the same producer
    outs = await store.commit(
        [decode_request(request(2, batch("prod", 8, points(run, "m", [3.0])))), decode_request(req)]
    )
    assert [o.duplicate_batches for o in outs] == [0, 1]
    # the same seq from another producer is a different batch; seq uses all 64 bits
    (other,) = await store.commit([decode_request(request(3, batch("other", 7, points(run, "m", [4.0]))))])
    (big,) = await store.commit([decode_request(request(4, batch("other", 2**64 - 1, points(run, "m", [5.0]))))])
    (big_again,) = await store.commit([decode_request(request(4, batch("other", 2**64 - 1, points(run, "m", [5.0]))))])
    assert other.duplicate_batches == 0 and big.duplicate_batches == 0 and big_again.duplicate_batches == 1
    assert await values(store, run, "m") == [1.0, 2.0, 3.0, 4.0, 5.0]


async def test_dedup_floor_keeps_the_table_small_and_still_refuses_replays(store, run, store_url, tmp_path):
    def commit(seq: int, value: float):
        return store.commit([decode_request(request(seq, batch("prod", seq, points(run, "m", [value]))))])

    for seq in (1, 2, 3, 5):  # 4 is late
        await commit(seq, float(seq))

    def dedup_rows() -> list[tuple[str, int]]:
        return rows(store, "SELECT producer_id, seq FROM dedup ORDER BY seq")

    assert dedup_rows() == [("prod", 5)]  # 1-3 are under the floor; 5 waits for 4
    (replay,) = await commit(2, 99.0)
    assert replay.duplicate_batches == 1
    await commit(4, 4.0)
    assert dedup_rows() == []
    for seq in (1, 4, 5):
        (again,) = await commit(seq, 99.0)
        assert again.duplicate_batches == 1
    await store.close()
    reopened = make_store(store_url, tmp_path)  # the floor is persisted, not only cached
    await reopened.open()
    try:
        (again,) = await reopened.commit([decode_request(request(9, batch("prod", 3, points(run, "m", [9.0]))))])
        assert again.duplicate_batches == 1
        assert await values(reopened, run, "m") == [1.0, 2.0, 3.0, 5.0, 4.0]
    finally:
        await reopened.close()
    await store.open()


async def test_schema_v1_database_is_upgraded_in_place(tmp_path):
    path = tmp_path / "old.sqlite3"
    s = SqliteStore(path)
    await s.open()
    await s.close()
    con = sqlite3.connect(path)
    con.execute("DROP TABLE producers")
    con.execute("PRAGMA user_version = 1")
    con.commit()
    con.close()
    s = SqliteStore(path)
    await s.open()
    try:
        await s.create_run(NewRun(experiment_name="exp", run_id="r", status="Running"))
        (out,) = await s.commit([decode_request(request(1, batch("p", 1, points("r", "m", [1.0]))))])
        assert out.batches_committed == 1
    finally:
        await s.close()
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    con.close()


async def test_duplicate_batch_does_not_repeat_warnings(store, run):
    req = request(1, batch("prod", 1, points(run, "m", [1.0]), points(run, "m", ["s"])))
    (first,) = await store.commit([decode_request(req)])
    (again,) = await store.commit([decode_request(req)])
    assert len(first.warnings) == 1 and again.warnings == []
    assert len((await store.get_run(run)).warnings) == 1


# --- reads ---------------------------------------------------------------------------------------------


async def test_read_order_names_and_recursion(store, run):
    await store.create_run(NewRun(experiment_name="exp", run_id="c1", status="Running", parent_run_id=run))
    await store.create_run(NewRun(experiment_name="exp", run_id="c1a", status="Running", parent_run_id="c1"))
    await store.create_run(NewRun(experiment_name="exp", run_id="empty", status="Running", parent_run_id=run))
    await log(store, points("c1a", "deep", [3]), points(run, "zeta", [1]), points("c1", "mid", [2]))
    await log(store, points(run, "alpha", [1]), points(run, "zeta", [2]))
    assert list(await read(store, run)) == [(run, "zeta"), (run, "alpha")]
    everything = [(run, "zeta"), (run, "alpha"), ("c1", "mid"), ("c1a", "deep")]
    assert list(await read(store, run, recursive=True)) == everything
    assert list(await read(store, run, names=["alpha", "unknown"])) == [(run, "alpha")]
    assert list(await read(store, run, recursive=True, names=["deep"])) == [("c1a", "deep")]
    assert await read(store, "empty") == {}
    with pytest.raises(Exception, match="not found"):
        await read(store, "nope")


async def test_description_is_the_first_non_empty(store, run):
    await log(store, points(run, "m", [1]))
    await log(store, points(run, "m", [2], description="the metric"))
    await log(store, points(run, "m", [3], description="later"))
    snap, _ = (await read(store, run))[(run, "m")]
    assert snap.description == "the metric"


async def test_running_stats_for_the_studio(store, run):
    await log(store, points(run, "loss", [3.0, float("nan"), 1.0, None]))
    await log(store, points(run, "loss", [2.0, 5.0]))
    await log(store, points(run, "t", table={"a": [1]}))
    stats = {r[0]: r[1:] for r in rows(store, "SELECT name, last, min, max, row_count FROM series")}
    assert stats["loss"] == (5.0, 1.0, 5.0, 6)
    assert stats["t"] == (None, None, None, 1)


async def test_large_series_reads_back_exactly(store, run):
    vals = np.random.default_rng(1).standard_normal(200_000)
    await log(store, points(run, "big", vals[:150_000]))
    await log(store, points(run, "big", vals[150_000:]))
    snap, decoded = (await read(store, run))[(run, "big")]
    assert snap.count == 200_000 and len(snap.chunks) == -(-200_000 // limits.STORE_CHUNK_ROWS)
    np.testing.assert_array_equal(decoded.columns[""].values, vals)


# --- request decoding ------------------------------------------------------------------------------------


def test_rejections_at_decode():
    ok = request(1, batch("p", 1, points("r", "m", [1.0])))
    bad_codec = ingest_pb2.IngestRequest(seq=1, codec=7, payload=ok.payload)
    with pytest.raises(RejectedRequest, match="unknown payload codec"):
        decode_request(bad_codec)
    with pytest.raises(RejectedRequest, match="decompress"):
        decode_request(ingest_pb2.IngestRequest(seq=1, codec=ingest_pb2.CODEC_ZSTD, payload=b"garbage"))
    with pytest.raises(RejectedRequest, match="BatchBundle"):
        decode_request(ingest_pb2.IngestRequest(seq=1, codec=ingest_pb2.CODEC_NONE, payload=b"\xff\xff\xff"))
    with pytest.raises(RejectedRequest, match="producer_id"):
        decode_request(request(1, batch("", 1, points("r", "m", [1.0]))))
    broken = points("r", "m", [1.0, 2.0])
    broken.count = 3
    with pytest.raises(RejectedRequest, match="'m'"):
        decode_request(request(1, batch("p", 1, broken)))
    unnamed_table = points("r", "t", table={"a": [1]})
    unnamed_table.columns[0].name = ""
    with pytest.raises(RejectedRequest, match="table columns need names"):
        decode_request(request(1, batch("p", 1, unnamed_table)))
    assert decode_request(ok).point_count == 1
    assert decode_request(request(1, batch("p", 1, points("r", "m", [1.0])), compress=False)).point_count == 1


async def test_a_read_is_a_consistent_snapshot_while_rows_are_appended(store, run, small_chunks, monkeypatch):
    backend = sys.modules[type(store).__module__]  # sqlite.py or postgres.py
    monkeypatch.setattr(backend, "READ_PREFETCH_BYTES", 0)  # sealed chunks are fetched later
    await log(store, points(run, "m", [float(i) for i in range(10)]))  # chunks of 4, 4 and an open 2
    reader = store.read_metrics(run)
    snap = await anext(reader)
    assert [b is None for b in snap.blobs] == [True, True, False]
    await log(store, points(run, "m", [10.0, 11.0, 12.0]))  # rewrites the open tail, adds a chunk
    blobs = await store.read_chunks(snap.series_id, [c.chunk_no for c in snap.chunks[:-1]])
    decoded = decode_blobs([*blobs, snap.blobs[-1]])
    assert snap.count == decoded.count == 10
    assert column_values(decoded) == [float(i) for i in range(10)]
    assert await values(store, run, "m") == [float(i) for i in range(13)]
    await reader.aclose()
