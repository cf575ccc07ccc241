"""The NATS JetStream live bus: two `NatsBus` instances (two collector replicas in one process)
against a real NATS server: order, no duplicates, filters, lag markers, reconnects."""

from __future__ import annotations

import asyncio
import itertools
import time

import numpy as np
import pytest

from runwire import codec
from runwire.server import limits as server_limits
from runwire.server.bus import METRIC, BusEvent, EventFilter, LagMarker, Subscriber, log_event, metric_events
from runwire.server.bus_nats import NatsBus, NatsBusConfig, decode_message, encode_publish, parse_bus
from runwire.server.records import CommittedPoints
from tests.natsd import NATS_SERVER, NATS_URL, PrivateNats, delete_stream, fresh_stream, skip_reason

WAIT_S = 30.0

needs_nats = pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")


def points(run_id: str, name: str, first_row: int, n: int) -> BusEvent:
    p = codec.DecodedPoints(
        n,
        np.arange(n, dtype=np.int64) + 1_700_000_000_000_000,
        np.arange(first_row, first_row + n, dtype=np.int64),
        {"": codec.DecodedColumn("", codec.FLOAT, np.arange(first_row, first_row + n, dtype=np.float64))},
    )
    return metric_events([CommittedPoints(run_id, name, codec.SCALAR, "", first_row, p)])[0]


async def until(condition, what: str, timeout: float = WAIT_S) -> None:
    """Poll `condition` (a plain function) until it holds; fail naming `what`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.01)


def drain(sub: Subscriber) -> list:
    out = []
    while (item := sub.get_nowait()) is not None:
        out.append(item)
    return out


async def collect(sub: Subscriber, n: int, what: str) -> list:
    got: list = []

    def enough() -> bool:
        got.extend(drain(sub))
        return len(got) >= n

    await until(enough, what)
    return got


def rows(items: list) -> list[tuple[str, str, int, int]]:
    return [(e.run_id, e.name, e.first_row, e.count) for e in items if isinstance(e, BusEvent) and e.kind == METRIC]


@pytest.fixture
async def replicas():
    """Two buses on one fresh stream of the machine's NATS."""
    stream = fresh_stream()
    config = NatsBusConfig(NATS_URL, stream)
    a, b = NatsBus(config), NatsBus(config)
    await a.start()
    await b.start()
    try:
        yield a, b
    finally:
        await a.stop()
        await b.stop()
        await delete_stream(NATS_URL, stream)


def test_parse_bus_urls():
    assert parse_bus("inprocess") is None and parse_bus("") is None
    c = parse_bus("nats://127.0.0.1:4222?stream=RW_1")
    assert c == NatsBusConfig("nats://127.0.0.1:4222", "RW_1") and c.live_subject == "RW_1.live"
    assert parse_bus("nats://h:1", "other").stream == "other"
    assert parse_bus("nats://h:1").stream == "RUNWIRE"
    secret = parse_bus("nats://user:pw@h:1?stream=S")
    assert secret.url == "nats://user:pw@h:1" and secret.address == "nats://h:1"  # never logged with the password
    for bad, rule in [
        ("redis://h:1", "nats://HOST:PORT"),
        ("nats://h:1?stream=a.b", "letters, digits"),
        ("nats://h:1?stream=", "letters, digits"),
        ("nats://h:1?topic=x", "unknown query parameter"),
        ("nats://h:99999", "(?i)port"),
    ]:
        with pytest.raises(ValueError, match=rule):
            parse_bus(bad)
    with pytest.raises(ValueError, match="--bus-stream needs"):
        parse_bus("inprocess", "x")


