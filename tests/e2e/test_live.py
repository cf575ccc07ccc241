"""Live subscriptions through real collector and agent processes (issue 5)."""

from __future__ import annotations

import threading
import time
import urllib.request

import grpc
import pytest

from runwire import Experiment
from runwire.live import LaggedEvent, MetricEvent
from runwire.v1 import live_pb2, live_pb2_grpc
from tests.procs import wait_for

WAIT_S = 60.0


def collect(sub, until, timeout=WAIT_S):
    """Events from `sub` until `until(events)` holds; fails after `timeout` seconds."""
    events = []
    deadline = time.monotonic() + timeout
    while not until(events):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"condition not met after {timeout} s; got {len(events)} events: {events[-5:]}")
        ev = sub.next_event(min(remaining, 1.0))
        if ev is not None:
            events.append(ev)
    return events


def metric_points(events, name=None):
    return [e for e in events if e.kind == "metric" and (name is None or e.name == name)]


def test_subscribe_from_now_sees_every_point_logged_after_it(workspace):
    run = Experiment(workspace, "live-now").start_logging(snapshot_directory=None)
    run.log("before", 1.0)
    run.flush()
    with run.subscribe(metrics="loss") as sub:
        for i in range(100):
            run.log("loss", i * 0.5, step=i)
        events = collect(sub, lambda ev: len(metric_points(ev)) >= 100)
    points = metric_points(events)
    assert [(p.step, p.value, p.row) for p in points] == [(i, i * 0.5, i) for i in range(100)]
    assert all(p.run_id == run.id and p.name == "loss" and not p.history for p in points)
    assert all(isinstance(p.timestamp, float) and p.timestamp > 1e9 for p in points)
    assert sub.closed
    run.complete()


def test_history_then_live_seam_is_exact(workspace):
    """N points stored, then a subscription from the start while a writer keeps logging: every
    point exactly once, in order, whatever commit the subscription lands in."""
    run = Experiment(workspace, "live-seam").start_logging(snapshot_directory=None)
    n_before, n_during = 20_000, 20_000
    for i in range(n_before):
        run.log("loss", float(i), step=i)
    run.flush()
    started = threading.Event()

    def writer():
        for i in range(n_before, n_before + n_during):
            run.log("loss", float(i), step=i)
            if i == n_before + 100:
                started.set()
            if i % 500 == 0:
                time.sleep(0.001)  # spread the points over many commits
        run.flush()

    t = threading.Thread(target=writer)
    t.start()
    assert started.wait(WAIT_S)
    total = n_before + n_during
    with run.subscribe(metrics=["loss"], kinds="metric", from_start=True) as sub:
        events = collect(sub, lambda ev: len(ev) >= total, timeout=120)
    t.join()
    assert not [e for e in events if e.kind == "lagged"]
    rows = [e.row for e in events]
    assert rows == list(range(total)), "a gap or a duplicate at the history/live seam"
    assert [e.value for e in events] == [float(i) for i in range(total)]
    assert [e.step for e in events] == list(range(total))
    assert events[0].history and not events[-1].history
    run.complete()


