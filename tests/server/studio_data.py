"""A real collector + agent (compute target `local`) holding studio test data made through the SDK:
a submitted script run (scalars with steps, a once-logged number and string, a list, an xy table via
log_row, a string table, an image, an HTML file, stdout log lines, a snapshot, its status history)
and an interactive run with tags and a child run."""

from __future__ import annotations

import json
import os
import sys
import textwrap
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from tests.procs import Cluster, short_tmpdir

EXPERIMENT = "studio-api"
DISPLAY = 'tricky <b>&amp;</b> "name" ✓'
HTML = "<script>alert(1)</script>"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32

TRAIN = f"""
    from runwire import Run
    run = Run.get_context()
    for i in range(50):
        run.log("loss", 1.0 / (i + 1), step=i * 10)
    run.log("once", 3.5)
    run.log("category", "Red <i>&</i>")
    run.log_list("fib", [1, 1, 2, 3, 5, 8])
    for i in range(10):
        run.log_row("curve", x=i * 0.5, y=float(i * i))
    run.log_table("names", {{"name": ["a", "b"], "v": [1, 2]}})
    with open("pic.png", "wb") as f:
        f.write({PNG!r})
    run.log_image("pic", path="pic.png")
    with open("page.html", "w") as f:
        f.write({HTML!r})
    run.upload_file("outputs/page.html", "page.html")
    for i in range(5):
        print(f"line {{i}} <tag>", flush=True)
    run.flush()
"""


@dataclass
class StudioData:
    base: str
    script_run_id: str
    run_id: str
    child_id: str


def get(base: str, path: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(base + path, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def get_json(base: str, path: str, status: int = 200) -> dict:
    code, headers, body = get(base, path)
    assert code == status, (path, code, body[:500])
    assert headers["Content-Type"].startswith("application/json"), headers
    return json.loads(body)


def q(value: str) -> str:
    return quote(value, safe="")


@contextmanager
def studio_cluster(tmp: Path):
    """Start the cluster, create the data through the SDK, yield StudioData; stop at the end."""
    root = short_tmpdir()
    cluster = Cluster(root, agent_args=["--compute-target", "local", "--slots", "2"]).start()
    saved = dict(os.environ)
    try:
        os.environ.update(cluster.env())
        from runwire import Environment, Experiment, ScriptRunConfig, Workspace

        ws = Workspace.from_config()
        exp = Experiment(ws, EXPERIMENT)
        src = tmp / "src"
        src.mkdir(parents=True, exist_ok=True)
        (src / "train.py").write_text(textwrap.dedent(TRAIN))
        env = Environment("user-managed-env")
        env.python.user_managed_dependencies = True
        env.python.interpreter_path = sys.executable
        script = exp.submit(ScriptRunConfig(source_directory=str(src), script="train.py", environment=env))
        run = exp.start_logging(display_name=DISPLAY, snapshot_directory=None, outputs=False)
        run.tag("owner", "ana <x>")
        run.tag("flag")
        for i in range(20):
            run.log("acc", i / 20)
        child = run.child_run(name="child")
        child.log("acc", 0.5)
        child.complete()
        run.complete()
        details = script.wait_for_completion(wait_post_processing=True)
        assert details["status"] == "Completed", details
        yield StudioData(f"http://{cluster.server.info['http']}", script.id, run.id, child.id)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        cluster.stop()
