"""The generated protobuf/gRPC code committed beside the .proto files is exactly what
`python proto/generate.py` produces from them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GENERATED = ROOT / "proto" / "runwire" / "v1"


def test_committed_generated_code_matches_regeneration(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "proto" / "generate.py"), str(tmp_path)], check=True)
    fresh = sorted(p.relative_to(tmp_path / "runwire" / "v1") for p in (tmp_path / "runwire" / "v1").iterdir())
    committed = sorted(
        p.relative_to(GENERATED)
        for p in GENERATED.iterdir()
        if p.name.endswith(("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"))
    )
    assert fresh == committed, "generated files differ from the committed set; run `python proto/generate.py`"
    for rel in fresh:
        assert (tmp_path / "runwire" / "v1" / rel).read_bytes() == (GENERATED / rel).read_bytes(), (
            f"{rel} is stale; run `python proto/generate.py` and commit the result"
        )


def test_wheel_installs_only_the_runwire_package(tmp_path):
    """DESIGN.md: no bare top-level `agent` or `server` module may end up in site-packages."""
    import zipfile

    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("runwire-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"runwire", next(t for t in tops if t.endswith(".dist-info"))}
    for module in ("runwire/agent/app.py", "runwire/server/app.py", "runwire/v1/runs_pb2.py", "runwire/run.py"):
        assert module in names
