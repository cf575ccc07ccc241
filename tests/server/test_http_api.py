"""The studio's JSON API (server/studio) against a real collector process, with data logged through
the SDK by a submitted script run and an interactive run (tests/server/studio_data.py)."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile

import numpy as np
import pytest

from runwire.server.app import Collector, CollectorConfig
from runwire.server.records import NewRun
from tests.server.big_series import store_scalars
from tests.server.studio_data import DISPLAY, EXPERIMENT, HTML, PNG, get, get_json, q, studio_cluster


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    with studio_cluster(tmp_path_factory.mktemp("studio")) as d:
        yield d


def test_experiments_list_and_one(data):
    found = get_json(data.base, "/api/v1/experiments")["experiments"]
    exp = next(e for e in found if e["name"] == EXPERIMENT)
    assert exp["runs"] == 3  # script run, interactive run, its child
    assert exp["status_counts"] == {"Completed": 3}
    assert exp["last_activity"] >= exp["created_time"]
    assert get_json(data.base, f"/api/v1/experiments/{q(EXPERIMENT)}") == exp
    err = get_json(data.base, "/api/v1/experiments/nope", 404)["error"]
    assert err["code"] == "NotFound" and "nope" in err["message"]


def test_runs_table_filters_sorts_pages(data):
    base = f"/api/v1/experiments/{q(EXPERIMENT)}/runs"
    page = get_json(data.base, base + "?metrics=acc&metrics=loss")
    assert page["total"] == 2 and page["offset"] == 0 and page["limit"] == 100
    assert {r["run_id"] for r in page["runs"]} == {data.script_run_id, data.run_id}
    assert set(page["metric_names"]) >= {"acc", "loss", "fib", "once"}
    assert "category" not in page["metric_names"]  # strings are not columns
    row = next(r for r in page["runs"] if r["run_id"] == data.run_id)
    assert row["display_name"] == DISPLAY  # verbatim
    assert row["tags"] == {"owner": "ana <x>", "flag": None} or row["tags"]["owner"] == "ana <x>"
    assert row["metrics"] == {"acc": {"last": 0.95, "min": 0.0, "max": 0.95, "count": 20}}
    assert row["duration"] is not None and row["duration"] >= 0
    script = next(r for r in page["runs"] if r["run_id"] == data.script_run_id)
    assert script["metrics"]["loss"]["last"] == pytest.approx(1 / 50)
    children = get_json(data.base, base + "?include_children=true")
    assert children["total"] == 3
    assert get_json(data.base, base + "?tag=owner")["total"] == 1
    assert get_json(data.base, base + f"?tag={q('owner=ana <x>')}")["total"] == 1
    assert get_json(data.base, base + "?tag=owner%3Dbob")["total"] == 0
    assert get_json(data.base, base + f"?q={q('ANA')}")["total"] == 1
    assert get_json(data.base, base + "?status=Failed")["total"] == 0
    assert get_json(data.base, base + "?status=Completed&status=Failed")["total"] == 2
    by_loss = get_json(data.base, base + f"?sort={q('metric:acc:max')}&order=desc&include_children=1")
    assert [r["run_id"] for r in by_loss["runs"]] == [data.run_id, data.child_id, data.script_run_id]
    asc = get_json(data.base, base + f"?sort={q('metric:acc:max')}&order=asc&include_children=1")
    assert [r["run_id"] for r in asc["runs"]] == [data.child_id, data.run_id, data.script_run_id]  # missing last
    paged = get_json(data.base, base + "?include_children=1&sort=number&order=asc&offset=1&limit=1")
    assert paged["total"] == 3 and len(paged["runs"]) == 1 and paged["runs"][0]["number"] == 2
    for sort in ("created", "started", "duration", "status", "name"):
        assert get_json(data.base, base + f"?sort={sort}")["total"] == 2


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("offset=-1", "offset"),
        ("limit=abc", "limit"),
        ("sort=bogus", "sort"),
        ("sort=metric:acc:median", "sort"),
        ("order=up", "order"),
        ("status=Done", "status"),
        ("include_children=maybe", "include_children"),
        ("tag=%3Dx", "tag"),
    ],
)
def test_runs_table_bad_parameters_are_400_naming_them(data, query, param):
    err = get_json(data.base, f"/api/v1/experiments/{q(EXPERIMENT)}/runs?{query}", 400)["error"]
    assert err["code"] == "InvalidArgument" and repr(param) in err["message"]


def test_run_details_with_history_parent_children(data):
    body = get_json(data.base, f"/api/v1/runs/{q(data.run_id)}")
    run = body["run"]
    assert run["experiment_name"] == EXPERIMENT and run["display_name"] == DISPLAY
    assert run["status"] == "Completed" and run["error"] is None
    assert run["portal_url"].endswith(f"/runs/{q(data.run_id)}")
    assert [h["status"] for h in body["status_history"]] == ["Running", "Completed"]
    assert body["parent"] is None
    assert [c["run_id"] for c in body["children"]] == [data.child_id]
    child = get_json(data.base, f"/api/v1/runs/{q(data.child_id)}")
    assert child["parent"]["run_id"] == data.run_id and child["run"]["parent_run_id"] == data.run_id
    script = get_json(data.base, f"/api/v1/runs/{q(data.script_run_id)}")
    statuses = [h["status"] for h in script["status_history"]]
    assert statuses[0] == "Queued" and statuses[-1] == "Completed" and "Running" in statuses
    times = [h["time"] for h in script["status_history"]]
    assert times == sorted(times)
    assert script["run"]["snapshot_id"] and script["run"]["log_files"]
    assert get_json(data.base, "/api/v1/runs/no-such-run", 404)["error"]["code"] == "NotFound"


def test_metric_list_kinds_and_charts(data):
    metrics = {m["name"]: m for m in get_json(data.base, f"/api/v1/runs/{q(data.script_run_id)}/metrics")["metrics"]}
    assert metrics["loss"]["chart"] == "line" and metrics["loss"]["count"] == 50
    assert metrics["once"]["chart"] == "value" and metrics["once"]["last"] == 3.5
    assert metrics["category"]["chart"] == "value" and metrics["category"]["columns"][0]["type"] == "string"
    assert metrics["fib"]["kind"] == "list" and metrics["fib"]["chart"] == "line"
    assert metrics["curve"]["kind"] == "table" and metrics["curve"]["chart"] == "xy"
    assert [c["name"] for c in metrics["curve"]["columns"]] == ["x", "y"]
    assert metrics["names"]["chart"] == "table"
    assert metrics["pic"]["kind"] == "image" and metrics["pic"]["chart"] == "image"


def test_series_and_rows(data):
    base = f"/api/v1/runs/{q(data.script_run_id)}/metrics"
    loss = get_json(data.base, f"{base}/loss/series")
    assert loss["x_label"] == "step" and loss["x"] == [i * 10 for i in range(50)]
    assert loss["y"][0] == 1.0 and loss["downsampled"] is False and loss["count"] == 50
    narrow = get_json(data.base, f"{base}/loss/series?width=5")
    assert narrow["downsampled"] is True and len(narrow["x"]) <= 10 and 1.0 in narrow["y"]
    zoomed = get_json(data.base, f"{base}/loss/series?x_min=100&x_max=200")
    assert zoomed["x"] == list(range(100, 201, 10))
    fib = get_json(data.base, f"{base}/fib/series")
    assert fib["x_label"] == "index" and fib["y"] == [1, 1, 2, 3, 5, 8]
    curve = get_json(data.base, f"{base}/curve/series")
    assert (curve["x_label"], curve["y_label"]) == ("x", "y") and curve["y"][3] == 9.0
    for bad in ("category", "names", "pic"):
        err = get_json(data.base, f"{base}/{bad}/series", 400)["error"]
        assert err["code"] == "InvalidArgument" and "/rows" in err["message"]
    assert "'width'" in get_json(data.base, f"{base}/loss/series?width=0", 400)["error"]["message"]
    assert "'x_min'" in get_json(data.base, f"{base}/loss/series?x_min=nan", 400)["error"]["message"]
    assert get_json(data.base, f"{base}/loss/series?x_min=5&x_max=1")["x"] == []  # an empty range
    assert get_json(data.base, f"{base}/nope/series", 404)["error"]["code"] == "NotFound"
    rows = get_json(data.base, f"{base}/names/rows")
    assert rows == {"columns": ["name", "v"], "rows": [["a", 1], ["b", 2]], "total": 2}
    cat = get_json(data.base, f"{base}/category/rows")
    assert cat["rows"][-1][-1] == "Red <i>&</i>" and cat["columns"][-1] == "value"
    page = get_json(data.base, f"{base}/loss/rows?offset=10&limit=3")
    assert page["columns"] == ["step", "value"] and page["total"] == 50
    assert page["rows"] == [[100, 1 / 11], [110, 1 / 12], [120, 1 / 13]]
    pic = get_json(data.base, f"{base}/pic/rows")
    assert pic["total"] == 1 and isinstance(pic["rows"][0][-1], str)


def test_files_are_served_safely(data):
    base = f"/api/v1/runs/{q(data.script_run_id)}/files"
    files = {f["name"]: f for f in get_json(data.base, base)["files"]}
    assert files["outputs/page.html"]["size"] == len(HTML)
    status, headers, body = get(data.base, f"{base}/outputs/page.html?inline=1")
    assert status == 200 and body == HTML.encode()
    assert headers["Content-Disposition"].startswith("attachment")
    assert headers["X-Content-Type-Options"] == "nosniff" and "html" not in headers["Content-Type"]
    image = next(n for n in files if n.endswith("pic.png"))
    status, headers, body = get(data.base, f"{base}/{image}?inline=1")
    assert status == 200 and body == PNG and headers["Content-Type"] == "image/png"
    assert headers["Content-Disposition"].startswith("inline")
    status, headers, _ = get(data.base, f"{base}/{image}")
    assert headers["Content-Disposition"].startswith("attachment")
    assert get_json(data.base, f"{base}/missing.txt", 404)["error"]["code"] == "NotFound"


def test_logs_text_and_json(data):
    run = get_json(data.base, f"/api/v1/runs/{q(data.script_run_id)}")["run"]
    path = run["log_files"][0]
    url = f"/api/v1/runs/{q(data.script_run_id)}/logs/{path}"
    status, headers, body = get(data.base, url)
    assert status == 200 and headers["Content-Type"] == "text/plain; charset=utf-8"
    assert "line 0 <tag>\n" in body.decode() and "line 4 <tag>\n" in body.decode()
    page = get_json(data.base, url + "?format=json&from_line=1&max_lines=2")
    assert page["path"] == path and page["first_line"] == 1 and len(page["lines"]) == 2 and page["total"] >= 5
    # the SDK's get_details()["logFiles"] URL points here
    from urllib.parse import quote

    assert get(data.base, f"/api/v1/runs/{quote(data.script_run_id, safe='')}/logs/{quote(path)}")[0] == 200
    assert get_json(data.base, f"/api/v1/runs/{q(data.script_run_id)}/logs/nope.txt", 404)


def test_snapshot_zip(data):
    status, headers, body = get(data.base, f"/api/v1/runs/{q(data.script_run_id)}/snapshot")
    assert status == 200 and headers["Content-Type"] == "application/zip"
    assert "train.py" in zipfile.ZipFile(io.BytesIO(body)).namelist()
    assert get_json(data.base, f"/api/v1/runs/{q(data.run_id)}/snapshot", 404)["error"]["code"] == "NotFound"


def test_compute_targets(data):
    targets = get_json(data.base, "/api/v1/compute")["targets"]
    local = next(t for t in targets if t["name"] == "local")
    assert local["slots"] == 2 and local["nodes"][0]["connected"] is True and local["runs"] == []
    assert get_json(data.base, "/api/v1/compute/local") == local
    assert get_json(data.base, "/api/v1/compute/none", 404)["error"]["code"] == "NotFound"


def test_unknown_routes_and_methods_are_json(data):
    assert get_json(data.base, "/api/v1/nothing", 404)["error"]["code"] == "NotFound"
    doc = get_json(data.base, "/api/v1/openapi.json")
    assert doc["openapi"].startswith("3.1") and "/api/v1/runs/{run_id}/metrics/{name}/series" in doc["paths"]
    assert json.dumps(doc)


@pytest.fixture
async def collector(tmp_path):
    c = Collector(CollectorConfig(data_dir=tmp_path / "c", grpc_listen="127.0.0.1:0", http_listen="127.0.0.1:0"))
    await c.start()
    try:
        yield c
    finally:
        await c.stop(grace=1)


@pytest.mark.parametrize("run_id", ["a/b", "sp ace", "q?x#y", "ünï ✓", "%41", "..", "a/../b", "<script>"])
async def test_odd_run_ids_and_metric_names_with_slashes(collector, run_id):
    await collector.store.create_run(NewRun("odd", run_id, "Running", display_name=run_id))
    await store_scalars(collector.store, run_id, "train/loss", np.arange(5.0))
    base = f"http://{collector.http_address}"
    run = await asyncio.to_thread(get_json, base, f"/api/v1/runs/{q(run_id)}")
    assert run["run"]["run_id"] == run_id and run["run"]["display_name"] == run_id
    assert run["run"]["portal_url"].endswith(f"/runs/{q(run_id)}")
    for name in (q("train/loss"), "train/loss"):
        series = await asyncio.to_thread(get_json, base, f"/api/v1/runs/{q(run_id)}/metrics/{name}/series")
        assert series["name"] == "train/loss" and series["y"] == [0.0, 1.0, 2.0, 3.0, 4.0]
    page = await asyncio.to_thread(get_json, base, f"/api/v1/experiments/odd/runs?q={q(run_id)}")
    assert [r["run_id"] for r in page["runs"]] == [run_id]
