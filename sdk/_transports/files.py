"""File bytes: SDK -> agent (spooled there) -> collector, and downloads from the collector.

`FileSender` (one per process and agent socket) has its own connection to the agent, apart from
the metric producer's. `send()` streams a file in `FILE_CHUNK_BYTES` frames, hashing on the way,
and returns once the agent has acknowledged the whole file as written to its disk; the agent then
uploads it to the collector. `wait()` returns when every file this process sent is committed at
the collector (what `run.flush()` adds for files). Nothing is ever held whole in memory.

When no agent answers, `DirectUploader` streams the file straight to the collector over gRPC (the
training process already talks gRPC to the collector for lifecycle calls and reads).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import io
import os
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import grpc

from runwire import frames
from runwire.limits import FILE_CHUNK_BYTES, MAX_ARTIFACT_BYTES, PROTOCOL_VERSION
from runwire.v1 import artifacts_pb2, artifacts_pb2_grpc, frames_pb2

from .collector import CALL_TIMEOUT_S, COLLECTOR_WAIT_S, CollectorClient

AGENT_CONNECT_TIMEOUT_S = 5.0
"""How long the SDK waits for the agent to answer when it opens its file connection."""


class AgentUnavailable(Exception):
    """No agent answers on the socket (the caller falls back to a direct upload)."""


class UploadRefused(Exception):
    """The agent or the collector refused a file; `conflict` for a write-once name conflict."""

    def __init__(self, message: str, conflict: bool = False) -> None:
        super().__init__(message)
        self.conflict = conflict


@dataclass
class Sent:
    upload_id: str
    run_id: str
    name: str
    size: int
    sha256: str


Source = "str | os.PathLike[str] | BinaryIO"


@contextlib.contextmanager
def open_source(source) -> Iterator[BinaryIO]:
    """A path is opened (and closed after); a stream is read from where it stands now, and put
    back there afterwards when it can seek, so a retry reads the same bytes."""
    if isinstance(source, str | os.PathLike):
        with open(source, "rb") as f:
            yield f
        return
    start = None
    try:
        if source.seekable():
            start = source.tell()
    except (AttributeError, ValueError, OSError):
        start = None
    try:
        yield source
    finally:
        if start is not None:
            source.seek(start)


def _chunks(stream: BinaryIO) -> Iterator[bytes]:
    while True:
        data = stream.read(FILE_CHUNK_BYTES)
        if not data:
            return
        if isinstance(data, str):
            data = data.encode()
        yield data


class FileSender:
    def __init__(self, socket_path: str | None) -> None:
        self.socket_path = socket_path
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._sock: socket.socket | None = None
        self._reader: frames.SocketReader | None = None
        self._pending: dict[str, Sent] = {}  # acked by the agent, not known committed
        self._acks: dict[str, str] = {}
        self._done: dict[str, tuple[str, bool]] = {}

    def _check_fork(self) -> None:
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._sock = None  # the parent's connection stays the parent's
            self._reader = None
            self._pending.clear()
            self._acks.clear()
            self._done.clear()

    def _connect(self) -> None:
        if self._sock is not None:
            return
        if not self.socket_path:
            raise AgentUnavailable("no agent socket is configured")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(AGENT_CONNECT_TIMEOUT_S)
            sock.connect(self.socket_path)
            hello = frames_pb2.Hello(
                protocol_version=PROTOCOL_VERSION,
                producer_id=f"files-{uuid.uuid4().hex}",
                pid=os.getpid(),
                client="runwire-sdk/0.1.0 files",
            )
            sock.sendall(frames.pack(frames_pb2.ClientFrame(hello=hello)))
            reader = frames.SocketReader(sock)
            body = reader.read()
            if body is None or frames.parse_agent_frame(body).WhichOneof("body") != "hello_ack":
                raise ConnectionError("the agent did not accept the connection")
            sock.settimeout(None)
        except (OSError, frames.FrameError) as e:
            sock.close()
            raise AgentUnavailable(f"cannot reach the agent at {self.socket_path}: {e}") from e
        self._sock = sock
        self._reader = reader

    def _drop(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        self._sock = None
        self._reader = None

    def _read_one(self) -> None:
        assert self._reader is not None
        body = self._reader.read()
        if body is None:
            raise ConnectionError("the agent closed the file connection")
        frame = frames.parse_agent_frame(body)
        kind = frame.WhichOneof("body")
        if kind == "file_ack":
            self._acks[frame.file_ack.upload_id] = frame.file_ack.error
        elif kind == "file_done":
            d = frame.file_done
            self._done[d.upload_id] = (d.error, d.conflict)
        elif kind == "error":
            raise ConnectionError(f"the agent closed the file connection: {frame.error.reason}")

    def send_many(self, items: list[tuple[str, str, str, Source]]) -> list[Sent]:
        """Send files [(upload_id, run_id, name, path or stream)] pipelined; return once the agent
        holds them all.

        Raises AgentUnavailable before the first byte when no agent answers; UploadRefused when the
        agent refuses a file; ConnectionError when the agent went away mid-way (nothing was acked)."""
        with self._lock:
            self._check_fork()
            self._connect()
            sent: list[Sent] = []
            try:
                for upload_id, run_id, name, source in items:
                    with open_source(source) as stream:
                        sent.append(self._send_one(upload_id, run_id, name, stream))
                for s in sent:
                    while s.upload_id not in self._acks:
                        self._read_one()
            except (OSError, frames.FrameError) as e:
                self._drop()
                raise ConnectionError(f"lost the agent connection while sending files: {e}") from e
            except BaseException:
                self._drop()  # a file left half-sent: the agent drops it with the connection
                raise
            errors = []
            for s in sent:
                error = self._acks.pop(s.upload_id)
                if error:
                    errors.append(f"{s.name}: {error}")
                else:
                    self._pending[s.upload_id] = s
            if errors:
                raise UploadRefused("; ".join(errors))
            return sent

    def _send_one(self, upload_id: str, run_id: str, name: str, stream: BinaryIO) -> Sent:
        assert self._sock is not None
        sock = self._sock
        begin = frames_pb2.FileBegin(upload_id=upload_id, run_id=run_id, name=name)
        sock.sendall(frames.pack(frames_pb2.ClientFrame(file_begin=begin)))
        digest = hashlib.sha256()
        offset = 0
        for data in _chunks(stream):
            digest.update(data)
            chunk = frames_pb2.FileChunk(upload_id=upload_id, offset=offset, data=data)
            sock.sendall(frames.pack(frames_pb2.ClientFrame(file_chunk=chunk)))
            offset += len(data)
            if offset > MAX_ARTIFACT_BYTES:
                raise UploadRefused(f"{name}: larger than MAX_ARTIFACT_BYTES ({MAX_ARTIFACT_BYTES})")
        sha = digest.hexdigest()
        end = frames_pb2.FileEnd(upload_id=upload_id, size=offset, sha256=sha)
        sock.sendall(frames.pack(frames_pb2.ClientFrame(file_end=end)))
        return Sent(upload_id, run_id, name, offset, sha)

    def wait(self, timeout: float, run_id: str | None = None) -> list[tuple[Sent, str, bool]]:
        """Wait until the files sent (of `run_id`, or all) are committed; return the refused ones
        as (sent, error, conflict). Raises TimeoutError, or ConnectionError when the agent is gone."""
        with self._lock:
            self._check_fork()
            ids = [i for i, s in self._pending.items() if run_id is None or s.run_id == run_id]
            if not ids:
                return []
            deadline = time.monotonic() + timeout
            try:
                self._connect()
                assert self._sock is not None
                self._sock.sendall(frames.pack(frames_pb2.ClientFrame(file_wait=frames_pb2.FileWait(upload_ids=ids))))
                self._sock.settimeout(max(0.1, deadline - time.monotonic()))
                while not all(i in self._done for i in ids):
                    self._read_one()
                    self._sock.settimeout(max(0.1, deadline - time.monotonic()))
                self._sock.settimeout(None)
            except TimeoutError:
                self._drop()
                raise
            except (OSError, frames.FrameError, AgentUnavailable) as e:
                self._drop()
                raise ConnectionError(f"lost the agent while waiting for uploads: {e}") from e
            refused = []
            for i in ids:
                error, conflict = self._done.pop(i)
                s = self._pending.pop(i)
                if error:
                    refused.append((s, error, conflict))
            return refused


# --- straight to the collector (no agent), and downloads --------------------------------------------

_stubs: dict[int, tuple[int, artifacts_pb2_grpc.ArtifactsStub]] = {}


def artifacts_stub(client: CollectorClient) -> artifacts_pb2_grpc.ArtifactsStub:
    """An Artifacts stub on the client's (per-process) channel."""
    client.stub  # noqa: B018 - makes the channel for this process
    cached = _stubs.get(id(client))
    if cached is None or cached[0] != id(client._channel):
        cached = (id(client._channel), artifacts_pb2_grpc.ArtifactsStub(client._channel))
        _stubs[id(client)] = cached
    return cached[1]


