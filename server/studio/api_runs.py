"""Experiments, the runs table, run details and compute targets (studio JSON API)."""

from __future__ import annotations

from aiohttp import web

from runwire.server.records import RUN_TABLE_SORTS, MetricSummary, RunQuery, RunTableQuery
from runwire.server.studio import convert, limits, params
from runwire.server.studio.context import StudioContext
from runwire.server.studio.errors import bad_param, not_found
from runwire.statuses import RUN_STATUSES

METRIC_STATS = ("last", "min", "max")
"""Which summary of a metric `sort=metric:<name>:<stat>` sorts by."""


class RunsApi:
    def __init__(self, ctx: StudioContext) -> None:
        self._store = ctx.store

    async def experiments(self, request: web.Request) -> web.Response:
        found = await self._store.experiment_summaries()
        return web.json_response({"experiments": [convert.experiment_json(s) for s in found]})

    async def experiment(self, request: web.Request) -> web.Response:
        name = params.path_param(request, "name")
        found = await self._store.experiment_summaries(name)
        if not found:
            raise not_found(f"experiment {name!r} not found")
        return web.json_response(convert.experiment_json(found[0]))

    async def runs(self, request: web.Request) -> web.Response:
        query = self._run_table_query(request)
        page = await self._store.query_run_table(query)
        return web.json_response(
            {
                "total": page.total,
                "offset": query.offset,
                "limit": query.limit,
                "runs": [convert.run_row(r, page.metrics.get(r.run_id, {})) for r in page.runs],
                "metric_names": page.metric_names,
            }
        )

    @staticmethod
    def _run_table_query(request: web.Request) -> RunTableQuery:
        name = params.path_param(request, "name")
        statuses = params.query_texts(request, "status")
        tags = params.query_texts(request, "tag")
        metrics = params.query_texts(request, "metrics")
        for pname, values in (("status", statuses), ("tag", tags), ("metrics", metrics)):
            if len(values) > limits.STUDIO_MAX_FILTERS:
                raise bad_param(pname, f"may be given at most STUDIO_MAX_FILTERS ({limits.STUDIO_MAX_FILTERS}) times")
        for status in statuses:
            if status not in RUN_STATUSES:
                raise bad_param("status", f"must be a run status ({', '.join(RUN_STATUSES)})", status)
        tag_filter: dict[str, str | None] = {}
        for tag in tags:
            key, eq, value = tag.partition("=")
            if not key:
                raise bad_param("tag", "must be KEY or KEY=VALUE with a non-empty KEY", tag)
            tag_filter[key] = value if eq else None
        sort = params.query_text(request, "sort", "created")
        sort_metric, sort_stat = "", "last"
        if sort.startswith("metric:"):
            metric, _, stat = sort[len("metric:") :].rpartition(":")
            if not metric or stat not in METRIC_STATS:
                raise bad_param("sort", "a metric sort is metric:<metric name>:<last|min|max>", sort)
            sort, sort_metric, sort_stat = "metric", metric, stat
        elif sort not in RUN_TABLE_SORTS:
            raise bad_param(
                "sort", f"must be one of {', '.join(RUN_TABLE_SORTS)} or metric:<metric name>:<last|min|max>", sort
            )
        return RunTableQuery(
            experiment_name=name,
            statuses=statuses,
            tags=tag_filter,
            text=params.query_text(request, "q"),
            include_children=params.query_bool(request, "include_children", False),
            sort=sort,
            sort_metric=sort_metric,
            sort_stat=sort_stat,
            descending=params.query_choice(request, "order", ("desc", "asc"), "desc") == "desc",
            offset=params.query_int(request, "offset", 0, 0, 2**62),
            limit=params.query_int(request, "limit", limits.STUDIO_RUNS_PAGE_DEFAULT, 1, limits.STUDIO_RUNS_PAGE_MAX),
            metrics=list(dict.fromkeys(metrics)),
        )

    async def run(self, request: web.Request) -> web.Response:
        run_id = params.path_param(request, "run_id")
        record = await self._store.get_run(run_id)
        history = await self._store.status_history(run_id)
        infos = await self._store.list_metric_info(run_id)
        metrics = {m.name: MetricSummary(m.last, m.min, m.max, m.count) for m in infos if m.last is not None}
        parent = None
        if record.parent_run_id:
            parent = convert.run_ref(await self._store.get_run(record.parent_run_id))
        children = await self._store.list_runs(RunQuery(parent_run_id=run_id))
        children.sort(key=lambda r: (r.created_time, r.number))
        return web.json_response(
            {
                "run": convert.run_detail(record, metrics, str(request.url.origin())),
                "status_history": [{"status": h.status, "time": h.time} for h in history],
                "parent": parent,
                "children": [convert.run_ref(c) for c in children],
            }
        )

    async def compute(self, request: web.Request) -> web.Response:
        targets = await self._store.list_compute_targets()
        return web.json_response({"targets": [await self._target_json(t) for t in targets]})

    async def compute_target(self, request: web.Request) -> web.Response:
        name = params.path_param(request, "target")
        targets = await self._store.list_compute_targets(name)
        if not targets:
            raise not_found(f"compute target {name!r} not found")
        return web.json_response(await self._target_json(targets[0]))

    async def _target_json(self, target) -> dict:
        active = await self._store.list_active_runs(target.name)
        return convert.target_json(target, active)
