"""The OpenAPI 3.1 document of the studio's JSON API (GET /api/v1/openapi.json), built in code so
that the bounds it states are the constants the handlers enforce."""

from __future__ import annotations

from typing import Any

from runwire.server.records import RUN_TABLE_SORTS
from runwire.server.studio import limits
from runwire.statuses import RUN_STATUSES

INT64_MAX = 2**62
"""Upper bound stated for offsets and line numbers."""

_NUM = {"type": "number"}
_NUM_OR_NULL = {"type": ["number", "null"]}
_STR = {"type": "string"}
_STR_OR_NULL = {"type": ["string", "null"]}
_INT = {"type": "integer"}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(props: dict[str, Any], required: list[str] | None = None) -> dict:
    return {"type": "object", "properties": props, "required": list(props) if required is None else required}


def _array(items: dict) -> dict:
    return {"type": "array", "items": items}


_STRING_MAP = {"type": "object", "additionalProperties": _STR_OR_NULL}

SCHEMAS: dict[str, Any] = {
    "Agent": _obj(
        {
            "agent_id": _STR,
            "hostname": _STR,
            "pid": _INT,
            "version": _STR,
            "state": {"type": "string", "enum": ["ok", "backpressure", "unreachable"]},
            "connected": {"type": "boolean"},
            "received_at": _NUM,
            "report_age_seconds": _NUM,
            "sent_at": _NUM,
            "spool_bytes": _INT,
            "spool_records": _INT,
            "spool_max_bytes": _INT,
            "spool_fill": _NUM,
            "spool_peak_bytes": _INT,
            "spool_full": {"type": "boolean"},
            "spool_full_count": _INT,
            "spool_full_seconds": _NUM,
            "spool_corrupt_records": _INT,
            "oldest_unacked_age_seconds": _NUM,
            "collector_connected_since": _NUM_OR_NULL,
            "last_outage_seconds": _NUM,
            "clients": _INT,
            "uptime_seconds": _NUM,
        }
    ),
    "Error": _obj(
        {"error": _obj({"code": _STR, "message": _STR})},
    ),
    "Experiment": _obj(
        {
            "name": _STR,
            "id": _STR,
            "created_time": _NUM,
            "runs": _INT,
            "last_activity": _NUM_OR_NULL,
            "status_counts": {"type": "object", "additionalProperties": _INT},
        }
    ),
    "MetricSummary": _obj({"last": _NUM_OR_NULL, "min": _NUM_OR_NULL, "max": _NUM_OR_NULL, "count": _INT}),
    "RunRow": _obj(
        {
            "run_id": _STR,
            "number": _INT,
            "display_name": _STR,
            "status": _STR,
            "type": _STR,
            "target": _STR,
            "parent_run_id": _STR_OR_NULL,
            "created_time": _NUM,
            "start_time": _NUM_OR_NULL,
            "end_time": _NUM_OR_NULL,
            "duration": _NUM_OR_NULL,
            "tags": _STRING_MAP,
            "metrics": {"type": "object", "additionalProperties": _ref("MetricSummary")},
        }
    ),
    "RunRef": _obj(
        {
            "run_id": _STR,
            "display_name": _STR,
            "status": _STR,
            "start_time": _NUM_OR_NULL,
            "end_time": _NUM_OR_NULL,
        }
    ),
    "RunDetail": {
        "allOf": [
            _ref("RunRow"),
            _obj(
                {
                    "experiment_name": _STR,
                    "description": _STR,
                    "properties": _STRING_MAP,
                    "error": {"oneOf": [{"type": "null"}, _obj({"code": _STR, "message": _STR})]},
                    "warnings": _array(_STR),
                    "log_files": _array(_STR),
                    "snapshot_id": _STR_OR_NULL,
                    "portal_url": _STR,
                }
            ),
        ]
    },
    "RunPage": _obj(
        {
            "total": _INT,
            "offset": _INT,
            "limit": _INT,
            "runs": _array(_ref("RunRow")),
            "metric_names": _array(_STR),
        }
    ),
    "RunDetails": _obj(
        {
            "run": _ref("RunDetail"),
            "status_history": _array(_obj({"status": _STR, "time": _NUM})),
            "parent": {"oneOf": [{"type": "null"}, _ref("RunRef")]},
            "children": _array(_ref("RunRef")),
        }
    ),
    "MetricInfo": _obj(
        {
            "name": _STR,
            "kind": {"enum": ["scalar", "list", "table", "image"]},
            "description": _STR,
            "count": _INT,
            "columns": _array(_obj({"name": _STR, "type": {"enum": ["float", "int", "bool", "string", "none"]}})),
            "last": _NUM_OR_NULL,
            "min": _NUM_OR_NULL,
            "max": _NUM_OR_NULL,
            "chart": {"enum": ["line", "xy", "table", "value", "image"]},
        }
    ),
    "Series": _obj(
        {
            "name": _STR,
            "kind": {"enum": ["scalar", "list", "table", "image"]},
            "chart": {"enum": ["line", "xy", "value"]},
            "count": _INT,
            "x_label": _STR,
            "y_label": _STR,
            "downsampled": {"type": "boolean"},
            "x": _array(_NUM),
            "y": _array(_NUM_OR_NULL),
        }
    ),
    "Rows": _obj({"columns": _array(_STR), "rows": _array(_array({})), "total": _INT}),
    "FileInfo": _obj({"name": _STR, "size": _INT, "sha256": _STR, "created_time": _NUM, "content_type": _STR}),
    "LogPage": _obj({"path": _STR, "first_line": _INT, "lines": _array(_STR), "total": _INT}),
    "Node": _obj(
        {
            "node_id": _STR,
            "hostname": _STR,
            "slots": _INT,
            "busy": _INT,
            "connected": {"type": "boolean"},
            "last_seen": _NUM,
            "run_ids": _array(_STR),
        }
    ),
    "ActiveRun": _obj(
        {
            "run_id": _STR,
            "status": _STR,
            "experiment_name": _STR,
            "node_id": _STR,
            "created_time": _NUM,
            "parent_run_id": _STR_OR_NULL,
            "type": _STR,
        }
    ),
    "Target": _obj(
        {
            "name": _STR,
            "slots": _INT,
            "queued": _INT,
            "active": _INT,
            "nodes": _array(_ref("Node")),
            "runs": _array(_ref("ActiveRun")),
        }
    ),
}


