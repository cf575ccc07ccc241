"""Malformed and oversized frames sent to the agent socket by hand: that connection is closed
with a reason, every other client keeps being served."""

from __future__ import annotations

import socket
import struct

from runwire import Experiment, frames
from runwire.limits import MAX_FRAME_BYTES, PROTOCOL_VERSION
from runwire.v1 import frames_pb2, metrics_pb2


def _connect(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(path)
    return s


def _hello(s: socket.socket, version: int = PROTOCOL_VERSION) -> frames_pb2.AgentFrame:
    hello = frames_pb2.Hello(protocol_version=version, producer_id="by-hand", pid=1)
    s.sendall(frames.pack(frames_pb2.ClientFrame(hello=hello)))
    return frames.parse_agent_frame(frames.SocketReader(s).read())


def _error_then_close(s: socket.socket) -> str:
    reader = frames.SocketReader(s)
    reasons = []
    while True:
        body = reader.read()
        if body is None:
            break
        frame = frames.parse_agent_frame(body)
        if frame.WhichOneof("body") == "error":
            reasons.append(frame.error.reason)
    assert reasons, "the agent closed without saying why"
    return reasons[-1]


def test_bad_frames_close_only_their_connection(workspace, cluster):
    run = Experiment(workspace, "bad-frames").start_logging()
    run.log("before", 1)
    run.flush()

    oversized = _connect(cluster.socket)
    _hello(oversized)
    oversized.sendall(struct.pack(">I", MAX_FRAME_BYTES + 1))
    assert "MAX_FRAME_BYTES" in _error_then_close(oversized)

    garbage = _connect(cluster.socket)
    _hello(garbage)
    garbage.sendall(struct.pack(">I", 8) + b"\xff" * 8)
    assert _error_then_close(garbage)

    no_hello = _connect(cluster.socket)
    batch = metrics_pb2.Batch(producer_id="x", seq=1)
    no_hello.sendall(frames.pack(frames_pb2.ClientFrame(batch=batch)))
    assert _error_then_close(no_hello)

    wrong_version = _connect(cluster.socket)
    reply = _hello(wrong_version, version=999)
    assert reply.WhichOneof("body") == "error" and "version" in reply.error.reason

    bad_points = _connect(cluster.socket)
    _hello(bad_points)
    bad = metrics_pb2.Batch(producer_id="by-hand", seq=1, metrics=[metrics_pb2.MetricPoints(run_id=run.id, name="x")])
    bad_points.sendall(frames.pack(frames_pb2.ClientFrame(batch=bad)))
    assert _error_then_close(bad_points)

    truncated = _connect(cluster.socket)
    _hello(truncated)
    truncated.sendall(struct.pack(">I", 100) + b"\x00" * 10)
    truncated.close()

    # the well-behaved client never noticed
    for i in range(100):
        run.log("after", i)
    run.complete()
    assert run.get_metrics() == {"before": 1, "after": list(range(100))}
    assert cluster.agent.popen.poll() is None
