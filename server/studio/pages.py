"""The studio's pages: the single-page app shell at `/`, `/experiments/{name}`, `/runs/{run_id}` and `/compute`,
our static files under `/static/`, and plotly's bundle from the installed `plotly` package at
`/static/vendor/plotly.min.js` (never copied into this repository).

Every response here carries a strict Content-Security-Policy (scripts only from this origin, no inline script,
no plugins, no framing) and `X-Content-Type-Options: nosniff`."""

from __future__ import annotations

import importlib.resources
import mimetypes
from pathlib import Path

from aiohttp import web

STATIC_DIR = Path(__file__).resolve().parent / "static"
"""Our own HTML, JavaScript modules and CSS (package data)."""

PLOTLY_BUNDLE = "plotly.min.js"
"""The file name of plotly's browser bundle inside the installed package's `package_data`."""

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
"""The CSP of every page and static file. `style-src 'unsafe-inline'` only because plotly injects its own
<style> rules at run time; scripts stay strictly 'self' (no inline script, no eval)."""

STATIC_CACHE_CONTROL = "no-cache"
"""Our own static files: the browser revalidates each load (ETag/Last-Modified), so a new release is seen at once."""

VENDOR_CACHE_CONTROL = "public, max-age=86400"
"""plotly's bundle changes only with the installed package: cached for a day."""

SHELL_CACHE_CONTROL = "no-store"
"""The app shell itself is tiny and always fetched fresh."""

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
"""Headers on every response served by this module."""

_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
}


def plotly_bundle_path() -> Path:
    """Where the installed plotly package keeps its minified browser bundle."""
    return Path(str(importlib.resources.files("plotly") / "package_data" / PLOTLY_BUNDLE))


def _content_type(path: Path) -> str:
    return _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def _file(path: Path, cache_control: str) -> web.FileResponse:
    return web.FileResponse(
        path, headers={**SECURITY_HEADERS, "Cache-Control": cache_control, "Content-Type": _content_type(path)}
    )


async def shell(request: web.Request) -> web.FileResponse:
    """The app shell: the page's script reads location.pathname and renders the page."""
    return _file(STATIC_DIR / "index.html", SHELL_CACHE_CONTROL)


async def static(request: web.Request) -> web.FileResponse:
    """One of our static files; anything outside STATIC_DIR (or a folder) is 404."""
    name = request.match_info["path"]
    path = (STATIC_DIR / name).resolve()
    if not path.is_relative_to(STATIC_DIR) or not path.is_file():
        raise web.HTTPNotFound(text="not found", headers=SECURITY_HEADERS)
    return _file(path, STATIC_CACHE_CONTROL)


async def plotly_js(request: web.Request) -> web.FileResponse:
    """plotly's bundle, straight from the installed package."""
    path = plotly_bundle_path()
    if not path.is_file():
        raise web.HTTPNotFound(text="plotly is not installed", headers=SECURITY_HEADERS)
    return _file(path, VENDOR_CACHE_CONTROL)


def add_page_routes(app: web.Application) -> None:
    """Mount the pages and static files on the collector's HTTP app."""
    router = app.router
    router.add_get("/", shell)
    router.add_get("/experiments/{name:.+}", shell)
    router.add_get("/runs/{run_id:.+}", shell)
    router.add_get("/compute", shell)
    router.add_get("/static/vendor/plotly.min.js", plotly_js)
    router.add_get("/static/{path:.+}", static)
