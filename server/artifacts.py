"""The `Artifacts` gRPC service: files of runs and snapshots (RUN_API.md §8, §14).

Uploads stream in chunks into a partial file of the `ArtifactStore`; the bytes become visible
only after their size and sha256 match (an atomic rename into the content-addressed blob), and
then the (run, name) -> sha256 row is written through the `Store` interface. A stream that breaks
leaves the partial file, and `UploadStatus` tells the next attempt where to resume. Names are
write-once per run; a retried upload (same `upload_id`) is idempotent.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import grpc

from runwire import limits
from runwire.artifact_names import ArtifactNameError, conflict_message, normalize_name
from runwire.server import limits as server_limits
from runwire.server.blobstore import ArtifactStore, ChecksumMismatch, is_sha256
from runwire.server.bus import LiveBus
from runwire.server.errors import AlreadyExists, CollectorError, FailedPrecondition, InvalidArgument, NotFound, refuse
from runwire.server.records import ArtifactRecord, SnapshotRecord
from runwire.server.store.base import Store
from runwire.v1 import artifacts_pb2, artifacts_pb2_grpc

log = logging.getLogger(__name__)

SMALL_UPLOAD_BYTES = 64 * 1024
"""Uploads up to this size are gathered in memory and written, verified and committed in one go."""
BATCH_MAX_FILES = 256
"""Files in one `UploadBatch` stream at most."""


def _info(a: ArtifactRecord) -> artifacts_pb2.ArtifactInfo:
    return artifacts_pb2.ArtifactInfo(
        run_id=a.run_id, name=a.name, sha256=a.sha256, size=a.size, created_time=a.created_time
    )


def _created(stated: float) -> float:
    """The creation time an uploader stated (when the file was handed over), if plausible, else now."""
    now = time.time()
    return stated if 0 < stated <= now + 60 else now


def partial_key(run_id: str, name: str, sha256: str) -> str:
    return f"{run_id}\0{name}\0{sha256}"


def parse_manifest(raw: bytes) -> list[dict]:
    """The files of a snapshot manifest, checked: safe relative paths, sha256 digests, sizes."""
    try:
        doc = json.loads(raw)
        files = doc["files"]
        out = []
        for f in files:
            path = normalize_name(f["path"])
            if path != f["path"] or not is_sha256(f["sha256"]) or int(f["size"]) < 0:
                raise ValueError(f"bad manifest entry {f!r}")
            out.append(f)
    except (ValueError, KeyError, TypeError, ArtifactNameError) as e:
        raise InvalidArgument(f"invalid snapshot manifest: {e}") from None
    return out


class _DurabilityBatcher:
    """Makes committed blobs durable in batches: the uploads that finish while one batch is being
    synced share the next sync (group commit for files)."""

    def __init__(self, sync) -> None:
        self._sync = sync
        self._waiting: list[tuple[str, asyncio.Future]] = []
        self._task: asyncio.Task | None = None

    async def wait(self, sha256: str) -> None:
        await self.wait_many([sha256])

    async def wait_many(self, sha256s: list[str]) -> None:
        loop = asyncio.get_running_loop()
        futs = []
        for sha in sha256s:
            fut = loop.create_future()
            self._waiting.append((sha, fut))
            futs.append(fut)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        await asyncio.gather(*futs)

    async def _run(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                await self._sync(sorted({sha for sha, _ in batch}))
                error = None
            except Exception as e:
                error = e
            for _, fut in batch:
                if fut.done():
                    continue
                if error is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(error)


class ArtifactsService(artifacts_pb2_grpc.ArtifactsServicer):
    def __init__(self, store: Store, blobs: ArtifactStore, live: LiveBus | None = None) -> None:
        self._store = store
        self._blobs = blobs
        self._live = live  # told of every committed artifact (file events for subscribers)
        self._pool = ThreadPoolExecutor(server_limits.ARTIFACT_IO_THREADS, thread_name_prefix="runwire-artifacts")
        self._busy: set[str] = set()  # partial keys with an upload stream in progress
        self._durable = _DurabilityBatcher(lambda shas: self._io(self._blobs.make_durable, shas))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _published(self, record: ArtifactRecord) -> None:
        if self._live is not None:
            self._live.publish_file(record.run_id, record.name, record.size)

    async def _io(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    @staticmethod
    async def _refuse(context: grpc.aio.ServicerContext, rpc: str, e: Exception) -> None:
        if isinstance(e, ArtifactNameError):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        await refuse(context, rpc, e)

    # --- upload -----------------------------------------------------------------------------------

    def _commit_small(self, key: str, data: bytes, h: artifacts_pb2.UploadHeader, name: str) -> None:
        partial = self._blobs.open_partial(key, 0)
        try:
            partial.write(data)
            partial.commit(h.size, h.sha256)
        except ChecksumMismatch as e:
            raise InvalidArgument(f"upload of {name or 'blob'} failed verification: {e}") from None
        finally:
            partial.close()

    def _commit_many(self, items: list[tuple[str, bytes, artifacts_pb2.UploadHeader, str]]) -> list[str | None]:
        """Write and commit several small files in one worker call; an error message per file, or None."""
        out: list[str | None] = []
        for key, data, h, name in items:
            try:
                self._commit_small(key, data, h, name)
                out.append(None)
            except InvalidArgument as e:
                out.append(str(e))
        return out

    @staticmethod
    def _valid_header(h: artifacts_pb2.UploadHeader) -> str:
        """The normalised name of a run artifact's header; InvalidArgument / ArtifactNameError."""
        if not is_sha256(h.sha256):
            raise InvalidArgument(f"sha256 {h.sha256!r} is not a lowercase hex sha256 digest")
        if h.size > limits.MAX_ARTIFACT_BYTES:
            raise InvalidArgument(
                f"a file of {h.size} bytes is larger than MAX_ARTIFACT_BYTES ({limits.MAX_ARTIFACT_BYTES})"
            )
        return normalize_name(h.name)

    async def _check_header(self, h: artifacts_pb2.UploadHeader) -> tuple[str, str]:
        if not is_sha256(h.sha256):
            raise InvalidArgument(f"sha256 {h.sha256!r} is not a lowercase hex sha256 digest")
        if h.size > limits.MAX_ARTIFACT_BYTES:
            raise InvalidArgument(
                f"a file of {h.size} bytes is larger than MAX_ARTIFACT_BYTES ({limits.MAX_ARTIFACT_BYTES})"
            )
        if not h.run_id:
            return "", ""
        name = normalize_name(h.name)
        existing = await self._store.get_artifact(h.run_id, name)
        if existing is not None:
            if h.upload_id and existing.upload_id == h.upload_id and existing.sha256 == h.sha256:
                return name, "committed"
            raise AlreadyExists(conflict_message(h.run_id, name))
        # An unknown run is refused (NotFound) when the metadata row is written.
        return name, ""

    async def Upload(
        self, request_iterator: AsyncIterator[artifacts_pb2.UploadRequest], context: grpc.aio.ServicerContext
    ) -> artifacts_pb2.ArtifactInfo:
        key = None
        partial = None
        try:
            first = await anext(aiter(request_iterator), None)
            if first is None or first.WhichOneof("body") != "header":
                raise InvalidArgument("an upload starts with an UploadHeader message")
            h = first.header
            name, state = await self._check_header(h)
            if state == "committed":
                return _info(await self._store.get_artifact(h.run_id, name))
            # Bare blobs (snapshot content) are not resumed: concurrent uploads of the same content
            # (several processes snapshotting one folder) each write their own partial file.
            key = partial_key(h.run_id, name, h.sha256) if h.run_id else f"blob\0{h.sha256}\0{uuid.uuid4().hex}"
            if key in self._busy:
                raise FailedPrecondition(f"another upload of {name or h.sha256!r} is in progress; retry later")
            self._busy.add(key)
            if not h.run_id and await self._io(self._blobs.has, h.sha256):
                return artifacts_pb2.ArtifactInfo(sha256=h.sha256, size=h.size)
            if h.offset == 0 and h.size <= SMALL_UPLOAD_BYTES:
                # A small file: gather it, then write, verify and commit it in one worker call.
                received = bytearray()
                async for msg in request_iterator:
                    received += msg.data
                    if len(received) > h.size:
                        raise InvalidArgument(f"received more than the announced {h.size} bytes")
                if len(received) < h.size:
                    raise FailedPrecondition(f"upload ended after {len(received)} of {h.size} bytes; send it again")
                await self._io(self._commit_small, key, bytes(received), h, name)
            else:
                kept = await self._io(self._blobs.partial_size, key)
                if h.offset > kept:
                    raise FailedPrecondition(f"cannot resume at offset {h.offset}: the collector holds {kept} bytes")
                partial = await self._io(self._blobs.open_partial, key, h.offset)
                async for msg in request_iterator:
                    data = msg.data
                    if partial.offset + len(data) > h.size:
                        raise InvalidArgument(f"received more than the announced {h.size} bytes")
                    await self._io(partial.write, data)
                if partial.offset < h.size:
                    # The sender stopped early: keep what arrived for a resume.
                    raise FailedPrecondition(f"upload ended after {partial.offset} of {h.size} bytes; resume it")
                try:
                    await self._io(partial.commit, h.size, h.sha256)
                except ChecksumMismatch as e:
                    raise InvalidArgument(f"upload of {name or 'blob'} failed verification: {e}") from None
                partial = None
            await self._durable.wait(h.sha256)  # on stable storage before the metadata row points at it
            if not h.run_id:
                return artifacts_pb2.ArtifactInfo(sha256=h.sha256, size=h.size)
            record = await self._store.add_artifact(
                ArtifactRecord(h.run_id, name, h.sha256, h.size, h.upload_id, _created(h.created_time))
            )
            log.debug("artifact committed", extra={"fields": {"run": h.run_id, "name": name, "size": h.size}})
            self._published(record)
            return _info(record)
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception as e:
            await self._refuse(context, "Upload", e)
            raise
        finally:
            if partial is not None:
                # A run's upload keeps its partial file for a resume; a bare blob starts over.
                await self._io(partial.close if h.run_id else partial.discard)
            if key is not None:
                self._busy.discard(key)

    async def UploadBatch(
        self, request_iterator: AsyncIterator[artifacts_pb2.UploadRequest], context: grpc.aio.ServicerContext
    ) -> artifacts_pb2.UploadBatchResponse:
        files: list[tuple[artifacts_pb2.UploadHeader, bytearray]] = []
        try:
            async for msg in request_iterator:
                if msg.WhichOneof("body") == "header":
                    h = msg.header
                    if not h.run_id or h.offset or h.size > SMALL_UPLOAD_BYTES:
                        raise InvalidArgument(
                            f"UploadBatch takes run artifacts of at most {SMALL_UPLOAD_BYTES} bytes sent whole"
                        )
                    if len(files) >= BATCH_MAX_FILES:
                        raise InvalidArgument(f"UploadBatch takes at most {BATCH_MAX_FILES} files")
                    files.append((h, bytearray()))
                elif not files:
                    raise InvalidArgument("UploadBatch: data before the first header")
                else:
                    h, data = files[-1]
                    data += msg.data
                    if len(data) > h.size:
                        raise InvalidArgument(f"{h.name!r}: received more than the announced {h.size} bytes")
            results = [artifacts_pb2.UploadResult(upload_id=h.upload_id) for h, _ in files]

            def refuse(i: int, e: Exception) -> None:
                code = e.code if isinstance(e, CollectorError) else grpc.StatusCode.INVALID_ARGUMENT
                results[i].code, results[i].message = code.value[0], str(e)

            checked = []  # (index, header, name, data)
            for i, (h, data) in enumerate(files):
                try:
                    if len(data) != h.size:
                        raise InvalidArgument(f"{h.name!r}: received {len(data)} of {h.size} bytes")
                    checked.append((i, h, self._valid_header(h), data))
                except (CollectorError, ArtifactNameError) as e:
                    refuse(i, e)
            # Names already taken, one read per run; then the new blobs in one worker call.
            wanted: dict[str, set[str]] = {}
            for _, h, name, _ in checked:
                wanted.setdefault(h.run_id, set()).add(name)
            taken = {run_id: await self._store.get_artifacts(run_id, sorted(names)) for run_id, names in wanted.items()}
            ready = []  # (index, header, name) of files whose blob is committed
            writes = []
            for i, h, name, data in checked:
                existing = taken[h.run_id].get(name)
                if existing is None:
                    writes.append((i, h, name, data))
                elif h.upload_id and existing.upload_id == h.upload_id and existing.sha256 == h.sha256:
                    ready.append((i, h, name))  # a retry of a committed upload
                else:
                    refuse(i, AlreadyExists(conflict_message(h.run_id, name)))
            if writes:
                items = [
                    (partial_key(h.run_id, name, h.sha256) + f"\0{uuid.uuid4().hex}", bytes(data), h, name)
                    for _, h, name, data in writes
                ]
                for (i, h, name, _), error in zip(writes, await self._io(self._commit_many, items), strict=True):
                    if error is None:
                        ready.append((i, h, name))
                    else:
                        refuse(i, InvalidArgument(error))
            if ready:
                await self._durable.wait_many(sorted({h.sha256 for _, h, _ in ready}))
                records = [
                    ArtifactRecord(h.run_id, name, h.sha256, h.size, h.upload_id, _created(h.created_time))
                    for _, h, name in ready
                ]
                for (i, _, _), outcome in zip(ready, await self._store.add_artifacts(records), strict=True):
                    if isinstance(outcome, CollectorError):
                        refuse(i, outcome)
                    else:
                        results[i].info.CopyFrom(_info(outcome))
                        self._published(outcome)
            return artifacts_pb2.UploadBatchResponse(results=results)
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception as e:
            await self._refuse(context, "UploadBatch", e)
            raise

    async def UploadStatus(
        self, request: artifacts_pb2.UploadStatusRequest, context: grpc.aio.ServicerContext
    ) -> artifacts_pb2.UploadStatusResponse:
        try:
            name = normalize_name(request.name)
            existing = await self._store.get_artifact(request.run_id, name)
            if existing is not None:
                same = bool(request.upload_id) and existing.upload_id == request.upload_id
                return artifacts_pb2.UploadStatusResponse(committed=same, conflict=not same)
            kept = await self._io(self._blobs.partial_size, partial_key(request.run_id, name, request.sha256))
            return artifacts_pb2.UploadStatusResponse(offset=kept)
        except Exception as e:
            await self._refuse(context, "UploadStatus", e)
            raise

    # --- reads ------------------------------------------------------------------------------------

    async def Download(
        self, request: artifacts_pb2.DownloadRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[artifacts_pb2.DataChunk]:
        try:
            if request.run_id:
                name = normalize_name(request.name)
                record = await self._store.get_artifact(request.run_id, name)
                if record is None:
                    raise NotFound(f"run {request.run_id} has no artifact {name!r}")
                info = _info(record)
            else:
                if not await self._io(self._blobs.has, request.sha256):
                    raise NotFound(f"no blob {request.sha256!r}")
                info = artifacts_pb2.ArtifactInfo(
                    sha256=request.sha256, size=await self._io(self._blobs.size, request.sha256)
                )
            chunks = self._blobs.read(info.sha256, request.offset)
        except Exception as e:
            await self._refuse(context, "Download", e)
            raise
        first = True
        while True:
            data = await self._io(next, chunks, None)
            if data is None:
                break
            yield artifacts_pb2.DataChunk(data=data, info=info) if first else artifacts_pb2.DataChunk(data=data)
            first = False
        if first:  # an empty file still tells its info
            yield artifacts_pb2.DataChunk(info=info)

    async def List(
        self, request: artifacts_pb2.ListArtifactsRequest, context: grpc.aio.ServicerContext
    ) -> artifacts_pb2.ListArtifactsResponse:
        try:
            found = await self._store.list_artifacts(request.run_id, request.prefix)
            return artifacts_pb2.ListArtifactsResponse(artifacts=[_info(a) for a in found])
        except Exception as e:
            await self._refuse(context, "List", e)
            raise

    async def Check(
        self, request: artifacts_pb2.CheckArtifactsRequest, context: grpc.aio.ServicerContext
    ) -> artifacts_pb2.CheckArtifactsResponse:
        try:
            await self._store.get_run(request.run_id)  # NotFound for an unknown run
            wanted = sorted({normalize_name(n) for n in request.names})
            found = await self._store.get_artifacts(request.run_id, wanted)
            run_bytes = await self._store.run_artifact_bytes(request.run_id)
            return artifacts_pb2.CheckArtifactsResponse(existing=[n for n in wanted if n in found], run_bytes=run_bytes)
        except Exception as e:
            await self._refuse(context, "Check", e)
            raise

    async def MissingBlobs(
        self, request: artifacts_pb2.MissingBlobsRequest, context: grpc.aio.ServicerContext
    ) -> artifacts_pb2.MissingBlobsResponse:
        def missing() -> list[str]:
            return [s for s in request.sha256 if not self._blobs.has(s)]

        return artifacts_pb2.MissingBlobsResponse(sha256=await self._io(missing))

    # --- snapshots --------------------------------------------------------------------------------

    def _store_manifest(self, raw: bytes, sha: str) -> None:
        if self._blobs.has(sha):
            return
        partial = self._blobs.open_partial(f"manifest\0{sha}", 0)
        try:
            partial.write(raw)
            partial.commit(len(raw), sha)
        finally:
            partial.close()
        self._blobs.make_durable([sha])

    async def PutSnapshot(
        self, request: artifacts_pb2.PutSnapshotRequest, context: grpc.aio.ServicerContext
    ) -> artifacts_pb2.SnapshotInfo:
        try:
            raw = request.manifest
            files = parse_manifest(raw)
            missing = await self._io(lambda: [f["path"] for f in files if not self._blobs.has(f["sha256"])])
            if missing:
                raise FailedPrecondition(
                    f"snapshot content not uploaded yet for {len(missing)} files, e.g. {missing[0]!r}"
                )
            sha = hashlib.sha256(raw).hexdigest()
            await self._io(self._store_manifest, raw, sha)
            record = await self._store.put_snapshot(
                SnapshotRecord(sha, len(files), sum(int(f["size"]) for f in files), time.time())
            )
            return artifacts_pb2.SnapshotInfo(
                snapshot_id=record.snapshot_id, files=record.files, size=record.size, created_time=record.created_time
            )
        except Exception as e:
            await self._refuse(context, "PutSnapshot", e)
            raise

    async def GetSnapshot(
        self, request: artifacts_pb2.GetSnapshotRequest, context: grpc.aio.ServicerContext
    ) -> artifacts_pb2.SnapshotInfo:
        try:
            if not is_sha256(request.snapshot_id):
                raise NotFound(f"snapshot {request.snapshot_id!r} not found")
            record = await self._store.get_snapshot(request.snapshot_id)
            manifest = b"".join(await self._io(lambda: list(self._blobs.read(record.snapshot_id))))
            return artifacts_pb2.SnapshotInfo(
                snapshot_id=record.snapshot_id,
                manifest=manifest,
                files=record.files,
                size=record.size,
                created_time=record.created_time,
            )
        except Exception as e:
            await self._refuse(context, "GetSnapshot", e)
            raise


ARTIFACTS_SERVICE_NAME = artifacts_pb2.DESCRIPTOR.services_by_name["Artifacts"].full_name


def add_artifacts_servicer(service: ArtifactsService, server: grpc.aio.Server) -> None:
    artifacts_pb2_grpc.add_ArtifactsServicer_to_server(service, server)
