"""The last health report of every agent (`AgentReport` on the ingest stream), for the studio.

Kept in the collector's memory, not in the store: a report is a few hundred bytes that every agent
sends again every few seconds, so after a collector restart the table fills back within one report
interval (each agent reports as soon as its stream is up). `GET /api/v1/agents` shows it with a
state per agent:

- `ok`: reporting, the spool below its cap;
- `backpressure`: the spool is at its cap (`--spool-max-bytes`); the agent reads no SDK socket and
  the SDKs keep their points in their own spool until there is room;
- `unreachable`: the agent's ingest stream is closed, or no report came for `AGENT_REPORT_STALE_S`
  (the agent stopped, or cannot reach this collector).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from google.protobuf.json_format import MessageToDict

from runwire.v1 import ingest_pb2

AGENT_REPORT_STALE_S = 30.0
"""Seconds without a report after which the studio shows an agent as `unreachable`."""
AGENTS_KEPT = 10_000
"""Agents whose last report the collector keeps at most; beyond it the one heard from longest ago is forgotten."""

STATES = ("ok", "backpressure", "unreachable")


@dataclass
class _Entry:
    report: ingest_pb2.AgentReport
    received_at: float  # unix seconds, the collector's clock
    streams: int = 0  # ingest streams of this agent open now
    peer: str = ""


class AgentReports:
    def __init__(self, stale_s: float = AGENT_REPORT_STALE_S) -> None:
        self.stale_s = stale_s
        self._agents: dict[str, _Entry] = {}

    def report(self, report: ingest_pb2.AgentReport, peer: str = "") -> None:
        if not report.agent_id:
            return
        entry = self._agents.pop(report.agent_id, None)  # re-inserted last: the dict stays in report order
        if entry is None:
            entry = _Entry(report, time.time(), peer=peer)
            while len(self._agents) >= AGENTS_KEPT:
                del self._agents[next(iter(self._agents))]
        entry.report = report
        entry.received_at = time.time()
        entry.peer = peer or entry.peer
        self._agents[report.agent_id] = entry

    def stream_opened(self, agent_id: str) -> None:
        entry = self._agents.get(agent_id)
        if entry is not None:
            entry.streams += 1

    def stream_closed(self, agent_id: str) -> None:
        entry = self._agents.get(agent_id)
        if entry is not None:
            entry.streams = max(0, entry.streams - 1)

    def __len__(self) -> int:
        return len(self._agents)

    def as_json(self) -> list[dict]:
        now = time.time()
        out = []
        for agent_id, e in sorted(self._agents.items()):
            r = e.report
            age = max(0.0, now - e.received_at)
            connected = e.streams > 0 and age <= self.stale_s
            state = "unreachable" if not connected else "backpressure" if r.spool_full else "ok"
            fields = MessageToDict(r, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
            for name in ("spool_bytes", "spool_records", "spool_max_bytes", "spool_peak_bytes", "spool_full_count",
                         "spool_corrupt_records"):  # fmt: skip
                fields[name] = int(fields[name])  # uint64 is a string in proto JSON
            fields.update(
                agent_id=agent_id,
                state=state,
                connected=connected,
                received_at=e.received_at,
                report_age_seconds=age,
                spool_fill=(r.spool_bytes / r.spool_max_bytes) if r.spool_max_bytes else 0.0,
                collector_connected_since=r.collector_connected_since or None,
            )
            out.append(fields)
        return out
