"""The studio behind `--auth on`, in chromium: a page opened without a token goes to the login page, a valid
token logs in (HttpOnly cookie) and the page renders with its live event stream; once the token is revoked the
studio goes back to the login page."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator

import grpc
import pytest

from runwire.server import limits as server_limits
from runwire.v1 import runs_pb2, runs_pb2_grpc
from tests.procs import Cluster, short_tmpdir, wait_for


@pytest.fixture(scope="module")
def cluster(request) -> Iterator[Cluster]:
    """A collector with auth on (no agent: the test makes its run over gRPC)."""
    root = short_tmpdir()
    c = Cluster(root, auth=True, log_level="info")
    c.start_server()
    yield c
    c.stop()
    shutil.rmtree(root, ignore_errors=True)


def test_login_then_the_run_page_then_revocation(studio, cluster):
    writer = cluster.create_token("write")
    reader = cluster.create_token("read", "--name", "browser")
    with grpc.insecure_channel(cluster.collector) as channel:
        runs_pb2_grpc.RunsStub(channel).CreateRun(
            runs_pb2.CreateRunRequest(experiment_name="secure-studio", run_id="run-login", display_name="behind login"),
            metadata=(("authorization", f"Bearer {writer}"),),
        )
    page = studio.page
    page.goto(studio.base + "/runs/run-login")
    page.wait_for_selector("[data-testid=login-form]")
    assert page.url == studio.base + "/login?next=%2Fruns%2Frun-login"
    studio.screenshot("login")
    page.fill("[data-testid=login-token]", reader)
    page.click("[data-testid=login-submit]")
    studio.wait_ready()  # the run page, its API calls and its event stream on the cookie
    assert page.url == studio.base + "/runs/run-login"
    assert "behind login" in page.inner_text("main")
    cookie = next(c for c in page.context.cookies() if c["name"] == "runwire_token")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # scripts cannot read it
    studio.screenshot("after-login")

    out = subprocess.run(
        [sys.executable, "-m", "runwire.cli.main", "token", "revoke", reader[4:16], "--data-dir",
         str(cluster.root / "collector")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr

    def cookie_refused() -> bool:  # asked with the page's own cookie, without navigating the page
        resp = page.request.get(studio.base + "/compute", max_redirects=0)
        return resp.status == 302 and resp.headers.get("location", "").startswith("/login")

    wait_for(cookie_refused, server_limits.AUTH_CACHE_TTL_S + 20, "the revoked cookie to be refused")
    page.goto(studio.base + "/compute")
    assert page.url.startswith(studio.base + "/login")
    # a page that loaded just before the revocation took effect may have had an API call answered 401 (which
    # sends it to the login page, as wanted): those are expected here, nothing else is
    page.wait_for_selector("[data-testid=login-form]")
    page.evaluate("1")  # a round trip: console events of the pages before have arrived
    expected = ("HTTP 401", "console: Failed to load resource: the server responded with a status of 401")
    studio.errors[:] = [e for e in studio.errors if not e.startswith(expected)]
