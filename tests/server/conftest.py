"""Fixtures for the collector tests: a bare store, and a real Collector on ephemeral ports."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from runwire import limits
from runwire.server.app import Collector, CollectorConfig
from runwire.server.store.sqlite import SqliteStore
from runwire.v1 import ingest_pb2_grpc, runs_pb2_grpc


@pytest.fixture
async def store(tmp_path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "store.sqlite3")
    await s.open()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
async def collector(tmp_path) -> AsyncIterator[Collector]:
    config = CollectorConfig(data_dir=tmp_path / "collector", grpc_listen="127.0.0.1:0", http_listen="127.0.0.1:0")
    c = Collector(config)
    await c.start()
    try:
        yield c
    finally:
        await c.stop(grace=1)


@pytest.fixture
async def channel(collector: Collector) -> AsyncIterator[grpc.aio.Channel]:
    options = [
        ("grpc.max_receive_message_length", limits.MAX_GRPC_MESSAGE_BYTES),
        ("grpc.max_send_message_length", limits.MAX_GRPC_MESSAGE_BYTES),
    ]
    ch = grpc.aio.insecure_channel(collector.grpc_address, options=options)
    try:
        yield ch
    finally:
        await ch.close()


@pytest.fixture
def runs(channel: grpc.aio.Channel) -> runs_pb2_grpc.RunsStub:
    return runs_pb2_grpc.RunsStub(channel)


@pytest.fixture
def ingest(channel: grpc.aio.Channel) -> ingest_pb2_grpc.IngestStub:
    return ingest_pb2_grpc.IngestStub(channel)
