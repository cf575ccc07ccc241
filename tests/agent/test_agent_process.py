"""`python -m runwire.agent` as a real process: ready file, socket mode, protocol, SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import stat
import sys

import pytest

from runwire.agent.main import add_arguments, config_from_args
from runwire.limits import AGENT_BATCH_MAX_DELAY_S
from runwire.v1 import frames_pb2
from tests.agent.agent_testlib import Client, FakeCollector, wait_until


async def test_agent_process_end_to_end(tmp, collector):
    ready = tmp / "ready.json"
    sock = tmp / "a.sock"
    env = {**os.environ, "RUNWIRE_HOME": str(tmp / "home")}
    env.pop("RUNWIRE_TOKEN", None)
    with open(tmp / "agent.log", "wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "runwire.agent",
            "--socket",
            str(sock),
            "--collector",
            collector.target,
            "--spool-dir",
            str(tmp / "spool"),
            "--ready-file",
            str(ready),
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            env=env,
        )
    try:
        await wait_until(ready.exists, timeout=30, what="the ready file")
        info = json.loads(ready.read_text())
        assert info["socket"] == str(sock) and info["pid"] == proc.pid
        assert info["spool_dir"] == str(tmp / "spool") and info["collector"] == collector.target
        assert info["agent_id"] == (tmp / "spool" / "agent_id").read_text().strip()  # a stable id, persisted
        line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
        assert line.startswith(f"runwire agent listening socket={sock} collector={collector.target} spool=")
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600

        client = await Client.connect(sock, "proc-producer")
        assert client.hello_ack.agent_id == info["agent_id"]
        await client.send_batch(1)
        await client.send_batch(2)
        await client.wait_ack(2)
        await client.send(frames_pb2.ClientFrame(flush=frames_pb2.FlushRequest(token=11)))
        frame, _ = await client.recv_until("flush_ack", timeout=20)
        assert frame.flush_ack.token == 11
        assert {("proc-producer", 1), ("proc-producer", 2)} <= set(collector.servicer.committed)
        st = await client.status()
        assert st.pid == proc.pid and st.collector_connected and st.batches_received == 2
        await client.close()

        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        assert not sock.exists()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    log_text = (tmp / "agent.log").read_text()
    assert "agent stopped" in log_text, log_text


async def start_process(tmp, collector_target: str, name: str) -> asyncio.subprocess.Process:
    ready = tmp / f"{name}.json"
    with open(tmp / f"{name}.log", "wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "runwire.agent", "--socket", str(tmp / "a.sock"), "--collector", collector_target,
            "--spool-dir", str(tmp / "spool"), "--ready-file", str(ready), "--log-level", "debug",
            stdout=asyncio.subprocess.DEVNULL, stderr=log,
        )  # fmt: skip
    await wait_until(ready.exists, timeout=30, what=f"{name} ready")
    return proc


async def test_kill_9_after_ack_loses_nothing(tmp):
    collector = await FakeCollector().start()
    await collector.stop()  # nothing listens: the agent can only spool
    first = await start_process(tmp, collector.target, "first")
    try:
        client = await Client.connect(tmp / "a.sock", "p-kill")
        for seq in range(1, 6):
            await client.send_batch(seq)
        await client.wait_ack(5)  # acked = written to the spool
        first.kill()  # SIGKILL: no graceful stop, no fsync
        assert await asyncio.wait_for(first.wait(), 10) == -signal.SIGKILL
        await client.close()
    finally:
        if first.returncode is None:
            first.kill()
            await first.wait()
    await collector.start()
    second = await start_process(tmp, collector.target, "second")  # the stale socket file is replaced
    try:
        await wait_until(
            lambda: {("p-kill", s) for s in range(1, 6)} <= set(collector.servicer.committed),
            timeout=20,
            what="the spooled batches to reach the collector after kill -9",
        )
        second.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(second.wait(), 30) == 0
    finally:
        if second.returncode is None:
            second.kill()
            await second.wait()
        await collector.stop()


def test_flags_and_defaults(monkeypatch, tmp):
    monkeypatch.setenv("RUNWIRE_HOME", str(tmp))
    monkeypatch.setenv("RUNWIRE_TOKEN", "from-env")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    cfg = config_from_args(parser.parse_args([]))
    assert cfg.socket_path == tmp / "agent.sock" and cfg.spool_dir == tmp / "spool"
    assert cfg.collector == "127.0.0.1:7420" and cfg.batch_delay_s == pytest.approx(AGENT_BATCH_MAX_DELAY_S)
    assert cfg.fsync == "interval" and cfg.spool_max_bytes == 10 * 1024**3 and cfg.token == "from-env"
    assert cfg.http_listen is None
    (tmp / "token").write_text("t\n")
    args = parser.parse_args(
        [
            "--spool-max-bytes",
            "500M",
            "--batch-delay-ms",
            "5",
            "--fsync",
            "always",
            "--token-file",
            str(tmp / "token"),
            "--http-listen",
            ":9",
        ]
    )
    cfg = config_from_args(args)
    assert cfg.spool_max_bytes == 500 * 1024**2 and cfg.batch_delay_s == pytest.approx(0.005)
    assert cfg.fsync == "always" and cfg.token == "t" and cfg.http_listen == ("127.0.0.1", 9)
    with pytest.raises(SystemExit):
        parser.parse_args(["--collector", "nohostport"])


def test_second_agent_on_the_same_socket_exits_nonzero(tmp):
    import socket as socketlib
    import subprocess

    sock = tmp / "a.sock"
    listener = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM)
    listener.bind(str(sock))
    listener.listen()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "runwire.agent", "--socket", str(sock), "--spool-dir", str(tmp / "spool")],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        listener.close()
    assert result.returncode == 1
    assert "another agent is listening" in result.stderr
