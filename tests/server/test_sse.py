"""`GET /api/v1/events` (the studio's server-sent events) through real collector and agent
processes: SDK logging in this process, a raw HTTP client reading the event stream."""

from __future__ import annotations

import asyncio
import json
import math
import re
import socket
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from urllib.parse import urlencode

import numpy as np
import pytest

from runwire import codec
from runwire.server.bus import BusEvent, metric_events
from runwire.server.records import CommittedPoints
from runwire.server.studio.events import SSE_COALESCE_S
from tests.procs import running_cluster, wait_for, workspace_for

WAIT_S = 60.0


class SSEClient:
    """A minimal event-stream reader over a raw socket (HTTP/1.0, so the body is the bare stream).
    `rcvbuf` shrinks the socket's receive buffer, so that a client that stops reading pushes back
    on the collector at once."""

    def __init__(self, http: str, params: list[tuple[str, str]] | dict, rcvbuf: int | None = None) -> None:
        host, port = http.rsplit(":", 1)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(WAIT_S)
        self.sock.connect((host, int(port)))
        query = urlencode(params, doseq=True)
        self.sock.sendall(
            f"GET /api/v1/events?{query} HTTP/1.0\r\nHost: {http}\r\nAccept: text/event-stream\r\n\r\n".encode()
        )
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self._recv()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        self.comments: list[str] = []
        self.closed = False

    def _recv(self) -> None:
        data = self.sock.recv(1 << 20)
        if not data:
            self.closed = True
            raise EOFError("the collector closed the stream")
        self.buf += data

    def body(self) -> bytes:
        """The rest of a (non-stream) response."""
        try:
            while True:
                self._recv()
        except EOFError:
            return self.buf

    def next_event(self, timeout: float) -> tuple[str, dict] | None:
        """The next event (kind, data), or None after `timeout` seconds without one."""
        deadline = time.monotonic() + timeout
        while True:
            while b"\n\n" in self.buf:
                block, self.buf = self.buf.split(b"\n\n", 1)
                kind, data = "message", []
                for line in block.decode().split("\n"):
                    if line.startswith(":"):
                        self.comments.append(line[1:].strip())
                    elif line.startswith("event:"):
                        kind = line[6:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].removeprefix(" "))
                if data:
                    return kind, json.loads("\n".join(data))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.sock.settimeout(remaining)
            try:
                self._recv()
            except TimeoutError:
                return None

    def collect(self, until: Callable[[list], bool], timeout: float = WAIT_S) -> list[tuple[str, dict, float]]:
        """Events (kind, data, arrival time) until `until(events)` holds."""
        events: list[tuple[str, dict, float]] = []
        deadline = time.monotonic() + timeout
        while not until(events):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                tail = [(k, str(d)[:200]) for k, d, _ in events[-5:]]
                raise TimeoutError(f"condition not met after {timeout} s; {len(events)} events, last: {tail}")
            ev = self.next_event(min(remaining, 1.0))
            if ev is not None:
                events.append((*ev, time.monotonic()))
        return events

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> SSEClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def kinds_of(events) -> list[str]:
    return [k for k, _, _ in events]


def metric_rows(events, run_id: str, name: str) -> list[tuple[int, object, object]]:
    """(row, x, y) of every point of a scalar series, in arrival order."""
    out = []
    for kind, d, _ in events:
        if kind == "metric" and d["run_id"] == run_id and d["name"] == name:
            assert len(d["x"]) == len(d["y"]) == d["count"]
            out.extend(zip(range(d["first_row"], d["first_row"] + d["count"]), d["x"], d["y"], strict=True))
    return out


def has_rows(run_id: str, name: str, n: int) -> Callable[[list], bool]:
    return lambda events: len(metric_rows(events, run_id, name)) >= n


def live_subscribers(http: str) -> float:
    text = urllib.request.urlopen(f"http://{http}/metrics", timeout=10).read().decode()
    return float(re.search(r"^runwire_collector_live_subscribers (\S+)$", text, re.M).group(1))


@pytest.fixture
def jobs(request):
    """A collector and an agent that is a node of compute target `local` (script runs write logs)."""
    with running_cluster(request, agent_args=["--compute-target", "local", "--slots", "1"]) as c:
        yield c


@pytest.fixture
def ws(jobs, monkeypatch):
    return workspace_for(jobs, monkeypatch)


@pytest.fixture
def http(jobs) -> str:
    return jobs.server.info["http"]


