"""CI's short, fixed-seed run of the chaos harness (the long run is `python -m tests.chaos.harness`)."""

from __future__ import annotations

import pytest

from tests.chaos.harness import run_trial

CI_SEEDS = (11, 12, 13)


@pytest.mark.parametrize("seed", CI_SEEDS)
def test_chaos_trial_exactly_once(seed):
    result = run_trial(seed, writers=2, points=10_000, flush_every=1_000)
    assert not result.failures, result
    assert result.lost == 0 and result.duplicated == 0
    assert result.points_checked > 0
