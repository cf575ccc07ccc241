"""A TCP proxy for tests that loses answers: it forwards bytes between gRPC clients and a server
(HTTP/2 without TLS) and, armed with `lose_next_answer()`, lets the next call's request through
to the server but cuts the connection when the server's answer to it arrives, before any of that
answer reaches the client. The server did the work; the client sees a broken connection (gRPC
UNAVAILABLE) and never learns the outcome. Connections opened afterwards are forwarded as usual.

Only HTTP/2 frame headers are read (9 bytes each: length, type, flags, stream id), never HPACK, so
the call is "the next stream the client opens"; `lost` keeps each lost call's request message bytes
(protobuf: the ids it carries can be found in them).
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
HEADERS, DATA = 0x1, 0x0


@dataclass
class LostCall:
    stream_id: int
    request: bytearray = field(default_factory=bytearray)
    """The request's DATA payloads (gRPC framing included)."""


class _Link:
    """One client connection and its connection to the server."""

    def __init__(self, proxy: FaultProxy, client: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.server = socket.create_connection(proxy.upstream, timeout=10)
        self.server.settimeout(None)
        self.target: LostCall | None = None
        self.cut = False

    def close(self) -> None:
        self.cut = True
        for s in (self.client, self.server):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def pump(self, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
        buf = bytearray()
        preface = len(PREFACE) if from_client else 0
        try:
            while not self.cut:
                data = src.recv(65536)
                if not data:
                    break
                buf += data
                out = bytearray()
                if preface:
                    take = min(preface, len(buf))
                    out += buf[:take]
                    del buf[:take]
                    preface -= take
                while len(buf) >= 9:
                    length = int.from_bytes(buf[:3], "big")
                    if len(buf) < 9 + length:
                        break
                    kind, stream_id = buf[3], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
                    frame = bytes(buf[: 9 + length])
                    del buf[: 9 + length]
                    if from_client:
                        self._from_client(kind, stream_id, frame[9:])
                    elif self.target is not None and stream_id == self.target.stream_id:
                        self.proxy._lost(self.target)  # the answer (its first frame) is dropped with the link
                        self.close()
                        return
                    out += frame
                if out:
                    dst.sendall(out)
        except OSError:
            pass
        finally:
            if not self.cut:
                self.close()

    def _from_client(self, kind: int, stream_id: int, payload: bytes) -> None:
        if kind == HEADERS and stream_id and self.target is None and self.proxy._take_arm():
            self.target = LostCall(stream_id)
        elif kind == DATA and self.target is not None and stream_id == self.target.stream_id:
            self.target.request += payload


class FaultProxy:
    """Listens on 127.0.0.1 (an ephemeral port) and forwards to `upstream` ("host:port")."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.rsplit(":", 1)
        self.upstream = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._lock = threading.Lock()
        self._armed = 0
        self.lost: list[LostCall] = []
        self.connections = 0
        self._links: list[_Link] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name="faultproxy").start()

    def lose_next_answer(self) -> None:
        """The next call any client starts reaches the server; its answer is cut off."""
        with self._lock:
            self._armed += 1

    def _take_arm(self) -> bool:
        with self._lock:
            if self._armed:
                self._armed -= 1
                return True
            return False

    def _lost(self, call: LostCall) -> None:
        with self._lock:
            self.lost.append(call)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                link = _Link(self, client)
            except OSError:
                client.close()
                continue
            with self._lock:
                self.connections += 1
                self._links.append(link)
            threading.Thread(target=link.pump, args=(client, link.server, True), daemon=True).start()
            threading.Thread(target=link.pump, args=(link.server, client, False), daemon=True).start()

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        with self._lock:
            links = list(self._links)
        for link in links:
            if not link.cut:
                link.close()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
