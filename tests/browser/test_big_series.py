"""A 1,000,000-point series renders on the run page from a downsampled request (never the raw points)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.timeout(240)

POINTS = 1_000_000


@pytest.fixture(scope="module")
def big_run(cluster):
    mp = pytest.MonkeyPatch()
    for key, value in cluster.env().items():
        mp.setenv(key, value)
    from runwire import Experiment, Workspace

    run = Experiment(Workspace.from_config(), "studio-big").start_logging(snapshot_directory=None, outputs=False)
    values = np.sin(np.arange(POINTS) / 1000.0)
    values[777_777] = 50.0  # a spike that downsampling must keep
    run.log_list("big", values.tolist())
    run.complete()
    yield run
    mp.undo()


def test_million_point_series_renders_downsampled(studio, big_run):
    page = studio.goto(f"/runs/{big_run.id}")
    chart = page.locator('[data-testid=metric-chart][data-metric="big"]')
    expect(chart.locator(".main-svg").first).to_be_visible()
    expect(chart).to_have_attribute("data-count", str(POINTS))
    expect(chart).to_have_attribute("data-downsampled", "1")
    width = int(chart.get_attribute("data-request-width"))
    drawn = int(chart.get_attribute("data-points"))
    assert 0 < drawn <= 2 * width + 2, f"{drawn} points drawn for a {width}-pixel chart"
    series = [u for u in studio.requests if "/metrics/big/series" in u]
    assert series and all(re.search(r"[?&]width=\d+", u) for u in series), series
    assert not any("/metrics/big/rows" in u for u in studio.requests), "the page never reads the raw rows of a line"
    # the spike survived downsampling and is on the chart
    peak = page.evaluate(
        "() => Math.max(...document.querySelector('[data-testid=metric-chart][data-metric=big]').data[0].y)"
    )
    assert peak == 50.0
    expect(page.locator("[data-testid=chart-note]").first).to_contain_text("1,000,000 points")
    studio.screenshot("run-million-points")
