"""Benchmark of the web studio in a real browser (issue 6): time to first render and to a live
update of the run page for a run with `--metrics` x `--points` scalar points, and of the dashboard
of an experiment with `--runs` runs; plus the JSON endpoints those pages call.

    python bench/studio.py [--metrics 100] [--points 100000] [--runs 5000] [--repeats 10] [--live-repeats 30]

A real collector and agent (tests/procs.py `Cluster`) take the data from the SDK in this process:
the big run through `run.log(name, value, step=i)`, the experiment's runs created concurrently
(threads calling `start_logging`), each with a few scalar metrics, most of them completed (the
last `LIVE_RUNS` stay Running for the live updates).

Headless Debian chromium (Playwright, `/usr/bin/chromium`, never a downloaded browser) then opens
`/runs/<id>` and `/experiments/<name>`. What is measured:

- first render: navigation start (the page's `performance` time origin) until the page sets
  `document.body.dataset.ready = "1"` (stamped in the page by a MutationObserver installed before
  any page script runs), in a fresh browser context each time ("cold": nothing cached, plotly's
  bundle included) and by reloading in the same context ("warm"); the run page says it is rendered
  once its first charts are drawn (it draws the others as they are scrolled near);
- live update: `run.log(...)` of one new point in this process (wall clock) until the chart draws
  it: once the chart's plotly trace ends with the new step, its `dataset.lastUpdate` (the page's
  `Date.now()` when it appended the live point);
  and, on the way, until the `metric` event reached the page (an `EventSource` listener added by
  the same init script). The run page draws every metric as a chart (downsampled to its width), the
  logged metric is its first; the dashboard overlays `loss` of a Running run (`?compare=loss&select=`)
  and shows loss/acc columns of the first 100 runs.

Prints median and p99 (with few repeats p99 is the worst) of each, and the JSON endpoints' own
latency (client-side, keep-alive connection).
"""

from __future__ import annotations

import argparse
import http.client
import math
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote, urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.procs import CHROMIUM, CHROMIUM_ARGS, Cluster, short_tmpdir  # noqa: E402

VIEWPORT = {"width": 1400, "height": 1000}
PAGE_TIMEOUT_MS = 600_000
"""How long one page may take to render before the bench gives up."""
LIVE_TIMEOUT_MS = 30_000
LIVE_RUNS = 20
"""Runs of the dashboard's experiment left Running (live points go to them)."""
LIVE_GAP_S = 0.25
"""Pause between two live points (longer than the SSE coalescing interval, so each one is measured alone)."""
SETTLE_S = 2.0
"""Pause after a page's stream is live before the first live point (the page refetches on `live`)."""
RUN_EXPERIMENT = "bench-run-page"
DASH_EXPERIMENT = "bench-dashboard"

INIT_SCRIPT = """
(() => {
  const mark = () => {
    if (window.__benchReady === undefined && document.body && document.body.dataset.ready === "1") {
      window.__benchReady = performance.now();
    }
  };
  new MutationObserver(mark).observe(document, { subtree: true, attributes: true, attributeFilter: ["data-ready"] });
  const Native = window.EventSource;
  window.__benchMetricAt = 0;
  window.EventSource = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener("metric", () => { window.__benchMetricAt = Date.now(); });
    }
  };
})();
"""


def stats(values: list[float]) -> str:
    if not values:
        return "n/a"
    s = sorted(values)
    p99 = s[min(len(s) - 1, math.ceil(0.99 * len(s)) - 1)]
    return f"median {statistics.median(s):8.1f} ms   p99 {p99:8.1f} ms   (n={len(s)})"


# --- data -------------------------------------------------------------------------------------------


def make_big_run(ws, metrics: int, points: int):
    from runwire import Experiment

    run = Experiment(ws, RUN_EXPERIMENT).start_logging(
        snapshot_directory=None, outputs=False, display_name=f"{metrics} metrics x {points:,} points"
    )
    t0 = time.perf_counter()
    values = [math.sin(i / 500.0) + (i % 97) / 970.0 for i in range(points)]
    for m in range(metrics):
        name = f"m{m:03d}"
        log = run.log
        for i, v in enumerate(values):
            log(name, v + m, step=i)
    logged = time.perf_counter() - t0
    run.flush(timeout_seconds=1800)
    total = time.perf_counter() - t0
    n = metrics * points
    print(
        f"data: run page: {n:,} points logged in {logged:.1f} s, committed after {total:.1f} s "
        f"({n / total / 1e6:.2f} M points/s end to end)"
    )
    return run