def test_filters_run_children_metric_globs_and_kinds(workspace):
    exp = Experiment(workspace, "live-filters")
    other = Experiment(workspace, "live-filters-other")
    parent = exp.start_logging(snapshot_directory=None)
    child = parent.child_run("c1")
    sibling = exp.start_logging(snapshot_directory=None)
    stranger = other.start_logging(snapshot_directory=None)

    only_parent = parent.subscribe()
    family = parent.subscribe(include_children=True)
    globbed = parent.subscribe(metrics=["val_*", "acc"], include_children=True)
    statuses = parent.subscribe(kinds=["status"], include_children=True)
    tags = parent.subscribe(kinds="tag")
    whole = exp.subscribe(metrics="loss")

    grandchild = child.child_run("g1")  # created after subscribing: joins the family scope
    for r in (parent, child, grandchild, sibling, stranger):
        r.log("loss", 1.0)
        r.log("val_loss", 2.0)
        r.log("acc", 3.0)
        r.log("accuracy", 4.0)
    parent.tag("k", "v")
    child.tag("k", "v")
    for r in (grandchild, child, parent, sibling, stranger):
        r.complete()

    def pairs(events):
        return {(e.run_id, e.name) for e in metric_points(events)}

    got = collect(only_parent, lambda ev: any(e.kind == "status" and e.status == "Completed" for e in ev))
    assert pairs(got) == {(parent.id, n) for n in ("loss", "val_loss", "acc", "accuracy")}
    assert {e.run_id for e in got} == {parent.id}
    assert any(e.kind == "tag" and e.tags == {"k": "v"} for e in got)

    fam_ids = {parent.id, child.id, grandchild.id}
    got = collect(family, lambda ev: len(metric_points(ev)) >= 12)
    assert pairs(got) == {(r, n) for r in fam_ids for n in ("loss", "val_loss", "acc", "accuracy")}

    got = collect(globbed, lambda ev: len(metric_points(ev)) >= 6)
    assert pairs(got) == {(r, n) for r in fam_ids for n in ("val_loss", "acc")}

    got = collect(statuses, lambda ev: sum(e.kind == "status" and e.status == "Completed" for e in ev) >= 3)
    assert {e.kind for e in got} == {"status"}
    created = [e for e in got if e.created]
    assert [(e.run_id, e.parent_run_id, e.status) for e in created] == [(grandchild.id, child.id, "Running")]
    assert {e.run_id for e in got if e.status == "Completed"} == fam_ids

    got = collect(tags, lambda ev: len(ev) >= 1)
    assert [(e.kind, e.run_id, e.set) for e in got] == [("tag", parent.id, {"k": "v"})]

    exp_ids = fam_ids | {sibling.id}
    got = collect(whole, lambda ev: len(metric_points(ev)) >= 4)
    assert pairs(got) == {(r, "loss") for r in exp_ids}

    for sub in (only_parent, family, globbed, statuses, tags, whole):
        sub.close()
    with pytest.raises(StopIteration):  # a closed subscription ends iteration
        next(only_parent)


def test_from_start_sends_state_of_each_run(workspace):
    exp = Experiment(workspace, "live-state")
    run = exp.start_logging(snapshot_directory=None)
    run.log_list("fib", [1, 1, 2, 3])
    run.log_row("tbl", x=1, y=0.5)
    run.tag("phase", "train")
    run.complete()
    with exp.subscribe(from_start=True, timeout=WAIT_S) as sub:
        events = collect(sub, lambda ev: len(metric_points(ev)) >= 5)
    kinds = [e.kind for e in events]
    assert kinds[0] == "status" and events[0].status == "Completed"
    assert "tag" in kinds
    assert [e.value for e in metric_points(events, "fib")] == [1, 1, 2, 3]
    assert [e.value for e in metric_points(events, "tbl")] == [{"x": 1, "y": 0.5}]
    assert all(e.history for e in metric_points(events))


def test_unknown_run_is_not_found(workspace):
    from runwire.exceptions import RunNotFoundError

    with pytest.raises(RunNotFoundError):
        workspace._transport.subscribe(run_id="no-such-run")


