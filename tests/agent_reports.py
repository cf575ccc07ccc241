"""Speak the agent's side of the health reports to a real collector: an `Ingest` stream that carries only an
`AgentReport` (as an agent's first message does), held open or closed, and the collector's `/api/v1/agents`."""

from __future__ import annotations

import json
import threading
import time
import urllib.request

from runwire._transports.channel import open_channel
from runwire.v1 import ingest_pb2, ingest_pb2_grpc


class ReportStream:
    """An ingest stream to `target` that sends `report` and stays open until `close()`."""

    def __init__(self, target: str, report: ingest_pb2.AgentReport) -> None:
        self._stop = threading.Event()
        self._channel = open_channel(target)
        stub = ingest_pb2_grpc.IngestStub(self._channel)

        def requests():
            yield ingest_pb2.IngestRequest(report=report)
            self._stop.wait()

        self._call = stub.Ingest(requests())

    def close(self) -> None:
        self._stop.set()
        self._call.cancel()
        self._channel.close()


def fake_report(agent_id: str, **fields) -> ingest_pb2.AgentReport:
    base = {
        "hostname": "gpu-node-7",
        "pid": 4242,
        "sent_at": time.time(),
        "spool_max_bytes": 10 * 1024**3,
        "uptime_seconds": 3600.0,
        "version": "test",
        "collector_connected_since": time.time() - 120,
    }
    return ingest_pb2.AgentReport(agent_id=agent_id, **{**base, **fields})


def agents(http: str) -> dict[str, dict]:
    """The collector's `/api/v1/agents`, by agent id (`http`: HOST:PORT)."""
    with urllib.request.urlopen(f"http://{http}/api/v1/agents", timeout=10) as resp:
        return {a["agent_id"]: a for a in json.loads(resp.read())["agents"]}
