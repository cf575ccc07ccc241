"""Files of a run: uploads, downloads, images and JSON metrics, the outputs folder, snapshots
(RUN_API.md §5, §6.4, §8, §14). `Run` inherits these methods from `RunFiles`.

Uploads go to the agent (which spools them on its disk and uploads them to the collector in the
background); `upload_file` returns once the agent holds the whole file, and `run.flush()` /
`complete()` wait until the collector has committed it. With no agent reachable, files go straight
to the collector over gRPC. Downloads come straight from the collector.
"""

from __future__ import annotations

import io
import json
import logging
import os
import tempfile
import threading
import time
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runwire import _validate as v
from runwire import codec, snapshot
from runwire._transports.files import (
    AgentUnavailable,
    UploadRefused,
    call,
    download_to,
    get_sender,
    open_source,
    upload_direct,
)
from runwire.artifact_names import artifact_uri, conflict_message, normalize_name
from runwire.exceptions import (
    AzureMLAggregatedException,
    AzureMLException,
    RunNotFoundError,
    ServiceUnavailableError,
    SnapshotException,
    UserErrorException,
)
from runwire.limits import MAX_ARTIFACT_BYTES, MAX_RUN_ARTIFACT_BYTES
from runwire.v1 import artifacts_pb2

if TYPE_CHECKING:
    from runwire._transports import Transport

log = logging.getLogger("runwire.sdk")

SEND_BATCH_FILES = 256
"""Files the SDK sends to the agent in one pipelined batch (then waits for their acks)."""
CHECK_WAIT_S = 2.0
"""How long the name check before an upload waits for an unreachable collector (then the agent takes the file)."""
AGENT_RETRY_S = 10.0
"""How long an upload interrupted by a lost agent waits for an agent before going straight to the collector."""
AGENT_LOST_GRACE_S = 10.0
"""How long `flush()` waits for a lost agent to come back before leaving its files to it (with a warning)."""
DOWNLOAD_THREADS = 8
"""Files `download_files` fetches at once."""
SNAPSHOT_PROPERTY = "ContentSnapshotId"

# Names uploaded from this process, per run id: a second upload to a name fails at once.
_uploaded: dict[str, set[str]] = {}
_uploaded_lock = threading.Lock()

_IMAGE_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
)


@dataclass(frozen=True)
class UploadResult:
    """What an upload returns: the artifact's name (its path in the run), size and sha256."""

    name: str
    size: int
    sha256: str
    run_id: str

    @property
    def artifact_uri(self) -> str:
        return artifact_uri(self.run_id, self.name)


@dataclass
class ArtifactValue:
    """An artifact-backed metric value with `populate=True`: the URI and the downloaded bytes."""

    uri: str
    name: str
    data: bytes

    def __str__(self) -> str:
        return self.uri


def image_type(head: bytes) -> str | None:
    for magic, kind in _IMAGE_MAGIC:
        if head.startswith(magic):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def _is_source(obj: Any) -> bool:
    return isinstance(obj, str | os.PathLike | io.IOBase) or (hasattr(obj, "read") and callable(obj.read))


def _conflict(run_id: str, name: str) -> AzureMLAggregatedException:
    return AzureMLAggregatedException(f"UserError: {conflict_message(run_id, name)}")


