"""Collector configuration: command-line arguments, listeners, shutdown."""

from __future__ import annotations

import argparse

import grpc
import pytest
from collector_helpers import batch, points, request

from runwire._runtime import default_data_dir
from runwire.server.app import Collector, CollectorConfig, ExposedWithoutAuth
from runwire.server.main import add_arguments
from runwire.v1 import ingest_pb2, ingest_pb2_grpc, runs_pb2, runs_pb2_grpc


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_arguments_defaults_and_off():
    args = parse()
    assert (args.grpc_listen, args.http_listen, args.ready_file, args.log_level) == (
        "127.0.0.1:7420",
        "127.0.0.1:7421",
        None,
        "info",
    )
    assert args.data_dir == default_data_dir() / "collector"
    assert parse("--http-listen", "off").http_listen is None
    assert parse("--grpc-listen", "[::1]:0").grpc_listen == "[::1]:0"


@pytest.mark.parametrize("value", ["nohost", "host:port", "1.2.3.4:99999"])
def test_bad_addresses_are_refused(value, capsys):
    with pytest.raises(SystemExit):
        parse("--grpc-listen", value)
    assert "HOST:PORT" in capsys.readouterr().err


async def test_http_off_and_auth_off_beyond_loopback_is_refused(tmp_path):
    with pytest.raises(ExposedWithoutAuth, match=r"0\.0\.0\.0:0 with --auth off"):
        await Collector(CollectorConfig(data_dir=tmp_path, grpc_listen="0.0.0.0:0", http_listen=None)).start()
    c = Collector(CollectorConfig(data_dir=tmp_path, grpc_listen="0.0.0.0:0", http_listen=None, auth=True))
    await c.start()
    try:
        assert c.http_address is None and c.grpc_address.startswith("0.0.0.0:")
        port = c.grpc_address.rsplit(":", 1)[1]
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:  # auth on: no token, no answer
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await runs_pb2_grpc.RunsStub(ch).GetCollectorStatus(runs_pb2.CollectorStatusRequest())
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await c.stop(grace=1)


async def test_stop_cuts_open_streams_and_committed_data_persists(tmp_path):
    config = CollectorConfig(data_dir=tmp_path, grpc_listen="127.0.0.1:0", http_listen=None)
    c = Collector(config)
    await c.start()
    async with grpc.aio.insecure_channel(c.grpc_address) as ch:
        await runs_pb2_grpc.RunsStub(ch).CreateRun(runs_pb2.CreateRunRequest(experiment_name="e", run_id="r"))
        call = ingest_pb2_grpc.IngestStub(ch).Ingest()
        await call.write(request(1, batch("p", 1, points("r", "m", [1.0, 2.0]))))
        ack = await call.read()
        assert ack.status == ingest_pb2.ACK_STATUS_COMMITTED
        await c.stop(grace=0.5)  # the open stream is cut after the grace period
        assert await call.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)

    c = Collector(config)
    await c.start()
    try:
        async with grpc.aio.insecure_channel(c.grpc_address) as ch:
            stub = runs_pb2_grpc.RunsStub(ch)
            (data,) = [m async for m in stub.GetMetrics(runs_pb2.GetMetricsRequest(run_id="r"))]
            assert data.count == 2
    finally:
        await c.stop(grace=1)
