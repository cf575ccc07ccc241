"""The agent's file uploads: receive files from SDK connections into `<spool>/uploads/`, then
stream them to the collector's `Artifacts` service in the background.

On the socket an upload is `FileBegin`, `FileChunk`s at consecutive offsets, `FileEnd{size,
sha256}`. The bytes go to `<id>.data` as they arrive (hashed on the way); at `FileEnd` the size and
digest are checked, the data is forced to disk and `<id>.json` (the upload's metadata) is written
atomically: only then is the file the agent's, and `FileAck` tells the SDK so. A `.data` without
its `.json` is an upload that never finished arriving and is deleted at start.

Uploader tasks take the ready uploads in order. Each asks the collector how much of an earlier,
interrupted attempt it kept (`UploadStatus`), resumes from there, and deletes the local files once
the collector has committed the artifact (or refused it for good: a name conflict, a bad name, an
unknown run). Connection failures are retried with backoff, across agent restarts: the files stay
in the uploads folder until they are done. `FileWait` is answered with one `FileDone` per upload
once it is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import time
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from runwire._transports.channel import ClientSecurity
from runwire.agent.collectors import CREDENTIAL_FAILURES, REPLICA_FAILURES, CollectorLink, Collectors, channel_factory
from runwire.agent.sender import Backoff, channel_options
from runwire.artifact_names import ArtifactNameError, normalize_name
from runwire.frames import pack
from runwire.limits import FILE_CHUNK_BYTES, MAX_ARTIFACT_BYTES
from runwire.v1 import artifacts_pb2, artifacts_pb2_grpc, frames_pb2

if TYPE_CHECKING:
    from runwire.agent.receiver import Connection

log = logging.getLogger("runwire.agent.uploads")

UPLOADS_DIR = "uploads"
"""The uploads area inside the agent's spool folder (apart from the metric spool segments)."""
UPLOAD_WORKERS = 16
"""Files the agent uploads to the collector at once."""
UPLOAD_BATCH_FILES = 64
"""Small files (up to INLINE_WRITE_MAX_BYTES) the agent sends to the collector in one UploadBatch stream."""
UPLOAD_RESULTS_KEPT = 100_000
"""Outcomes of finished uploads the agent remembers for `FileWait` (older ones count as committed)."""
INLINE_WRITE_MAX_BYTES = 64 * 1024
"""File chunks up to this size are written on the event loop; bigger ones (and hashing) in a thread."""
SYNC_FSYNC_MAX_FILES = 4
"""Files up to which the agent forces received files to disk one by one; more at once take one `sync()`."""
MAX_INCOMING_PER_CONNECTION = 64
"""Files one SDK connection may be sending to the agent at once; more is a protocol error."""

_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_PERMANENT = (
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
)
# A refused agent token (CREDENTIAL_FAILURES) is the operator's to fix (a new --token-file, then a
# restart): the files wait in the uploads folder and are retried, as the ingest stream's records are.


class UploadProtocolError(Exception):
    """A file frame that breaks the protocol (the receiver closes the connection)."""


class _Incoming:
    def __init__(self, upload_id: str, run_id: str, name: str, path: Path | None, conn_id: int) -> None:
        self.upload_id = upload_id
        self.run_id = run_id
        self.name = name
        self.path = path  # None: a resend of an upload the agent already holds (only hashed)
        self.conn_id = conn_id
        self.file = open(path, "wb", buffering=0) if path is not None else None  # noqa: SIM115 - closed in finish/abort
        self.hash = hashlib.sha256()
        self.size = 0
        self.received = time.time()

    def write(self, data: bytes) -> None:
        if self.file is not None:
            view = memoryview(data)
            while view:
                n = self.file.write(view)
                view = view[n:]
        self.hash.update(data)
        self.size += len(data)

    def finish(self) -> None:
        if self.file is not None:
            self.file.close()  # forced to disk by the syncer, together with other files

    def abort(self) -> None:
        if self.file is not None:
            with contextlib.suppress(OSError):
                self.file.close()
        if self.path is not None:
            self.path.unlink(missing_ok=True)