class RunFiles:
    """The file methods of `Run` (mixed in)."""

    _id: str
    _transport: Transport
    _outputs_dir: str | None

    # --- uploads ----------------------------------------------------------------------------------

    def upload_file(self, name: str, path_or_stream: Any, datastore_name: str | None = None) -> UploadResult:
        """Upload a file (a path, or a binary stream read from where it stands) as artifact `name`.
        Write-once: a name the run already has is a conflict."""
        return self._upload([(name, path_or_stream)])[0]

    def upload_files(
        self,
        names: list[str],
        paths: list[Any],
        return_artifacts: bool = False,
        timeout_seconds: float | None = None,
        datastore_name: str | None = None,
    ) -> list[UploadResult]:
        """Upload several files: `names[i]` <- `paths[i]` (lists of equal length)."""
        if not isinstance(names, list | tuple) or not isinstance(paths, list | tuple) or len(names) != len(paths):
            raise TypeError("upload_files takes two lists of equal length: names and paths")
        return self._upload(list(zip(names, paths, strict=True)))

    def upload_folder(self, name: str, path: str, datastore_name: str | None = None) -> list[UploadResult]:
        """Upload every file under folder `path`; artifact name = name + file path[len(path):]."""
        if not isinstance(path, str | os.PathLike) or not os.path.isdir(path):
            raise UserErrorException(f"upload_folder: {path!r} is not a folder")
        path = os.fspath(path)
        items = []
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for f in sorted(files):
                full = os.path.join(root, f)
                artifact = name + full[len(path) :].replace(os.sep, "/")
                items.append((artifact if name else artifact.lstrip("/"), full))  # name "": paths as they are
        return self._upload(items)

    def _check_names(self, items: list[tuple[str, Any]]) -> list[tuple[str, Any, int | None]]:
        out = []
        seen: set[str] = set()
        for raw, source in items:
            name = normalize_name(raw)
            if not _is_source(source):
                raise UserErrorException(
                    f"UnsupportedType: path_or_stream must be a path (str) or a stream (io.IOBase), "
                    f"not {type(source).__name__}"
                )
            size = None
            if isinstance(source, str | os.PathLike):
                if not os.path.isfile(source):
                    raise UserErrorException(f"cannot upload {name!r}: {os.fspath(source)!r} is not a file")
                size = os.path.getsize(source)
                if size > MAX_ARTIFACT_BYTES:
                    raise UserErrorException(
                        f"cannot upload {name!r}: {size} bytes is more than MAX_ARTIFACT_BYTES ({MAX_ARTIFACT_BYTES})"
                    )
            if name in seen:
                raise _conflict(self._id, name)
            seen.add(name)
            out.append((name, source, size))
        return out

    def _remote_check(self, names: list[str], new_bytes: int) -> None:
        with _uploaded_lock:
            mine = _uploaded.get(self._id, set())
            taken = [n for n in names if n in mine]
        if taken:
            raise _conflict(self._id, taken[0])
        client = self._transport.collector
        reply = None
        for lo in range(0, len(names), 5000):
            try:
                request = artifacts_pb2.CheckArtifactsRequest(run_id=self._id, names=names[lo : lo + 5000])
                reply = call(client, "Check", request, wait_s=CHECK_WAIT_S)
            except ServiceUnavailableError as error:
                # The collector is away: the agent takes the file and uploads it later; a name
                # conflict then shows up as a warning at flush().
                log.info("cannot check artifact names with the collector (%s); uploading anyway", error)
                return
            if reply.existing:
                raise _conflict(self._id, reply.existing[0])
        if reply is not None and reply.run_bytes + new_bytes > MAX_RUN_ARTIFACT_BYTES:
            raise UserErrorException(
                f"run {self._id}: uploading {new_bytes} more bytes would take its artifacts over "
                f"MAX_RUN_ARTIFACT_BYTES ({MAX_RUN_ARTIFACT_BYTES})"
            )

    def _upload(self, items: list[tuple[str, Any]]) -> list[UploadResult]:
        checked = self._check_names(items)
        if not checked:
            return []
        names = [n for n, _, _ in checked]
        self._remote_check(names, sum(s or 0 for _, _, s in checked))
        with _uploaded_lock:
            _uploaded.setdefault(self._id, set()).update(names)
        results: list[UploadResult] = []
        try:
            for lo in range(0, len(checked), SEND_BATCH_FILES):
                batch = [(uuid.uuid4().hex, self._id, n, src) for n, src, _ in checked[lo : lo + SEND_BATCH_FILES]]
                results += self._send_batch(batch)
        except BaseException:
            with _uploaded_lock:
                done = {r.name for r in results}
                _uploaded.get(self._id, set()).difference_update(set(names) - done)
            raise
        return results

    def _send_batch(self, batch: list[tuple[str, str, str, Any]]) -> list[UploadResult]:
        sender = get_sender(self._transport.endpoint.agent_socket)
        deadline = time.monotonic() + AGENT_RETRY_S
        while True:
            try:
                sent = sender.send_many(batch)
                return [UploadResult(s.name, s.size, s.sha256, s.run_id) for s in sent]
            except UploadRefused as e:
                raise UserErrorException(f"the agent refused the upload: {e}") from None
            except AgentUnavailable:
                break
            except ConnectionError as e:
                # The agent went away before acknowledging: resend (same upload ids, so nothing is
                # stored twice) to the agent once it is back, else straight to the collector.
                if time.monotonic() > deadline:
                    break
                log.info("%s; resending", e)
                time.sleep(0.2)  # the agent is restarting: give it a moment before reconnecting
        return self._direct_batch(batch)

    def _direct_batch(self, batch: list[tuple[str, str, str, Any]]) -> list[UploadResult]:
        results = []
        for upload_id, run_id, name, source in batch:
            try:
                size, sha = upload_direct(self._transport.collector, upload_id, run_id, name, source)
            except UploadRefused as e:
                if e.conflict:
                    raise _conflict(run_id, name) from None
                raise UserErrorException(str(e)) from None
            results.append(UploadResult(name, size, sha, run_id))
        return results

    def _flush_files(self, timeout: float) -> None:
        """Wait until the files this process sent for this run are committed at the collector."""
        sender = get_sender(self._transport.endpoint.agent_socket)
        deadline = time.monotonic() + timeout
        unreachable_since = None
        while True:
            try:
                refused = sender.wait(max(0.1, deadline - time.monotonic()), run_id=self._id)
                break
            except TimeoutError:
                msg = f"runwire: files of run {self._id} are not committed yet; the agent keeps uploading them"
                warnings.warn(msg, RuntimeWarning, stacklevel=3)
                return
            except ConnectionError as e:
                now = time.monotonic()
                unreachable_since = unreachable_since or now
                if now > deadline or now - unreachable_since > AGENT_LOST_GRACE_S:
                    warnings.warn(f"runwire: {e}; the agent uploads the files when it is back", RuntimeWarning, 3)
                    return
                time.sleep(0.2)  # the agent is restarting; its uploads folder keeps the files
        for s, error, conflict in refused:
            with _uploaded_lock:
                _uploaded.get(s.run_id, set()).discard(s.name)
            text = f"UserError: {conflict_message(s.run_id, s.name)}" if conflict else f"{s.name}: {error}"
            warnings.warn(f"runwire: the collector refused file {s.name!r}: {text}", RuntimeWarning, stacklevel=3)
            log.warning("the collector refused file %r: %s", s.name, text)

    # --- reading ----------------------------------------------------------------------------------

    def _list_artifacts(self, prefix: str = "") -> list[artifacts_pb2.ArtifactInfo]:
        request = artifacts_pb2.ListArtifactsRequest(run_id=self._id, prefix=prefix)
        return list(call(self._transport.collector, "List", request).artifacts)

    def get_file_names(self) -> list[str]:
        """Every artifact name of the run, in upload order."""
        self._flush_files_if_sent()
        return [a.name for a in self._list_artifacts()]

    def _flush_files_if_sent(self) -> None:
        sender = get_sender(self._transport.endpoint.agent_socket)
        if any(s.run_id == self._id for s in list(sender._pending.values())):
            self._flush_files(60)

    def download_file(self, name: str, output_file_path: str | None = None, _validate_checksum: bool = False) -> None:
        """Download artifact `name` to `output_file_path` (default: its basename in the cwd; an
        existing folder: `<folder>/<basename>`)."""
        self._flush_files_if_sent()
        name = normalize_name(name)
        base = name.rsplit("/", 1)[-1]
        if output_file_path is None:
            target = Path.cwd() / base
        elif os.path.isdir(output_file_path):
            target = Path(output_file_path) / base
        else:
            target = Path(output_file_path)
        try:
            download_to(self._transport.collector, self._id, name, target, validate=_validate_checksum)
        except RunNotFoundError:
            available = [a.name for a in self._list_artifacts()]
            raise UserErrorException(
                f"File with path {name} was not found,\navailable files include: {', '.join(available)}."
            ) from None

    def download_files(
        self,
        prefix: str | None = None,
        output_directory: str | None = None,
        output_paths: list[str] | None = None,
        batch_size: int = 100,
        append_prefix: bool = True,
        timeout_seconds: float | None = None,
    ) -> list[str]:
        """Download the artifacts under folder `prefix` (or all) to `output_directory/<artifact path>`
        (with `append_prefix=False` the leading `prefix/` is left out). Returns the local paths."""
        self._flush_files_if_sent()
        folder = ""
        if prefix:
            folder = normalize_name(prefix.rstrip("/")) + "/"
        found = self._list_artifacts(folder)
        if prefix and not found:
            raise UserErrorException(f"no artifacts of run {self._id} under prefix {prefix!r}")
        if output_paths is not None and len(output_paths) != len(found):
            raise UserErrorException(
                f"output_paths has {len(output_paths)} entries for {len(found)} files under {prefix!r}"
            )
        root = Path(output_directory) if output_directory is not None else Path.cwd()
        jobs = []
        for i, a in enumerate(found):
            rel = a.name[len(folder) :] if (folder and not append_prefix) else a.name
            jobs.append((a.name, Path(output_paths[i]) if output_paths is not None else root / rel))
        client = self._transport.collector
        with ThreadPoolExecutor(max(1, min(DOWNLOAD_THREADS, len(jobs)))) as pool:
            list(pool.map(lambda job: download_to(client, self._id, job[0], job[1]), jobs))
        return [str(target) for _, target in jobs]

    # --- images and JSON metrics ------------------------------------------------------------------

    def _artifact_metric(self, name: str, artifact: str, description: str) -> None:
        v.check_name(name)
        self._register(name, codec.IMAGE, {"": None})
        if description:
            self._producer.descriptions.setdefault((self._id, name), str(description))
        uri = artifact_uri(self._id, artifact)
        self._others.append((codec.IMAGE, self._id, name, {"": [uri]}, 1, time.time_ns()))

    def log_image(self, name: str, path: str | None = None, plot: Any = None, description: str = "") -> None:
        """Log an image: a file (`path`: png, jpeg, gif, bmp, tiff, webp) or anything with
        `savefig(stream, format="png")` (`plot`: a matplotlib Figure or `pyplot`)."""
        if (path is None) == (plot is None):
            raise AzureMLException("log_image takes exactly one of path and plot")
        v.check_name(name)
        if path is not None:
            if not isinstance(path, str | os.PathLike) or not os.path.isfile(path):
                raise UserErrorException(f"log_image: malformed argument path={path!r}: not an image file")
            with open(path, "rb") as f:
                if image_type(f.read(16)) is None:
                    raise UserErrorException(f"log_image: malformed argument path={path!r}: not a known image type")
            raw = os.fspath(path).replace(os.sep, "/")
            artifact = raw if not (os.path.isabs(raw) or ".." in raw.split("/")) else os.path.basename(raw)
            artifact = self.upload_file(artifact, path).name
        else:
            if not callable(getattr(plot, "savefig", None)):
                raise UserErrorException(
                    f"log_image: plot must have savefig (a matplotlib Figure or pyplot), not {type(plot).__name__}"
                )
            buf = io.BytesIO()
            plot.savefig(buf, format="png")
            buf.seek(0)
            artifact = self.upload_file(f"{name}_{int(time.time())}.png", buf).name
        self._artifact_metric(name, artifact, description)

    def _log_json(self, name: str, value: Any, description: str) -> None:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise UserErrorException("Invalid JSON provided") from None
        if not isinstance(value, dict):
            raise UserErrorException("Invalid JSON provided")
        try:
            data = json.dumps(value).encode()
        except (TypeError, ValueError):
            raise UserErrorException("Invalid JSON provided") from None
        v.check_name(name)
        artifact = self.upload_file(name, io.BytesIO(data)).name
        self._artifact_metric(name, artifact, description)

    def log_confusion_matrix(self, name: str, value: Any, description: str = "") -> None:
        """A confusion matrix (dict or JSON str), stored as JSON artifact `name`."""
        self._log_json(name, value, description)

    def log_accuracy_table(self, name: str, value: Any, description: str = "") -> None:
        self._log_json(name, value, description)

    def log_residuals(self, name: str, value: Any, description: str = "") -> None:
        self._log_json(name, value, description)

    def log_predictions(self, name: str, value: Any, description: str = "") -> None:
        self._log_json(name, value, description)

    def _populate(self, value: Any) -> Any:
        """An artifact URI -> ArtifactValue with the downloaded bytes (get_metrics(populate=True))."""
        prefix = "aml://artifactId/ExperimentRun/dcid."
        if not isinstance(value, str) or not value.startswith(prefix) or "/" not in value[len(prefix) :]:
            return value
        run_id, name = value[len(prefix) :].split("/", 1)
        with tempfile.TemporaryDirectory() as tmp:
            target = Path(tmp) / "artifact"
            download_to(self._transport.collector, run_id, name, target)
            return ArtifactValue(value, name, target.read_bytes())

    # --- the outputs folder -----------------------------------------------------------------------

    def _upload_outputs(self) -> None:
        """Upload the tracked outputs folder (once); names are paths relative to the cwd."""
        folder = self._outputs_dir
        if not folder or getattr(self, "_outputs_uploaded", False) or not os.path.isdir(folder):
            return
        self._outputs_uploaded = True
        cwd = os.getcwd()
        items = []
        for root, dirs, files in os.walk(folder):
            dirs.sort()
            for f in sorted(files):
                if f.endswith("azureml.log"):
                    continue
                full = os.path.join(root, f)
                rel = os.path.relpath(full, cwd)
                if rel.startswith(".."):
                    base = os.path.basename(os.path.normpath(folder))
                    rel = os.path.join(base, os.path.relpath(full, folder))
                items.append((normalize_name(rel), full))
        if not items:
            return
        client = self._transport.collector
        request = artifacts_pb2.CheckArtifactsRequest(run_id=self._id, names=[n for n, _ in items])
        try:
            existing = set(call(client, "Check", request, wait_s=CHECK_WAIT_S).existing)
        except ServiceUnavailableError:
            existing = set()  # the collector is away: the agent takes the files; conflicts warn at flush()
        with _uploaded_lock:
            existing |= _uploaded.get(self._id, set())
        for name in sorted(existing & {n for n, _ in items}):
            msg = f"runwire: {conflict_message(self._id, name)} The copy in the outputs folder was not uploaded."
            warnings.warn(msg, RuntimeWarning, stacklevel=3)
        todo = [(n, p) for n, p in items if n not in existing]
        if todo:
            self._upload(todo)

    # --- snapshots ----------------------------------------------------------------------------------

    def get_snapshot_id(self) -> str | None:
        return self._record.properties.get(SNAPSHOT_PROPERTY)

    def take_snapshot(self, file_or_folder_path: str) -> str:
        """Snapshot a folder (or one file) for this run; returns the snapshot id."""
        current = self.get_properties().get(SNAPSHOT_PROPERTY)
        if current:
            raise SnapshotException(f"Cannot take snapshot as the run already has one: {current}")
        snapshot_id = take_snapshot(self._transport, file_or_folder_path)
        self.add_properties({SNAPSHOT_PROPERTY: snapshot_id})
        return snapshot_id

    def restore_snapshot(self, snapshot_id: str | None = None, path: str | None = None) -> str:
        """Download a snapshot (default: this run's) as `<path or a temp folder>/<snapshot_id>.zip`;
        returns the zip's absolute path. Members are paths relative to the snapshot root."""
        snapshot_id = snapshot_id or self.get_properties().get(SNAPSHOT_PROPERTY)
        if not snapshot_id:
            raise SnapshotException(f"run {self._id} has no snapshot")
        folder = path if path is not None else tempfile.mkdtemp(prefix="runwire-snapshot-")
        return snapshot.restore_zip(self._transport.collector, snapshot_id, folder)


def take_snapshot(transport: Transport, file_or_folder_path: str | os.PathLike[str]) -> str:
    """Snapshot a folder or a single file; returns the snapshot id (SnapshotException on limits)."""
    p = Path(file_or_folder_path)
    if p.is_file():
        with tempfile.TemporaryDirectory() as tmp:
            link = Path(tmp) / p.name
            os.symlink(p.resolve(), link)
            return snapshot.take(transport.collector, tmp)
    if not p.is_dir():
        raise SnapshotException(f"cannot snapshot {os.fspath(file_or_folder_path)!r}: no such file or folder")
    return snapshot.take(transport.collector, p)


__all__ = ["ArtifactValue", "RunFiles", "UploadResult", "open_source", "take_snapshot"]
