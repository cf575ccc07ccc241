"""Fixtures for the collector tests: a bare store, and a real Collector on ephemeral ports."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest

from runwire import limits
from runwire._transports.channel import open_aio_channel
from runwire.server.app import Collector, CollectorConfig
from runwire.server.store.base import Store
from runwire.server.store.factory import make_store
from runwire.server.store.postgres import PostgresStore
from runwire.v1 import ingest_pb2_grpc, runs_pb2_grpc
from tests import pgtest

STORES = ("sqlite", "postgresql")
"""The store backends every store test runs against (`store`, `store_url`)."""


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """One PostgreSQL database for this test session, migrated, dropped at the end."""
    reason = pgtest.unavailable()
    if reason is not None:
        pytest.skip(reason)
    url = pgtest.create_database()
    try:

        async def migrate() -> None:
            s = PostgresStore(url)
            await s.open()
            await s.close()

        asyncio.run(migrate())
        yield url
    finally:
        pgtest.drop_database(url)


@pytest.fixture(params=STORES)
def store_url(request, tmp_path) -> str:
    """The URL of an empty store of each backend: a new SQLite file, or the session's PostgreSQL
    database emptied."""
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'store.sqlite3'}"
    url = request.getfixturevalue("pg_database")
    pgtest.truncate(url)
    return url


@pytest.fixture
def fresh_pg_database() -> Iterator[str]:
    """A PostgreSQL database of its own (no schema yet), dropped afterwards."""
    with pgtest.throwaway_database() as url:
        yield url


@pytest.fixture
async def store(store_url, tmp_path) -> AsyncIterator[Store]:
    s = make_store(store_url, tmp_path)
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
    ch = open_aio_channel(collector.grpc_address, None, options)
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
