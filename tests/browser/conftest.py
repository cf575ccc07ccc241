"""Browser tests of the studio's pages: Debian's chromium driven by Playwright against a real collector and agent.

Each test gets a `studio` page that records console errors, uncaught page errors and dialogs; the test fails if
any occurred. Screenshots go to test-artifacts/screenshots/ (gitignored)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.procs import CHROMIUM, CHROMIUM_ARGS, Cluster, short_tmpdir

pytest.importorskip("playwright")
from playwright.sync_api import Browser, Page, expect, sync_playwright

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
"""Where every page's screenshot is saved (look at them)."""

WAIT_MS = 30_000
"""How long a browser wait may take before the test fails."""

VIEWPORT = {"width": 1400, "height": 1000}

expect.set_options(timeout=WAIT_MS)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One Chromium per module. Not per session: Playwright's sync API keeps its event loop marked as
    running in the main thread while it is open, which breaks every asyncio test that runs after."""
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no chromium at {CHROMIUM}")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def cluster(request) -> Iterator[Cluster]:
    """One collector and one agent per test module; the agent is a node of compute target `local` (2 slots)."""
    root = short_tmpdir()
    c = Cluster(root, agent_args=["--compute-target", "local", "--slots", "2"], log_level="info").start()
    yield c
    c.stop()
    shutil.rmtree(root, ignore_errors=True)


class Studio:
    """A browser page on the collector's studio that records what must never happen."""

    def __init__(self, page: Page, base: str) -> None:
        self.page = page
        self.base = base
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.requests: list[str] = []
        page.on("console", lambda msg: msg.type == "error" and self.errors.append(f"console: {msg.text}"))
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        page.on("dialog", self._dialog)
        page.on("request", lambda req: self.requests.append(req.url))
        page.on("response", lambda resp: resp.status >= 400 and self.errors.append(f"HTTP {resp.status}: {resp.url}"))
        page.set_default_timeout(WAIT_MS)

    def _dialog(self, dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def goto(self, path: str, live: bool = True) -> Page:
        """Open `path` and wait until the page says its first render is done (and, with `live`, that its event
        stream is registered, so that what the test does next reaches the page)."""
        self.page.goto(self.base + path)
        self.wait_ready(live)
        return self.page

    def wait_ready(self, live: bool = True) -> None:
        self.page.wait_for_function("() => document.body.dataset.ready === '1'", timeout=WAIT_MS)
        if live:
            self.page.wait_for_function("() => document.body.dataset.live === '1'", timeout=WAIT_MS)

    def screenshot(self, name: str, full_page: bool = True) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        return path

    def events_handled(self) -> int:
        return self.page.evaluate("window.__runwire.events")


@pytest.fixture
def studio(browser: Browser, cluster: Cluster) -> Iterator[Studio]:
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    s = Studio(page, f"http://{cluster.server.info['http']}")
    yield s
    page.close()
    context.close()
    assert not s.dialogs, f"a dialog fired (injected script ran): {s.dialogs}"
    assert not s.errors, "errors in the browser:\n" + "\n".join(s.errors)
