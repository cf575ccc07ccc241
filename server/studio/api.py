"""The studio's JSON HTTP API under /api/v1 (the contract: /work/notes/studio.md "JSON API"),
mounted on the collector's aiohttp app by `add_api_routes`."""

from __future__ import annotations

from aiohttp import web

from runwire.server.studio.api_files import FilesApi
from runwire.server.studio.api_metrics import MetricsApi
from runwire.server.studio.api_runs import RunsApi
from runwire.server.studio.context import StudioContext
from runwire.server.studio.errors import API_PREFIX, api_errors
from runwire.server.studio.openapi import openapi_document


def add_api_routes(app: web.Application, ctx: StudioContext) -> None:
    """Add the JSON API's routes and its error middleware (JSON errors under /api/v1 only)."""
    runs, metrics, files = RunsApi(ctx), MetricsApi(ctx), FilesApi(ctx)
    document = openapi_document()

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(document)

    async def agents(request: web.Request) -> web.Response:
        reports = ctx.agents.as_json() if ctx.agents is not None else []
        return web.json_response({"agents": reports})

    app.middlewares.append(api_errors)
    p = API_PREFIX
    routes = [
        ("/openapi.json", openapi),
        ("/experiments", runs.experiments),
        ("/experiments/{name}", runs.experiment),
        ("/experiments/{name}/runs", runs.runs),
        ("/runs/{run_id}", runs.run),
        ("/runs/{run_id}/metrics", metrics.metrics),
        ("/runs/{run_id}/metrics/{name:.+}/series", metrics.series),
        ("/runs/{run_id}/metrics/{name:.+}/rows", metrics.rows),
        ("/runs/{run_id}/files", files.files),
        ("/runs/{run_id}/files/{name:.+}", files.file),
        ("/runs/{run_id}/logs/{path:.+}", files.log),
        ("/runs/{run_id}/snapshot", files.snapshot),
        ("/compute", runs.compute),
        ("/compute/{target}", runs.compute_target),
        ("/agents", agents),
    ]
    for path, handler in routes:
        app.router.add_get(p + path, handler)
