"""Each studio page in a real browser: it loads without console errors, shows the SDK-created runs' data, and
updates live (new points, new runs, status changes) without a reload."""

from __future__ import annotations

import io
import re
import struct
import zlib

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import WAIT_MS
from tests.procs import wait_for

pytestmark = pytest.mark.timeout(240)


def png(width: int = 8, height: int = 8, rgb: tuple[int, int, int] = (47, 111, 222)) -> bytes:
    """A small solid-colour PNG (no imaging library needed)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def seeded(cluster, tmp_path_factory):
    """Runs created through the SDK in this process: a finished run with every metric kind, a running one, a failed
    one, and a parent with a child."""
    mp = pytest.MonkeyPatch()
    for key, value in cluster.env().items():
        mp.setenv(key, value)
    from runwire import Experiment, Workspace

    ws = Workspace.from_config()
    exp = Experiment(ws, "studio-pages")
    folder = tmp_path_factory.mktemp("seed")

    done = exp.start_logging(snapshot_directory=None, outputs=False, display_name="baseline")
    for i in range(50):
        done.log("loss", 1.0 / (i + 1), step=i)
    done.log("lr", 0.001)
    done.log("optimizer", "adam")
    done.log_list("accuracies", [0.5, 0.6, 0.7, 0.8])
    done.log_row("roc", fpr=0.0, tpr=0.0)
    done.log_row("roc", fpr=0.5, tpr=0.8)
    done.log_row("roc", fpr=1.0, tpr=1.0)
    image = folder / "sample.png"
    image.write_bytes(png())
    done.log_image("sample", path=str(image))
    done.upload_file("outputs/model.txt", io.BytesIO(b"weights"))
    done.set_tags({"team": "vision", "size": "small"})
    done.complete()

    running = exp.start_logging(snapshot_directory=None, outputs=False, display_name="still-running")
    for i in range(10):
        running.log("loss", 2.0 / (i + 1), step=i)
    running.tag("team", "nlp")
    running.flush()

    failed = exp.start_logging(snapshot_directory=None, outputs=False, display_name="broken")
    failed.log("loss", 9.0)
    failed.fail(error_details=RuntimeError("exploded on purpose"))

    parent = exp.start_logging(snapshot_directory=None, outputs=False, display_name="sweep")
    child = parent.child_run(name="trial-1")
    child.log("loss", 0.3)
    child.complete()
    parent.flush()

    yield {"ws": ws, "exp": exp, "done": done, "running": running, "failed": failed, "parent": parent, "child": child}
    for run in (running, parent):
        if run.get_status() == "Running":
            run.complete()
    mp.undo()


def row(page, run_id: str):
    return page.locator(f'[data-testid=run-row][data-run-id="{run_id}"]')


def test_experiments_page_lists_experiments_live(studio, seeded):
    page = studio.goto("/")
    exp_row = page.locator('[data-testid=experiment-row][data-experiment="studio-pages"]')
    expect(exp_row).to_be_visible()
    runs_cell = exp_row.locator("[data-testid=experiment-runs]")
    before = int(runs_cell.inner_text())
    assert before >= 5  # four top-level runs and one child
    expect(exp_row.locator('[data-testid=status-count][data-status="Completed"]')).to_be_visible()
    expect(exp_row.locator('[data-testid=status-count][data-status="Failed"]')).to_be_visible()
    studio.screenshot("experiments")

    # live: a new run (and a brand-new experiment) appear without a reload
    from runwire import Experiment

    extra = seeded["exp"].start_logging(snapshot_directory=None, outputs=False, display_name="late")
    expect(runs_cell).to_have_text(str(before + 1), timeout=WAIT_MS)
    other = Experiment(seeded["ws"], "studio-pages-new").start_logging(snapshot_directory=None, outputs=False)
    expect(page.locator('[data-testid=experiment-row][data-experiment="studio-pages-new"]')).to_be_visible()
    extra.complete()
    other.complete()
    assert studio.events_handled() > 0


def test_dashboard_shows_runs_sorts_filters_and_compares(studio, seeded):
    done, running, failed = seeded["done"], seeded["running"], seeded["failed"]
    page = studio.goto("/experiments/studio-pages")
    for run in (done, running, failed):
        expect(row(page, run.id)).to_be_visible()
    expect(row(page, done.id).locator("[data-testid=run-status]")).to_have_text("Completed")
    expect(row(page, failed.id).locator("[data-testid=run-status]")).to_have_text("Failed")
    expect(row(page, done.id).locator("[data-testid=run-tags]")).to_contain_text("team: vision")

    # metric columns from metric_names: loss last/min/max
    page.locator("[data-testid=column-picker] summary").click()
    page.locator('[data-testid=column-option][data-metric="loss"] input').check()
    cell = row(page, done.id).locator('[data-testid=metric-cell][data-metric="loss"][data-agg="min"]')
    expect(cell).to_have_text("0.02")
    page.locator("[data-testid=column-picker] summary").click()

    # sort by clicking a header: loss (last) ascending puts `baseline` (0.02) first
    header = page.locator('[data-testid=sort-header][data-sort="metric:loss:last"]')
    header.click()
    header = page.locator('[data-testid=sort-header][data-sort="metric:loss:last"]')
    expect(header).to_contain_text("▼")
    header.click()
    expect(page.locator('[data-testid=sort-header][data-sort="metric:loss:last"]')).to_contain_text("▲")
    expect(page.locator("[data-testid=run-row]").first).to_have_attribute("data-run-id", done.id)

    # filter (server side): text, then status
    page.locator("[data-testid=filter-text]").fill("broken")
    expect(page.locator("[data-testid=run-row]")).to_have_count(1)
    expect(row(page, failed.id)).to_be_visible()
    page.locator("[data-testid=filter-text]").fill("")
    page.locator("[data-testid=filter-status] summary").click()
    page.locator('[data-testid=status-option][data-status="Completed"] input').check()
    expect(row(page, failed.id)).to_have_count(0)
    expect(row(page, done.id)).to_be_visible()
    assert any("status=Completed" in url for url in studio.requests), "the status filter is a server-side query"
    page.locator('[data-testid=status-option][data-status="Completed"] input').uncheck()
    page.locator("[data-testid=filter-status] summary").click()
    expect(row(page, failed.id)).to_be_visible()

    # child runs are left out unless asked for
    child = seeded["child"]
    expect(row(page, child.id)).to_have_count(0)
    page.locator("[data-testid=filter-children]").check()
    expect(row(page, child.id)).to_be_visible()
    page.locator("[data-testid=filter-children]").uncheck()
    expect(row(page, child.id)).to_have_count(0)

    # select runs -> chart overlaying `loss` across them
    row(page, done.id).locator("[data-testid=run-select]").check()
    row(page, running.id).locator("[data-testid=run-select]").check()
    page.locator("[data-testid=compare-metric]").select_option("loss")
    chart = page.locator('[data-testid=compare-chart][data-metric="loss"]')
    expect(chart.locator(".main-svg").first).to_be_visible()
    page.wait_for_function(
        "() => document.querySelectorAll('[data-testid=compare-chart] .scatterlayer .trace').length === 2"
    )
    studio.screenshot("dashboard")

    # live: a point logged to a selected run is drawn; a new run and a status change appear
    stamp = chart.get_attribute("data-last-update")
    running.log("loss", 0.01, step=10)
    running.flush()
    page.wait_for_function(
        "s => document.querySelector('[data-testid=compare-chart]').dataset.lastUpdate !== s", arg=stamp
    )
    late = seeded["exp"].start_logging(snapshot_directory=None, outputs=False, display_name="arrives-live")
    expect(row(page, late.id)).to_be_visible()
    expect(row(page, late.id).locator("[data-testid=run-status]")).to_have_text("Running")
    late.complete()
    expect(row(page, late.id).locator("[data-testid=run-status]")).to_have_text("Completed")


def test_run_page_shows_every_metric_kind_files_and_updates_live(studio, seeded, tmp_path):
    done, running = seeded["done"], seeded["running"]
    page = studio.goto(f"/runs/{done.id}")
    expect(page.locator("[data-testid=run-title]")).to_have_text("baseline")
    expect(page.locator("[data-testid=run-status]").first).to_have_text("Completed")
    expect(page.locator("[data-testid=run-tags]")).to_contain_text("team: vision")
    # line charts: repeated scalar and log_list; xy: log_row with two numeric columns, with a table view beside it
    loss = page.locator('[data-testid=metric-chart][data-metric="loss"][data-chart="line"]')
    expect(loss.locator(".main-svg").first).to_be_visible()
    expect(page.locator('[data-testid=metric-chart][data-metric="accuracies"][data-chart="line"]')).to_be_visible()
    expect(page.locator('[data-testid=metric-chart][data-metric="roc"][data-chart="xy"]')).to_be_visible()
    expect(page.locator('[data-testid=metric-table-view][data-metric="roc"] [data-testid=metric-row]')).to_have_count(3)
    # values in the metrics table
    value = '[data-testid=metric-value-row][data-metric="{}"] [data-testid=metric-value]'
    expect(page.locator(value.format("lr"))).to_have_text("0.001")
    expect(page.locator(value.format("optimizer"))).to_have_text("adam")
    # image gallery from the files endpoint, inline
    image = page.locator('[data-testid=image][data-metric="sample"] img')
    expect(image).to_be_visible()
    page.wait_for_function("() => document.querySelector('[data-testid=image] img').naturalWidth > 0")
    assert "inline=1" in image.get_attribute("src")
    # files with download links
    link = page.locator('[data-testid=file-row][data-name="outputs/model.txt"] [data-testid=file-link]')
    expect(link).to_be_visible()
    assert link.get_attribute("href").endswith("/files/outputs/model.txt")
    studio.screenshot("run")

    # zoom: a relayout refetches the series for the visible x range at the chart's pixel width
    page.evaluate(
        "Plotly.relayout(document.querySelector('[data-testid=metric-chart][data-metric=loss]'), "
        "{'xaxis.range[0]': 10, 'xaxis.range[1]': 20})"
    )
    wait_for(
        lambda: any(re.search(r"/metrics/loss/series\?width=\d+&x_min=10&x_max=20", u) for u in studio.requests),
        WAIT_MS / 1000,
        "the zoomed series request",
    )

    # live: a running run's new point is appended to its chart, and its status change shows
    page = studio.goto(f"/runs/{running.id}")
    chart = page.locator('[data-testid=metric-chart][data-metric="loss"]')
    expect(chart.locator(".main-svg").first).to_be_visible()
    stamp = chart.get_attribute("data-last-update")
    running.log("loss", 0.005, step=11)
    running.flush()
    page.wait_for_function(
        "s => document.querySelector('[data-testid=metric-chart][data-metric=loss]').dataset.lastUpdate !== s",
        arg=stamp,
    )
    running.log("fresh_metric", 1.0, step=0)
    running.log("fresh_metric", 2.0, step=1)
    running.flush()
    expect(page.locator('[data-testid=metric-chart][data-metric="fresh_metric"]')).to_be_visible()
    # a two-column row series: its chart appears, and the next row is drawn and listed live
    running.log_row("curve", x=0.0, y=1.0)
    running.log_row("curve", x=1.0, y=3.0)
    running.flush()
    curve_rows = page.locator('[data-testid=metric-table-view][data-metric="curve"] [data-testid=metric-row]')
    expect(curve_rows).to_have_count(2)
    running.log_row("curve", x=2.0, y=2.0)
    running.flush()
    expect(curve_rows).to_have_count(3)
    page.wait_for_function(
        "() => document.querySelector('[data-testid=metric-chart][data-metric=curve]').data[0].x.length === 3"
    )
    # tags and images arrive live too
    running.tag("phase", "live-tagged")
    expect(page.locator("[data-testid=run-tags]")).to_contain_text("phase: live-tagged")
    image = tmp_path / "live.png"
    image.write_bytes(png(rgb=(200, 40, 40)))
    running.log_image("live_image", path=str(image))
    running.flush()
    expect(page.locator('[data-testid=image][data-metric="live_image"] img')).to_be_visible()
    studio.screenshot("run-live")
    expect(page.locator("[data-testid=run-status]").first).to_have_text("Running")
    running.complete()
    expect(page.locator("[data-testid=run-status]").first).to_have_text("Completed")
    expect(page.locator("[data-testid=status-history-item]").last).to_contain_text("Completed")


def test_run_page_links_parent_and_children(studio, seeded):
    parent, child = seeded["parent"], seeded["child"]
    page = studio.goto(f"/runs/{parent.id}")
    link = page.locator(f'[data-testid=child-run][data-run-id="{child.id}"] a')
    expect(link).to_have_text("trial-1")
    # live: a new child shows up in the list, and its status changes there
    second = parent.child_run(name="trial-2")
    second_row = page.locator(f'[data-testid=child-run][data-run-id="{second.id}"]')
    expect(second_row.locator("[data-testid=child-run-status]")).to_have_text("Running")
    second.complete()
    expect(second_row.locator("[data-testid=child-run-status]")).to_have_text("Completed")
    with page.expect_navigation():
        link.click()
    studio.wait_ready()
    expect(page.locator(f'[data-testid=parent-run][data-run-id="{parent.id}"]')).to_be_visible()
    studio.screenshot("run-child")


def test_failed_run_shows_its_error(studio, seeded):
    page = studio.goto(f"/runs/{seeded['failed'].id}")
    expect(page.locator("[data-testid=run-error]")).to_contain_text("exploded on purpose")
    studio.screenshot("run-failed")


def test_unknown_run_and_experiment_say_so(studio, seeded):
    studio.page.on("console", lambda msg: None)
    page = studio.goto("/runs/no-such-run", live=False)
    expect(page.locator("[data-testid=page-error]")).to_contain_text("no-such-run")
    # the 404 of the API call is the one expected console error
    studio.errors[:] = [e for e in studio.errors if "404" not in e]


def test_run_page_of_an_odd_run_id(studio, seeded):
    from urllib.parse import quote

    odd = seeded["exp"].start_logging(snapshot_directory=None, outputs=False, run_id="odd/run?#ü.1 x")
    odd.log("loss", 1.0, step=0)
    odd.log("loss", 0.5, step=1)
    odd.flush()
    assert odd.get_portal_url().endswith("/runs/" + quote(odd.id, safe=""))
    page = studio.goto("/runs/" + quote(odd.id, safe=""))
    expect(page.locator("[data-testid=run-id]")).to_have_text(odd.id)
    expect(page.locator('[data-testid=metric-chart][data-metric="loss"] .main-svg').first).to_be_visible()
    odd.complete()
    expect(page.locator("[data-testid=run-status]").first).to_have_text("Completed")
    page = studio.goto("/experiments/studio-pages")
    link = page.locator(f'[data-testid=run-row][data-run-id="{odd.id}"] [data-testid=run-link]')
    with page.expect_navigation():
        link.click()
    studio.wait_ready()
    expect(page.locator("[data-testid=run-id]")).to_have_text(odd.id)
