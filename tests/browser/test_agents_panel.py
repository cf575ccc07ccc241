"""The /compute page's Agents panel: the real agent (ok), an agent at its spool cap (backpressure) and one whose
stream closed (unreachable), with spool fill, times at the cap and corrupt records; it follows new reports."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.agent_reports import ReportStream, agents, fake_report
from tests.procs import wait_for

pytestmark = pytest.mark.timeout(240)

GIB = 1024**3


def test_agents_panel_shows_state_spool_and_report_age(studio, cluster):
    http = cluster.server.info["http"]
    real = cluster.agent.info["agent_id"]
    full = ReportStream(
        cluster.collector,
        fake_report(
            "agent-at-cap",
            spool_bytes=10 * GIB,
            spool_records=3000,
            spool_peak_bytes=10 * GIB,
            spool_full=True,
            spool_full_count=3,
            spool_full_seconds=41.0,
            spool_corrupt_records=2,
            oldest_unacked_age_seconds=95.0,
            clients=4,
        ),
    )
    gone = ReportStream(cluster.collector, fake_report("agent-gone", spool_bytes=GIB // 2, spool_peak_bytes=GIB))
    try:
        wait_for(lambda: {real, "agent-at-cap", "agent-gone"} <= set(agents(http)), 30, "three agents reported")
        gone.close()
        wait_for(lambda: agents(http)["agent-gone"]["state"] == "unreachable", 30, "the closed stream seen")
        page = studio.goto("/compute")
        rows = page.get_by_test_id("agent-row")
        row = page.locator(f"[data-testid=agent-row][data-agent-id='{real}']")
        expect(row).to_have_attribute("data-state", "ok")
        expect(row.get_by_test_id("agent-state")).to_have_text("ok")
        expect(row.get_by_test_id("agent-full")).to_have_text("never")
        at_cap = page.locator("[data-testid=agent-row][data-agent-id='agent-at-cap']")
        expect(at_cap.get_by_test_id("agent-state")).to_have_text("backpressure: spool full")
        expect(at_cap.get_by_test_id("agent-spool")).to_contain_text("10.0 GiB of 10.0 GiB (100%)")
        expect(at_cap.get_by_test_id("agent-full")).to_have_text("3× for 41.0 s")  # noqa: RUF001
        expect(at_cap.get_by_test_id("agent-corrupt")).to_have_text("2")
        gone_row = page.locator("[data-testid=agent-row][data-agent-id='agent-gone']")
        expect(gone_row.get_by_test_id("agent-state")).to_have_text("unreachable")
        expect(gone_row.get_by_test_id("agent-spool")).to_contain_text("512.0 MiB of 10.0 GiB (5%)")
        expect(rows).to_have_count(3)
        studio.screenshot("compute-agents")

        # the panel follows: the agent at its cap drains, reports again, and shows ok without a reload
        drained = ReportStream(
            cluster.collector,
            fake_report("agent-at-cap", spool_bytes=GIB, spool_peak_bytes=10 * GIB, spool_full_count=3,
                        spool_full_seconds=41.0),
        )  # fmt: skip
        try:
            expect(at_cap).to_have_attribute("data-state", "ok", timeout=20_000)
            expect(at_cap.get_by_test_id("agent-spool")).to_contain_text("1.0 GiB of 10.0 GiB (10%)")
        finally:
            drained.close()
    finally:
        full.close()
        gone.close()


HOSTILE = '<img src=x onerror="alert(1)">'


def test_agents_panel_renders_hostile_agent_names_inert(studio, cluster):
    """An agent's id and host name come from the agent: shown as text, never run (the studio fixture
    fails the test on any dialog, page error or console error)."""
    http = cluster.server.info["http"]
    hostile = ReportStream(cluster.collector, fake_report(f"agent-{HOSTILE}", hostname=f"host-{HOSTILE}"))
    try:
        wait_for(lambda: f"agent-{HOSTILE}" in agents(http), 30, "the hostile agent reported")
        page = studio.goto("/compute")
        expect(page.get_by_text(f"agent-{HOSTILE}")).to_have_count(1)
        expect(page.get_by_text(f"host-{HOSTILE}")).to_have_count(1)
        assert page.locator("img[src=x]").count() == 0
    finally:
        hostile.close()
