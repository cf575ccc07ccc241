"""The in-process live bus: filters, run scope, bounded queues and lag markers (no network)."""

from __future__ import annotations

import numpy as np

from runwire import codec
from runwire.server.bus import (
    LAGGED,
    METRIC,
    STATUS,
    BusEvent,
    EventFilter,
    InProcessBus,
    LagMarker,
    Subscriber,
    metric_events,
    status_event,
)
from runwire.server.records import CommittedPoints, RunRecord


def points(run_id: str, name: str, first_row: int, n: int) -> BusEvent:
    p = codec.DecodedPoints(
        n,
        np.arange(n, dtype=np.int64) + 1_700_000_000_000_000,
        None,
        {"": codec.DecodedColumn("", codec.FLOAT, np.arange(first_row, first_row + n, dtype=np.float64))},
    )
    return metric_events([CommittedPoints(run_id, name, codec.SCALAR, "", first_row, p)])[0]


def created(run_id: str, experiment: str = "e", parent: str | None = None) -> BusEvent:
    record = RunRecord(run_id, "x", experiment, parent, 1, "", "", "", "Running", "", "", 0.0)
    return status_event(record, created=True)


def drain(sub: Subscriber) -> list:
    out = []
    while (item := sub.get_nowait()) is not None:
        out.append(item)
    return out


def test_metric_globs_and_kinds():
    f = EventFilter(metrics=["loss", "val_*"], kinds=[METRIC])
    assert f.matches(points("r", "loss", 0, 1))
    assert f.matches(points("r", "val_acc", 0, 1))
    assert not f.matches(points("r", "lossy", 0, 1))
    assert not f.matches(created("r"))


def test_scope_grows_with_created_runs():
    fam = EventFilter(run_id="p", include_children=True)
    assert fam.needs_resolution
    fam.observe(created("c1", parent="p"))  # while resolving: remembered
    fam.resolve(["p"])
    assert fam.runs == {"p", "c1"}
    for ev in (created("g1", parent="c1"), created("other", parent="q")):
        fam.observe(ev)
    assert fam.matches(points("g1", "m", 0, 1)) and not fam.matches(points("other", "m", 0, 1))
    exp = EventFilter(experiment_name="e")
    exp.resolve([])
    exp.observe(created("r2", experiment="e"))
    exp.observe(created("r3", experiment="f"))
    assert exp.runs == {"r2"}
    assert EventFilter(run_id="p").runs == {"p"}  # without children nothing to resolve


def test_full_queue_becomes_one_lag_marker_at_the_gap():
    sub = Subscriber(EventFilter(), max_events=3, max_points=1_000)
    for i in range(8):
        sub.offer(points("r", "m", i * 10, 10))
    items = drain(sub)
    assert [type(x) for x in items] == [BusEvent, BusEvent, BusEvent, LagMarker]
    marker = items[-1]
    assert (marker.events, marker.points) == (5, 50)
    assert marker.series == {("r", "m"): [30, 50]}
    # room again: delivery resumes after the marker
    sub.offer(points("r", "m", 80, 10))
    (ev,) = drain(sub)
    assert ev.first_row == 80
    message = marker.message()
    assert message.kind == LAGGED and message.lagged.series[0].first_row == 30 and message.lagged.series[0].rows == 50


def test_points_bound_and_one_big_event_passes_alone():
    sub = Subscriber(EventFilter(), max_events=100, max_points=100)
    sub.offer(points("r", "m", 0, 500))  # alone: accepted
    sub.offer(points("r", "m", 500, 1))
    items = drain(sub)
    assert isinstance(items[0], BusEvent) and isinstance(items[1], LagMarker)


def test_bus_publishes_to_matching_subscribers_and_shares_encoding():
    bus = InProcessBus()
    a = bus.subscribe(EventFilter(run_id="r"))
    b = bus.subscribe(EventFilter(run_id="s"))
    c = bus.subscribe(EventFilter(run_id="r", metrics=["m"]))
    ev = points("r", "m", 0, 3)
    bus.publish([ev, created("s")])
    (got_a,) = drain(a)
    (got_c,) = drain(c)
    assert got_a is ev and got_c is ev
    assert [x.kind for x in drain(b)] == [STATUS]
    assert ev.metric_entry() is ev.metric_entry()  # serialized once
    bus.unsubscribe(a)
    assert bus.subscriber_count == 2


def test_exact_metric_subscribers_get_their_series_in_order():
    bus = InProcessBus()
    loss = bus.subscribe(EventFilter(run_id="r", metrics=["loss", "acc"]))
    globbed = bus.subscribe(EventFilter(run_id="r", metrics=["l*"]))
    evs = [points("r", "loss", 0, 2), points("s", "loss", 0, 2), points("r", "lr", 0, 1), points("r", "loss", 2, 2)]
    bus.publish(evs)
    assert [(e.name, e.first_row) for e in drain(loss)] == [("loss", 0), ("loss", 2)]
    assert [(e.name, e.first_row) for e in drain(globbed)] == [("loss", 0), ("lr", 0), ("loss", 2)]


