"""`runwire up`, `runwire status` and `--help`, used the way the README says."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

from tests.procs import short_tmpdir, wait_for


def _cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "runwire.cli.main", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_help_documents_every_command():
    out = _cli("--help").stdout
    for command in ("up", "server", "agent", "status", "sync"):
        assert command in out
    up_help = _cli("up", "--help").stdout
    for flag in ("--data-dir", "--grpc-listen", "--http-listen", "--socket", "--batch-delay-ms"):
        assert flag in up_help
    assert "--collector" in _cli("agent", "--help").stdout
    assert "--data-dir" in _cli("server", "--help").stdout


def test_up_then_log_from_a_script_then_status_then_stop():
    data = short_tmpdir()
    env = {"RUNWIRE_HOME": str(data)}
    up = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runwire.cli.main",
            "up",
            "--grpc-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        config_path = data / "config.json"
        wait_for(lambda: config_path.is_file() or up.poll() is not None, 60, "runwire up to write its config")
        assert up.poll() is None, up.stderr.read()
        config = json.loads(config_path.read_text())
        assert config["collector"].startswith("127.0.0.1:") and config["agent_socket"].endswith("agent.sock")
        assert os.stat(config["agent_socket"]).st_mode & 0o777 == 0o600
        script = textwrap.dedent(
            """
            from runwire import Workspace, Experiment
            ws = Workspace.from_config()
            run = Experiment(ws, "from-up").start_logging()
            for i in range(100):
                run.log("loss", 1 / (i + 1))
            run.complete()
            print(len(run.get_metrics()["loss"]))
            """
        )
        result = subprocess.run(
            [sys.executable, "-c", script], env={**os.environ, **env}, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "100"
        status = _cli("status", env=env)
        assert status.returncode == 0, status.stdout + status.stderr
        assert "collector  up" in status.stdout and "agent      up" in status.stdout
        assert "(socket 0600)" in status.stdout
        assert (
            "of 10.0 GiB (0%), peak " in status.stdout
            and ", never full — policy: SDKs keep their points" in status.stdout
        )
        as_json = json.loads(_cli("status", "--json", env=env).stdout)
        assert as_json["collector"]["points_committed"] >= 100
        agent = as_json["agent"]
        assert agent["spool_max_bytes"] == 10 * 1024**3 and agent["spool_full"] is False
        assert agent["spool_full_count"] == 0 and agent["spool_corrupt_records"] == 0
        assert 0 < agent["spool_peak_bytes"] < 1024**2 and agent["socket_mode"] == "0600"
        again = _cli("up", "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", env=env)
        assert again.returncode != 0 and "already" in again.stderr
    finally:
        up.send_signal(signal.SIGTERM)
        out, err = up.communicate(timeout=60)
    assert up.returncode == 0, err
    assert "runwire is up" in out and "config" in out
    down = _cli("status", env=env)
    assert down.returncode == 1 and "DOWN" in down.stdout


def test_no_config_anywhere_is_a_message_not_a_traceback(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNWIRE_")}
    env["RUNWIRE_HOME"] = str(tmp_path / "home")
    for command in (["status"], ["runs", "list"]):
        out = subprocess.run(
            [sys.executable, "-m", "runwire.cli.main", *command],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert out.returncode == 2, out.stderr
        assert "Traceback" not in out.stderr
        assert f"runwire {command[0]}: We could not find config.json" in out.stderr
