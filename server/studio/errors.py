"""JSON errors of the studio API: `{"error": {"code", "message"}}` with a 4xx status for anything a
client got wrong (a bad parameter names the parameter and the rule), 5xx only for our own faults."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from runwire.server.errors import AlreadyExists, CollectorError, FailedPrecondition, InvalidArgument, NotFound

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"

_HTTP_CODES = {404: "NotFound", 405: "MethodNotAllowed", 400: "InvalidArgument", 409: "Conflict", 413: "TooLarge"}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def bad_param(name: str, rule: str, value: object = None) -> ApiError:
    """400 for query or path parameter `name` breaking `rule`."""
    got = "" if value is None else f" (got {str(value)[:100]!r})"
    return ApiError(400, "InvalidArgument", f"parameter {name!r}: {rule}{got}")


def not_found(message: str) -> ApiError:
    return ApiError(404, "NotFound", message)


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def _from_collector_error(e: CollectorError) -> tuple[int, str]:
    if isinstance(e, NotFound):
        return 404, "NotFound"
    if isinstance(e, InvalidArgument):
        return 400, "InvalidArgument"
    if isinstance(e, AlreadyExists):
        return 409, "AlreadyExists"
    if isinstance(e, FailedPrecondition):
        return 409, "FailedPrecondition"
    return 400, type(e).__name__


@web.middleware
async def api_errors(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    """Turn failures under /api/v1 into JSON errors; other paths pass through untouched."""
    if not request.path.startswith(API_PREFIX + "/") and request.path != API_PREFIX:
        return await handler(request)
    try:
        return await handler(request)
    except ApiError as e:
        return error_response(e.status, e.code, e.message)
    except CollectorError as e:
        status, code = _from_collector_error(e)
        return error_response(status, code, str(e))
    except web.HTTPException as e:
        if e.status < 400:
            raise
        code = _HTTP_CODES.get(e.status, "Error" if e.status >= 500 else "BadRequest")
        message = e.text if e.text and not e.text.startswith(f"{e.status}:") else f"{request.path}: {e.reason}"
        resp = error_response(e.status, code, message)
        if e.status == 405 and "Allow" in e.headers:
            resp.headers["Allow"] = e.headers["Allow"]
        return resp
    except UnicodeError as e:
        return error_response(400, "InvalidArgument", f"the request is not valid UTF-8 text: {e.reason}")
    except Exception:
        log.exception("studio API request failed", extra={"fields": {"path": request.path}})
        return error_response(500, "Internal", f"{request.method} {request.path} failed on the collector")
