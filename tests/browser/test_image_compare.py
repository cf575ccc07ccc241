"""The dashboard's image comparison: ticked runs' images side by side, one row per image name and one cell per
run, "—" where a run has none, a version selector where a name was logged more than once, names shown as text."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.test_pages import png

pytestmark = pytest.mark.timeout(240)

EXPERIMENT = "image-compare"
HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def runs(cluster, tmp_path_factory):
    """alpha: `sample` twice, `confusion`, the hostile name; beta: `sample` once, `confusion`; gamma: only the
    hostile name (no `sample`, no `confusion`); no-images: a scalar only."""
    mp = pytest.MonkeyPatch()
    for key, value in cluster.env().items():
        mp.setenv(key, value)
    from runwire import Experiment, Workspace

    exp = Experiment(Workspace.from_config(), EXPERIMENT)
    folder = tmp_path_factory.mktemp("images")

    def image(run, name: str, file: str, rgb: tuple[int, int, int]) -> None:
        path = folder / file
        path.write_bytes(png(16, 12, rgb))
        run.log_image(name, path=str(path))

    alpha = exp.start_logging(snapshot_directory=None, outputs=False, display_name="alpha")
    image(alpha, "sample", "alpha-sample-1.png", (47, 111, 222))
    image(alpha, "sample", "alpha-sample-2.png", (200, 40, 40))
    image(alpha, "confusion", "alpha-confusion.png", (30, 160, 90))
    image(alpha, HOSTILE, "alpha-hostile.png", (120, 120, 120))
    alpha.log("loss", 0.5)
    alpha.complete()

    beta = exp.start_logging(snapshot_directory=None, outputs=False, display_name="beta")
    image(beta, "sample", "beta-sample.png", (240, 180, 20))
    image(beta, "confusion", "beta-confusion.png", (90, 40, 160))
    beta.complete()

    gamma = exp.start_logging(snapshot_directory=None, outputs=False, display_name="gamma")
    image(gamma, HOSTILE, "gamma-hostile.png", (10, 10, 10))
    gamma.complete()

    plain = exp.start_logging(snapshot_directory=None, outputs=False, display_name="no-images")
    plain.log("loss", 1.0)
    plain.complete()
    yield {"alpha": alpha, "beta": beta, "gamma": gamma, "plain": plain}
    mp.undo()


def cell(row, run_id: str):
    return row.locator(f'[data-testid=image-cell][data-run-id="{run_id}"]')


def test_selected_runs_images_side_by_side(studio, runs):
    alpha, beta, gamma = runs["alpha"], runs["beta"], runs["gamma"]
    ids = [alpha.id, beta.id, gamma.id]
    page = studio.goto(f"/experiments/{EXPERIMENT}?" + "&".join(f"select={i}" for i in ids))
    box = page.locator("[data-testid=image-compare]")
    box.scroll_into_view_if_needed()
    rows = box.locator("[data-testid=image-compare-row]")
    expect(rows).to_have_count(3)
    names = rows.locator("[data-testid=image-compare-name]").all_inner_texts()
    assert sorted(names) == sorted(["sample", "confusion", HOSTILE])
    row_of = {name: rows.nth(i) for i, name in enumerate(names)}

    # one cell per selected run in selection order, the run's name above its image
    for row in row_of.values():
        expect(row.locator("[data-testid=image-cell]")).to_have_count(3)
        assert row.locator("[data-testid=image-cell-run]").all_inner_texts() == ["alpha", "beta", "gamma"]

    sample = row_of["sample"]
    for run_id in (alpha.id, beta.id):
        img = cell(sample, run_id).locator("img")
        expect(img).to_be_visible()
        assert "inline=1" in img.get_attribute("src")
    assert "alpha-sample-2.png" in cell(sample, alpha.id).locator("img").get_attribute("src")  # the latest
    assert "beta-sample.png" in cell(sample, beta.id).locator("img").get_attribute("src")
    expect(cell(sample, gamma.id).locator("[data-testid=image-missing]")).to_have_text("—")
    expect(cell(sample, gamma.id).locator("img")).to_have_count(0)
    expect(cell(row_of["confusion"], gamma.id).locator("[data-testid=image-missing]")).to_have_text("—")
    expect(cell(row_of[HOSTILE], beta.id).locator("[data-testid=image-missing]")).to_have_text("—")
    expect(cell(row_of[HOSTILE], gamma.id).locator("img")).to_be_visible()
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=image-compare] img')]"
        ".every((i) => i.complete && i.naturalWidth > 0)"
    )
    studio.screenshot("image-compare")

    # the hostile name is text: no element was made from it, nothing ran (the fixture fails on a dialog)
    assert row_of[HOSTILE].locator("[data-testid=image-compare-name]").inner_text() == HOSTILE
    assert page.locator('img[src="x"]').count() == 0

    # a name logged twice gets a version selector; names logged once do not
    expect(row_of["confusion"].locator("[data-testid=image-version]")).to_have_count(0)
    version = sample.locator("[data-testid=image-version]")
    assert version.locator("option").all_inner_texts() == ["latest", "#2", "#1"]
    version.select_option("1")
    expect(cell(sample, alpha.id)).to_have_attribute("data-version", "1")
    assert "alpha-sample-1.png" in cell(sample, alpha.id).locator("img").get_attribute("src")
    expect(cell(sample, beta.id)).to_have_attribute("data-version", "1")
    version.select_option("2")
    expect(cell(sample, alpha.id)).to_have_attribute("data-version", "2")
    expect(cell(sample, beta.id).locator("[data-testid=image-missing]")).to_have_text("—")

    # unticking a run removes its column; unticking all shows the hint
    page.locator(f'[data-testid=run-row][data-run-id="{beta.id}"] [data-testid=run-select]').uncheck()
    expect(rows.first.locator("[data-testid=image-cell]")).to_have_count(2)
    assert rows.first.locator("[data-testid=image-cell-run]").all_inner_texts() == ["alpha", "gamma"]
    for run_id in (alpha.id, gamma.id):
        page.locator(f'[data-testid=run-row][data-run-id="{run_id}"] [data-testid=run-select]').uncheck()
    expect(box.locator("[data-testid=image-compare-empty]")).to_be_visible()
    expect(rows).to_have_count(0)


def test_runs_without_images_say_so(studio, runs):
    plain = runs["plain"]
    page = studio.goto(f"/experiments/{EXPERIMENT}?select={plain.id}")
    expect(page.locator("[data-testid=image-compare-empty]")).to_have_text("None of the selected runs logged images.")
    expect(page.locator("[data-testid=image-compare-row]")).to_have_count(0)


def test_a_run_that_ends_shows_its_new_images(studio, runs, cluster, monkeypatch, tmp_path):
    for key, value in cluster.env().items():
        monkeypatch.setenv(key, value)
    from runwire import Experiment, Workspace

    late = Experiment(Workspace.from_config(), EXPERIMENT).start_logging(
        snapshot_directory=None, outputs=False, display_name="late"
    )
    late.flush()
    alpha = runs["alpha"]
    page = studio.goto(f"/experiments/{EXPERIMENT}?select={alpha.id}&select={late.id}")
    sample = page.locator('[data-testid=image-compare-row][data-metric="sample"]')
    expect(cell(sample, late.id).locator("[data-testid=image-missing]")).to_have_text("—")
    path = tmp_path / "late.png"
    path.write_bytes(png(16, 12, (0, 200, 200)))
    late.log_image("sample", path=str(path))
    late.complete()
    expect(cell(sample, late.id).locator("img")).to_be_visible()
    assert "late.png" in cell(sample, late.id).locator("img").get_attribute("src")