def test_wire_format_round_trip_and_split():
    from runwire.server.bus_nats import bus_event

    big = points("r", "m", 10, 200_000)  # ~3 MB encoded: split into pieces by rows
    publishes = encode_publish([points("r", "a", 0, 3), big, log_event("r", "out.log", ["x", "y"], 4)], 256 * 1024)
    assert len(publishes) > 4 and all(len(p) <= 256 * 1024 + 64 for p in publishes)
    from runwire.server.bus_nats import encode_message

    events = [bus_event(m) for p in publishes for ms in decode_message(encode_message([p])) for m in ms]
    metric = [e for e in events if e.name == "m"]
    assert metric[0].first_row == 10 and sum(e.count for e in metric) == 200_000
    assert all(x.first_row + x.count == y.first_row for x, y in itertools.pairwise(metric))
    values = np.concatenate([e.points.points.columns[""].values for e in metric])
    assert values.tolist() == list(range(10, 200_010))
    assert events[-1].body.lines == ["x", "y"] and events[-1].body.first_line == 4


@needs_nats
async def test_a_subscriber_on_one_replica_sees_the_others_commits_in_order_once(replicas):
    a, b = replicas
    on_a = a.subscribe(EventFilter(run_id="r"))
    on_b = b.subscribe(EventFilter(run_id="r"))
    for i in range(200):
        b.publish([points("r", "loss", i * 5, 5), points("other", "loss", i, 1)])
        if i % 50 == 0:
            a.publish([points("r", "acc", i, 1)])  # A's own commits: delivered locally, once
    await b.flush()
    assert b.unsent == 0 and b._acked_total == b._queued_total == 200
    got = await collect(on_a, 204, "replica A to get B's 200 commits")
    loss = [r for r in rows(got) if r[1] == "loss"]
    assert loss == [("r", "loss", i * 5, 5) for i in range(200)]
    assert [r[2] for r in rows(got) if r[1] == "acc"] == [0, 50, 100, 150]
    assert not any(isinstance(x, LagMarker) for x in got)
    # B's subscriber got B's commits locally, and A's through NATS, nothing twice
    got_b = await collect(on_b, 204, "replica B to get A's commits")
    assert len(rows(got_b)) == 204 and len(set(rows(got_b))) == 204
    # the points themselves crossed intact
    first = next(e for e in got if e.name == "loss")
    assert first.points.points.columns[""].values.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert first.points.points.steps.tolist() == [0, 1, 2, 3, 4]
    await until(lambda: not b.unsent and a.messages_received >= a.messages_sent + b.messages_sent, "A to read all")
    assert drain(on_a) == []  # nothing more (no duplicate delivery)


@needs_nats
async def test_filters_apply_to_remote_events(replicas):
    from runwire.server.bus import status_event
    from runwire.server.records import RunRecord

    a, b = replicas
    exp = a.subscribe(EventFilter(experiment_name="e", metrics=["val_*"], kinds=[METRIC, live_kind("status")]))
    exp.filter.resolve([])
    logs = a.subscribe(EventFilter(kinds=[live_kind("log")]))
    record = RunRecord("new", "x", "e", None, 1, "", "", "", "Running", "", "", 0.0)
    b.publish([status_event(record, created=True)])
    b.publish([points("new", "val_loss", 0, 2), points("new", "loss", 0, 2), points("stranger", "val_loss", 0, 2)])
    b.publish([log_event("new", "driver.log", ["hello"], 0)])
    got = await collect(exp, 2, "the experiment subscriber to get the new run's status and val_loss")
    assert [(e.kind, e.run_id, e.name) for e in got] == [(live_kind("status"), "new", ""), (METRIC, "new", "val_loss")]
    (log_ev,) = await collect(logs, 1, "the log subscriber")
    assert log_ev.body.lines == ["hello"]
    await until(lambda: not b.unsent and a.messages_received >= b.messages_sent, "A to read everything")
    assert drain(exp) == []


def live_kind(name: str) -> int:
    from runwire.server.studio.events import KINDS_BY_NAME

    return KINDS_BY_NAME[name]


