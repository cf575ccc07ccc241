"""The collector's small HTTP app (aiohttp, on the collector's event loop): health, Prometheus
metrics and the collector status as JSON. The web studio will be mounted here later."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from google.protobuf import json_format
from prometheus_client import CONTENT_TYPE_LATEST

from runwire.server import limits as server_limits
from runwire.server.auth.guard import Guard
from runwire.server.auth.http_gate import auth_middleware, body_limit
from runwire.server.studio.context import StudioContext
from runwire.server.studio.pages import add_page_routes
from runwire.server.telemetry import Telemetry
from runwire.v1 import runs_pb2


def build_app(
    telemetry: Telemetry,
    status: Callable[[], Awaitable[runs_pb2.CollectorStatus]],
    studio: StudioContext | None = None,
    guard: Guard | None = None,
) -> web.Application:
    """The HTTP app; with `studio`, the web studio too (its JSON API under /api/v1, ...); with `guard`
    (auth on), every request but /healthz, the login page and static files needs a token."""

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=telemetry.prometheus_text(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def api_status(request: web.Request) -> web.Response:
        message = await status()
        return web.json_response(
            json_format.MessageToDict(
                message,
                preserving_proto_field_name=True,
                always_print_fields_with_no_presence=True,
                unquote_int64_if_possible=True,
            )
        )

    middlewares = [body_limit] if guard is None else [body_limit, auth_middleware(guard)]
    app = web.Application(client_max_size=server_limits.MAX_HTTP_BODY_BYTES, middlewares=middlewares)
    app.router.add_get("/healthz", healthz)
    if guard is not None:
        from runwire.server.auth.login import add_login_routes

        add_login_routes(app, guard)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/v1/status", api_status)
    if studio is not None:
        from runwire.server.studio.api import add_api_routes
        from runwire.server.studio.events import add_event_routes

        add_api_routes(app, studio)
        add_event_routes(app, studio.store, studio.live)
    add_page_routes(app)
    return app