def call(
    client: CollectorClient, method: str, request, timeout: float = CALL_TIMEOUT_S, wait_s: float = COLLECTOR_WAIT_S
):
    """A unary Artifacts call, tried once more when the collector is found unreachable."""
    return client.invoke(artifacts_stub(client), method, request, timeout, wait_s)


def _seekable_copy(stream: BinaryIO) -> tuple[BinaryIO, bool]:
    """A stream that can be read twice (hash, then send): the stream itself, or a temp file copy."""
    try:
        if stream.seekable():
            return stream, False
    except (AttributeError, ValueError, io.UnsupportedOperation):
        pass
    tmp = tempfile.TemporaryFile()  # noqa: SIM115 - returned to the caller, who closes it
    for data in _chunks(stream):
        tmp.write(data)
    tmp.seek(0)
    return tmp, True


def upload_direct(client: CollectorClient, upload_id: str, run_id: str, name: str, source) -> tuple[int, str]:
    """Upload one file straight to the collector; returns (size, sha256). Raises UploadRefused."""
    with open_source(source) as s:
        return _upload_direct(client, upload_id, run_id, name, s)


def _upload_direct(client: CollectorClient, upload_id: str, run_id: str, name: str, stream) -> tuple[int, str]:
    stream, owned = _seekable_copy(stream)
    try:
        start = stream.tell()
        digest = hashlib.sha256()
        size = 0
        for data in _chunks(stream):
            digest.update(data)
            size += len(data)
        sha = digest.hexdigest()

        def requests() -> Iterator[artifacts_pb2.UploadRequest]:
            header = artifacts_pb2.UploadHeader(run_id=run_id, name=name, size=size, sha256=sha, upload_id=upload_id)
            yield artifacts_pb2.UploadRequest(header=header)
            stream.seek(start)
            for data in _chunks(stream):
                yield artifacts_pb2.UploadRequest(data=data)

        try:
            artifacts_stub(client).Upload(requests(), timeout=CALL_TIMEOUT_S * 60)
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.ALREADY_EXISTS:
                raise UploadRefused(e.details(), conflict=True) from None
            raise client._translate(e) from None
        return size, sha
    finally:
        if owned:
            stream.close()


