"""A run with many metrics: the first charts draw at once, the others when scrolled near, and a live point for a
chart that is not drawn yet is no error."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.timeout(240)

METRICS = 40


@pytest.fixture(scope="module")
def wide_run(cluster):
    mp = pytest.MonkeyPatch()
    for key, value in cluster.env().items():
        mp.setenv(key, value)
    from runwire import Experiment, Workspace

    run = Experiment(Workspace.from_config(), "studio-wide").start_logging(snapshot_directory=None, outputs=False)
    for m in range(METRICS):
        for step in range(20):
            run.log(f"m{m:02d}", float(step * m), step=step)
    run.flush()
    yield run
    run.complete()
    mp.undo()


def test_many_charts_draw_lazily_and_live(studio, wide_run):
    page = studio.goto(f"/runs/{wide_run.id}")
    charts = page.locator("[data-testid=metric-chart]")
    expect(charts).to_have_count(METRICS)
    expect(page.locator('[data-testid=metric-chart][data-metric="m00"] .main-svg').first).to_be_visible()
    last = page.locator(f'[data-testid=metric-chart][data-metric="m{METRICS - 1:02d}"]')
    assert last.get_attribute("data-points") is None, "a chart far below the fold waits until it is scrolled near"
    # a live point for a chart not drawn yet, then scroll to it: it draws with that point
    wide_run.log(f"m{METRICS - 1:02d}", -1.0, step=20)
    wide_run.flush()
    expect(last.locator("xpath=..").locator("xpath=..").locator("[data-testid=chart-note]")).to_contain_text("21")
    last.scroll_into_view_if_needed()
    expect(last).to_have_attribute("data-points", "21")
    expect(last.locator(".main-svg").first).to_be_visible()
    studio.screenshot("run-many-metrics", full_page=False)
