"""Snapshot file selection (ignore files, limits), manifests, and safe extraction (zip-slip)."""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path

import pytest

from runwire import snapshot
from runwire.exceptions import SnapshotException


def tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def names(root: Path) -> list[str]:
    return [rel for rel, _, _ in snapshot.list_files(root)]


def test_gitignore_syntax_and_git_folder_left_out(tmp_path):
    tree(tmp_path, {
        "train.py": "", "data/x.csv": "", "logs/a.log": "", "keep.log": "", "sub/build/o": "", ".git/HEAD": "",
        ".gitignore": "data/\n*.log\n!keep.log\nbuild/\n",
    })  # fmt: skip
    assert names(tmp_path) == [".gitignore", "keep.log", "train.py"]


def test_ignore_file_precedence(tmp_path):
    tree(tmp_path, {"a": "", "b": "", "c": "", ".gitignore": "a\n", ".amlignore": "b\n", ".runwireignore": "c\n"})
    assert "c" not in names(tmp_path) and {"a", "b"} <= set(names(tmp_path))
    (tmp_path / ".runwireignore").unlink()
    assert "b" not in names(tmp_path) and {"a", "c"} <= set(names(tmp_path))
    (tmp_path / ".amlignore").unlink()
    assert "a" not in names(tmp_path) and {"b", "c"} <= set(names(tmp_path))


def test_limits(tmp_path, monkeypatch):
    tree(tmp_path, {f"f{i}": "12345" for i in range(4)})
    monkeypatch.setattr(snapshot, "SNAPSHOT_MAX_FILES", 3)
    with pytest.raises(SnapshotException, match=r"SNAPSHOT_MAX_FILES.*snapshot_directory=None"):
        snapshot.list_files(tmp_path)
    monkeypatch.setenv("AML_SNAPSHOT_NO_FILE_LIMIT", "1")
    assert len(snapshot.list_files(tmp_path)) == 4
    monkeypatch.setattr(snapshot, "SNAPSHOT_MAX_BYTES", 10)
    with pytest.raises(SnapshotException, match="SNAPSHOT_MAX_BYTES"):
        snapshot.list_files(tmp_path)


def test_manifest_is_canonical(tmp_path):
    tree(tmp_path, {"b.py": "b", "a/c.py": "c"})
    first, files = snapshot.build_manifest(tmp_path)
    assert [f.path for f in files] == ["a/c.py", "b.py"]
    assert snapshot.build_manifest(tmp_path)[0] == first
    (tmp_path / "b.py").write_text("changed")
    assert snapshot.build_manifest(tmp_path)[0] != first


def test_not_a_folder(tmp_path):
    with pytest.raises(SnapshotException):
        snapshot.list_files(tmp_path / "missing")


@pytest.mark.parametrize("member", ["../evil.py", "/etc/evil", "a/../../evil", "ctl\x01.py"])
def test_safe_extract_refuses_zip_slip(tmp_path, member):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("fine.py", "ok")
        zf.writestr(zipfile.ZipInfo(member), "evil")
    target = tmp_path / "out"
    with pytest.raises(SnapshotException):
        snapshot.safe_extract(bad, target)
    assert not (tmp_path / "evil.py").exists() and not any(target.rglob("*.py"))


def test_safe_extract_refuses_symlinks(tmp_path):
    bad = tmp_path / "link.zip"
    info = zipfile.ZipInfo("link")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(SnapshotException, match="symbolic link"):
        snapshot.safe_extract(bad, tmp_path / "out")


def test_safe_extract_writes_inside(tmp_path):
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as zf:
        zf.writestr("pkg/mod.py", "x = 1")
        zf.writestr("run.py", "print()")
    assert sorted(snapshot.safe_extract(good, tmp_path / "out")) == ["pkg/mod.py", "run.py"]
    assert (tmp_path / "out" / "pkg" / "mod.py").read_text() == "x = 1"
