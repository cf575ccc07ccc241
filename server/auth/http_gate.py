"""The collector's HTTP middlewares: the body size limit (413, always on) and, with auth on, the token
check: `Authorization: Bearer <token>` or the studio's `runwire_token` cookie. Missing or invalid token:
401 (a JSON error for the API and /metrics, a redirect to the login page for studio pages); a token
restricted to experiments may only read those (403); over the rate limit: 429 with Retry-After. Open
without a token: /healthz, the login page and the static files."""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from aiohttp import web

from runwire.server import limits as server_limits
from runwire.server.auth.guard import Guard, Identity, bearer_token
from runwire.server.auth.scopes import Scope
from runwire.server.errors import CollectorError, PermissionDenied, ResourceExhausted

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

TOKEN_COOKIE = "runwire_token"
LOGIN_PATH = "/login"
LOGOUT_PATH = "/logout"
OPEN_PATHS = frozenset({"/healthz", LOGIN_PATH, LOGOUT_PATH})
OPEN_PREFIXES = ("/static/",)
API_PREFIX = "/api/"

_STATUS = {"Unauthenticated": 401, "PermissionDenied": 403, "ResourceExhausted": 429}


def json_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status, headers=headers)


@web.middleware
async def body_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
    """413 for a declared body over MAX_HTTP_BODY_BYTES (before anything reads it), and for a body that
    turns out bigger while a handler reads it (aiohttp's client_max_size)."""
    limit = server_limits.MAX_HTTP_BODY_BYTES
    too_large = f"the request body is over MAX_HTTP_BODY_BYTES ({limit} bytes); the HTTP API reads only small forms"
    if request.content_length is not None and request.content_length > limit:
        return json_error(413, "TooLarge", f"{too_large} (Content-Length {request.content_length})")
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge:
        return json_error(413, "TooLarge", too_large)


def is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def is_page(request: web.Request) -> bool:
    """A studio page a browser navigates to (answered with a redirect to the login page)."""
    return request.method in ("GET", "HEAD") and not request.path.startswith(API_PREFIX) and request.path != "/metrics"


def login_redirect(request: web.Request) -> web.Response:
    return web.Response(status=302, headers={"Location": f"{LOGIN_PATH}?next={quote(request.path_qs, safe='')}"})


def request_token(request: web.Request) -> str | None:
    token = bearer_token(request.headers.get("Authorization"))
    return token if token is not None else request.cookies.get(TOKEN_COOKIE) or None


async def _check_restriction(guard: Guard, identity: Identity, request: web.Request) -> None:
    """A token restricted to experiments reads only those: runs by id, experiments by name, the event
    stream of one of them; the experiments list is trimmed; collector-wide views are refused."""
    if not identity.restricted:
        return
    route = request.match_info.route.resource
    canonical = route.canonical if route is not None else request.path
    what = f"{request.method} {request.path}"
    if canonical.startswith("/api/v1/runs/{run_id}"):
        await guard.require_runs(identity, [request.match_info["run_id"]], what)
    elif canonical.startswith("/api/v1/experiments/{name}"):
        identity.require_experiment(request.match_info["name"], what)
    elif canonical == "/api/v1/events":
        run, experiment = request.query.get("run", ""), request.query.get("experiment", "")
        if not run and not experiment:
            raise PermissionDenied(
                f"{what}: token {identity.token_id} is restricted to experiments "
                f"{identity.describe_restriction()}; give experiment= or run="
            )
        if run:
            await guard.require_runs(identity, [run], what)
        else:
            identity.require_experiment(experiment, what)
    elif canonical in ("/api/v1/experiments", "/api/v1/status", "/api/v1/openapi.json") or not (
        canonical.startswith(API_PREFIX) or canonical == "/metrics"
    ):
        return  # trimmed below, collector-wide facts without experiment data, or a studio page's shell
    else:
        identity.require_unrestricted(what, "it shows every experiment")


def _is_experiments_list(request: web.Request) -> bool:
    resource = request.match_info.route.resource
    return resource is not None and resource.canonical == "/api/v1/experiments"


def _json_ok(response: web.StreamResponse) -> bool:
    return isinstance(response, web.Response) and response.status == 200 and isinstance(response.body, bytes)


def auth_middleware(guard: Guard) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if is_open(request.path):
            return await handler(request)
        try:
            identity = await guard.authenticate(request_token(request))
        except CollectorError as e:
            if is_page(request):
                return login_redirect(request)
            return json_error(401, "Unauthenticated", str(e), headers={"WWW-Authenticate": 'Bearer realm="runwire"'})
        try:
            guard.spend(identity)
            identity.require_scope(Scope.READ if request.method in ("GET", "HEAD") else Scope.WRITE, request.path)
            await _check_restriction(guard, identity, request)
        except ResourceExhausted as e:
            retry = str(max(1, math.ceil(e.retry_after_s)))
            return json_error(429, "ResourceExhausted", str(e), headers={"Retry-After": retry})
        except CollectorError as e:
            code = type(e).__name__
            return json_error(_STATUS.get(code, 400), code, str(e))
        response = await handler(request)
        if identity.restricted and _is_experiments_list(request) and _json_ok(response):
            body = json.loads(response.body)
            body["experiments"] = [e for e in body["experiments"] if e.get("name") in identity.experiments]
            return web.json_response(body)
        return response

    return authenticate
