"""The collector goes away (kill -9) while a training process logs continuously, long enough for the agent's
small spool cap to be reached (the SDK then keeps its points in its own spool), and comes back: every point
arrives exactly once, in order; the agent's status and its report to the collector tell the story.
`run.log()` latency per phase is printed (a figure, never an assertion); bench/outage.py is the long version."""

from __future__ import annotations

import shutil

import pytest

from tests.agent_reports import agents
from tests.e2e.outage_scenario import run_outage
from tests.procs import wait_for

pytestmark = pytest.mark.timeout(300)

CAP = 256 * 1024


def test_collector_outage_with_the_spool_at_its_cap(request):
    result, cluster = run_outage(before_s=2.0, outage_s=5.0, after_s=2.0, spool_max_bytes="256K")
    try:
        print("\n" + "\n".join(result.lines()))
        # exactly once, in order
        assert result.lost == 0 and result.duplicated == 0 and not result.out_of_order, result.lines()
        assert result.stored == result.points > 0
        assert (result.values == range(result.points)).all()  # type: ignore[attr-defined]
        # the cap was reached, held (one bundle at most beyond it), and the SDK kept points on its side
        assert result.spool_max_bytes == CAP
        assert result.spool_full_count >= 1 and result.spool_full_seconds > 0
        assert CAP <= result.spool_peak_bytes < CAP + 1024 * 1024
        assert result.sdk_points_spooled > 0 and result.sdk_max_spool_file_bytes > 0
        for phase, (_, _, calls) in result.latency_ns.items():
            assert calls > 0, f"no run.log() calls measured {phase} the outage"
        # the collector (restarted) shows the agent's report: ok again, and what happened
        http = cluster.server.info["http"]
        agent_id = cluster.agent.info["agent_id"]

        def reported():
            report = agents(http).get(agent_id)
            return report if report and report["state"] == "ok" and report["spool_full_count"] >= 1 else None

        report = wait_for(reported, 30, "the agent's report after the outage")
        assert report["spool_max_bytes"] == CAP and report["spool_peak_bytes"] >= CAP
        assert report["last_outage_seconds"] >= 1.0 and report["connected"] and report["spool_corrupt_records"] == 0
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        cluster.stop()
        shutil.rmtree(cluster.root, ignore_errors=True)
