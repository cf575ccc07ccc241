"""Errors raised by the store and the services; each maps to one gRPC status code."""

from __future__ import annotations

import grpc


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