def test_every_kind_arrives_as_its_event(ws, http, tmp_path):
    from runwire import Environment, Experiment, ScriptRunConfig

    exp = Experiment(ws, "sse-kinds")
    run = exp.start_logging(snapshot_directory=None)
    with SSEClient(http, {"experiment": "sse-kinds"}) as sse:
        assert sse.status == 200
        assert sse.headers["content-type"].startswith("text/event-stream")
        sse.collect(lambda ev: kinds_of(ev) == ["live"])
        run.log("loss", 0.5, step=3)
        run.log("loss", float("nan"), step=4)
        run.log("loss", float("inf"), step=5)
        run.log("loss", float("-inf"), step=6)
        run.log("loss", 2, step=7)
        run.log_row("roc", fpr=0.1, tpr=0.7)
        run.log("note", "hello")
        run.tag("color", "blue")
        run.tag("flag")
        (tmp_path / "model.txt").write_text("weights")
        run.upload_file("outputs/model.txt", str(tmp_path / "model.txt"))
        run.complete()
        events = sse.collect(
            lambda ev: (
                len(metric_rows(ev, run.id, "loss")) >= 5
                and any(k == "status" and d["status"] == "Completed" for k, d, _ in ev)
                and {"tag", "file"} <= set(kinds_of(ev))
                and any(k == "metric" and d["name"] == "roc" for k, d, _ in ev)
            )
        )
        assert metric_rows(events, run.id, "loss") == [
            (0, 3, 0.5),
            (1, 4, "NaN"),
            (2, 5, "Infinity"),
            (3, 6, "-Infinity"),
            (4, 7, 2.0),
        ]
        roc = next(d for k, d, _ in events if k == "metric" and d["name"] == "roc")
        assert roc == {
            "run_id": run.id,
            "name": "roc",
            "kind": "table",
            "first_row": 0,
            "count": 1,
            "columns": {"fpr": [0.1], "tpr": [0.7]},
        }
        tags = [d for k, d, _ in events if k == "tag"]
        assert tags[-1] == {"run_id": run.id, "tags": {"color": "blue", "flag": None}}
        files = [d for k, d, _ in events if k == "file"]
        assert {"run_id": run.id, "name": "outputs/model.txt", "size": 7} in files
        done = [d for k, d, _ in events if k == "status" and d["status"] == "Completed"][-1]
        assert done["run_id"] == run.id and done["experiment_name"] == "sse-kinds" and done["created"] is False
        assert done["error"] is None and done["parent_run_id"] is None
        assert done["end_time"] >= done["start_time"] > 1e9

        # a script run: created, its status changes and its log lines
        folder = tmp_path / "src"
        folder.mkdir()
        (folder / "train.py").write_text(
            textwrap.dedent("""
                for i in range(3):
                    print(f"line {i}", flush=True)
            """)
        )
        env = Environment("user-managed-env")
        env.python.user_managed_dependencies = True
        env.python.interpreter_path = sys.executable
        script = exp.submit(ScriptRunConfig(source_directory=str(folder), script="train.py", environment=env))
        events = sse.collect(
            lambda ev: (
                any(k == "status" and d["run_id"] == script.id and d["status"] == "Completed" for k, d, _ in ev)
                and sum(len(d["lines"]) for k, d, _ in ev if k == "log" and d["run_id"] == script.id) >= 3
            ),
            timeout=120,
        )
    statuses = [d for k, d, _ in events if k == "status" and d["run_id"] == script.id]
    assert statuses[0]["created"] is True and statuses[0]["status"] == "Queued"
    assert [s["status"] for s in statuses][-1] == "Completed"
    logs = [d for k, d, _ in events if k == "log" and d["run_id"] == script.id]
    lines = [line for d in logs for line in d["lines"]]
    assert [line for line in lines if line.startswith("line ")] == ["line 0", "line 1", "line 2"]
    assert all(d["path"] and isinstance(d["first_line"], int) for d in logs)


