"""The collector's table of agent health reports: state per agent, stream bookkeeping, JSON shape."""

from __future__ import annotations

from runwire.server.agents import AgentReports
from tests.agent_reports import fake_report


def test_states_follow_streams_reports_and_staleness():
    table = AgentReports(stale_s=3600)
    table.report(fake_report("a", spool_bytes=5, spool_max_bytes=10))
    table.stream_opened("a")
    (row,) = table.as_json()
    assert row["state"] == "ok" and row["connected"] and row["spool_fill"] == 0.5
    assert isinstance(row["spool_bytes"], int) and row["spool_bytes"] == 5  # not proto JSON's string

    table.report(fake_report("a", spool_bytes=10, spool_max_bytes=10, spool_full=True, spool_full_count=1))
    assert table.as_json()[0]["state"] == "backpressure"

    table.stream_closed("a")
    assert table.as_json()[0]["state"] == "unreachable" and not table.as_json()[0]["connected"]

    table.stream_opened("a")
    table.stale_s = -1.0  # no report within the stale time: unreachable although the stream is open
    assert table.as_json()[0]["state"] == "unreachable"


def test_a_report_without_an_agent_id_is_ignored():
    table = AgentReports()
    table.report(fake_report(""))
    assert table.as_json() == [] and len(table) == 0