def test_slow_subscriber_is_told_it_lagged_and_blocks_nobody(workspace, cluster):
    """A subscriber that does not read fills its bounded queue: it gets a `lagged` event naming
    what it missed (exactly the rows it did not receive), while ingest and a fast subscriber
    carry on with everything."""
    names = [f"m{i:03d}" for i in range(200)]
    rounds = 100
    bulk = 20_000
    """Rows of the list `bulk` per round: 2 M points in all fill the slow queue's points bound
    (one commit is one queue entry, so 100 commits alone would not fill it)."""

    def log_rounds(run) -> float:
        started = time.perf_counter()
        for i in range(rounds):
            for name in names:
                run.log(name, float(i))
            run.log_list("bulk", [float(i)] * bulk)
            run.flush()  # one commit per round: 201 events each
        return rounds * (len(names) + bulk) / (time.perf_counter() - started)

    # the same ingest without any subscriber, for comparison (printed, never asserted: timing)
    baseline = log_rounds(Experiment(workspace, "live-lag-baseline").start_logging(snapshot_directory=None))
    run = Experiment(workspace, "live-lag").start_logging(snapshot_directory=None)
    # A raw stream that is never read while the run logs: the slow subscriber.
    channel = grpc.insecure_channel(cluster.collector, options=[("grpc.http2.bdp_probe", 0)])  # a small window
    slow = live_pb2_grpc.LiveStub(channel).Subscribe(live_pb2.SubscribeRequest(run_id=run.id, kinds=[1]))
    assert next(slow).kind == live_pb2.EVENT_KIND_LIVE
    fast = run.subscribe(kinds="metric", metrics="m*")
    fast_events: list = []

    def read_fast():
        while len(fast_events) < 200 * rounds:
            ev = fast.next_event(WAIT_S)
            if ev is None:
                return
            fast_events.append(ev)

    reader = threading.Thread(target=read_fast)
    reader.start()
    with_slow = log_rounds(run)
    print(f"commit throughput: {baseline:,.0f} points/s without subscribers, {with_slow:,.0f} with a slow one")
    reader.join(WAIT_S * 2)
    assert not [e for e in fast_events if isinstance(e, LaggedEvent)]
    assert len(fast_events) == 200 * rounds

    # ingest lost nothing
    metrics = run.get_metrics()
    assert all(metrics[name] == [float(i) for i in range(rounds)] for name in names)

    # now read the slow stream: what arrived plus what `lagged` reports is everything, exactly
    from runwire.live import expand

    got: dict[str, list[int]] = {name: [] for name in [*names, "bulk"]}
    missed: dict[str, list[int]] = {name: [] for name in [*names, "bulk"]}
    lagged = []
    while sum(len(v) for v in got.values()) + sum(len(v) for v in missed.values()) < (200 + bulk) * rounds:
        message = next(slow)
        for ev in expand(message):
            if isinstance(ev, MetricEvent):
                got[ev.name].append(ev.row)
            elif isinstance(ev, LaggedEvent):
                lagged.append(ev)
                for s in ev.series:
                    assert s.run_id == run.id
                    missed[s.name].extend(range(s.first_row, s.first_row + s.rows))
    slow.cancel()
    channel.close()
    assert lagged, "the slow subscriber was never told it lagged"
    with urllib.request.urlopen(f"http://{cluster.server.info['http']}/metrics", timeout=30) as r:
        counted = [line for line in r.read().decode().splitlines() if line.startswith("runwire_collector_live_lagged")]
    assert counted and float(counted[0].split()[-1]) >= sum(e.events for e in lagged)
    assert sum(e.events for e in lagged) > 0 and lagged[0].run_ids == [run.id]
    for name in names:
        assert sorted(got[name] + missed[name]) == list(range(rounds)), name
    assert sorted(got["bulk"] + missed["bulk"]) == list(range(rounds * bulk))
    fast.close()
    run.complete()


def test_hundred_concurrent_subscribers_all_receive_everything(workspace, cluster):
    run = Experiment(workspace, "live-many").start_logging(snapshot_directory=None)
    subs = [run.subscribe(metrics="loss") for _ in range(100)]
    with urllib.request.urlopen(f"http://{cluster.server.info['http']}/metrics", timeout=30) as r:
        assert "runwire_collector_live_subscribers 100.0" in r.read().decode()
    n = 1000
    for i in range(n):
        run.log("loss", float(i), step=i)
        run.log("other", float(i))
    run.flush()
    for sub in subs:
        events = collect(sub, lambda ev: len(ev) >= n)
        assert [e.row for e in events] == list(range(n))
        assert [e.value for e in events] == [float(i) for i in range(n)]
        sub.close()
    run.complete()

    def open_subscriptions():
        with urllib.request.urlopen(f"http://{cluster.server.info['http']}/metrics", timeout=30) as r:
            text = r.read().decode()
        return "runwire_collector_live_subscribers 0.0" in text

    wait_for(open_subscriptions, WAIT_S, "the collector to drop the closed subscriptions")


def test_file_events_follow_committed_uploads(workspace, tmp_path):
    run = Experiment(workspace, "live-files").start_logging(snapshot_directory=None)
    model = tmp_path / "model.bin"
    model.write_bytes(b"\x00" * 1234)
    with run.subscribe(kinds="file") as sub:
        run.upload_file("outputs/model.bin", str(model))
        run.flush()
        events = collect(sub, lambda evs: any(e.kind == "file" for e in evs))
    (event,) = [e for e in events if e.kind == "file"]
    assert (event.run_id, event.path, event.size) == (run.id, "outputs/model.bin", 1234)
    run.complete()
