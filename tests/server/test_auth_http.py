"""The collector's HTTP gate with auth on (in-process collector, aiohttp client): what is open, 401 for
every route category without a valid token (JSON for the API and /metrics, a redirect to the login page
for studio pages), the cookie login flow, experiment restrictions, 429 with Retry-After, and the body
size limit (413) with auth on and off."""

from __future__ import annotations

from urllib.parse import quote

import aiohttp
import pytest
from auth_helpers import make_token, start_auth_collector

from runwire.server import limits as server_limits
from runwire.server.app import Collector, CollectorConfig
from runwire.server.auth.login import safe_next
from runwire.server.records import NewRun

PAGES = ["/", "/experiments/e1", "/runs/r1", "/compute"]
API = [
    "/api/v1/status",
    "/api/v1/openapi.json",
    "/api/v1/experiments",
    "/api/v1/experiments/e1",
    "/api/v1/experiments/e1/runs",
    "/api/v1/runs/r1",
    "/api/v1/runs/r1/metrics",
    "/api/v1/runs/r1/files",
    "/api/v1/runs/r1/logs/x.txt",
    "/api/v1/compute",
    "/api/v1/events?run=r1",
    "/metrics",
]
OPEN = ["/healthz", "/login", "/static/style.css", "/static/login.css", "/static/favicon.svg"]


@pytest.fixture
async def collector(tmp_path, monkeypatch):
    monkeypatch.setattr(server_limits, "AUTH_CACHE_TTL_S", 0.0)
    c = await start_auth_collector(tmp_path)
    for exp, run_id in (("e1", "r1"), ("e2", "r2")):
        await c.store.create_run(NewRun(experiment_name=exp, run_id=run_id, status="Running"))
    try:
        yield c
    finally:
        await c.stop(grace=1)


@pytest.fixture
async def http(collector):
    async with aiohttp.ClientSession(
        f"http://{collector.http_address}", cookie_jar=aiohttp.CookieJar(unsafe=True)
    ) as s:
        yield s


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_open_paths_need_no_token(http):
    for path in OPEN:
        async with http.get(path, allow_redirects=False) as r:
            assert r.status == 200, path


async def test_no_or_bad_token_is_refused_on_every_route_category(collector, http):
    good = await make_token(collector, "admin")
    revoked = await make_token(collector, "admin")
    await collector.store.revoke_token(revoked[4:16])
    secret = good[17:]
    bad_headers = {
        "missing": {},
        "malformed": {"Authorization": "Bearer rwt_123"},
        "not bearer": {"Authorization": f"Token {good}"},
        "wrong secret": auth(f"{good[:17]}{secret[:-1]}{'A' if secret[-1] != 'A' else 'B'}"),
        "revoked": auth(revoked),
    }
    for what, headers in bad_headers.items():
        for path in API:
            async with http.get(path, headers=headers, allow_redirects=False) as r:
                assert r.status == 401, (what, path, r.status)
                body = await r.json()
                assert body["error"]["code"] == "Unauthenticated", (what, path)
                assert r.headers["WWW-Authenticate"].startswith("Bearer")
        for path in PAGES:
            async with http.get(path, headers=headers, allow_redirects=False) as r:
                assert r.status == 302, (what, path)
                assert r.headers["Location"] == f"/login?next={quote(path, safe='')}"
    async with http.get("/api/v1/status", headers=bad_headers["revoked"]) as r:
        assert "revoked" in (await r.json())["error"]["message"]
    async with http.get("/api/v1/status") as r:
        assert "runwire token create" in (await r.json())["error"]["message"]


async def test_a_read_token_reads_everything(collector, http):
    token = await make_token(collector, "read")
    for path in [*API, *PAGES]:
        if path == "/api/v1/events?run=r1":
            continue  # a stream: checked below
        async with http.get(path, headers=auth(token), allow_redirects=False) as r:
            assert r.status in (200, 404), (path, r.status)  # 404: the log file x.txt does not exist
    async with http.get("/api/v1/events?run=r1", headers=auth(token)) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/event-stream")
    async with http.post("/api/v1/experiments", headers=auth(token)) as r:  # no write route: a read token's 403
        assert r.status == 403 and "scope write" in (await r.json())["error"]["message"]