class Uploads:
    def __init__(
        self,
        folder: Path,
        collector: str,
        token: str | None = None,
        backoff: Backoff | None = None,
        *,
        security: ClientSecurity | None = None,
        link: CollectorLink | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.collector = collector
        self.security = security if security is not None else ClientSecurity(token=token)
        # Which collector replica uploads go to, and failover to the next (agent/collectors.py).
        self.link = link or CollectorLink(
            Collectors.parse(collector), "uploads", "", channel_factory(self.security, channel_options())
        )
        self._backoff_args = (backoff.low, backoff.high) if backoff is not None else None
        self._incoming: dict[str, _Incoming] = {}
        self._queue: asyncio.Queue[dict] = asyncio.Queue()
        self._to_sync: list[tuple[Connection, dict]] = []
        self._sync_needed = asyncio.Event()
        self._pending: dict[str, dict] = {}  # ready, not yet done
        self._results: OrderedDict[str, tuple[str, bool]] = OrderedDict()
        self._done_events: dict[str, asyncio.Event] = {}
        self._workers: list[asyncio.Task] = []
        self._tasks: set[asyncio.Task] = set()
        self.bytes_received = 0
        self.files_committed = 0

    # --- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        metas = []
        for path in self.folder.iterdir():
            if path.suffix == ".data" and not path.with_suffix(".json").exists():
                path.unlink(missing_ok=True)  # never finished arriving: the SDK did not get an ack
            elif path.suffix == ".tmp":
                path.unlink(missing_ok=True)
            elif path.suffix == ".json":
                try:
                    metas.append(json.loads(path.read_text()))
                except (OSError, ValueError):
                    log.warning("dropping unreadable upload metadata", extra={"fields": {"path": str(path)}})
                    path.unlink(missing_ok=True)
        for meta in sorted(metas, key=lambda m: m.get("received", 0)):
            meta["resumed"] = True  # an earlier attempt may have left a partial upload at the collector
            self._enqueue(meta)
        if metas:
            log.info("resuming uploads", extra={"fields": {"files": len(metas)}})
        self._workers = [asyncio.create_task(self._worker(), name=f"uploader-{i}") for i in range(UPLOAD_WORKERS)]
        self._workers.append(asyncio.create_task(self._syncer(), name="uploads-sync"))

    async def stop(self) -> None:
        for t in (*self._workers, *self._tasks):
            t.cancel()
        for t in (*self._workers, *self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._workers = []
        for inc in list(self._incoming.values()):
            inc.abort()
        self._incoming.clear()
        await self.link.close()

    async def drain(self, timeout: float) -> bool:
        """Wait (at most `timeout`) until every ready upload is done."""
        events = [self._done_events[i] for i in self._pending if i in self._done_events]
        if not events:
            return True
        try:
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), timeout)
            return True
        except TimeoutError:
            return False

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def pending_bytes(self) -> int:
        return sum(m["size"] for m in self._pending.values())

    # --- frames from SDK connections --------------------------------------------------------------

    async def on_frame(self, conn: Connection, frame: frames_pb2.ClientFrame, kind: str) -> None:
        if kind == "file_begin":
            self._begin(conn, frame.file_begin)
        elif kind == "file_chunk":
            fc = frame.file_chunk
            inc = self._owned(conn, fc.upload_id)
            if fc.offset != inc.size:
                raise UploadProtocolError(f"upload {fc.upload_id}: chunk at offset {fc.offset}, expected {inc.size}")
            if inc.size + len(fc.data) > MAX_ARTIFACT_BYTES:
                raise UploadProtocolError(
                    f"upload {fc.upload_id} ({inc.name!r}) is larger than MAX_ARTIFACT_BYTES ({MAX_ARTIFACT_BYTES})"
                )
            if len(fc.data) <= INLINE_WRITE_MAX_BYTES:
                inc.write(fc.data)  # a page-cache write of a few KiB: cheaper than a thread hop
            else:
                await asyncio.to_thread(inc.write, fc.data)
            self.bytes_received += len(fc.data)
        elif kind == "file_end":
            await self._end(conn, frame.file_end)
        elif kind == "file_wait":
            task = asyncio.create_task(self._answer_wait(conn, list(frame.file_wait.upload_ids)))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _owned(self, conn: Connection, upload_id: str) -> _Incoming:
        inc = self._incoming.get(upload_id)
        if inc is None or inc.conn_id != conn.id:
            raise UploadProtocolError(f"upload {upload_id!r} was not begun on this connection")
        return inc

    def _begin(self, conn: Connection, fb: frames_pb2.FileBegin) -> None:
        if not _ID.match(fb.upload_id):
            raise UploadProtocolError(f"upload id {fb.upload_id!r} is not 1-64 letters, digits, '_' or '-'")
        if fb.upload_id in self._incoming:
            raise UploadProtocolError(f"upload id {fb.upload_id!r} is already in use")
        if not fb.run_id:
            raise UploadProtocolError(f"upload {fb.upload_id}: empty run_id")
        if sum(1 for i in self._incoming.values() if i.conn_id == conn.id) >= MAX_INCOMING_PER_CONNECTION:
            raise UploadProtocolError(f"more than {MAX_INCOMING_PER_CONNECTION} files in progress on one connection")
        try:
            name = normalize_name(fb.name)
        except ArtifactNameError as e:
            conn._send(pack(frames_pb2.AgentFrame(file_ack=frames_pb2.FileAck(upload_id=fb.upload_id, error=str(e)))))
            # Still track it, so its chunks are accepted and dropped until FileEnd.
            name = ""
        # An SDK resends a file when the agent went away before acknowledging it; when this agent
        # already holds it (its FileEnd was processed before a restart) the bytes are only checked.
        held = (
            fb.upload_id in self._pending
            or fb.upload_id in self._results
            or any(m["upload_id"] == fb.upload_id for _, m in self._to_sync)
        )
        path = None if held else self.folder / f"{fb.upload_id}.data"
        inc = _Incoming(fb.upload_id, fb.run_id, name, path, conn.id)
        self._incoming[fb.upload_id] = inc

    async def _end(self, conn: Connection, fe: frames_pb2.FileEnd) -> None:
        inc = self._owned(conn, fe.upload_id)
        del self._incoming[fe.upload_id]
        if not inc.name:
            inc.abort()  # refused at FileBegin; the SDK was told then
            return
        error = ""
        held = self._pending.get(fe.upload_id)
        try:
            if inc.path is None:
                if held is not None and (held["size"], held["sha256"]) != (fe.size, fe.sha256):
                    error = f"upload id {fe.upload_id} was already used for other content"
            elif inc.size != fe.size or inc.hash.hexdigest() != fe.sha256:
                error = (
                    f"file {inc.name!r} arrived with {inc.size} bytes and sha256 {inc.hash.hexdigest()}, "
                    f"the SDK sent {fe.size} bytes with sha256 {fe.sha256}"
                )
                inc.abort()
            else:
                inc.finish()
                meta = {
                    "upload_id": inc.upload_id,
                    "run_id": inc.run_id,
                    "name": inc.name,
                    "size": inc.size,
                    "sha256": fe.sha256,
                    "received": inc.received,
                }
                self._write_meta(meta)  # a small file, not forced to disk here (see _syncer)
                # Acknowledged once the syncer has forced it to disk (many files per sync).
                self._to_sync.append((conn, meta))
                self._sync_needed.set()
                return
        except OSError as e:
            inc.abort()
            error = f"the agent could not store the file: {e}"
        conn._send(pack(frames_pb2.AgentFrame(file_ack=frames_pb2.FileAck(upload_id=fe.upload_id, error=error))))

    def _write_meta(self, meta: dict) -> None:
        final = self.folder / f"{meta['upload_id']}.json"
        tmp = final.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump(meta, f)
        os.replace(tmp, final)

    def _sync(self, metas: list[dict]) -> None:
        """Force data and metadata files (and the folder) to stable storage: one `sync()` for a
        batch, fsyncs for a few files."""
        if len(metas) > SYNC_FSYNC_MAX_FILES:
            os.sync()
            return
        for meta in metas:
            for suffix in (".data", ".json"):
                fd = os.open(self.folder / f"{meta['upload_id']}{suffix}", os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    async def _syncer(self) -> None:
        while True:
            await self._sync_needed.wait()
            self._sync_needed.clear()
            batch, self._to_sync = self._to_sync, []
            if not batch:
                continue
            error = ""
            try:
                await asyncio.to_thread(self._sync, [meta for _, meta in batch])
            except OSError as e:
                error = f"the agent could not store the file: {e}"
            for conn, meta in batch:
                if error:
                    for suffix in (".data", ".json"):
                        (self.folder / f"{meta['upload_id']}{suffix}").unlink(missing_ok=True)
                else:
                    self._enqueue(meta)
                ack = frames_pb2.FileAck(upload_id=meta["upload_id"], error=error)
                if not conn.writer.is_closing():
                    conn._send(pack(frames_pb2.AgentFrame(file_ack=ack)))

    def connection_closed(self, conn: Connection) -> None:
        """Drop the files a closed connection had not finished sending (it got no ack for them)."""
        for upload_id, inc in list(self._incoming.items()):
            if inc.conn_id == conn.id:
                del self._incoming[upload_id]
                inc.abort()

    async def _answer_wait(self, conn: Connection, upload_ids: list[str]) -> None:
        for upload_id in upload_ids:
            event = self._done_events.get(upload_id)
            if event is not None:
                await event.wait()
            error, conflict = self._results.get(upload_id, ("", False))  # unknown: done before a restart
            if conn.writer.is_closing():
                return
            done = frames_pb2.FileDone(upload_id=upload_id, error=error, conflict=conflict)
            conn._send(pack(frames_pb2.AgentFrame(file_done=done)))

    # --- files of the agent itself (job outputs and logs) ------------------------------------------

    async def add_local(self, run_id: str, name: str, path: str | os.PathLike[str]) -> str:
        """Upload a local file as artifact `name` of `run_id`; returns the upload id (see
        `wait_done`). The file is linked (or copied) into the uploads area first, so it may be
        deleted once this returns. Raises ArtifactNameError for a bad name, OSError when the file
        cannot be read."""
        (upload_id,) = await self.add_local_many(run_id, [(name, path)])
        return upload_id

    async def add_local_many(self, run_id: str, files: list[tuple[str, str | os.PathLike[str]]]) -> list[str]:
        """`add_local` for several files (one forced write to disk for all); returns their upload
        ids in order, "" for a file that was skipped (bad name, unreadable: logged)."""
        metas: list[dict | None] = await asyncio.to_thread(self._take_local, run_id, files)
        ready = [m for m in metas if m is not None]
        if ready:
            await asyncio.to_thread(self._sync, ready)
            for meta in ready:
                self._enqueue(meta)
        return [m["upload_id"] if m is not None else "" for m in metas]

    def _take_local(self, run_id: str, files: list[tuple[str, str | os.PathLike[str]]]) -> list[dict | None]:
        out: list[dict | None] = []
        for name, path in files:
            upload_id = f"local-{uuid.uuid4().hex}"
            data = self.folder / f"{upload_id}.data"
            try:
                norm = normalize_name(name)
                try:
                    os.link(path, data)
                except OSError:
                    shutil.copyfile(path, data)
                digest = hashlib.sha256()
                size = 0
                with open(data, "rb") as f:
                    while chunk := f.read(FILE_CHUNK_BYTES):
                        digest.update(chunk)
                        size += len(chunk)
            except (OSError, ArtifactNameError) as e:
                data.unlink(missing_ok=True)
                log.warning(
                    "cannot upload a local file", extra={"fields": {"run": run_id, "name": name, "error": str(e)}}
                )
                out.append(None)
                continue
            meta = {
                "upload_id": upload_id,
                "run_id": run_id,
                "name": norm,
                "size": size,
                "sha256": digest.hexdigest(),
                "received": time.time(),
            }
            self._write_meta(meta)
            out.append(meta)
        return out

    async def wait_done(self, upload_ids: list[str]) -> dict[str, tuple[str, bool]]:
        """Wait until these uploads are done; returns upload id -> (error, conflict), error "" when
        committed at the collector."""
        for upload_id in upload_ids:
            event = self._done_events.get(upload_id)
            if event is not None:
                await event.wait()
        return {upload_id: self._results.get(upload_id, ("", False)) for upload_id in upload_ids}

    # --- uploading to the collector ---------------------------------------------------------------

    def _enqueue(self, meta: dict) -> None:
        self._pending[meta["upload_id"]] = meta
        self._done_events[meta["upload_id"]] = asyncio.Event()
        self._queue.put_nowait(meta)

    def _finish(self, meta: dict, error: str = "", conflict: bool = False) -> None:
        upload_id = meta["upload_id"]
        for suffix in (".data", ".json"):
            (self.folder / f"{upload_id}{suffix}").unlink(missing_ok=True)
        self._pending.pop(upload_id, None)
        self._results[upload_id] = (error, conflict)
        while len(self._results) > UPLOAD_RESULTS_KEPT:
            self._results.popitem(last=False)
        event = self._done_events.pop(upload_id, None)
        if event is not None:
            event.set()
        if error:
            log.warning(
                "upload refused by the collector",
                extra={"fields": {"run": meta["run_id"], "name": meta["name"], "reason": error}},
            )
        else:
            self.files_committed += 1

    async def _worker(self) -> None:
        while True:
            meta = await self._queue.get()
            if meta["size"] > INLINE_WRITE_MAX_BYTES:
                await self._upload_with_retry(meta)
                continue
            # Small files travel together: one UploadBatch stream for those ready now.
            batch = [meta]
            leftover = None
            while len(batch) < UPLOAD_BATCH_FILES and not self._queue.empty():
                nxt = self._queue.get_nowait()
                if nxt["size"] > INLINE_WRITE_MAX_BYTES:
                    leftover = nxt
                    break
                batch.append(nxt)
            if len(batch) == 1:
                await self._upload_with_retry(meta)
            else:
                await self._upload_batch_with_retry(batch)
            if leftover is not None:
                await self._upload_with_retry(leftover)

    def _backoff(self) -> Backoff:
        return Backoff(*self._backoff_args) if self._backoff_args else Backoff()

    async def _upload_with_retry(self, meta: dict) -> None:
        backoff = self._backoff()
        while True:
            channel = await self.link.channel()
            try:
                await self._upload(meta, channel)
                self.link.up()
                self._finish(meta)
                return
            except grpc.aio.AioRpcError as e:
                if e.code() in _PERMANENT:
                    self._finish(meta, e.details() or e.code().name, e.code() == grpc.StatusCode.ALREADY_EXISTS)
                    return
                if e.code() in REPLICA_FAILURES:
                    self.link.failed(channel)  # the retry goes to the next replica
                meta["resumed"] = True
                delay = backoff.next()
                fields = {"name": meta["name"], "code": e.code().name, "retry_in": round(delay, 2)}
                if e.code() in CREDENTIAL_FAILURES:
                    log.error(
                        f"the collector refused the agent's credentials for an upload: {e.details()}; the file "
                        "is kept and retried",
                        extra={"fields": fields},
                    )
                else:
                    log.info("upload interrupted; retrying", extra={"fields": fields})
                await asyncio.sleep(delay)  # backoff between attempts to reach the collector
            except FileNotFoundError:
                self._finish(meta, "the agent lost the file's data")
                return

    async def _upload_batch_with_retry(self, metas: list[dict]) -> None:
        backoff = self._backoff()
        while True:
            channel = await self.link.channel()
            stub = artifacts_pb2_grpc.ArtifactsStub(channel)
            try:
                requests = []
                for meta in metas:
                    with open(self.folder / f"{meta['upload_id']}.data", "rb") as f:
                        data = f.read()
                    header = artifacts_pb2.UploadHeader(
                        run_id=meta["run_id"],
                        name=meta["name"],
                        size=meta["size"],
                        sha256=meta["sha256"],
                        upload_id=meta["upload_id"],
                        created_time=meta["received"],
                    )
                    requests += [artifacts_pb2.UploadRequest(header=header), artifacts_pb2.UploadRequest(data=data)]
                reply = await stub.UploadBatch(iter(requests), timeout=300)
            except FileNotFoundError:
                break  # one file went missing: let each be handled on its own
            except grpc.aio.AioRpcError as e:
                if e.code() in _PERMANENT or e.code() == grpc.StatusCode.UNIMPLEMENTED:
                    break  # the batch as a whole was refused: send the files one by one
                if e.code() in REPLICA_FAILURES:
                    self.link.failed(channel)  # the retry goes to the next replica
                delay = backoff.next()
                log.info(
                    "batch upload interrupted; retrying",
                    extra={"fields": {"files": len(metas), "code": e.code().name, "retry_in": round(delay, 2)}},
                )
                await asyncio.sleep(delay)  # backoff between attempts to reach the collector
                continue
            for meta, result in zip(metas, reply.results, strict=True):
                if result.code == 0:
                    self._finish(meta)
                else:
                    conflict = result.code == grpc.StatusCode.ALREADY_EXISTS.value[0]
                    self._finish(meta, result.message or f"refused (code {result.code})", conflict)
            return
        for meta in metas:
            await self._upload_with_retry(meta)

    async def _upload(self, meta: dict, channel: grpc.aio.Channel) -> None:
        stub = artifacts_pb2_grpc.ArtifactsStub(channel)
        offset = 0
        if meta.get("resumed"):
            # A retry: ask how much of the earlier attempt the collector kept, and resume there.
            status = await stub.UploadStatus(
                artifacts_pb2.UploadStatusRequest(
                    run_id=meta["run_id"], name=meta["name"], sha256=meta["sha256"], upload_id=meta["upload_id"]
                ),
                timeout=60,
            )
            if status.committed:
                return
            if status.conflict:
                raise _conflict_error(meta)
            offset = min(status.offset, meta["size"])
        path = self.folder / f"{meta['upload_id']}.data"
        header = artifacts_pb2.UploadHeader(
            run_id=meta["run_id"],
            name=meta["name"],
            size=meta["size"],
            sha256=meta["sha256"],
            upload_id=meta["upload_id"],
            offset=offset,
            created_time=meta["received"],
        )
        if meta["size"] - offset <= INLINE_WRITE_MAX_BYTES:
            # A small file: read it here and send it as one message (no thread hops).
            with open(path, "rb") as small:
                small.seek(offset)
                data = small.read()
            requests = [artifacts_pb2.UploadRequest(header=header), artifacts_pb2.UploadRequest(data=data)]
            await stub.Upload(iter(requests))
            return
        f = open(path, "rb", buffering=0)  # noqa: SIM115 - closed below
        try:

            async def requests():
                yield artifacts_pb2.UploadRequest(header=header)
                await asyncio.to_thread(f.seek, offset)
                while True:
                    data = await asyncio.to_thread(f.read, FILE_CHUNK_BYTES)
                    if not data:
                        return
                    yield artifacts_pb2.UploadRequest(data=data)

            await stub.Upload(requests())
        finally:
            f.close()


def _conflict_error(meta: dict) -> grpc.aio.AioRpcError:
    from runwire.artifact_names import conflict_message

    return grpc.aio.AioRpcError(
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.aio.Metadata(),
        grpc.aio.Metadata(),
        details=conflict_message(meta["run_id"], meta["name"]),
    )
