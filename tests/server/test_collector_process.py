"""`python -m runwire.server` as a real subprocess: ready file, health, HTTP, clean SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import sys

import aiohttp
import grpc
from collector_helpers import wait_for
from grpc_health.v1 import health_pb2, health_pb2_grpc

from runwire.v1 import runs_pb2, runs_pb2_grpc


async def test_server_process_serves_and_stops_on_sigterm(tmp_path):
    ready = tmp_path / "ready.json"
    data = tmp_path / "data"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "runwire.server",
        "--grpc-listen",
        "127.0.0.1:0",
        "--http-listen",
        "127.0.0.1:0",
        "--data-dir",
        str(data),
        "--ready-file",
        str(ready),
        "--auth",
        "off",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await wait_for(lambda: ready.exists() or proc.returncode is not None, timeout=30)
        assert proc.returncode is None, (await proc.stderr.read()).decode()
        info = json.loads(ready.read_text())
        assert set(info) == {"grpc", "http", "pid", "data_dir", "tls"}
        assert info["pid"] == proc.pid and info["data_dir"] == str(data) and info["tls"] is False
        line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
        assert line == f"runwire server listening grpc={info['grpc']} http={info['http']} data={data}\n"

        async with grpc.aio.insecure_channel(info["grpc"]) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            resp = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
            resp = await health.Check(health_pb2.HealthCheckRequest(service="runwire.v1.Ingest"), timeout=10)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
            status = await runs_pb2_grpc.RunsStub(channel).GetCollectorStatus(runs_pb2.CollectorStatusRequest())
            assert status.pid == proc.pid

        async with aiohttp.ClientSession(f"http://{info['http']}") as http:
            async with http.get("/healthz") as r:
                assert r.status == 200 and await r.json() == {"status": "ok"}
            async with http.get("/metrics") as r:
                assert r.status == 200 and "runwire_collector_batches_committed_total" in await r.text()

        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        assert (data / "runwire.sqlite3").exists()
        stderr = (await proc.stderr.read()).decode()
        assert "collector stopped" in stderr
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_server_process_fails_cleanly_when_the_port_is_taken(tmp_path):
    blocker = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = blocker.sockets[0].getsockname()[1]
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "runwire.server",
            "--grpc-listen",
            "127.0.0.1:0",
            "--http-listen",
            f"127.0.0.1:{port}",
            "--data-dir",
            str(tmp_path),
            "--auth",
            "off",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 1, err.decode()
        assert b"could not start" in err and out == b""
    finally:
        blocker.close()
        await blocker.wait_closed()
