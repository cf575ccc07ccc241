"""A run's files, log files and snapshot: bytes served safely (attachments unless an image is asked
for inline; `nosniff`; never HTML inline)."""

from __future__ import annotations

import asyncio
import mimetypes
import tempfile
import zipfile
from typing import IO
from urllib.parse import quote

from aiohttp import web

from runwire import limits as shared_limits
from runwire.artifacts import image_type
from runwire.server.artifacts import parse_manifest
from runwire.server.blobstore import ArtifactStore, is_sha256
from runwire.server.query import read_log_chunks
from runwire.server.studio import convert, limits, params
from runwire.server.studio.context import StudioContext
from runwire.server.studio.errors import not_found

_INLINE_IMAGES = frozenset({"png", "jpeg", "gif", "webp", "bmp"})
"""Image kinds (as `runwire.artifacts.image_type` sniffs them) browsers show inline; TIFF is not one."""
_SAFE_TYPES = ("text/plain", "text/csv", "application/json", "application/octet-stream", "application/zip")
"""Declared content types kept for downloads; anything else (HTML, SVG, scripts) is sent as octet-stream."""
_FILE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cache-Control": "no-store",
}


def sniff_image(head: bytes) -> str | None:
    """The image content type of bytes starting with `head` (png/jpeg/gif/webp/bmp), else None."""
    kind = image_type(head)
    return f"image/{kind}" if kind in _INLINE_IMAGES else None


def guess_type(name: str) -> str:
    """The content type a file's name suggests, limited to harmless ones."""
    guessed, _ = mimetypes.guess_type(name, strict=False)
    if guessed in _SAFE_TYPES or ((guessed or "").startswith("image/") and guessed != "image/svg+xml"):
        return guessed or "application/octet-stream"
    if guessed and guessed.startswith("text/") and guessed not in ("text/html", "text/xml", "text/javascript"):
        return "text/plain"
    return "application/octet-stream"


def _disposition(kind: str, name: str) -> str:
    base = name.rsplit("/", 1)[-1] or "file"
    ascii_name = "".join(c if c.isascii() and c.isprintable() and c not in '"\\;' else "_" for c in base)
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(base, safe='')}"


class FilesApi:
    def __init__(self, ctx: StudioContext) -> None:
        self._store = ctx.store
        self._blobs = ctx.blobs

    def _blob_store(self) -> ArtifactStore:
        blobs = self._blobs()
        if blobs is None:
            raise not_found("the collector has no artifact store")
        return blobs

    async def files(self, request: web.Request) -> web.Response:
        run_id = params.path_param(request, "run_id")
        found = await self._store.list_artifacts(run_id)
        return web.json_response(
            {
                "files": [
                    {
                        "name": a.name,
                        "size": a.size,
                        "sha256": a.sha256,
                        "created_time": a.created_time,
                        "content_type": guess_type(a.name),
                    }
                    for a in found
                ]
            }
        )

    async def file(self, request: web.Request) -> web.StreamResponse:
        run_id = params.path_param(request, "run_id")
        name = params.path_param(request, "name")
        inline = params.query_bool(request, "inline", False)
        await self._store.get_run(run_id)
        record = await self._store.get_artifact(run_id, name)
        if record is None:
            raise not_found(f"run {run_id} has no file {name!r}")
        blobs = self._blob_store()
        chunks = blobs.read(record.sha256)
        try:
            first = await asyncio.to_thread(next, chunks, b"")
        except FileNotFoundError:
            raise not_found(f"the bytes of file {name!r} of run {run_id} are missing on the collector") from None
        image = sniff_image(first[:16])
        ctype = image or guess_type(name)
        if ctype.startswith("image/") and not image:
            ctype = "application/octet-stream"  # named like an image, but is not one
        headers = dict(_FILE_HEADERS)
        headers["Content-Disposition"] = _disposition("inline" if inline and image else "attachment", name)
        headers["Content-Type"] = ctype
        resp = web.StreamResponse(headers=headers)
        resp.content_length = record.size
        await resp.prepare(request)
        if first:
            await resp.write(first)
        while True:
            data = await asyncio.to_thread(next, chunks, b"")
            if not data:
                break
            await resp.write(data)
        await resp.write_eof()
        return resp

    async def log(self, request: web.Request) -> web.StreamResponse:
        run_id = params.path_param(request, "run_id")
        path = params.path_param(request, "path")
        from_line = params.query_int(request, "from_line", 0, 0, 2**62)
        max_lines = params.query_int(request, "max_lines", 0, 0, 2**62)
        fmt = params.query_choice(request, "format", ("text", "json"), "text")
        run = await self._store.get_run(run_id)
        if path not in run.log_files:
            raise not_found(f"run {run_id} has no log file {path!r}")
        if fmt == "json":
            want = (
                limits.STUDIO_LOG_JSON_MAX_LINES if max_lines == 0 else min(max_lines, limits.STUDIO_LOG_JSON_MAX_LINES)
            )
            lines: list[str] = []
            total = 0
            async for chunk in read_log_chunks(self._store, run_id, path, from_line, want):
                lines.extend(chunk.lines)
                total = chunk.total_lines
            return web.json_response({"path": path, "first_line": from_line, "lines": lines, "total": total})
        resp = web.StreamResponse(
            headers={"Content-Type": "text/plain; charset=utf-8", "X-Content-Type-Options": "nosniff"}
        )
        await resp.prepare(request)
        async for chunk in read_log_chunks(self._store, run_id, path, from_line, max_lines):
            if chunk.lines:
                await resp.write(("\n".join(chunk.lines) + "\n").encode("utf-8", "replace"))
        await resp.write_eof()
        return resp

    async def snapshot(self, request: web.Request) -> web.StreamResponse:
        run_id = params.path_param(request, "run_id")
        run = await self._store.get_run(run_id)
        snapshot_id = run.properties.get(convert.SNAPSHOT_PROPERTY) or ""
        if not is_sha256(snapshot_id):
            raise not_found(f"run {run_id} has no snapshot")
        await self._store.get_snapshot(snapshot_id)
        blobs = self._blob_store()
        archive = await asyncio.to_thread(_build_zip, blobs, snapshot_id)
        try:
            size = archive.seek(0, 2)
            archive.seek(0)
            resp = web.StreamResponse(
                headers={
                    "Content-Type": "application/zip",
                    "Content-Disposition": _disposition("attachment", f"{snapshot_id}.zip"),
                    **{k: v for k, v in _FILE_HEADERS.items() if k != "Content-Security-Policy"},
                }
            )
            resp.content_length = size
            await resp.prepare(request)
            while True:
                data = await asyncio.to_thread(archive.read, shared_limits.FILE_CHUNK_BYTES)
                if not data:
                    break
                await resp.write(data)
            await resp.write_eof()
            return resp
        finally:
            archive.close()


def _build_zip(blobs: ArtifactStore, snapshot_id: str) -> IO[bytes]:
    """The snapshot as a zip (members relative to the snapshot root) in a temporary file, as the
    SDK's `restore_zip` writes it."""
    files = parse_manifest(b"".join(blobs.read(snapshot_id)))
    out = tempfile.TemporaryFile()  # noqa: SIM115 (handed to the caller, who closes it)
    try:
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
            for f in files:
                with zf.open(f["path"], "w", force_zip64=f["size"] > 2**31) as member:
                    for data in blobs.read(f["sha256"]):
                        member.write(data)
    except BaseException:
        out.close()
        raise
    return out