def test_filters_scope_kinds_and_metric_globs(ws, http):
    from runwire import Experiment

    exp = Experiment(ws, "sse-filters")
    parent = exp.start_logging(snapshot_directory=None)
    child = parent.child_run("c1")
    sibling = exp.start_logging(snapshot_directory=None)
    stranger = Experiment(ws, "sse-filters-other").start_logging(snapshot_directory=None)
    clients = {
        "only_parent": SSEClient(http, {"run": parent.id}),
        "family_globs": SSEClient(
            http, [("run", parent.id), ("include_children", "1"), ("metrics", "val_*"), ("metrics", "acc")]
        ),
        "statuses": SSEClient(http, {"experiment": "sse-filters", "kinds": "status"}),
        "tags_and_files": SSEClient(http, [("run", parent.id), ("kinds", "tag,file")]),
        "experiment_loss": SSEClient(http, {"experiment": "sse-filters", "metrics": "loss"}),
    }
    try:
        for c in clients.values():
            c.collect(lambda ev: kinds_of(ev) == ["live"])
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

        def ended(run_id):
            return lambda ev: any(
                k == "status" and d["run_id"] == run_id and d["status"] == "Completed" for k, d, _ in ev
            )

        def pairs(events):
            return {(d["run_id"], d["name"]) for k, d, _ in events if k == "metric"}

        got = clients["only_parent"].collect(ended(parent.id))
        assert pairs(got) == {(parent.id, n) for n in ("loss", "val_loss", "acc", "accuracy")}
        assert {d["run_id"] for k, d, _ in got} == {parent.id}

        family = {parent.id, child.id, grandchild.id}
        want = {(r, n) for r in family for n in ("val_loss", "acc")}
        got = clients["family_globs"].collect(lambda ev: pairs(ev) >= want and ended(parent.id)(ev))
        assert pairs(got) == want

        got = clients["statuses"].collect(ended(sibling.id))
        assert set(kinds_of(got)) == {"status"}
        assert {d["run_id"] for k, d, _ in got} == {parent.id, child.id, grandchild.id, sibling.id}
        assert any(d["created"] and d["run_id"] == grandchild.id for k, d, _ in got)

        got = clients["tags_and_files"].collect(lambda ev: "tag" in kinds_of(ev))
        assert {d["run_id"] for k, d, _ in got if k == "tag"} == {parent.id}

        want = {(r.id, "loss") for r in (parent, child, grandchild, sibling)}
        got = clients["experiment_loss"].collect(lambda ev: pairs(ev) >= want)
        assert pairs(got) == want
        assert stranger.id not in {d["run_id"] for k, d, _ in got}
    finally:
        for c in clients.values():
            c.close()


def test_from_start_sends_history_then_live_exactly_once(ws, http):
    """Points stored, then a stream from the start while a writer keeps logging: every point once,
    in order, the history before `live`, whatever commit the subscription lands in."""
    from runwire import Experiment

    run = Experiment(ws, "sse-seam").start_logging(snapshot_directory=None)
    n_before, n_during = 20_000, 20_000
    for i in range(n_before):
        run.log("loss", float(i), step=i)
    run.log("other", 1.0)
    run.tag("phase", "history")
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
    with SSEClient(http, {"run": run.id, "metrics": "loss", "from_start": "1"}) as sse:
        events = sse.collect(has_rows(run.id, "loss", total), timeout=120)
        t.join()
        run.log("loss", -1.0, step=total)
        events += sse.collect(has_rows(run.id, "loss", 1))
    assert "lagged" not in kinds_of(events)
    rows = metric_rows(events, run.id, "loss")
    assert [r for r, _, _ in rows] == list(range(total + 1)), "a gap or a duplicate at the history/live seam"
    assert [x for _, x, _ in rows] == list(range(total + 1))
    assert [y for _, _, y in rows] == [float(i) for i in range(total)] + [-1.0]
    live_at = kinds_of(events).index("live")
    assert kinds_of(events).count("live") == 1
    assert kinds_of(events)[:live_at].count("metric") >= 1, "no history before live"
    assert {"status", "tag"} <= set(kinds_of(events)[:live_at])  # the run's state comes with its history
    assert not any(k == "metric" and d["name"] == "other" for k, d, _ in events)
    run.complete()


def test_live_points_are_coalesced_per_series(ws, http):
    from runwire import Experiment

    run = Experiment(ws, "sse-coalesce").start_logging(snapshot_directory=None)
    n = 400
    with SSEClient(http, {"run": run.id, "kinds": "metric"}) as sse:
        sse.collect(lambda ev: kinds_of(ev) == ["live"])
        started = time.monotonic()
        for i in range(n):
            run.log("a", float(i))
            run.log("b", float(-i))
            run.flush()  # one commit each: without coalescing, one message per point
        events = sse.collect(lambda ev: has_rows(run.id, "a", n)(ev) and has_rows(run.id, "b", n)(ev))
        elapsed = time.monotonic() - started
    for name in ("a", "b"):
        rows = metric_rows(events, run.id, name)
        assert [r for r, _, _ in rows] == list(range(n))
        assert [abs(y) for _, _, y in rows] == [float(i) for i in range(n)]
        messages = [t for k, d, t in events if k == "metric" and d["name"] == name]
        assert len(messages) <= elapsed / SSE_COALESCE_S + 3, f"{len(messages)} messages in {elapsed:.2f} s"
        assert len(messages) < n / 2, "points were not coalesced"


