"""Helpers for the agent tests (fixtures re-exported by conftest.py): short temp folders, test
batches, an SDK-side socket client, and a minimal in-test stand-in for the collector's `Ingest`
service (decompress, record, ack)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import pytest

from runwire import codec
from runwire.frames import HEADER, pack, parse_agent_frame
from runwire.limits import PROTOCOL_VERSION
from runwire.v1 import frames_pb2, ingest_pb2, ingest_pb2_grpc, metrics_pb2


@pytest.fixture
def tmp() -> Path:
    """A short folder under /tmp (Unix socket paths must stay under 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="rwa-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll `predicate` on the event loop until it holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.005)


def make_points(run_id: str = "run-1", name: str = "loss", n: int = 100, start: int = 0) -> metrics_pb2.MetricPoints:
    steps = np.arange(start, start + n, dtype=np.int64)
    ts = 1_700_000_000_000_000 + steps * 1000
    values = (np.sin(steps / 10.0)).tolist()
    return codec.encode_points(run_id, name, codec.SCALAR, ts, steps, [codec.encode_column("", values)])


def make_batch(producer: str, seq: int, n: int = 100, metrics: int = 1, run_id: str = "run-1") -> metrics_pb2.Batch:
    batch = metrics_pb2.Batch(producer_id=producer, seq=seq)
    for m in range(metrics):
        batch.metrics.append(make_points(run_id, f"m{m}", n, start=seq * n))
    return batch


def batch_frame(batch: metrics_pb2.Batch) -> bytes:
    return pack(frames_pb2.ClientFrame(batch=batch))


class Client:
    """The SDK's side of the agent socket, for tests."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, producer: str) -> None:
        self.reader = reader
        self.writer = writer
        self.producer = producer
        self.hello_ack: frames_pb2.HelloAck | None = None

    @classmethod
    async def connect(cls, path, producer: str = "prod-1", hello: bool = True) -> Client:
        reader, writer = await asyncio.open_unix_connection(str(path))
        client = cls(reader, writer, producer)
        if hello:
            await client.send(
                frames_pb2.ClientFrame(
                    hello=frames_pb2.Hello(
                        protocol_version=PROTOCOL_VERSION, producer_id=producer, pid=1, client="test"
                    )
                )
            )
            frame = await client.recv()
            assert frame.WhichOneof("body") == "hello_ack", frame
            client.hello_ack = frame.hello_ack
        return client

    async def send(self, frame: frames_pb2.ClientFrame) -> None:
        self.writer.write(pack(frame))
        await self.writer.drain()

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send_batch(self, seq: int, n: int = 100, metrics: int = 1) -> metrics_pb2.Batch:
        batch = make_batch(self.producer, seq, n, metrics)
        await self.send(frames_pb2.ClientFrame(batch=batch))
        return batch

    async def recv(self, timeout: float = 10.0) -> frames_pb2.AgentFrame | None:
        """The next frame, or None at end of stream."""
        try:
            header = await asyncio.wait_for(self.reader.readexactly(HEADER.size), timeout)
        except asyncio.IncompleteReadError:
            return None
        (length,) = HEADER.unpack(header)
        body = await asyncio.wait_for(self.reader.readexactly(length), timeout)
        return parse_agent_frame(body)

    async def recv_until(self, kind: str, timeout: float = 10.0) -> tuple[frames_pb2.AgentFrame, list]:
        """Read frames until one of `kind`; returns it and the frames before it."""
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            frame = await self.recv(max(0.01, deadline - time.monotonic()))
            if frame is None:
                raise AssertionError(f"connection closed while waiting for {kind}; got {seen}")
            if frame.WhichOneof("body") == kind:
                return frame, seen
            seen.append(frame)

    async def wait_ack(self, seq: int, timeout: float = 10.0) -> list[int]:
        """Read batch acks until one covers `seq`; returns the acked seqs seen."""
        acks = []
        deadline = time.monotonic() + timeout
        while not acks or acks[-1] < seq:
            frame, _ = await self.recv_until("batch_ack", max(0.01, deadline - time.monotonic()))
            acks.append(frame.batch_ack.seq)
        return acks

    async def status(self) -> frames_pb2.AgentStatus:
        await self.send(frames_pb2.ClientFrame(status=frames_pb2.StatusRequest()))
        frame, _ = await self.recv_until("status")
        return frame.status

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


# --- a stand-in for the collector's ingest service -----------------------------------------------


class FakeIngest(ingest_pb2_grpc.IngestServicer):
    """Records every request, decompressed, and acks it COMMITTED (or REJECTED for `reject`)."""

    def __init__(self, token: str | None = None) -> None:
        self.token = token
        self.requests: list[ingest_pb2.IngestRequest] = []  # in arrival order, resends included
        self.committed: dict[tuple[str, int], metrics_pb2.Batch] = {}  # (producer, seq) -> batch
        self.acked: list[int] = []  # record numbers acked, in order
        self.reject: set[int] = set()
        self.gate = asyncio.Event()  # cleared: hold acks
        self.gate.set()
        self.die_after: int | None = None  # abort the stream after this many requests in total
        self.auth_failures = 0
        self.streams = 0
        self.reports: list[ingest_pb2.AgentReport] = []  # health reports (not records), in arrival order

    async def Ingest(self, request_iterator, context):
        md = dict(context.invocation_metadata())
        if self.token is not None and md.get("authorization") != f"Bearer {self.token}":
            self.auth_failures += 1
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "bad token")
        self.streams += 1
        async for req in request_iterator:
            if req.HasField("report"):
                self.reports.append(req.report)
                continue
            self.requests.append(req)
            if self.die_after is not None and len(self.requests) >= self.die_after:
                self.die_after = None
                await context.abort(grpc.StatusCode.UNAVAILABLE, "collector going away")
            await self.gate.wait()
            assert req.codec == ingest_pb2.CODEC_ZSTD
            bundle = metrics_pb2.BatchBundle.FromString(codec.decompress(req.payload, 1 << 30))
            assert len(bundle.batches) == req.batch_count
            assert sum(mp.count for b in bundle.batches for mp in b.metrics) == req.point_count
            if req.seq in self.reject:
                yield ingest_pb2.IngestAck(seq=req.seq, status=ingest_pb2.ACK_STATUS_REJECTED, reason="test says no")
                continue
            dups = 0
            for b in bundle.batches:
                key = (b.producer_id, b.seq)
                if key in self.committed:
                    dups += 1
                self.committed[key] = b
            self.acked.append(req.seq)
            yield ingest_pb2.IngestAck(seq=req.seq, status=ingest_pb2.ACK_STATUS_COMMITTED, duplicate_batches=dups)


class FakeCollector:
    def __init__(self, servicer: FakeIngest | None = None) -> None:
        self.servicer = servicer or FakeIngest()
        self.server: grpc.aio.Server | None = None
        self.port = 0

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> FakeCollector:
        self.server = grpc.aio.server()
        ingest_pb2_grpc.add_IngestServicer_to_server(self.servicer, self.server)
        self.port = self.server.add_insecure_port(f"127.0.0.1:{self.port}")
        assert self.port
        await self.server.start()
        return self

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(grace=None)
            self.server = None


@pytest.fixture
async def collector():
    c = await FakeCollector().start()
    yield c
    await c.stop()
