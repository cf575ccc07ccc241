"""Queries and run lifecycle calls to the collector over gRPC (never used by `run.log`).

The channel is created lazily and per process: a child created by `fork()` opens its own.
gRPC errors become runwire exceptions with the collector's message.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import Any

import grpc

from runwire.exceptions import (
    RunNotFoundError,
    ServiceUnavailableError,
    UserErrorException,
)
from runwire.limits import MAX_GRPC_MESSAGE_BYTES
from runwire.v1 import runs_pb2, runs_pb2_grpc

CALL_TIMEOUT_S = 60.0
"""Deadline of one query or lifecycle call to the collector."""

CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_BYTES),
    ("grpc.enable_retries", 1),
]


class CollectorClient:
    def __init__(self, address: str, token: str | None = None) -> None:
        self.address = address
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._lock = threading.Lock()
        self._pid = -1
        self._channel: grpc.Channel | None = None
        self._stub: runs_pb2_grpc.RunsStub | None = None

    @property
    def stub(self) -> runs_pb2_grpc.RunsStub:
        if self._pid != os.getpid() or self._stub is None:
            with self._lock:
                if self._pid != os.getpid() or self._stub is None:
                    # After fork the parent's channel is left untouched (closing it would disturb
                    # the parent); the child opens its own.
                    self._channel = grpc.insecure_channel(self.address, options=CHANNEL_OPTIONS)
                    self._stub = runs_pb2_grpc.RunsStub(self._channel)
                    self._pid = os.getpid()
        return self._stub

    @property
    def channel(self) -> grpc.Channel:
        """This process's channel to the collector (for the live subscriptions' streams)."""
        self.stub  # noqa: B018 - creates the channel in this process
        assert self._channel is not None
        return self._channel

    @property
    def metadata(self) -> tuple:
        return self._metadata

    def call(self, method: str, request: Any) -> Any:
        try:
            return getattr(self.stub, method)(request, timeout=CALL_TIMEOUT_S, metadata=self._metadata)
        except grpc.RpcError as e:
            raise self._translate(e) from None

    def stream(self, method: str, request: Any) -> Iterator[Any]:
        try:
            yield from getattr(self.stub, method)(request, timeout=CALL_TIMEOUT_S * 10, metadata=self._metadata)
        except grpc.RpcError as e:
            raise self._translate(e) from None

    def _translate(self, e: grpc.RpcError) -> Exception:
        code = e.code() if hasattr(e, "code") else None
        details = e.details() if hasattr(e, "details") else str(e)
        if code == grpc.StatusCode.NOT_FOUND:
            return RunNotFoundError(details)
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            return ServiceUnavailableError(
                f"cannot reach the runwire collector at {self.address} ({details}); is `runwire up` running?"
            )
        if code == grpc.StatusCode.UNAUTHENTICATED or code == grpc.StatusCode.PERMISSION_DENIED:
            return UserErrorException(f"the collector refused the call: {details} (check RUNWIRE_TOKEN)")
        return UserErrorException(details or str(e))

    def status(self) -> runs_pb2.CollectorStatus:
        return self.call("GetCollectorStatus", runs_pb2.CollectorStatusRequest())

    def close(self) -> None:
        if self._channel is not None and self._pid == os.getpid():
            self._channel.close()
        self._channel = self._stub = None
