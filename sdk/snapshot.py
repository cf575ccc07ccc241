"""Snapshots of a folder (RUN_API.md §14), reusable by `start_logging` and by submitted runs.

A snapshot is a manifest — the sorted list of `{path, sha256, size}` of the folder's files after
the ignore rules — stored as a blob; its id is the manifest's sha256, and every file's content is a
content-addressed blob. An unchanged folder gives the same manifest, hence the same id, and no
bytes are sent again (only blobs the collector does not hold travel).

Ignore rules: the first of `.runwireignore`, `.amlignore`, `.gitignore` found in the folder's root
(gitignore syntax, via `pathspec`); `.git/` is always left out.

Restoring never writes outside its target: every path is checked with the artifact name rules
(relative, no `..`, no control characters) before it is used, and `safe_extract` refuses zip
members that would escape.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import threading
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pathspec

from runwire.artifact_names import ArtifactNameError, normalize_name
from runwire.exceptions import SnapshotException, UserErrorException
from runwire.limits import SNAPSHOT_MAX_BYTES, SNAPSHOT_MAX_FILES

IGNORE_FILES = (".runwireignore", ".amlignore", ".gitignore")
"""Ignore files looked for in a snapshot's root, in this order; the first found is used."""
ALWAYS_IGNORED = (".git/",)
UPLOAD_THREADS = 8
"""Snapshot files the SDK uploads to the collector at once."""
TAKE_ATTEMPTS = 3
"""Times a snapshot is taken again when files change while it is being uploaded."""

_NO_LIMIT_ENV = "AML_SNAPSHOT_NO_FILE_LIMIT"


@dataclass(frozen=True)
class SnapshotFile:
    path: str  # relative, "/"-separated
    abspath: str
    size: int
    sha256: str


def ignore_spec(root: Path) -> pathspec.PathSpec:
    lines = list(ALWAYS_IGNORED)
    for name in IGNORE_FILES:
        f = root / name
        if f.is_file():
            lines += f.read_text(errors="replace").splitlines()
            break
    return pathspec.GitIgnoreSpec.from_lines(lines)


def list_files(directory: str | os.PathLike[str]) -> list[tuple[str, str, int]]:
    """(relative path, absolute path, size) of the files a snapshot of `directory` takes, sorted;
    SnapshotException past SNAPSHOT_MAX_FILES / SNAPSHOT_MAX_BYTES."""
    root = Path(directory).resolve()
    if not root.is_dir():
        raise SnapshotException(f"cannot snapshot {directory!s}: not a directory")
    spec = ignore_spec(root)
    no_file_limit = bool(os.environ.get(_NO_LIMIT_ENV))
    out: list[tuple[str, str, int]] = []
    total = 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/"
        dirnames[:] = sorted(d for d in dirnames if not spec.match_file(rel_dir + d + "/"))
        for name in sorted(filenames):
            rel = rel_dir + name
            if spec.match_file(rel):
                continue
            full = os.path.join(dirpath, name)
            try:
                st = os.stat(full)
            except OSError:
                continue  # a dangling link
            if not stat.S_ISREG(st.st_mode):
                continue
            out.append((rel, full, st.st_size))
            total += st.st_size
            if len(out) > SNAPSHOT_MAX_FILES and not no_file_limit:
                raise SnapshotException(_too_big(root, f"more than SNAPSHOT_MAX_FILES ({SNAPSHOT_MAX_FILES}) files"))
            if total > SNAPSHOT_MAX_BYTES:
                raise SnapshotException(_too_big(root, f"more than SNAPSHOT_MAX_BYTES ({SNAPSHOT_MAX_BYTES}) bytes"))
    out.sort()
    return out


def _too_big(root: Path, what: str) -> str:
    return (
        f"the snapshot of {root} would hold {what}. Leave big or generated files out with a "
        f"{IGNORE_FILES[0]} (or .amlignore / .gitignore) file in that folder, move them elsewhere, or pass "
        "snapshot_directory=None to take no snapshot."
    )


# (abspath) -> (size, mtime_ns, sha256): an unchanged file is not hashed again in this process.
_hash_cache: dict[str, tuple[int, int, str]] = {}
_hash_lock = threading.Lock()


def file_sha256(path: str) -> str:
    st = os.stat(path)
    with _hash_lock:
        cached = _hash_cache.get(path)
    if cached is not None and cached[0] == st.st_size and cached[1] == st.st_mtime_ns:
        return cached[2]
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while data := f.read(1 << 20):
            digest.update(data)
    sha = digest.hexdigest()
    with _hash_lock:
        _hash_cache[path] = (st.st_size, st.st_mtime_ns, sha)
    return sha


def build_manifest(directory: str | os.PathLike[str]) -> tuple[bytes, list[SnapshotFile]]:
    """The manifest (canonical JSON bytes) and its files."""
    files = [SnapshotFile(rel, full, size, file_sha256(full)) for rel, full, size in list_files(directory)]
    doc = {"files": [{"path": f.path, "sha256": f.sha256, "size": f.size} for f in files]}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode(), files