def _path(name: str, description: str) -> dict:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string", "minLength": 1},
    }


def _query(name: str, schema: dict, description: str, explode: bool = True) -> dict:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


def _int_query(name: str, lo: int, hi: int, default: int, description: str) -> dict:
    return _query(name, {"type": "integer", "minimum": lo, "maximum": hi, "default": default}, description)


_BOOL = {"type": "string", "enum": ["true", "false", "1", "0"]}

_ERRORS = {
    "400": {
        "description": "A bad parameter (named, with the rule)",
        "content": {"application/json": {"schema": _ref("Error")}},
    },
    "404": {"description": "Not found", "content": {"application/json": {"schema": _ref("Error")}}},
}


def _json(schema: dict, description: str = "OK") -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _get(
    summary: str, ok: dict, parameters: list[dict] | None = None, errors: tuple[str, ...] = ("400", "404")
) -> dict:
    responses = {"200": ok}
    responses.update({code: _ERRORS[code] for code in errors})
    return {"get": {"summary": summary, "parameters": parameters or [], "responses": responses}}


_RUN_ID = _path("run_id", "The run's id")
_METRIC = _path("name", "The metric's name")

_SORTS = [*RUN_TABLE_SORTS]


def openapi_document() -> dict:
    """The OpenAPI 3.1 description of every /api/v1 route."""
    paths = {
        "/api/v1/openapi.json": _get("This document", _json({"type": "object"}), errors=()),
        "/api/v1/status": _get("The collector's status", _json({"type": "object"}), errors=()),
        "/api/v1/experiments": _get(
            "Every experiment with run counts", _json(_obj({"experiments": _array(_ref("Experiment"))})), errors=()
        ),
        "/api/v1/experiments/{name}": _get(
            "One experiment", _json(_ref("Experiment")), [_path("name", "The experiment's name")]
        ),
        "/api/v1/experiments/{name}/runs": _get(
            "One page of the experiment's runs table",
            _json(_ref("RunPage")),
            [
                _path("name", "The experiment's name"),
                _query("status", _array({"type": "string", "enum": list(RUN_STATUSES)}), "Only runs in these statuses"),
                _query("tag", _array({"type": "string", "pattern": "^[^=]"}), "KEY (has the tag) or KEY=VALUE"),
                _query("q", {"type": "string"}, "Substring of run id, display name or a tag value"),
                _query("include_children", _BOOL, "Child runs too (default false)"),
                _query(
                    "sort",
                    {
                        "anyOf": [
                            {"type": "string", "enum": _SORTS},
                            {"type": "string", "pattern": "^metric:.+:(last|min|max)$"},
                        ]
                    },
                    "Sort key: a run field or metric:<name>:<last|min|max>",
                ),
                _query("order", {"type": "string", "enum": ["desc", "asc"]}, "Sort order (default desc)"),
                _int_query("offset", 0, INT64_MAX, 0, "Rows to skip"),
                _int_query(
                    "limit", 1, limits.STUDIO_RUNS_PAGE_MAX, limits.STUDIO_RUNS_PAGE_DEFAULT, "Rows of the page"
                ),
                _query("metrics", _array({"type": "string"}), "Metric names whose summaries the rows carry"),
            ],
        ),
        "/api/v1/runs/{run_id}": _get("A run's details", _json(_ref("RunDetails")), [_RUN_ID]),
        "/api/v1/runs/{run_id}/metrics": _get(
            "The run's metrics", _json(_obj({"metrics": _array(_ref("MetricInfo"))})), [_RUN_ID]
        ),
        "/api/v1/runs/{run_id}/metrics/{name}/series": _get(
            "A metric downsampled for a chart (min/max per x bucket)",
            _json(_ref("Series")),
            [
                _RUN_ID,
                _METRIC,
                _int_query(
                    "width",
                    1,
                    limits.STUDIO_SERIES_WIDTH_MAX,
                    limits.STUDIO_SERIES_WIDTH_DEFAULT,
                    "Chart width in pixels (at most about 2 points per pixel)",
                ),
                _query("x_min", {"type": "number"}, "Zoom: smallest x"),
                _query("x_max", {"type": "number"}, "Zoom: largest x"),
            ],
        ),
        "/api/v1/runs/{run_id}/metrics/{name}/rows": _get(
            "A page of a metric's rows",
            _json(_ref("Rows")),
            [
                _RUN_ID,
                _METRIC,
                _int_query("offset", 0, INT64_MAX, 0, "First row"),
                _int_query("limit", 1, limits.STUDIO_ROWS_PAGE_MAX, 100, "Rows of the page"),
            ],
        ),
        "/api/v1/runs/{run_id}/files": _get(
            "The run's files", _json(_obj({"files": _array(_ref("FileInfo"))})), [_RUN_ID]
        ),
        "/api/v1/runs/{run_id}/files/{name}": _get(
            "A file's bytes (an attachment unless an image is asked for inline)",
            {"description": "The bytes", "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}},
            [_RUN_ID, _path("name", "The file's name (may hold /)"), _query("inline", _BOOL, "Show an image inline")],
        ),
        "/api/v1/runs/{run_id}/logs/{path}": _get(
            "A log file's lines",
            {
                "description": "The lines (text), or a page of them (format=json)",
                "content": {
                    "text/plain": {"schema": {"type": "string"}},
                    "application/json": {"schema": _ref("LogPage")},
                },
            },
            [
                _RUN_ID,
                _path("path", "The log file's path (may hold /)"),
                _int_query("from_line", 0, INT64_MAX, 0, "First line"),
                _int_query("max_lines", 0, INT64_MAX, 0, "Lines at most (0 = all)"),
                _query("format", {"type": "string", "enum": ["text", "json"]}, "text (default) or json"),
            ],
        ),
        "/api/v1/runs/{run_id}/snapshot": _get(
            "The run's snapshot as a zip",
            {
                "description": "The zip",
                "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
            },
            [_RUN_ID],
        ),
        "/api/v1/events": _get(
            "Live events (server-sent events fed by the live bus; the stream never ends by itself)",
            {
                "description": "`event: <kind>` + `data: <JSON>` messages (kinds: metric, status, log, tag, file,"
                " lagged, live) and `: ping` keep-alives",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            },
            [
                _query("experiment", {"type": "string"}, "Only runs of this experiment"),
                _query("run", {"type": "string"}, "Only this run (404 when unknown)"),
                _query("include_children", _BOOL, "With run: its descendants too"),
                _query(
                    "kinds",
                    {"type": "string"},
                    "Comma-separated (or repeated) kinds: metric, status, log, tag, file (default all)",
                ),
                _query("metrics", {"type": "string"}, "Metric names or globs (repeatable; default all)"),
                _query("from_start", _BOOL, "First the stored history of the matching runs, then live"),
            ],
        ),
        "/api/v1/compute": _get(
            "Compute targets, their nodes and active runs", _json(_obj({"targets": _array(_ref("Target"))})), errors=()
        ),
        "/api/v1/compute/{target}": _get(
            "One compute target", _json(_ref("Target")), [_path("target", "The target's name")]
        ),
        "/api/v1/agents": _get(
            "Every agent's last health report (spool fill, backpressure, outages), with its state",
            _json(_obj({"agents": _array(_ref("Agent"))})),
            errors=(),
        ),
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "runwire studio API", "version": "1"},
        "paths": paths,
        "components": {"schemas": SCHEMAS},
    }
