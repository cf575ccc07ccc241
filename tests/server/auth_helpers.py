"""Shared by the auth tests (imported by name: tests/server is on sys.path): a collector with auth on,
tokens made straight in its store, and a caller of any gRPC method by its descriptor."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import AsyncIterator

import grpc
from google.protobuf import descriptor, message_factory

import runwire.v1
from runwire.server.app import Collector, CollectorConfig
from runwire.server.auth.tokens import hash_secret, new_token
from runwire.server.records import TokenRecord


def all_methods() -> list[descriptor.MethodDescriptor]:
    """Every method of every service defined in runwire.v1's protos."""
    methods = []
    for info in pkgutil.iter_modules(runwire.v1.__path__):
        if info.name.endswith("_pb2"):
            module = importlib.import_module(f"runwire.v1.{info.name}")
            for service in module.DESCRIPTOR.services_by_name.values():
                methods.extend(service.methods)
    return methods


def method_path(method: descriptor.MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def make_token(collector: Collector, scope: str, *experiments: str, name: str = "") -> str:
    text, parsed = new_token()
    await collector.store.create_token(
        TokenRecord(parsed.token_id, hash_secret(parsed.secret), scope, tuple(experiments), name)
    )
    return text


async def start_auth_collector(tmp_path, **config) -> Collector:
    c = Collector(
        CollectorConfig(
            data_dir=tmp_path / "collector", grpc_listen="127.0.0.1:0", http_listen="127.0.0.1:0", auth=True, **config
        )
    )
    await c.start()
    return c


async def call_code(
    channel: grpc.aio.Channel, method: descriptor.MethodDescriptor, metadata=(), request=None, timeout: float = 2.0
) -> grpc.StatusCode:
    """Call `method` with an empty (or the given) request and return the status code it ended with; a
    server stream is read to its end, a client stream sends the one request and closes."""
    path = method_path(method)
    if request is None:
        request = message_factory.GetMessageClass(method.input_type)()
    ser, de = (lambda m: m.SerializeToString()), (lambda b: b)
    try:
        if not method.client_streaming and not method.server_streaming:
            await channel.unary_unary(path, request_serializer=ser, response_deserializer=de)(
                request, metadata=metadata, timeout=timeout
            )
        elif not method.client_streaming:
            async for _ in channel.unary_stream(path, request_serializer=ser, response_deserializer=de)(
                request, metadata=metadata, timeout=timeout
            ):
                pass
        else:

            async def one() -> AsyncIterator:
                yield request

            if method.server_streaming:
                async for _ in channel.stream_stream(path, request_serializer=ser, response_deserializer=de)(
                    one(), metadata=metadata, timeout=timeout
                ):
                    pass
            else:
                await channel.stream_unary(path, request_serializer=ser, response_deserializer=de)(
                    one(), metadata=metadata, timeout=timeout
                )
    except grpc.aio.AioRpcError as e:
        return e.code()
    return grpc.StatusCode.OK