async def test_cookie_login_flow(collector, http):
    token = await make_token(collector, "read")
    async with http.get("/runs/r1?tab=logs", allow_redirects=False) as r:
        assert r.status == 302
        login_url = r.headers["Location"]
    async with http.get(login_url) as r:
        page = await r.text()
        assert r.status == 200 and 'name="token"' in page and 'value="/runs/r1?tab=logs"' in page
        assert r.headers["Content-Security-Policy"].startswith("default-src 'self'")
    form = {"token": "rwt_000000000000_" + "x" * 43, "next": "/runs/r1?tab=logs"}
    async with http.post("/login", data=form, allow_redirects=False) as r:
        assert r.status == 401 and "invalid token" in await r.text() and "Set-Cookie" not in r.headers
    async with http.post("/login", data={**form, "token": token}, allow_redirects=False) as r:
        assert r.status == 303 and r.headers["Location"] == "/runs/r1?tab=logs"
        cookie = r.headers["Set-Cookie"]
        assert cookie.startswith(f"runwire_token={token};")
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    async with http.get("/runs/r1", allow_redirects=False) as r:  # the cookie jar sends it now
        assert r.status == 200
    async with http.get("/api/v1/runs/r1") as r:
        assert r.status == 200 and (await r.json())["run"]["run_id"] == "r1"
    async with http.post("/logout", allow_redirects=False) as r:
        assert r.status == 303 and r.headers["Location"] == "/login"
    async with http.get("/api/v1/runs/r1") as r:
        assert r.status == 401
    await collector.store.revoke_token(token[4:16])
    http.cookie_jar.update_cookies({"runwire_token": token})
    async with http.get("/", allow_redirects=False) as r:  # a revoked cookie: back to the login page
        assert r.status == 302


def test_login_only_returns_to_this_site():
    assert safe_next("/runs/a?b=1") == "/runs/a?b=1"
    for bad in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "", None, "runs", "/a\nSet-Cookie: x"):
        assert safe_next(bad) == "/"


async def test_experiment_restricted_token(collector, http):
    token = auth(await make_token(collector, "read", "e1"))
    async with http.get("/api/v1/experiments", headers=token) as r:
        assert [e["name"] for e in (await r.json())["experiments"]] == ["e1"]
    allowed = ["/api/v1/experiments/e1", "/api/v1/experiments/e1/runs", "/api/v1/runs/r1", "/api/v1/runs/r1/metrics",
               "/api/v1/status", "/", "/runs/r2"]  # fmt: skip
    for path in allowed:
        async with http.get(path, headers=token, allow_redirects=False) as r:
            assert r.status == 200, path
    refused = ["/api/v1/experiments/e2", "/api/v1/experiments/e2/runs", "/api/v1/runs/r2", "/api/v1/runs/r2/files",
               "/api/v1/compute", "/metrics", "/api/v1/events", "/api/v1/events?experiment=e2",
               "/api/v1/events?run=r2"]  # fmt: skip
    for path in refused:
        async with http.get(path, headers=token) as r:
            assert r.status == 403, path
            body = await r.json()
            assert (
                body["error"]["code"] == "PermissionDenied"
                and "restricted to experiments 'e1'" in body["error"]["message"]
            )
    async with http.get("/api/v1/runs/nope", headers=token) as r:
        assert r.status == 404


async def test_rate_limit_answers_429_with_retry_after(tmp_path):
    c = await start_auth_collector(tmp_path, rate_limit=0.5, rate_burst=4)
    try:
        token = auth(await make_token(c, "read"))
        other = auth(await make_token(c, "read"))
        async with aiohttp.ClientSession(f"http://{c.http_address}") as http:
            for _ in range(4):
                async with http.get("/api/v1/status", headers=token) as r:
                    assert r.status == 200
            async with http.get("/api/v1/status", headers=token) as r:
                assert r.status == 429
                assert 1 <= int(r.headers["Retry-After"]) <= 2
                assert "over its rate limit of 0.5 calls/s (burst 4)" in (await r.json())["error"]["message"]
            async with http.get("/api/v1/status", headers=other) as r:
                assert r.status == 200
            async with http.get("/healthz") as r:
                assert r.status == 200
    finally:
        await c.stop(grace=1)


@pytest.mark.parametrize("auth_on", [True, False])
async def test_oversized_bodies_answer_413(tmp_path, auth_on):
    limit = server_limits.MAX_HTTP_BODY_BYTES
    c = Collector(
        CollectorConfig(data_dir=tmp_path, grpc_listen="127.0.0.1:0", http_listen="127.0.0.1:0", auth=auth_on)
    )
    await c.start()
    try:
        async with aiohttp.ClientSession(f"http://{c.http_address}") as http:
            for path in ("/login", "/api/v1/experiments", "/healthz"):
                async with http.post(path, data=b"x" * (limit + 1)) as r:
                    assert r.status == 413, path
                    body = await r.json()
                    assert body["error"]["code"] == "TooLarge" and "MAX_HTTP_BODY_BYTES" in body["error"]["message"]

            async def chunked():  # no Content-Length: the limit applies while the form is read
                for _ in range(limit // 1024 + 2):
                    yield b"token=" if _ == 0 else b"x" * 1024

            if auth_on:
                async with http.post(
                    "/login", data=chunked(), headers={"Content-Type": "application/x-www-form-urlencoded"}
                ) as r:
                    assert r.status == 413 and (await r.json())["error"]["code"] == "TooLarge"
                async with http.post("/login", data={"token": "short"}) as r:
                    assert r.status == 401  # a small body is read and judged
    finally:
        await c.stop(grace=1)


async def test_login_page_escapes_what_it_reflects(http):
    hostile = '/runs/"><script>alert(1)</script>'
    async with http.get("/login", params={"next": hostile}) as r:
        body = await r.text()
    assert r.status == 200
    assert "<script>alert(1)" not in body
    assert 'value="/runs/&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in body
