"""Errors raised by the store and the services; each maps to one gRPC status code."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

log = logging.getLogger("runwire.server")


class CollectorError(Exception):
    """Base class: a request the collector refuses, with a message naming what was wrong and the rule."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL


class InvalidArgument(CollectorError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(CollectorError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(CollectorError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(CollectorError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Unauthenticated(CollectorError):
    """No token, or one that is malformed, unknown, wrong or revoked (HTTP 401)."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(CollectorError):
    """A valid token whose scope or experiment restriction does not cover the request (HTTP 403)."""

    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(CollectorError):
    """A token over its rate limit (HTTP 429, with Retry-After)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


async def refuse(context: grpc.aio.ServicerContext, rpc: str, e: Exception) -> None:
    """Abort the RPC: a `CollectorError` with its status code and message, anything else as INTERNAL
    (logged with its traceback). Never returns: `context.abort` raises."""
    if isinstance(e, CollectorError):
        log.info("refused", extra={"fields": {"rpc": rpc, "code": e.code.name, "reason": str(e)}})
        await context.abort(e.code, str(e))
    log.exception("request failed", extra={"fields": {"rpc": rpc}})
    await context.abort(grpc.StatusCode.INTERNAL, f"{rpc} failed: {type(e).__name__}: {e}")


R = TypeVar("R")


def refusals(fn: Callable[..., Awaitable[R]]) -> Callable[..., Awaitable[R]]:
    """Turn exceptions raised by a unary gRPC handler into status codes (see `refuse`)."""

    @functools.wraps(fn)
    async def handler(self: Any, request: Any, context: grpc.aio.ServicerContext) -> R:
        try:
            return await fn(self, request, context)
        except Exception as e:
            await refuse(context, fn.__name__, e)
            raise  # not reached: abort raises

    return handler