@needs_nats
async def test_slow_subscriber_on_the_other_replica_gets_a_lag_marker(replicas):
    a, b = replicas
    slow = a.subscribe(EventFilter())
    slow.max_events = 3
    for i in range(10):
        b.publish([points("r", "m", i * 10, 10)])
    await until(lambda: not b.unsent and a.messages_received >= b.messages_sent, "A to read B's commits")
    await until(lambda: slow.lagged_events >= 1, "the slow subscriber to lag")
    items = drain(slow)
    kept = [x for x in items if isinstance(x, BusEvent)]
    (marker,) = [x for x in items if isinstance(x, LagMarker)]
    assert [e.first_row for e in kept] == [i * 10 for i in range(len(kept))]
    assert marker.series == {("r", "m"): [len(kept) * 10, 100 - len(kept) * 10]}
    assert marker.events + len(kept) == 10


@needs_nats
async def test_messages_gone_from_the_stream_are_a_lag_marker_never_a_silent_gap(replicas):
    """A replica away while messages were removed from the stream (its limits): when it resumes, its
    subscribers are told how many events they will never see."""
    import nats

    a, b = replicas
    sub = a.subscribe(EventFilter())
    b.publish([points("r", "m", 0, 1)])
    await collect(sub, 1, "the first commit")
    await a._sub.unsubscribe()  # A is away
    for i in range(1, 4):
        b.publish([points("r", "m", i, 1)])
        await until(lambda: not b.unsent, "B to publish")  # one message each
    nc = await nats.connect(NATS_URL)
    try:
        await nc.jetstream().delete_msg(a.config.stream, a._last_seq + 2)  # the middle one is gone
    finally:
        await nc.close()
    await a._subscribe_stream()  # A is back: resumes after the last message it saw
    got = await collect(sub, 3, "A to resume")
    assert [type(x) for x in got] == [BusEvent, LagMarker, BusEvent]
    assert (got[0].first_row, got[2].first_row) == (1, 3)
    assert got[1].events == 1 and a.messages_missed == 1
    assert got[1].message().lagged.events == 1


@pytest.mark.skipif(not __import__("os").path.exists(NATS_SERVER), reason=f"no nats-server binary at {NATS_SERVER}")
async def test_nats_restart_loses_nothing_and_an_overflow_is_reported(monkeypatch):
    """The NATS server stops and starts again: commits made meanwhile reach the other replica in
    order once it is back; commits beyond the publish queue's bound become a lag marker there."""
    server = PrivateNats().start()
    config = NatsBusConfig(server.url, fresh_stream())
    a, b = NatsBus(config), NatsBus(config)
    try:
        await a.start()
        await b.start()
        sub = a.subscribe(EventFilter(run_id="r"))
        b.publish([points("r", "m", 0, 1)])
        assert [e.first_row for e in await collect(sub, 1, "the first commit")] == [0]
        server.stop()
        await until(lambda: not b._connected.is_set() and not a._connected.is_set(), "both to notice")
        for i in range(1, 6):
            b.publish([points("r", "m", i, 1)])  # queued while NATS is away
        await b.flush(timeout=0.2)  # gives up after its timeout (run creation goes on without NATS)
        assert b.unsent and b._acked_total < b._queued_total
        monkeypatch.setattr(server_limits, "NATS_PUBLISH_QUEUE_MAX_COMMITS", len(b._out) + 2)
        for i in range(6, 12):
            b.publish([points("r", "m", i, 1)])  # 2 fit, 4 overflow: lost, and said so
        assert b.events_lost == 4
        server.start()
        got = await collect(sub, 8, "A to get what B queued, and the lag marker")
        assert [type(x).__name__ for x in got] == ["BusEvent"] * 7 + ["LagMarker"]
        assert [e.first_row for e in got[:7]] == [1, 2, 3, 4, 5, 6, 7]
        assert got[7].series == {("r", "m"): [8, 4]} and got[7].points == 4
        b.publish([points("r", "m", 12, 1)])  # and after the gap, delivery goes on
        (ev,) = await collect(sub, 1, "the commit after the gap")
        assert ev.first_row == 12
    finally:
        await a.stop()
        await b.stop()
        server.close()