def make_runs(ws, runs: int, threads: int):
    from runwire import Experiment

    exp = Experiment(ws, DASH_EXPERIMENT)
    t0 = time.perf_counter()

    def one(i: int):
        run = exp.start_logging(
            snapshot_directory=None, outputs=False, display_name=f"trial {i:05d}", tags={"lr": f"{10 ** -(i % 5)}"}
        )
        for step in range(10):
            run.log("loss", 1.0 / (step + 1) + i * 1e-4, step=step)
            run.log("acc", 1.0 - 1.0 / (step + 2), step=step)
        run.log("lr", 10.0 ** -(i % 5))
        if i < runs - LIVE_RUNS:
            run.complete()
        return run

    with ThreadPoolExecutor(threads) as pool:
        made = list(pool.map(one, range(runs)))
    created = time.perf_counter() - t0
    made[-1].flush(timeout_seconds=600)
    print(f"data: dashboard: {runs:,} runs (3 metrics each) created by {threads} threads in {created:.1f} s")
    return made


# --- JSON endpoints ---------------------------------------------------------------------------------


def time_json(http_addr: str, paths: list[tuple[str, str]], repeats: int) -> None:
    host, port = http_addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    print("\nJSON endpoints (client-side, keep-alive):")
    for label, path in paths:
        times, size = [], 0
        for _ in range(repeats):
            t0 = time.perf_counter()
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
            times.append((time.perf_counter() - t0) * 1000)
            if resp.status != 200:
                raise RuntimeError(f"GET {path}: HTTP {resp.status}: {body[:300]!r}")
            size = len(body)
        print(f"  {label:<44} {stats(times)}   {size / 1024:8.1f} KiB")
    conn.close()


# --- browser ----------------------------------------------------------------------------------------


def first_render(browser, url: str, repeats: int) -> tuple[list[float], list[float]]:
    """(cold, warm) ms from navigation start to `dataset.ready`."""
    cold, warm = [], []
    for _ in range(repeats):
        context = browser.new_context(viewport=VIEWPORT)
        context.add_init_script(INIT_SCRIPT)
        page = context.new_page()
        page.set_default_timeout(PAGE_TIMEOUT_MS)
        errors: list[str] = []
        page.on("pageerror", lambda exc, errors=errors: errors.append(str(exc)))
        page.on("console", lambda msg, errors=errors: msg.type == "error" and errors.append(msg.text))
        for out in (cold, warm):
            if out is cold:
                page.goto(url, wait_until="commit")
            else:
                page.reload(wait_until="commit")
            page.wait_for_function("() => window.__benchReady !== undefined", polling=50)
            out.append(page.evaluate("() => window.__benchReady"))
        if errors:
            print(f"  page errors on {url}: {errors[:3]}")
        context.close()
    return cold, warm