def test_a_client_that_stops_reading_gets_lagged_and_ingest_goes_on(ws, http):
    from runwire import Experiment

    run = Experiment(ws, "sse-slow").start_logging(snapshot_directory=None)
    slow = SSEClient(http, {"run": run.id}, rcvbuf=4096)
    fast = SSEClient(http, {"run": run.id, "metrics": "m149?"})
    try:
        slow.collect(lambda ev: kinds_of(ev) == ["live"])
        fast.collect(lambda ev: kinds_of(ev) == ["live"])
        # `slow` reads nothing from now on: enough points to fill every socket buffer on the way ...
        for i in range(500_000):
            run.log("big", i * 1.000001, step=i)
        run.flush()
        # ... then more series in one commit than a subscriber's queue holds entries (one commit is
        # one entry) ...
        names = 1_500
        for i in range(names):
            run.log(f"m{i:04d}", float(i))
        run.flush()
        got = fast.collect(lambda ev: len({d["name"] for k, d, _ in ev if k == "metric"}) >= 10)
        assert "lagged" not in kinds_of(got)
        assert run.get_metrics("m1499") == {"m1499": 1499.0}
        # ... and more points than the stalled subscriber's queue holds
        for i in range(500_000, 1_700_000):
            run.log("big", i * 1.000001, step=i)
        started = time.monotonic()
        run.flush()  # ingest is not held up by the stalled subscriber
        flush_s = time.monotonic() - started
        assert flush_s < 30
        events = slow.collect(lambda ev: "lagged" in kinds_of(ev), timeout=120)
        lagged = next(d for k, d, _ in events if k == "lagged")
        assert lagged["events"] > 0 and run.id in lagged["run_ids"] and "metric" in lagged["kinds"]
        assert all(s["rows"] > 0 for s in lagged["series"])
        # after the lagged event the stream goes on live
        run.log("after", 1.0)
        slow.collect(lambda ev: any(k == "metric" and d["name"] == "after" for k, d, _ in ev), timeout=120)
    finally:
        slow.close()
        fast.close()


def test_disconnect_removes_the_subscription_at_once(ws, http):
    from runwire import Experiment

    run = Experiment(ws, "sse-gone").start_logging(snapshot_directory=None)
    assert live_subscribers(http) == 0
    sse = SSEClient(http, {"run": run.id})
    sse.collect(lambda ev: kinds_of(ev) == ["live"])
    assert live_subscribers(http) == 1
    sse.close()
    started = time.monotonic()
    wait_for(lambda: live_subscribers(http) == 0, 5, "the subscription to be removed", 0.01)
    assert time.monotonic() - started < 2.0
    run.log("x", 1.0)  # the bus goes on without it
    run.flush()
    run.complete()


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"kinds": "metric,bogus"}, "kinds"),
        ({"include_children": "maybe"}, "include_children"),
        ({"from_start": "2"}, "from_start"),
        ({"metrics": ""}, "metrics"),
        ({"experiment": "x" * 300}, "experiment"),
        ({"metrics": [f"m{i}" for i in range(101)]}, "metrics"),
    ],
)
def test_bad_parameters_are_400_naming_them(http, params, name):
    with SSEClient(http, params) as resp:
        assert resp.status == 400
        body = json.loads(resp.body())
    assert body["error"]["code"] == "InvalidArgument"
    assert repr(name) in body["error"]["message"]


def test_unknown_run_is_404_and_unknown_experiment_waits_for_runs(ws, http):
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"http://{http}/api/v1/events?run=nope", timeout=10)
    assert e.value.code == 404
    assert json.loads(e.value.read())["error"]["code"] == "NotFound"
    from runwire import Experiment

    with SSEClient(http, {"experiment": "sse-later", "kinds": "metric"}) as sse:
        sse.collect(lambda ev: kinds_of(ev) == ["live"])
        run = Experiment(ws, "sse-later").start_logging(snapshot_directory=None)
        run.log("v", math.pi)
        events = sse.collect(has_rows(run.id, "v", 1))
    assert metric_rows(events, run.id, "v") == [(0, 0, math.pi)]


def test_open_streams_do_not_hold_up_the_collectors_stop(jobs, ws, http):
    """An idle stream ends when the collector stops, and one whose client stopped reading (its
    write blocked on a full socket) does not keep the collector from stopping."""
    from runwire import Experiment

    run = Experiment(ws, "sse-stop").start_logging(snapshot_directory=None)
    idle = SSEClient(http, {"run": run.id, "kinds": "status"})
    stalled = SSEClient(http, {"run": run.id}, rcvbuf=4096)
    try:
        idle.collect(lambda ev: kinds_of(ev) == ["live"])
        stalled.collect(lambda ev: kinds_of(ev) == ["live"])
        for i in range(300_000):
            run.log("big", i * 1.000001, step=i)
        run.flush()
        started = time.monotonic()
        assert jobs.server.stop() == 0
        assert time.monotonic() - started < 15
        with pytest.raises(EOFError):
            idle.collect(lambda ev: False, timeout=10)
    finally:
        idle.close()
        stalled.close()


