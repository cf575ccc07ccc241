"""Helpers shared by the CLI commands."""

from __future__ import annotations

import argparse
import socket

from runwire import frames
from runwire.config import Endpoint, load_endpoint
from runwire.limits import PROTOCOL_VERSION
from runwire.v1 import frames_pb2

AGENT_QUERY_TIMEOUT_S = 5.0


def add_endpoint_arguments(parser: argparse.ArgumentParser, agent: bool = True) -> None:
    parser.add_argument("--config", default=None, help="config file (default: the search of Workspace.from_config)")
    parser.add_argument("--collector", default=None, help="collector HOST:PORT (overrides the config)")
    if agent:
        parser.add_argument("--socket", default=None, help="agent socket path (overrides the config)")


def endpoint_from_args(args: argparse.Namespace) -> Endpoint:
    if args.collector and not args.config:
        try:
            endpoint = load_endpoint()
        except Exception:
            endpoint = Endpoint(collector=args.collector, agent_socket=None)
    else:
        endpoint = load_endpoint(args.config)
    if args.collector:
        endpoint.collector = args.collector
    if getattr(args, "socket", None):
        endpoint.agent_socket = args.socket
    return endpoint


def agent_status(path: str) -> frames_pb2.AgentStatus:
    """Ask the agent on `path` for its status over its own socket protocol."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(AGENT_QUERY_TIMEOUT_S)
        s.connect(path)
        hello = frames_pb2.Hello(protocol_version=PROTOCOL_VERSION, producer_id="cli-status", client="runwire-cli")
        s.sendall(frames.pack(frames_pb2.ClientFrame(hello=hello)))
        s.sendall(frames.pack(frames_pb2.ClientFrame(status=frames_pb2.StatusRequest())))
        reader = frames.SocketReader(s)
        while True:
            body = reader.read()
            if body is None:
                raise ConnectionError("the agent closed the connection")
            frame = frames.parse_agent_frame(body)
            kind = frame.WhichOneof("body")
            if kind == "status":
                return frame.status
            if kind == "error":
                raise ConnectionError(frame.error.reason)