def test_events_wait_for_the_scope_then_only_matching_ones_queue():
    sub = Subscriber(EventFilter(experiment_name="e"), max_events=3, max_points=1_000)
    for i in range(10):  # heavy traffic of other runs while the scope is looked up: no lag
        sub.offer(points("other", "m", i, 1))
    sub.offer(points("old", "m", 0, 1))
    sub.offer(created("new", experiment="e"))
    sub.offer(points("new", "m", 0, 1))
    assert len(sub) == 0
    sub.filter.resolve(["old"])
    sub.release()
    assert [(type(x).__name__, x.run_id) for x in drain(sub)] == [
        ("BusEvent", "old"),
        ("BusEvent", "new"),
        ("BusEvent", "new"),
    ]


def test_seam_drops_or_cuts_what_the_history_covered():
    from runwire.server.live import _seam
    from runwire.v1 import live_pb2

    flt = EventFilter(run_id="r")
    seen = {("r", "m"): 15}
    assert _seam(points("r", "m", 0, 10), flt, seen) is None  # rows 0-9: all in the history
    cut = live_pb2.LiveEvent.FromString(_seam(points("r", "m", 10, 10), flt, seen).metric_entry()).metrics[0]
    assert (cut.first_row, cut.points.count) == (15, 5)
    assert codec.decode_points(cut.points).columns[""].values.tolist() == [15.0, 16.0, 17.0, 18.0, 19.0]
    whole = live_pb2.LiveEvent.FromString(_seam(points("r", "m", 15, 3), flt, seen).metric_entry()).metrics[0]
    assert (whole.first_row, whole.points.count) == (15, 3)
    assert _seam(points("r", "other", 0, 1), flt, seen) is not None  # a series the history lacked


def test_one_commit_of_many_series_is_one_queue_entry_for_a_fast_subscriber():
    # 5,000 series in one publish (one commit): far more than LIVE_QUEUE_MAX_EVENTS series, yet
    # one queue entry, so a subscriber that reads as fast as it can does not lag
    lagged: list[int] = []
    bus = InProcessBus(on_lag=lagged.append)
    everything = bus.subscribe(EventFilter())
    scoped = bus.subscribe(EventFilter(run_id="r"))
    assert everything.max_events < 5_000
    evs = [points("r", f"m{i}", 0, 2) for i in range(5_000)]
    bus.publish(evs)
    assert len(everything) == 1 and len(scoped) == 1 and everything.queued_points == 10_000
    for sub in (everything, scoped):
        got = drain(sub)
        assert not any(isinstance(x, LagMarker) for x in got)
        assert [x for x in got] == evs  # every event, in publish order, the same objects
        assert sub.lagged_events == 0 and sub.queued_points == 0
    assert lagged == []
    # the event limit now bounds commits waiting: the 1,025th unread commit lags
    sub = Subscriber(EventFilter(), max_events=1_024)
    for i in range(1_025):
        sub.offer_many([points("r", "a", i, 1), points("r", "b", i, 1)])
    items = drain(sub)
    assert len(items) == 2 * 1_024 + 1 and isinstance(items[-1], LagMarker)
    assert (items[-1].events, items[-1].points) == (2, 2)
    assert items[-1].series == {("r", "a"): [1_024, 1], ("r", "b"): [1_024, 1]}


def test_one_commit_over_the_points_limit_lags_with_exact_counts():
    from runwire.server import limits as server_limits

    lagged: list[int] = []
    bus = InProcessBus(on_lag=lagged.append)
    sub = bus.subscribe(EventFilter())
    assert sub.max_points == server_limits.LIVE_QUEUE_MAX_POINTS == 1_000_000
    # 5,000 series x 300 points, in one commit: 3,333 series fit (999,900 points), the rest lag
    evs = [points("r" if i % 2 else "s", f"m{i}", 7, 300) for i in range(5_000)]
    bus.publish(evs)
    items = drain(sub)
    assert items[:-1] == evs[:3_333]
    marker = items[-1]
    assert isinstance(marker, LagMarker)
    assert (marker.events, marker.points) == (1_667, 1_667 * 300)
    assert list(marker.series) == [(ev.run_id, ev.name) for ev in evs[3_333:]]
    assert all(span == [7, 300] for span in marker.series.values())
    assert set(marker.run_ids) == {"r", "s"} and marker.kinds == {METRIC}
    message = marker.message().lagged
    assert (message.events, message.points, len(message.series)) == (1_667, 500_100, 1_667)
    assert sub.lagged_events == 1_667 and lagged == [1_667]
    # delivery resumes with the next commit; a series that keeps lagging accumulates its rows
    bus.publish([points("r", "m1", 307, 5)])
    (ev,) = drain(sub)
    assert (ev.name, ev.first_row) == ("m1", 307)
    sub.max_points = 10
    bus.publish([points("r", "x", 0, 6), points("r", "x", 6, 6), points("s", "y", 0, 1), points("r", "x", 12, 6)])
    items = drain(sub)
    assert [type(x) for x in items] == [BusEvent, LagMarker, BusEvent, LagMarker]
    # as before batching: after the gap, a later event of the same commit that fits is queued (y)
    assert (items[0].name, items[0].first_row, items[2].name, items[2].first_row) == ("x", 0, "y", 0)
    assert (items[1].events, items[1].points, items[1].series) == (1, 6, {("r", "x"): [6, 6]})
    assert (items[3].events, items[3].points, items[3].series) == (1, 6, {("r", "x"): [12, 6]})
    assert sub.lagged_events == 1_669 and lagged == [1_667, 2] and sub.queued_points == 0
