"""In-test stand-ins for the collector's `Compute.Work` stream and `Artifacts` uploads, served
beside `FakeIngest`, and readers of what an agent reported (status changes, log lines)."""

from __future__ import annotations

import asyncio
import hashlib

import grpc

from runwire.v1 import artifacts_pb2, artifacts_pb2_grpc, compute_pb2, compute_pb2_grpc, metrics_pb2
from tests.agent.agent_testlib import FakeCollector, FakeIngest


class FakeCompute(compute_pb2_grpc.ComputeServicer):
    """Records what nodes send on `Work`; `send(...)` puts a WorkMessage on the open stream."""

    def __init__(self) -> None:
        self.messages: list[compute_pb2.NodeMessage] = []
        self.streams = 0
        self._outbox: asyncio.Queue[compute_pb2.WorkMessage] = asyncio.Queue()

    def send(self, msg: compute_pb2.WorkMessage) -> None:
        self._outbox.put_nowait(msg)

    def lease(self, lease: compute_pb2.Lease) -> None:
        self.send(compute_pb2.WorkMessage(lease=lease))

    def cancel(self, lease_id: str, run_id: str, canceled: bool = True) -> None:
        cancel = compute_pb2.CancelLease(lease_id=lease_id, run_id=run_id, canceled=canceled, reason="test")
        self.send(compute_pb2.WorkMessage(cancel=cancel))

    @property
    def hellos(self) -> list[compute_pb2.NodeHello]:
        return [m.hello for m in self.messages if m.WhichOneof("body") == "hello"]

    def last_leases(self) -> list[str] | None:
        """The leases the node listed last (hello or heartbeat)."""
        for m in reversed(self.messages):
            kind = m.WhichOneof("body")
            if kind == "hello":
                return list(m.hello.running_leases)
            if kind == "heartbeat":
                return list(m.heartbeat.running_leases)
        return None

    async def Work(self, request_iterator, context):
        self.streams += 1

        async def read() -> None:
            async for msg in request_iterator:
                self.messages.append(msg)

        reader = asyncio.create_task(read())
        try:
            while True:
                yield await self._outbox.get()
        finally:
            reader.cancel()


class FakeArtifacts(artifacts_pb2_grpc.ArtifactsServicer):
    """Keeps uploaded files in memory: (run_id, name) -> bytes (checked against size and sha256)."""

    def __init__(self) -> None:
        self.files: dict[tuple[str, str], bytes] = {}

    def _commit(self, header: artifacts_pb2.UploadHeader, data: bytes) -> int:
        if len(data) != header.size or hashlib.sha256(data).hexdigest() != header.sha256:
            return grpc.StatusCode.DATA_LOSS.value[0]
        key = (header.run_id, header.name)
        if key in self.files and self.files[key] != data:
            return grpc.StatusCode.ALREADY_EXISTS.value[0]
        self.files[key] = data
        return 0

    async def Upload(self, request_iterator, context):
        header = None
        data = bytearray()
        async for req in request_iterator:
            if req.HasField("header"):
                header = req.header
            else:
                data += req.data
        assert header is not None and header.offset == 0
        code = self._commit(header, bytes(data))
        if code:
            await context.abort(grpc.StatusCode(_code(code)), "refused")
        return artifacts_pb2.ArtifactInfo(run_id=header.run_id, name=header.name, size=header.size)

    async def UploadBatch(self, request_iterator, context):
        results = []
        header = None
        async for req in request_iterator:
            if req.HasField("header"):
                header = req.header
            else:
                results.append(
                    artifacts_pb2.UploadResult(upload_id=header.upload_id, code=self._commit(header, req.data))
                )
        return artifacts_pb2.UploadBatchResponse(results=results)

    async def UploadStatus(self, request, context):
        return artifacts_pb2.UploadStatusResponse(committed=(request.run_id, request.name) in self.files)


def _code(value: int) -> tuple:
    return next(c.value for c in grpc.StatusCode if c.value[0] == value)


class JobsCollector(FakeCollector):
    """FakeCollector (ingest) plus the Compute and Artifacts stand-ins."""

    def __init__(self) -> None:
        super().__init__(FakeIngest())
        self.compute = FakeCompute()
        self.artifacts = FakeArtifacts()

    async def start(self) -> JobsCollector:
        self.server = grpc.aio.server()
        from runwire.v1 import ingest_pb2_grpc

        ingest_pb2_grpc.add_IngestServicer_to_server(self.servicer, self.server)
        compute_pb2_grpc.add_ComputeServicer_to_server(self.compute, self.server)
        artifacts_pb2_grpc.add_ArtifactsServicer_to_server(self.artifacts, self.server)
        self.port = self.server.add_insecure_port(f"127.0.0.1:{self.port}")
        await self.server.start()
        return self

    # --- what agents reported ------------------------------------------------------------------------

    def batches(self) -> list[metrics_pb2.Batch]:
        """Committed batches in (producer, seq) order."""
        return [self.servicer.committed[k] for k in sorted(self.servicer.committed)]

    def statuses(self, run_id: str) -> list[metrics_pb2.StatusChange]:
        return [s for b in self.batches() for s in b.statuses if s.run_id == run_id]

    def status_names(self, run_id: str) -> list[str]:
        return [s.status for s in self.statuses(run_id)]

    def final(self, run_id: str) -> metrics_pb2.StatusChange | None:
        for s in reversed(self.statuses(run_id)):
            if s.status in ("Completed", "Failed", "Canceled"):
                return s
        return None

    def log_lines(self, run_id: str) -> list[str]:
        """The run's log, assembled by line number (checks that no line is missing or doubled)."""
        lines: dict[int, str] = {}
        for b in self.batches():
            for ll in b.logs:
                if ll.run_id == run_id:
                    for i, line in enumerate(ll.lines):
                        assert ll.first_line + i not in lines, f"line {ll.first_line + i} sent twice"
                        lines[ll.first_line + i] = line
        assert sorted(lines) == list(range(len(lines))), "a log line is missing"
        return [lines[i] for i in range(len(lines))]
