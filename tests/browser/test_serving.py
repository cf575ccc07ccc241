"""How the collector serves the pages: the app shell on every page route, our static files, plotly's bundle from the
installed package, and the security and cache headers."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from runwire.server.studio.pages import STATIC_DIR, plotly_bundle_path


def get(base: str, path: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(base + path, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


@pytest.fixture(scope="module")
def base(cluster) -> str:
    return f"http://{cluster.server.info['http']}"


@pytest.mark.parametrize("path", ["/", "/experiments/some%20name", "/experiments/a/b", "/runs/abc_123", "/compute"])
def test_every_page_route_serves_the_shell_with_a_strict_csp(base, path):
    status, headers, body = get(base, path)
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    csp = headers["Content-Security-Policy"]
    assert "script-src 'self';" in csp and "unsafe-eval" not in csp
    assert "object-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"] == "no-store"
    assert body == (STATIC_DIR / "index.html").read_bytes()
    assert b"<script>" not in body  # no inline script: the CSP would block it


def test_static_files_and_plotly_from_the_installed_package(base):
    status, headers, body = get(base, "/static/js/app.js")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript")
    assert headers["Cache-Control"] == "no-cache"
    assert "Etag" in headers or "ETag" in headers
    assert body == (STATIC_DIR / "js" / "app.js").read_bytes()
    status, headers, body = get(base, "/static/vendor/plotly.min.js")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript")
    assert "max-age" in headers["Cache-Control"]
    assert body == plotly_bundle_path().read_bytes()
    assert not (STATIC_DIR / "vendor").exists(), "plotly is served from the package, never copied into the repo"


@pytest.mark.parametrize(
    "path",
    ["/static/../pages.py", "/static/%2e%2e/pages.py", "/static/js", "/static/nope.js", "/static/%2e%2e%2f__init__.py"],
)
def test_nothing_outside_the_static_folder_is_served(base, path):
    status, headers, _ = get(base, path)
    assert status == 404
    assert headers["X-Content-Type-Options"] == "nosniff"
