"""Parsing the studio API's query and path parameters: each failure is a 400 naming the parameter
and the rule it broke."""

from __future__ import annotations

import math

from aiohttp import web

from runwire.server.studio.errors import bad_param

_TRUE = ("1", "true", "yes")
_FALSE = ("0", "false", "no")


def text(value: str, name: str) -> str:
    """A path or query string checked to be storable text (valid UTF-8)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise bad_param(name, "must be valid UTF-8 text", value.encode("utf-8", "replace").decode()) from None
    return value


def path_param(request: web.Request, name: str) -> str:
    return text(request.match_info[name], name)


def query_text(request: web.Request, name: str, default: str = "") -> str:
    value = request.query.get(name)
    return default if value is None else text(value, name)


def query_texts(request: web.Request, name: str) -> list[str]:
    return [text(v, name) for v in request.query.getall(name, [])]


def query_int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise bad_param(name, f"must be an integer from {lo} to {hi}", raw) from None
    if not lo <= value <= hi:
        raise bad_param(name, f"must be an integer from {lo} to {hi}", raw)
    return value


def query_float(request: web.Request, name: str) -> float | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        raise bad_param(name, "must be a finite number", raw) from None
    if not math.isfinite(value):
        raise bad_param(name, "must be a finite number", raw)
    return value


def query_bool(request: web.Request, name: str, default: bool) -> bool:
    return parse_bool(name, request.query.get(name), default)


def parse_bool(name: str, raw: str | None, default: bool = False) -> bool:
    """A boolean query value (`1/0/true/false/yes/no`); `default` when absent."""
    if raw is None:
        return default
    low = raw.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise bad_param(name, "must be one of true, false, 1, 0", raw)


def query_choice(request: web.Request, name: str, choices: tuple[str, ...], default: str) -> str:
    raw = request.query.get(name)
    if raw is None:
        return default
    if raw not in choices:
        raise bad_param(name, f"must be one of {', '.join(choices)}", raw)
    return raw
