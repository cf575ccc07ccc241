"""A run's metrics: the list with chart kinds, downsampled series for charts, raw rows for tables."""

from __future__ import annotations

import asyncio

import numpy as np
from aiohttp import web

from runwire import codec
from runwire.server.records import MetricInfoRecord
from runwire.server.studio import convert, limits, params, series_read
from runwire.server.studio.context import StudioContext
from runwire.server.studio.downsample import min_max, zoom
from runwire.server.studio.errors import ApiError

_NUMERIC = (codec.FLOAT, codec.INT)


def chart_of(kind: int, columns: list[tuple[str, int]], count: int) -> str:
    """How the studio draws a metric (RUN_API.md §16)."""
    if kind == codec.IMAGE:
        return "image"
    if kind == codec.TABLE:
        if len(columns) >= 2 and columns[0][1] in _NUMERIC and columns[1][1] in _NUMERIC:
            return "xy"
        return "table"
    vtype = columns[0][1] if columns else codec.NONE
    if vtype not in _NUMERIC:
        return "value"
    if kind == codec.SCALAR and count <= 1:
        return "value"
    return "line"


def metric_info_json(m: MetricInfoRecord) -> dict:
    return {
        "name": m.name,
        "kind": codec.KIND_NAMES.get(m.kind, "scalar"),
        "description": m.description,
        "count": m.count,
        "columns": [{"name": n, "type": codec.TYPE_NAMES.get(t, "none")} for n, t in m.columns],
        "last": convert.num(m.last),
        "min": convert.num(m.min),
        "max": convert.num(m.max),
        "chart": chart_of(m.kind, m.columns, m.count),
    }


def _json_numbers(a: np.ndarray) -> list:
    out = a.tolist()
    if a.dtype.kind == "f":
        for i in np.flatnonzero(~np.isfinite(a)).tolist():
            out[i] = None
    return out


class MetricsApi:
    def __init__(self, ctx: StudioContext) -> None:
        self._store = ctx.store
        self._cache = series_read.ChunkCache()

    async def metrics(self, request: web.Request) -> web.Response:
        run_id = params.path_param(request, "run_id")
        infos = await self._store.list_metric_info(run_id)
        return web.json_response({"metrics": [metric_info_json(m) for m in infos]})

    async def series(self, request: web.Request) -> web.Response:
        run_id = params.path_param(request, "run_id")
        name = params.path_param(request, "name")
        width = params.query_int(
            request, "width", limits.STUDIO_SERIES_WIDTH_DEFAULT, 1, limits.STUDIO_SERIES_WIDTH_MAX
        )
        x_min = params.query_float(request, "x_min")
        x_max = params.query_float(request, "x_max")
        s = await series_read.snapshot(self._store, run_id, name)
        chart = chart_of(s.kind, s.columns, s.count)
        vtype = s.columns[0][1] if s.columns else codec.NONE
        if chart in ("table", "image"):
            raise ApiError(
                400,
                "InvalidArgument",
                f"metric {name!r} is drawn as {chart!r}: only numeric scalar, list and two-numeric-column table "
                "metrics have a series (read the others with /rows)",
            )
        if chart == "value" and vtype not in _NUMERIC:
            raise ApiError(
                400,
                "InvalidArgument",
                f"metric {name!r} holds {codec.TYPE_NAMES.get(vtype, 'none')} values: only "
                "numeric metrics have a series (read it with /rows)",
            )
        points = await series_read.read_rows(self._store, s, cache=self._cache)
        body = await asyncio.to_thread(_series_body, s.name, s.kind, chart, s.columns, points, width, x_min, x_max)
        return web.json_response(body)

    async def rows(self, request: web.Request) -> web.Response:
        run_id = params.path_param(request, "run_id")
        name = params.path_param(request, "name")
        offset = params.query_int(request, "offset", 0, 0, 2**62)
        limit = params.query_int(request, "limit", 100, 1, limits.STUDIO_ROWS_PAGE_MAX)
        s = await series_read.snapshot(self._store, run_id, name)
        points = await series_read.read_rows(self._store, s, offset, offset + limit, self._cache)
        names = [n for n, _ in s.columns]
        values = [_column_values(points.columns.get(n), points.count) for n in names]
        if s.kind != codec.TABLE:
            names = ["value"]
            if points.steps is not None:
                steps = [None if v == codec.NO_STEP else v for v in points.steps.tolist()]
                names = ["step", "value"]
                values = [steps, *values]
        rows = [list(r) for r in zip(*values, strict=True)] if values else [[] for _ in range(points.count)]
        return web.json_response({"columns": names, "rows": rows, "total": s.count})


def _column_values(col: codec.DecodedColumn | None, count: int) -> list:
    if col is None:
        return [None] * count
    out = col.to_python(count)
    if col.type == codec.FLOAT:
        arr = np.asarray(col.values)
        for i in np.flatnonzero(~np.isfinite(arr)).tolist():
            out[i] = None
    return out


def _series_body(
    name: str,
    kind: int,
    chart: str,
    columns: list[tuple[str, int]],
    points: codec.DecodedPoints,
    width: int,
    x_min: float | None,
    x_max: float | None,
) -> dict:
    n = points.count
    if chart == "xy":
        (x_name, _), (y_name, _) = columns[0], columns[1]
        x = series_read.numeric(points.columns.get(x_name), n)
        y = series_read.numeric(points.columns.get(y_name), n)
        good = np.isfinite(x)
        if not good.all():
            x, y = x[good], y[good]
        x_label, y_label = x_name, y_name
    else:
        y = series_read.numeric(points.columns.get(""), n)
        steps = points.steps
        if steps is not None and n and bool((steps != codec.NO_STEP).all()):
            x, x_label = steps, "step"
        else:
            x, x_label = np.arange(n, dtype=np.int64), "index"
        y_label = name
    if len(x) > 1 and not bool((x[1:] >= x[:-1]).all()):
        order = np.argsort(x, kind="stable")
        x, y = x[order], y[order]
    x, y = zoom(x, y, x_min, x_max)
    d = min_max(x, y, width)
    return {
        "name": name,
        "kind": codec.KIND_NAMES.get(kind, "scalar"),
        "chart": chart,
        "count": n,
        "x_label": x_label,
        "y_label": y_label,
        "downsampled": d.downsampled,
        "x": _json_numbers(d.x),
        "y": _json_numbers(d.y),
    }