# --- in the collector's process: keep-alive, and the coalescing and encoding rules ----------------


async def test_an_idle_stream_gets_a_keepalive_comment(collector, monkeypatch):
    import aiohttp

    from runwire.server.studio import events

    monkeypatch.setattr(events, "SSE_KEEPALIVE_S", 0.2)
    url = f"http://{collector.http_address}/api/v1/events?kinds=status"
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert resp.status == 200
        got = b""
        started = time.monotonic()
        while got.count(b": ping\n\n") < 2:
            got += await asyncio.wait_for(resp.content.readany(), WAIT_S)
        assert time.monotonic() - started >= 0.3
        assert got.startswith(b"event: live\ndata: {}\n\n")
    await asyncio.wait_for(_until(lambda: collector.live.subscriber_count == 0), WAIT_S)


async def _until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.01)


def _points(first_row: int, values: list, steps: list | None = None) -> BusEvent:
    n = len(values)
    col = codec.DecodedColumn("", codec.FLOAT, np.array(values, dtype=float))
    pts = codec.DecodedPoints(n, np.zeros(n, np.int64), None if steps is None else np.array(steps, np.int64), {"": col})
    return metric_events([CommittedPoints("r1", "loss", codec.SCALAR, "", first_row, pts)])[0]


def _decode(frames: list[bytes]) -> list[dict]:
    out = []
    for f in frames:
        head, data = f.decode().split("\n", 1)
        assert head == "event: metric" and data.startswith("data: ") and data.endswith("\n\n")
        out.append(json.loads(data[6:]))
    return out


def test_coalescer_sends_a_series_at_once_then_at_most_once_per_interval():
    from runwire.server.studio.events import Coalescer

    c = Coalescer(interval=0.1)
    assert _decode(c.add(_points(0, [1.0], [10]), now=0.0)) == [
        {"run_id": "r1", "name": "loss", "kind": "scalar", "first_row": 0, "count": 1, "x": [10], "y": [1.0]}
    ]
    assert c.add(_points(1, [2.0], [11]), now=0.02) == []
    assert c.add(_points(2, [3.0]), now=0.05) == []  # no step: x falls back to row indices
    assert c.next_due() == pytest.approx(0.1)
    assert c.due(0.09) == []
    (msg,) = _decode(c.due(0.1))
    assert (msg["first_row"], msg["count"], msg["x"], msg["y"]) == (1, 2, [1, 2], [2.0, 3.0])
    assert c.next_due() is None
    assert c.add(_points(3, [4.0]), now=0.15) == []  # 0.05 s after the last message: held
    assert c.next_due() == pytest.approx(0.2)
    (msg,) = _decode(c.flush(0.16, run_id="r1"))  # e.g. before the run's status event
    assert msg["first_row"] == 3 and len(c) == 0
    c.add(_points(4, [5.0]), now=0.2)
    (gap,) = _decode(c.add(_points(9, [6.0]), now=0.21))  # rows 5..8 missing: what is held goes first
    assert gap["first_row"] == 4
    (msg,) = _decode(c.due(1.0))
    assert msg["first_row"] == 9


def test_column_json_numbers_non_finite_nulls_and_types():
    from runwire.server.studio.events import column_json

    floats = codec.DecodedColumn(
        "", codec.FLOAT, np.array([1.5, np.nan, np.inf, -np.inf, 0.0]), np.array([0, 0, 0, 0, 1], bool)
    )
    assert json.loads(f"[{column_json(floats, 5)}]") == [1.5, "NaN", "Infinity", "-Infinity", None]
    ints = codec.DecodedColumn("", codec.INT, np.array([1, -(2**40)], np.int64))
    assert json.loads(f"[{column_json(ints, 2)}]") == [1, -(2**40)]
    bools = codec.DecodedColumn("", codec.BOOL, np.array([1, 0], np.uint8))
    assert json.loads(f"[{column_json(bools, 2)}]") == [True, False]
    strings = codec.DecodedColumn("", codec.STRING, ['a "quoted"\nline', "é"])
    assert json.loads(f"[{column_json(strings, 2)}]") == ['a "quoted"\nline', "é"]
    assert json.loads(f"[{column_json(None, 2)}]") == [None, None]
    assert column_json(floats, 0) == ""
