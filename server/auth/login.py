"""The studio's login page: a form taking an access token. A valid token is put in the `runwire_token`
cookie (HttpOnly, SameSite=Strict, Secure over TLS) and the browser goes back to the page it asked
for; POST /logout drops the cookie. Plain HTML (no script), in the studio's look."""

from __future__ import annotations

import html

from aiohttp import web

from runwire.server.auth.guard import Guard
from runwire.server.auth.http_gate import LOGIN_PATH, LOGOUT_PATH, TOKEN_COOKIE
from runwire.server.errors import CollectorError
from runwire.server.studio.pages import SECURITY_HEADERS

_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>runwire studio: log in</title>
  <link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
  <link rel="stylesheet" href="/static/style.css">
  <link rel="stylesheet" href="/static/login.css">
</head>
<body>
  <header class="topbar"><a class="brand" href="/">runwire studio</a></header>
  <main>
    <form class="card login-card" method="post" action="/login" data-testid="login-form">
      <h2>Log in</h2>
      <p class="muted">This collector requires an access token. An administrator creates one with
        <code>runwire token create --scope read</code>.</p>
      <label for="token">Access token</label>
      <input type="password" id="token" name="token" autocomplete="off" required autofocus
        placeholder="rwt_…" data-testid="login-token">
      <input type="hidden" name="next" value="{next}">
      {error}
      <button type="submit" data-testid="login-submit">Log in</button>
    </form>
  </main>
</body>
</html>
"""


def safe_next(value: str | None) -> str:
    """Where to go after logging in: a path of this site only (never another origin)."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")) or any(c < " " for c in value):
        return "/"
    return value


def _page(next_path: str, error: str = "", status: int = 200) -> web.Response:
    error_html = f'<p class="error" data-testid="login-error">{html.escape(error)}</p>' if error else ""
    body = _PAGE.format(next=html.escape(next_path, quote=True), error=error_html)
    return web.Response(
        text=body,
        status=status,
        content_type="text/html",
        charset="utf-8",
        headers={**SECURITY_HEADERS, "Cache-Control": "no-store"},
    )


def add_login_routes(app: web.Application, guard: Guard) -> None:
    async def login_page(request: web.Request) -> web.Response:
        return _page(safe_next(request.query.get("next")))

    async def login(request: web.Request) -> web.Response:
        form = await request.post()
        token = str(form.get("token", "")).strip()
        next_path = safe_next(str(form.get("next", "")))
        try:
            await guard.authenticate(token)
        except CollectorError as e:
            return _page(next_path, str(e), status=401)
        response = web.Response(status=303, headers={**SECURITY_HEADERS, "Location": next_path})
        response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="Strict", secure=request.secure, path="/")
        return response

    async def logout(request: web.Request) -> web.Response:
        response = web.Response(status=303, headers={**SECURITY_HEADERS, "Location": LOGIN_PATH})
        response.del_cookie(TOKEN_COOKIE, path="/")
        return response

    app.router.add_get(LOGIN_PATH, login_page)
    app.router.add_post(LOGIN_PATH, login)
    app.router.add_post(LOGOUT_PATH, logout)