def download_to(
    client: CollectorClient, run_id: str, name: str, target: Path, validate: bool = False, sha256: str = ""
) -> int:
    """Stream an artifact (or, with `sha256` and no run, a blob) into `target`, written under a
    temporary name and renamed at the end (no half file under the target's name). Returns bytes."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    digest = hashlib.sha256()
    size = 0
    expected = ""
    try:
        with os.fdopen(fd, "wb") as f:
            request = artifacts_pb2.DownloadRequest(run_id=run_id, name=name, sha256=sha256)
            try:
                for msg in _download_stream(client, request):
                    if msg.HasField("info"):
                        expected = msg.info.sha256
                    if validate:
                        digest.update(msg.data)
                    f.write(msg.data)
                    size += len(msg.data)
            except grpc.RpcError as e:
                raise client._translate(e) from None
        if validate and digest.hexdigest() != expected:
            raise UploadRefused(f"{name}: downloaded bytes do not match the stored sha256 {expected}")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return size


def _download_stream(client: CollectorClient, request) -> Iterator[artifacts_pb2.DataChunk]:
    """The Download stream; found unreachable before its first message, tried once more waiting
    for the collector (up to COLLECTOR_WAIT_S)."""
    stub = artifacts_stub(client)
    stream = stub.Download(request, timeout=CALL_TIMEOUT_S * 60)
    try:
        first = next(stream, None)
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.UNAVAILABLE:
            raise
        stream = stub.Download(request, timeout=CALL_TIMEOUT_S * 60, wait_for_ready=True)
        first = next(stream, None)
    if first is None:
        return
    yield first
    yield from stream


def iter_blob(client: CollectorClient, sha256: str) -> Iterator[bytes]:
    try:
        for msg in _download_stream(client, artifacts_pb2.DownloadRequest(sha256=sha256)):
            if msg.data:
                yield msg.data
    except grpc.RpcError as e:
        raise client._translate(e) from None


def upload_blob(client: CollectorClient, path: Path, size: int, sha256: str) -> None:
    """Upload a file as a bare content-addressed blob (snapshot content)."""

    def requests() -> Iterator[artifacts_pb2.UploadRequest]:
        yield artifacts_pb2.UploadRequest(header=artifacts_pb2.UploadHeader(size=size, sha256=sha256))
        with open(path, "rb") as f:
            left = size  # a file that grew since it was hashed sends what was hashed (or fails the check)
            while left > 0:
                data = f.read(min(FILE_CHUNK_BYTES, left))
                if not data:
                    return
                left -= len(data)
                yield artifacts_pb2.UploadRequest(data=data)

    try:
        artifacts_stub(client).Upload(requests(), timeout=CALL_TIMEOUT_S * 10)
    except grpc.RpcError as e:
        raise client._translate(e) from None


# --- one sender per process and socket ---------------------------------------------------------------

_senders: dict[str | None, FileSender] = {}
_senders_lock = threading.Lock()


def get_sender(socket_path: str | None) -> FileSender:
    with _senders_lock:
        sender = _senders.get(socket_path)
        if sender is None:
            sender = _senders[socket_path] = FileSender(socket_path)
        return sender


def _after_fork_in_child() -> None:
    global _senders_lock
    _senders_lock = threading.Lock()
    for sender in _senders.values():
        sender._lock = threading.Lock()


def close_all() -> None:
    for sender in list(_senders.values()):
        if sender._pid == os.getpid():
            sender._drop()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(close_all)
