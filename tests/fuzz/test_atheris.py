"""CI runs the atheris target briefly; a crash fails the test with the fuzzer's report."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

TARGET = Path(__file__).with_name("atheris_frames.py")
CI_RUNS = 20_000


def test_frame_decoder_survives_coverage_guided_fuzzing(tmp_path):
    pytest.importorskip("atheris", reason="atheris has no wheel for this platform")
    result = subprocess.run(
        [sys.executable, str(TARGET), f"-atheris_runs={CI_RUNS}", "-max_len=4096", "-seed=1", str(tmp_path / "corpus")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Done" in result.stderr
    coverage = [int(m) for m in re.findall(r"cov: (\d+)", result.stderr)]
    assert coverage and max(coverage) > 50, result.stderr[-2000:]  # instrumentation reached our decoders
