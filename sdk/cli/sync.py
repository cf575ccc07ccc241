"""Deliver the batches that SDK processes left in their spool (the agent was unreachable when they
ended) straight to the collector. Safe to run any time: the collector stores each batch once."""

from __future__ import annotations

import argparse
import socket
import sys
import uuid
from pathlib import Path

import grpc

from runwire import codec, frames
from runwire._transports.channel import ClientSecurity, open_channel
from runwire._transports.collector import CHANNEL_OPTIONS
from runwire._transports.sdk_spool import orphan_spools, read_records
from runwire.cli._common import add_endpoint_arguments, endpoint_from_args
from runwire.v1 import frames_pb2, ingest_pb2, ingest_pb2_grpc, metrics_pb2

SYNC_TIMEOUT_S = 300.0
"""How long `runwire sync` waits for the collector to commit one spool file."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_endpoint_arguments(parser)
    parser.add_argument("--spool-dir", type=Path, default=None, help="SDK spool folder (default: from the config)")


def _batches(path: Path) -> list[metrics_pb2.Batch]:
    out = []
    for _, body in read_records(path):
        frame = frames.parse_client_frame(body[frames.HEADER.size :])
        if frame.WhichOneof("body") == "batch":
            out.append(frame.batch)
    return out


def deliver(path: Path, collector: str, security: ClientSecurity | None = None) -> tuple[int, int, list[str]]:
    """Send one spool file; return (batches, points, rejection reasons)."""
    batches = _batches(path)
    if not batches:
        return 0, 0, []
    agent_id = f"sync-{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
    requests = []
    for seq, start in enumerate(range(0, len(batches), 64), start=1):
        group = batches[start : start + 64]
        payload = codec.compress(metrics_pb2.BatchBundle(batches=group).SerializeToString())
        points = sum(mp.count for b in group for mp in b.metrics)
        requests.append(
            ingest_pb2.IngestRequest(agent_id=agent_id, seq=seq, codec=ingest_pb2.CODEC_ZSTD, payload=payload,
                                     batch_count=len(group), point_count=points)
        )  # fmt: skip
    rejected: list[str] = []
    with open_channel(collector, security, CHANNEL_OPTIONS) as channel:
        stub = ingest_pb2_grpc.IngestStub(channel)
        acked = 0
        for ack in stub.Ingest(iter(requests), timeout=SYNC_TIMEOUT_S):
            acked += 1
            if ack.status == ingest_pb2.ACK_STATUS_REJECTED:
                rejected.append(ack.reason)
            if acked == len(requests):
                break
    if acked != len(requests):
        raise ConnectionError(f"the collector acknowledged {acked} of {len(requests)} requests")
    return len(batches), sum(r.point_count for r in requests), rejected


def run(args: argparse.Namespace) -> int:
    endpoint = endpoint_from_args(args)
    folder = args.spool_dir or endpoint.spool_dir()
    files = list(orphan_spools(folder))
    if not files:
        print(f"runwire sync: nothing to deliver in {folder}")
        return 0
    security = ClientSecurity.from_endpoint(endpoint)
    failed = 0
    for path in files:
        try:
            batches, points, rejected = deliver(path, endpoint.collector, security)
        except (grpc.RpcError, ConnectionError, frames.FrameError) as e:
            failed += 1
            detail = e.details() if isinstance(e, grpc.RpcError) else str(e)
            print(f"runwire sync: {path.name}: not delivered ({detail}); kept for the next try", file=sys.stderr)
            continue
        for reason in rejected:
            print(f"runwire sync: {path.name}: the collector refused a request: {reason}", file=sys.stderr)
        path.unlink()
        print(f"runwire sync: {path.name}: delivered {batches} batches, {points} points")
    return 1 if failed else 0


__all__ = ["deliver", "frames_pb2"]
