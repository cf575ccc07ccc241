"""The collector's `Compute` service (script runs, jobs, compute targets) and `Runs.GetLog`, over
the query channel of `CollectorClient` (one channel per process; a forked child opens its own)."""

from __future__ import annotations

import os
from collections.abc import Iterator

from runwire.v1 import compute_pb2, compute_pb2_grpc, runs_pb2

from .collector import CollectorClient


class ComputeClient:
    """Unary calls to `runwire.v1.Compute`; errors are translated like every collector call."""

    def __init__(self, collector: CollectorClient) -> None:
        self._collector = collector
        self._stub: compute_pb2_grpc.ComputeStub | None = None
        self._channel_id = -1
        self._pid = -1

    @property
    def stub(self) -> compute_pb2_grpc.ComputeStub:
        channel = self._collector.channel  # this process's channel (recreated after fork)
        if self._stub is None or self._pid != os.getpid() or self._channel_id != id(channel):
            self._stub = compute_pb2_grpc.ComputeStub(channel)
            self._pid = os.getpid()
            self._channel_id = id(channel)
        return self._stub

    def submit_run(self, request: compute_pb2.SubmitRunRequest) -> runs_pb2.RunInfo:
        return self._collector.invoke(self.stub, "SubmitRun", request)

    def get_job(self, run_id: str) -> compute_pb2.JobInfo:
        return self._collector.invoke(self.stub, "GetJob", compute_pb2.GetJobRequest(run_id=run_id))

    def cancel_run(self, run_id: str) -> runs_pb2.RunInfo:
        return self._collector.invoke(self.stub, "CancelRun", compute_pb2.CancelRunRequest(run_id=run_id))

    def list_compute_targets(self, name: str = "") -> list[compute_pb2.ComputeTargetInfo]:
        request = compute_pb2.ListComputeTargetsRequest(name=name)
        return list(self._collector.invoke(self.stub, "ListComputeTargets", request).targets)

    def list_active_runs(self, target: str, statuses: list[str] | None = None) -> list[compute_pb2.ActiveRun]:
        request = compute_pb2.ListActiveRunsRequest(target=target, statuses=statuses or [])
        return list(self._collector.invoke(self.stub, "ListActiveRuns", request).runs)

    def get_log(
        self, run_id: str, path: str = "", from_line: int = 0, max_lines: int = 0
    ) -> Iterator[runs_pb2.LogChunk]:
        request = runs_pb2.GetLogRequest(run_id=run_id, path=path, from_line=from_line, max_lines=max_lines)
        return self._collector.stream("GetLog", request)
