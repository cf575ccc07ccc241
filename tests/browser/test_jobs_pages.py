"""Pages around a submitted script run (a real job on compute target `local`): the compute page shows the target,
its node and the active run live; the run page tails the log live; hostile names and log lines render inert."""

from __future__ import annotations

import sys
import textwrap

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import WAIT_MS
from tests.procs import wait_for

pytestmark = pytest.mark.timeout(240)

HOSTILE = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    'it\'s "quoted" & <b>bold</b>',
    "\u202eevil-rtl\u202c",
]
"""Strings that would run script or reorder text if a page used innerHTML or trusted them."""

SCRIPT = """
    import io, os, sys, time
    from pathlib import Path
    from runwire import Run
    HOSTILE = {hostile!r}
    run = Run.get_context()
    run.display_name = HOSTILE[0] + HOSTILE[1]
    run.set_tags({{HOSTILE[0]: HOSTILE[1], "rtl": HOSTILE[3]}})
    for i, name in enumerate(HOSTILE):
        run.log(name, float(i))
        run.log(name, float(i) + 1)
        run.upload_file("outputs/" + name.replace("/", "_") + ".txt", io.BytesIO(b"x"))
    for line in HOSTILE:
        print("log:", line, flush=True)
    print("waiting for the go file", flush=True)
    go = Path(sys.argv[1])
    while not go.exists():
        time.sleep(0.05)
    print("after-go line", flush=True)
    done = Path(sys.argv[2])
    while not done.exists():
        time.sleep(0.05)
"""


@pytest.fixture(scope="module")
def job(cluster, tmp_path_factory):
    """A submitted script run that logs hostile names, prints hostile lines, then waits for its go file."""
    mp = pytest.MonkeyPatch()
    for key, value in cluster.env().items():
        mp.setenv(key, value)
    from runwire import Environment, Experiment, ScriptRunConfig, Workspace

    folder = tmp_path_factory.mktemp("job")
    (folder / "train.py").write_text(textwrap.dedent(SCRIPT.format(hostile=HOSTILE)))
    go = folder.parent / f"{folder.name}.go"
    done = folder.parent / f"{folder.name}.done"
    env = Environment("user-managed-env")
    env.python.user_managed_dependencies = True
    env.python.interpreter_path = sys.executable
    config = ScriptRunConfig(
        source_directory=str(folder),
        script="train.py",
        arguments=[str(go), str(done)],
        compute_target="local",
        environment=env,
    )
    run = Experiment(Workspace.from_config(), "studio-jobs").submit(config)
    wait_for(
        lambda: "waiting for the go file" in run.get_details_with_logs()["logFiles"].get("user_logs/std_log.txt", ""),
        60,
        "the job's log",
        0.1,
    )
    yield {"run": run, "go": go, "done": done}
    go.touch()
    done.touch()
    mp.undo()


def test_run_page_tails_the_log_and_renders_hostile_text_inert(studio, job):
    run = job["run"]
    page = studio.goto(f"/runs/{run.id}")
    # the hostile display name, tags, metric names, file names and log lines show literally
    expect(page.locator("[data-testid=run-title]")).to_have_text(HOSTILE[0] + HOSTILE[1])
    tags = page.locator("[data-testid=run-tags]")
    expect(tags).to_contain_text(f"{HOSTILE[0]}: {HOSTILE[1]}")
    expect(tags).to_contain_text(HOSTILE[3])
    for name in HOSTILE:
        expect(page.locator("[data-testid=chart-title]", has_text=name)).to_have_count(1)
        expect(page.locator("[data-testid=log-line]", has_text=f"log: {name}")).to_have_count(1)
        expect(page.locator("[data-testid=file-link]", has_text=name.replace("/", "_"))).to_have_count(1)
    assert page.locator("img[src=x]").count() == 0
    assert page.locator("main script").count() == 0
    assert page.locator("main b").count() == 0
    studio.screenshot("run-hostile")

    # the snapshot and file links download (attachments, never rendered as a page)
    snapshot = page.request.get(studio.base + page.locator("[data-testid=snapshot-link]").get_attribute("href"))
    assert snapshot.status == 200 and snapshot.body()[:2] == b"PK"
    href = page.locator("[data-testid=file-link]", has_text=HOSTILE[1]).get_attribute("href")
    download = page.request.get(studio.base + href)
    assert download.status == 200 and download.body() == b"x"
    assert download.headers["content-disposition"].startswith("attachment")

    # live tail: a line printed after the page loaded is appended
    log = page.locator("[data-testid=log]")
    expect(log).to_contain_text("waiting for the go file")
    job["go"].touch()
    expect(page.locator("[data-testid=log-line]", has_text="after-go line")).to_have_count(1, timeout=WAIT_MS)
    expect(page.locator("[data-testid=run-status]").first).to_have_text("Running")


def test_experiment_pages_render_hostile_names_inert(studio, job):
    run = job["run"]
    page = studio.goto("/experiments/studio-jobs")
    runs = page.locator(f'[data-testid=run-row][data-run-id="{run.id}"]')
    expect(runs.locator("[data-testid=run-link]")).to_have_text(HOSTILE[0] + HOSTILE[1])
    page.locator("[data-testid=column-picker] summary").click()
    for name in HOSTILE:
        expect(page.locator("[data-testid=column-option]", has_text=name)).to_have_count(1)
    page.locator("[data-testid=column-option]").first.locator("input").check()
    expect(page.locator("[data-testid=metric-cell]").first).to_be_visible()
    # the comparison chart: plotly's legend shows the hostile display name literally
    page.locator("h1").click()
    runs.locator("[data-testid=run-select]").check()
    page.locator("[data-testid=compare-metric]").select_option(HOSTILE[0])
    legend = page.locator("[data-testid=compare-chart] .legendtext")
    expect(legend).to_have_text(HOSTILE[0] + HOSTILE[1])
    assert page.locator("img[src=x]").count() == 0
    studio.screenshot("dashboard-hostile")
    page = studio.goto("/")
    expect(page.locator('[data-testid=experiment-row][data-experiment="studio-jobs"]')).to_be_visible()


def test_compute_page_shows_target_nodes_and_active_runs_live(studio, job):
    run = job["run"]
    page = studio.goto("/compute")
    target = page.locator('[data-testid=target][data-target="local"]')
    expect(target).to_be_visible()
    expect(target.locator("[data-testid=node-row]")).to_have_count(1)
    expect(target.locator('[data-testid=node-row][data-connected="1"]')).to_be_visible()
    active = target.locator(f'[data-testid=compute-run][data-run-id="{run.id}"]')
    expect(active.locator("[data-testid=compute-run-status]")).to_have_text("Running")
    studio.screenshot("compute")

    # live: once the job ends, it leaves the target's queued/active runs without a reload
    job["go"].touch()
    job["done"].touch()
    expect(active).to_have_count(0, timeout=WAIT_MS)