def live_updates(browser, url: str, chart: str, run, metric: str, first_step: int, repeats: int) -> tuple[list, list]:
    """(to the page, to the chart) ms from `run.log` to the point reaching the page / being drawn."""
    context = browser.new_context(viewport=VIEWPORT)
    context.add_init_script(INIT_SCRIPT)
    page = context.new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    page.goto(url, wait_until="commit")
    page.wait_for_function("() => window.__benchReady !== undefined", polling=50)
    # the stream is registered (the page then refetches what may have changed meanwhile: let that settle)
    page.wait_for_function(
        "() => document.body.dataset.live === '1' || (window.__runwire && window.__runwire.events >= 1)", polling=20
    )
    page.wait_for_function(f"() => document.querySelector({chart!r})?.dataset.lastUpdate !== undefined", polling=20)
    time.sleep(SETTLE_S)
    to_page, to_chart = [], []
    for k in range(repeats):
        time.sleep(LIVE_GAP_S)
        step = first_step + k
        t_log = time.time() * 1000
        run.log(metric, 0.5 + 0.01 * k, step=step)
        # the chart's trace (plotly keeps it on the element) ends with the new point
        page.wait_for_function(
            f"""() => {{
                const trace = document.querySelector({chart!r})?.data?.[0];
                return !!trace && trace.x.length > 0 && Number(trace.x[trace.x.length - 1]) === {step};
            }}""",
            polling="raf",
            timeout=LIVE_TIMEOUT_MS,
        )
        drawn = float(page.evaluate(f"() => document.querySelector({chart!r}).dataset.lastUpdate"))
        arrived = float(page.evaluate("() => window.__benchMetricAt"))
        to_chart.append(drawn - t_log)
        to_page.append(arrived - t_log)
    context.close()
    return to_page, to_chart


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--metrics", type=int, default=100)
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=5_000)
    ap.add_argument("--threads", type=int, default=32, help="threads creating the dashboard's runs")
    ap.add_argument("--repeats", type=int, default=10, help="page loads per page (cold and warm each)")
    ap.add_argument("--live-repeats", type=int, default=30)
    ap.add_argument("--json-repeats", type=int, default=30)
    args = ap.parse_args()

    from playwright.sync_api import sync_playwright

    root = short_tmpdir("rwbench")
    cluster = Cluster(root, batch_delay_ms=10, log_level="warning").start()
    try:
        os.environ.update(cluster.env())
        from runwire import Workspace

        ws = Workspace.from_config()
        http_addr = cluster.server.info["http"]
        base = f"http://{http_addr}"
        print(f"collector {cluster.collector}, studio {base}")

        big = make_big_run(ws, args.metrics, args.points)
        runs = make_runs(ws, args.runs, args.threads)
        live_run = runs[-1]

        rid = quote(big.id, safe="")
        dash = quote(DASH_EXPERIMENT, safe="")
        time_json(
            http_addr,
            [
                ("run detail /runs/{id}", f"/api/v1/runs/{rid}"),
                (f"run metrics /runs/{{id}}/metrics ({args.metrics})", f"/api/v1/runs/{rid}/metrics"),
                (f"series of {args.points:,} points, width=1000", f"/api/v1/runs/{rid}/metrics/m000/series?width=1000"),
                ("experiments list", "/api/v1/experiments"),
                (f"experiment ({args.runs:,} runs)", f"/api/v1/experiments/{dash}"),
                (
                    "runs table, first 100, loss+acc columns",
                    f"/api/v1/experiments/{dash}/runs?limit=100&metrics=loss&metrics=acc",
                ),
                (
                    "runs table sorted by metric:loss:last",
                    f"/api/v1/experiments/{dash}/runs?limit=100&metrics=loss&sort=metric:loss:last",
                ),
                ("runs table, Running only, text filter", f"/api/v1/experiments/{dash}/runs?status=Running&q=trial"),
            ],
            args.json_repeats,
        )

        run_url = f"{base}/runs/{rid}"
        dash_query = urlencode([("compare", "loss"), ("metric", "loss"), ("metric", "acc"), ("select", live_run.id)])
        dash_url = f"{base}/experiments/{dash}?{dash_query}"
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                print(f"\nrun page ({args.metrics} metrics x {args.points:,} points): {run_url}")
                cold, warm = first_render(browser, run_url, args.repeats)
                print(f"  first render, cold  {stats(cold)}")
                print(f"  first render, warm  {stats(warm)}")
                chart = '[data-testid="metric-chart"][data-metric="m000"]'
                to_page, to_chart = live_updates(browser, run_url, chart, big, "m000", args.points, args.live_repeats)
                print(f"  live: log -> event in page  {stats(to_page)}")
                print(f"  live: log -> chart drawn    {stats(to_chart)}")

                print(f"\ndashboard ({args.runs:,} runs): {dash_url}")
                cold, warm = first_render(browser, dash_url, args.repeats)
                print(f"  first render, cold  {stats(cold)}")
                print(f"  first render, warm  {stats(warm)}")
                chart = '[data-testid="compare-chart"]'
                to_page, to_chart = live_updates(browser, dash_url, chart, live_run, "loss", 10, args.live_repeats)
                print(f"  live: log -> event in page  {stats(to_page)}")
                print(f"  live: log -> chart drawn    {stats(to_chart)}")
            finally:
                browser.close()
        for run in runs[-LIVE_RUNS:]:
            run.complete()
        big.complete()
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