def parse_manifest(raw: bytes) -> list[dict]:
    files = json.loads(raw)["files"]
    for f in files:
        if normalize_name(f["path"]) != f["path"]:
            raise SnapshotException(f"snapshot manifest holds an unsafe path {f['path']!r}")
    return files


# --- talking to the collector --------------------------------------------------------------------------


def take(client, directory: str | os.PathLike[str]) -> str:
    """Snapshot `directory` to the collector; returns the snapshot id. `client`: a CollectorClient.

    A file that changes while the snapshot is taken fails the collector's checksum; the snapshot
    is then taken again (up to TAKE_ATTEMPTS times)."""
    for attempt in range(TAKE_ATTEMPTS):
        try:
            return _take(client, directory)
        except UserErrorException as e:
            if attempt == TAKE_ATTEMPTS - 1:
                raise SnapshotException(f"cannot snapshot {directory!s}: files keep changing ({e})") from None
    raise AssertionError("unreachable")


def _take(client, directory: str | os.PathLike[str]) -> str:
    from runwire._transports.files import call, upload_blob
    from runwire.v1 import artifacts_pb2

    manifest, files = build_manifest(directory)
    by_sha = {f.sha256: f for f in files}
    missing = call(client, "MissingBlobs", artifacts_pb2.MissingBlobsRequest(sha256=sorted(by_sha))).sha256
    if missing:
        with ThreadPoolExecutor(min(UPLOAD_THREADS, len(missing))) as pool:
            list(pool.map(lambda s: upload_blob(client, Path(by_sha[s].abspath), by_sha[s].size, s), missing))
    return call(client, "PutSnapshot", artifacts_pb2.PutSnapshotRequest(manifest=manifest)).snapshot_id


def fetch_manifest(client, snapshot_id: str) -> list[dict]:
    from runwire._transports.files import call
    from runwire.v1 import artifacts_pb2

    try:
        info = call(client, "GetSnapshot", artifacts_pb2.GetSnapshotRequest(snapshot_id=snapshot_id))
    except Exception as e:
        raise SnapshotException(f"cannot fetch snapshot {snapshot_id}: {e}") from None
    return parse_manifest(info.manifest)


def restore_zip(client, snapshot_id: str, folder: str | os.PathLike[str]) -> str:
    """Write the snapshot as `<folder>/<snapshot_id>.zip` (members relative to the snapshot root);
    returns its absolute path. Bytes are streamed blob by blob, never whole in memory."""
    from runwire._transports.files import iter_blob

    files = fetch_manifest(client, snapshot_id)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = (folder / f"{snapshot_id}.zip").resolve()
    tmp = target.with_name(target.name + ".part")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
        for f in files:
            with zf.open(f["path"], "w", force_zip64=f["size"] > 2**31) as out:
                for data in iter_blob(client, f["sha256"]):
                    out.write(data)
    os.replace(tmp, target)
    return str(target)


def unpack(client, snapshot_id: str, target: str | os.PathLike[str]) -> list[str]:
    """Write the snapshot's files under `target` (e.g. a submitted run's working folder); returns the
    relative paths written. Paths are checked; nothing is written outside `target`."""
    from runwire._transports.files import download_to

    files = fetch_manifest(client, snapshot_id)
    root = Path(target).resolve()
    for f in files:
        dest = _inside(root, f["path"])
        download_to(client, "", "", dest, validate=True, sha256=f["sha256"])
    return [f["path"] for f in files]


def _inside(root: Path, rel: str) -> Path:
    try:
        rel = normalize_name(rel)
    except ArtifactNameError as e:
        raise SnapshotException(f"refusing to write {rel!r}: {e}") from None
    dest = (root / rel).resolve()
    if dest != root and root not in dest.parents:
        raise SnapshotException(f"refusing to write {rel!r}: it resolves outside {root}")
    return dest


def safe_extract(zip_path: str | os.PathLike[str], target: str | os.PathLike[str]) -> list[str]:
    """Extract a zip into `target`, refusing any member that would land outside it (zip-slip:
    absolute paths, `..`, control characters, symlinks). Returns the member names extracted."""
    root = Path(target).resolve()
    root.mkdir(parents=True, exist_ok=True)
    names = []
    with zipfile.ZipFile(zip_path) as zf:
        infos = zf.infolist()
        for info in infos:  # check everything before writing anything
            if stat.S_ISLNK(info.external_attr >> 16):
                raise SnapshotException(f"refusing to extract {info.filename!r}: it is a symbolic link")
            if not info.is_dir():
                _inside(root, info.filename)
        for info in infos:
            if info.is_dir():
                continue
            dest = _inside(root, info.filename)
            dest.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(dest, "wb") as out:
                _copy(src.read, out.write)
            names.append(info.filename)
    return names


def _copy(read: Callable[[int], bytes], write: Callable[[bytes], object]) -> None:
    while data := read(1 << 20):
        write(data)
