"""Framing on the agent socket: a 4-byte big-endian length, then one protobuf message."""

from __future__ import annotations

import asyncio
import socket
import struct

from runwire.limits import MAX_FRAME_BYTES
from runwire.v1 import frames_pb2

HEADER = struct.Struct(">I")


class FrameError(ValueError):
    """A frame that breaks the protocol: too large, truncated or undecodable."""


def pack(message) -> bytes:
    body = message.SerializeToString()
    if len(body) > MAX_FRAME_BYTES:
        raise FrameError(f"frame of {len(body)} bytes exceeds MAX_FRAME_BYTES ({MAX_FRAME_BYTES})")
    return HEADER.pack(len(body)) + body


def parse_client_frame(body: bytes) -> frames_pb2.ClientFrame:
    frame = frames_pb2.ClientFrame()
    try:
        frame.ParseFromString(body)
    except Exception as e:  # protobuf raises DecodeError, sometimes others, on garbage
        raise FrameError(f"undecodable frame: {e}") from e
    if frame.WhichOneof("body") is None:
        raise FrameError("frame has no body (unknown message type)")
    return frame


def parse_agent_frame(body: bytes) -> frames_pb2.AgentFrame:
    frame = frames_pb2.AgentFrame()
    try:
        frame.ParseFromString(body)
    except Exception as e:
        raise FrameError(f"undecodable frame: {e}") from e
    return frame


async def read_frame(reader: asyncio.StreamReader, max_bytes: int = MAX_FRAME_BYTES) -> bytes | None:
    """The next frame body, or None at a clean end of stream. Raises FrameError on a bad frame."""
    try:
        header = await reader.readexactly(HEADER.size)
    except asyncio.IncompleteReadError as e:
        if e.partial:
            raise FrameError("connection closed inside a frame header") from e
        return None
    (length,) = HEADER.unpack(header)
    if length > max_bytes:
        raise FrameError(f"frame of {length} bytes exceeds MAX_FRAME_BYTES ({max_bytes})")
    try:
        return await reader.readexactly(length)
    except asyncio.IncompleteReadError as e:
        raise FrameError(f"connection closed after {len(e.partial)} of {length} frame bytes") from e


class SocketReader:
    """Blocking frame reader over a connected socket (the SDK's side)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = bytearray()

    def read(self) -> bytes | None:
        while True:
            if len(self._buf) >= HEADER.size:
                (length,) = HEADER.unpack_from(self._buf)
                if length > MAX_FRAME_BYTES:
                    raise FrameError(f"frame of {length} bytes exceeds MAX_FRAME_BYTES")
                end = HEADER.size + length
                if len(self._buf) >= end:
                    body = bytes(self._buf[HEADER.size : end])
                    del self._buf[:end]
                    return body
            chunk = self._sock.recv(1 << 20)
            if not chunk:
                if self._buf:
                    raise FrameError("connection closed inside a frame")
                return None
            self._buf += chunk
