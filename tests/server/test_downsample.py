"""Min/max downsampling (server/studio/downsample.py) and the series endpoint on a 1,000,000-point
metric served by a real collector: every spike survives, zooming returns finer points."""

from __future__ import annotations

import json
import random
import time
import urllib.request
from urllib.parse import quote

import numpy as np
import pytest

from runwire.server.app import Collector, CollectorConfig
from runwire.server.records import NewRun
from runwire.server.studio.downsample import min_max, zoom
from tests.server.big_series import store_scalars


def test_small_series_are_returned_whole():
    x = np.arange(10)
    y = np.linspace(0, 1, 10)
    d = min_max(x, y, 5)
    assert not d.downsampled and d.x.tolist() == x.tolist()


def test_each_bucket_keeps_its_min_and_max_in_row_order():
    rng = np.random.default_rng(1)
    x = np.arange(100_000)
    y = rng.normal(size=x.size)
    d = min_max(x, y, 100)
    assert d.downsampled and len(d.x) <= 200
    assert np.all(np.diff(d.x) > 0)
    for b in range(100):
        lo, hi = b * 1000, (b + 1) * 1000
        assert y[lo:hi].min() in d.y and y[lo:hi].max() in d.y


@pytest.mark.parametrize("seed", range(5))
def test_a_single_spike_always_survives(seed):
    rng = np.random.default_rng(seed)
    n = 1_000_000
    y = rng.random(n)
    at = int(rng.integers(n))
    y[at] = 1e9
    d = min_max(np.arange(n), y, 1000)
    assert 1e9 in d.y.tolist() and at in d.x.tolist()
    y[at] = -1e9
    assert -1e9 in min_max(np.arange(n), y, 1000).y.tolist()


def test_nan_rows_and_uneven_x():
    x = np.concatenate([np.linspace(0, 1, 5000), np.linspace(100, 101, 5000)])
    y = np.where(np.arange(10_000) % 7 == 0, np.nan, np.arange(10_000.0))
    d = min_max(x, y, 50)
    assert d.downsampled and len(d.x) <= 100
    assert 9999.0 in d.y.tolist() and 0.0 not in d.y.tolist()  # row 0 is NaN
    allnan = min_max(np.arange(5000), np.full(5000, np.nan), 10)
    assert 0 < len(allnan.x) <= 20


def test_zoom_keeps_the_inclusive_range():
    x = np.arange(100)
    zx, zy = zoom(x, x * 2.0, 10, 20)
    assert zx.tolist() == list(range(10, 21)) and zy[0] == 20.0
    assert zoom(x, x * 1.0, 200, None)[0].size == 0


@pytest.fixture
async def big(tmp_path):
    c = Collector(CollectorConfig(data_dir=tmp_path / "c", grpc_listen="127.0.0.1:0", http_listen="127.0.0.1:0"))
    await c.start()
    try:
        yield c
    finally:
        await c.stop(grace=1)


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=60) as r:
        return json.loads(r.read())


async def test_million_point_series_keeps_the_spike_and_zooms(big):
    import asyncio

    n = 1_000_000
    rng = np.random.default_rng(7)
    y = rng.random(n)
    at = random.Random(7).randrange(n)
    y[at] = 1e9
    steps = np.arange(n, dtype=np.int64) * 2
    await big.store.create_run(NewRun("big", "big-run", "Running"))
    await store_scalars(big.store, "big-run", "loss", y, steps)
    url = f"http://{big.http_address}/api/v1/runs/big-run/metrics/{quote('loss', safe='')}/series"
    t0 = time.perf_counter()
    body = await asyncio.to_thread(_get, url + "?width=1000")
    took = time.perf_counter() - t0
    assert body["count"] == n and body["downsampled"] and body["x_label"] == "step"
    assert len(body["x"]) <= 2000
    assert 1e9 in body["y"] and 2 * at in body["x"]
    assert took < 5  # generous here; bench/studio_api.py measures it
    spacing = np.diff(body["x"]).mean()
    lo, hi = 2 * at - 20_000, 2 * at + 20_000
    zoomed = await asyncio.to_thread(_get, url + f"?width=1000&x_min={lo}&x_max={hi}")
    assert 1e9 in zoomed["y"] and 2 * at in zoomed["x"]
    assert min(zoomed["x"]) >= lo and max(zoomed["x"]) <= hi
    assert np.diff(zoomed["x"]).mean() < spacing / 10  # finer points
