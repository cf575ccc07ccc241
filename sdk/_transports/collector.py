"""Queries and run lifecycle calls to the collector over gRPC (never used by `run.log`).

The channel is created lazily and per process: a child created by `fork()` opens its own. It
carries the client's token and TLS settings (`channel.ClientSecurity`). gRPC errors become runwire
exceptions with the collector's message.
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

from .channel import ClientSecurity, open_channel, unreachable_hint

CALL_TIMEOUT_S = 60.0
"""Deadline of one query or lifecycle call to the collector."""

COLLECTOR_WAIT_S = 10.0
"""How long a call that found the collector unreachable waits for it (e.g. restarting), once."""

CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_BYTES),
    ("grpc.enable_retries", 1),
]


class CollectorClient:
    def __init__(self, address: str, token: str | None = None, *, security: ClientSecurity | None = None) -> None:
        self.address = address
        self.security = security if security is not None else ClientSecurity(token=token)
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
                    self._channel = open_channel(self.address, self.security, CHANNEL_OPTIONS)
                    self._stub = runs_pb2_grpc.RunsStub(self._channel)
                    self._pid = os.getpid()
        return self._stub

    @property
    def channel(self) -> grpc.Channel:
        """This process's channel to the collector (for the live subscriptions' streams)."""
        self.stub  # noqa: B018 - creates the channel in this process
        assert self._channel is not None
        return self._channel

    def invoke(
        self, stub: Any, method: str, request: Any, timeout: float = CALL_TIMEOUT_S, wait_s: float = COLLECTOR_WAIT_S
    ) -> Any:
        """A unary call. Found unreachable (a collector restarting, a channel in reconnect backoff),
        it is tried once more, waiting up to `wait_s` for the collector."""
        try:
            return getattr(stub, method)(request, timeout=timeout)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.UNAVAILABLE or wait_s <= 0:
                raise self._translate(e) from None
        try:
            return getattr(stub, method)(request, timeout=wait_s, wait_for_ready=True)
        except grpc.RpcError as e:
            raise self._translate(e) from None

    def call(self, method: str, request: Any) -> Any:
        return self.invoke(self.stub, method, request)

    def stream(self, method: str, request: Any) -> Iterator[Any]:
        try:
            yield from getattr(self.stub, method)(request, timeout=CALL_TIMEOUT_S * 10)
        except grpc.RpcError as e:
            raise self._translate(e) from None

    def _translate(self, e: grpc.RpcError) -> Exception:
        code = e.code() if hasattr(e, "code") else None
        details = e.details() if hasattr(e, "details") else str(e)
        if code == grpc.StatusCode.NOT_FOUND:
            return RunNotFoundError(details)
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            hint = unreachable_hint(self.security, details)
            return ServiceUnavailableError(
                f"cannot reach the runwire collector at {self.address} ({details}); "
                + (hint or "is `runwire up` running?")
            )
        if code == grpc.StatusCode.UNAUTHENTICATED or code == grpc.StatusCode.PERMISSION_DENIED:
            return UserErrorException(f"the collector refused the call: {details} (check RUNWIRE_TOKEN)")
        return UserErrorException(details or str(e))

    def status(self) -> runs_pb2.CollectorStatus:
        # A status check answers at once: a collector that is down is reported down, not waited for.
        return self.invoke(self.stub, "GetCollectorStatus", runs_pb2.CollectorStatusRequest(), wait_s=0)

    def close(self) -> None:
        if self._channel is not None and self._pid == os.getpid():
            self._channel.close()
        self._channel = self._stub = None
