"""Files, images, outputs and snapshots through a real agent and collector (RUN_API.md §5, §8, §14)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import textwrap
import zipfile
from pathlib import Path

import grpc
import pytest

from runwire import Experiment, Run
from runwire.exceptions import (
    AzureMLAggregatedException,
    AzureMLException,
    SnapshotException,
    UserErrorException,
)
from runwire.v1 import artifacts_pb2, artifacts_pb2_grpc
from tests.procs import run_script

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture
def experiment(workspace, work):
    return Experiment(workspace, "files")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.both_stores
def test_upload_and_download_round_trips(experiment, work):
    run = experiment.start_logging(snapshot_directory=None)
    (work / "model.bin").write_bytes(os.urandom(300_000))
    result = run.upload_file("./outputs//model.pkl", str(work / "model.bin"))
    assert (result.name, result.size) == ("outputs/model.pkl", 300_000)
    run.upload_file("notes/stream.txt", io.BytesIO(b"from a stream"))
    (work / "a.txt").write_text("a")
    (work / "b.txt").write_text("b")
    run.upload_files(["multi/a.txt", "multi/b.txt"], [str(work / "a.txt"), str(work / "b.txt")])
    (work / "dir" / "sub").mkdir(parents=True)
    (work / "dir" / "x.txt").write_text("x")
    (work / "dir" / "sub" / "y.txt").write_text("y")
    run.upload_folder("folder", "dir")
    run.upload_folder("glued", "dir/")  # Azure's quirk: a trailing slash glues the names
    run.upload_folder("", "dir/sub")  # no prefix: the paths under the folder
    expected = [
        "outputs/model.pkl",
        "notes/stream.txt",
        "multi/a.txt",
        "multi/b.txt",
        "folder/x.txt",
        "folder/sub/y.txt",
        "gluedx.txt",
        "gluedsub/y.txt",
        "y.txt",
    ]
    assert run.get_file_names() == expected
    fetched = Run(experiment, run.id)
    assert fetched.get_file_names() == expected

    fetched.download_file("outputs/model.pkl")  # default: basename in the cwd
    assert _sha(work / "model.pkl") == _sha(work / "model.bin")
    (work / "out").mkdir()
    fetched.download_file("notes/stream.txt", str(work / "out"))  # an existing folder
    assert (work / "out" / "stream.txt").read_bytes() == b"from a stream"
    fetched.download_file("multi/a.txt", str(work / "renamed.txt"), _validate_checksum=True)
    assert (work / "renamed.txt").read_text() == "a"

    paths = fetched.download_files(prefix="folder", output_directory=str(work / "dl"))
    assert sorted(Path(p).relative_to(work / "dl").as_posix() for p in paths) == ["folder/sub/y.txt", "folder/x.txt"]
    fetched.download_files(prefix="folder/", output_directory=str(work / "flat"), append_prefix=False)
    assert (work / "flat" / "sub" / "y.txt").read_text() == "y"
    everything = fetched.download_files(output_directory=str(work / "all"))
    assert len(everything) == len(expected)
    fetched.download_files("multi", output_paths=[str(work / "p1"), str(work / "p2")])
    assert (work / "p1").read_text() + (work / "p2").read_text() == "ab"

    with pytest.raises(UserErrorException, match=r"File with path nope.txt was not found,\navailable files include"):
        fetched.download_file("nope.txt")
    with pytest.raises(UserErrorException):
        fetched.download_files(prefix="missing")
    run.complete()


def test_bad_arguments(experiment, work):
    run = experiment.start_logging(snapshot_directory=None)
    with pytest.raises(UserErrorException, match="UnsupportedType"):
        run.upload_file("x", 42)
    with pytest.raises(TypeError):
        run.upload_files(["a", "b"], ["only-one"])
    with pytest.raises(UserErrorException):
        run.upload_folder("x", str(work / "not-a-folder"))
    with pytest.raises(UserErrorException):
        run.upload_file("x", str(work / "missing.bin"))
    run.complete()


@pytest.mark.both_stores
def test_write_once_conflicts(experiment, workspace, cluster, work):
    run = experiment.start_logging(snapshot_directory=None)
    run.upload_file("outputs/m.pkl", io.BytesIO(b"one"))
    message = f"Resource Conflict: ArtifactId ExperimentRun/dcid.{run.id}/outputs/m.pkl already exists."
    with pytest.raises(AzureMLAggregatedException, match=message.replace(".", r"\.")):
        run.upload_file("./outputs/m.pkl", io.BytesIO(b"two"))  # same name once normalised
    with pytest.raises(AzureMLException, match="Resource Conflict"):
        run.upload_files(["dup", "dup"], [io.BytesIO(b"1"), io.BytesIO(b"2")])
    run.flush()
    # Another process (so only the collector knows the name is taken), also an identical file.
    script = textwrap.dedent(
        f"""
        import io
        from runwire import Workspace, Experiment, Run
        from runwire.exceptions import AzureMLException
        run = Run(Experiment(Workspace.from_config(), "files"), "{run.id}")
        try:
            run.upload_file("outputs/m.pkl", io.BytesIO(b"one"))
        except AzureMLException as e:
            print("CONFLICT", e)
        """
    )
    proc = run_script(script, cluster.env())
    assert proc.returncode == 0, proc.stderr
    assert f"CONFLICT UserError: {message}" in proc.stdout
    # The outputs folder at completion skips (with a warning) a name that is already taken.
    (work / "outputs").mkdir(exist_ok=True)
    (work / "outputs" / "m.pkl").write_bytes(b"local copy")
    (work / "outputs" / "new.txt").write_text("new")
    with pytest.warns(RuntimeWarning, match="Resource Conflict"):
        run.complete()
    assert run.get_file_names() == ["outputs/m.pkl", "outputs/new.txt"]
    run.download_file("outputs/m.pkl", str(work / "check"))
    assert (work / "check").read_bytes() == b"one"


@pytest.mark.parametrize(
    "name",
    ["../x", "a/../../x", "/etc/passwd", "a\x00b", "tab\there", "C:/windows", "", "dir/", "x" * 1025],
)
def test_path_attacks_rejected(experiment, work, name):
    run = experiment.start_logging(snapshot_directory=None)
    with pytest.raises(ValueError) as info:
        run.upload_file(name, io.BytesIO(b"evil"))
    assert isinstance(info.value, UserErrorException)
    with pytest.raises(ValueError):
        run.download_file(name)
    assert run.get_file_names() == []
    run.complete()


def test_collector_refuses_bad_names_and_bad_bytes(experiment, cluster, work):
    """Straight at the collector, bypassing the SDK's checks."""
    run = experiment.start_logging(snapshot_directory=None)
    stub = artifacts_pb2_grpc.ArtifactsStub(grpc.insecure_channel(cluster.collector))

    def upload(name: str, data: bytes, sha: str | None = None) -> None:
        header = artifacts_pb2.UploadHeader(
            run_id=run.id, name=name, size=len(data), sha256=sha or hashlib.sha256(data).hexdigest(), upload_id="u1"
        )
        stub.Upload(iter([artifacts_pb2.UploadRequest(header=header), artifacts_pb2.UploadRequest(data=data)]))

    for name in ("../escape", "/etc/passwd", "nul\x00name"):
        with pytest.raises(grpc.RpcError) as info:
            upload(name, b"x")
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as info:
        upload("bad-sum", b"abc", sha=hashlib.sha256(b"abd").hexdigest())
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert run.get_file_names() == []  # nothing half-written became visible
    blobs = [p for p in (cluster.root / "collector" / "artifacts").rglob("*") if p.is_file() and len(p.name) == 64]
    assert blobs == []
    upload("good", b"abc")
    assert run.get_file_names() == ["good"]
    header = artifacts_pb2.UploadHeader(run_id="no-such-run", name="x", size=1, sha256=hashlib.sha256(b"x").hexdigest())
    with pytest.raises(grpc.RpcError) as info:
        stub.Upload(iter([artifacts_pb2.UploadRequest(header=header), artifacts_pb2.UploadRequest(data=b"x")]))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    run.complete()


def test_same_bytes_stored_once(experiment, cluster, work):
    data = os.urandom(100_000)
    for _ in range(2):
        run = experiment.start_logging(snapshot_directory=None)
        run.upload_file("a.bin", io.BytesIO(data))
        run.upload_file("copy.bin", io.BytesIO(data))
        run.complete()
    sha = hashlib.sha256(data).hexdigest()
    blob = cluster.root / "collector" / "artifacts" / sha[:2] / sha[2:4] / sha
    assert blob.read_bytes() == data
    blobs = [p for p in (cluster.root / "collector" / "artifacts").rglob("*") if p.is_file() and len(p.name) == 64]
    assert blobs == [blob]


def test_log_image_path_plot_and_figure(experiment, work):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = experiment.start_logging(snapshot_directory=None)
    (work / "tanh.png").write_bytes(PNG)
    run.log_image("from file", path="tanh.png", description="a file")
    plt.plot([1, 2, 3], [1, 4, 9])
    run.log_image("Hyperbolic Tangent", plot=plt)
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    run.log_image("figure", plot=fig)
    (work / "not-an-image.png").write_text("plain text")
    with pytest.raises(UserErrorException, match="malformed argument"):
        run.log_image("bad", path="not-an-image.png")
    with pytest.raises(AzureMLException):
        run.log_image("both", path="tanh.png", plot=plt)
    with pytest.raises(AzureMLException):
        run.log_image("neither")
    with pytest.raises(UserErrorException):
        run.log_image("no savefig", plot=object())
    run.complete()

    fetched = Run(experiment, run.id)
    metrics = fetched.get_metrics()
    prefix = f"aml://artifactId/ExperimentRun/dcid.{run.id}/"
    assert metrics["from file"] == prefix + "tanh.png"
    assert metrics["Hyperbolic Tangent"].startswith(prefix + "Hyperbolic Tangent_")
    assert metrics["Hyperbolic Tangent"].endswith(".png")
    assert metrics["figure"].startswith(prefix + "figure_")
    names = fetched.get_file_names()
    assert names[0] == "tanh.png" and len(names) == 3
    for uri in metrics.values():
        assert uri[len(prefix) :] in names
    populated = fetched.get_metrics(populate=True)
    assert populated["from file"].data == PNG
    assert populated["figure"].data.startswith(b"\x89PNG")
    assert str(populated["figure"]) == metrics["figure"]


def test_image_logged_twice_returns_first_uri(experiment, work):
    run = experiment.start_logging(snapshot_directory=None)
    (work / "one.png").write_bytes(PNG)
    (work / "two.png").write_bytes(PNG + b"2")
    run.log_image("img", path="one.png")
    run.log_image("img", path="two.png")
    run.complete()
    assert run.get_metrics()["img"] == f"aml://artifactId/ExperimentRun/dcid.{run.id}/one.png"


def test_json_artifact_metrics(experiment, work):
    run = experiment.start_logging(snapshot_directory=None)
    residuals = {
        "schema_type": "residuals",
        "schema_version": "1.0.0",
        "data": {"bin_edges": [0, 1, 2], "bin_counts": [3, 4]},
    }
    run.log_residuals("res", residuals)
    run.log_confusion_matrix(
        "cm", json.dumps({"schema_type": "confusion_matrix", "data": {"matrix": [[1, 0], [0, 1]]}})
    )
    run.log_accuracy_table("acc", {"schema_type": "accuracy_table", "data": {}})
    run.log_predictions("pred", {"schema_type": "predictions", "data": {}})
    for bad in ("{not json", "[1, 2]", 42):
        with pytest.raises(UserErrorException, match="Invalid JSON provided"):
            run.log_confusion_matrix("bad", bad)
    run.complete()
    metrics = run.get_metrics()
    assert metrics["res"] == f"aml://artifactId/ExperimentRun/dcid.{run.id}/res"
    assert run.get_file_names() == ["res", "cm", "acc", "pred"]
    assert json.loads(run.get_metrics(name="res", populate=True)["res"].data) == residuals


@pytest.mark.parametrize("ending", ["complete", "fail", "cancel", "with", "with-error"])
def test_outputs_uploaded_when_the_run_ends(experiment, work, ending):
    run = experiment.start_logging(snapshot_directory=None)
    assert (work / "outputs").is_dir()
    (work / "outputs" / "sub").mkdir()
    (work / "outputs" / "model.pkl").write_bytes(b"model")
    (work / "outputs" / "sub" / "curve.csv").write_text("1,2")
    (work / "outputs" / "x-azureml.log").write_text("skipped")
    if ending == "complete":
        run.complete()
    elif ending == "fail":
        run.fail("broken")
    elif ending == "cancel":
        run.cancel()
    elif ending == "with":
        with run:
            pass
    else:
        with pytest.raises(RuntimeError), run:
            raise RuntimeError("boom")
    assert sorted(Run(experiment, run.id).get_file_names()) == ["outputs/model.pkl", "outputs/sub/curve.csv"]


def test_custom_outputs_and_child_outputs(experiment, work):
    run = experiment.start_logging(outputs="res", snapshot_directory=None)
    (work / "res" / "r.txt").write_text("r")
    child = run.child_run("c", outputs="child_out")
    os.makedirs("child_out")
    (work / "child_out" / "c.txt").write_text("c")
    child.complete()
    run.complete()
    assert run.get_file_names() == ["res/r.txt"]
    assert child.get_file_names() == ["child_out/c.txt"]


def test_no_agent_uploads_straight_to_the_collector(experiment, cluster, work):
    run = experiment.start_logging(snapshot_directory=None)
    cluster.agent.stop()
    run.upload_file("direct.bin", io.BytesIO(b"direct"))
    with pytest.raises(AzureMLException, match="Resource Conflict"):
        run.upload_file("direct.bin", io.BytesIO(b"again"))
    assert run.get_file_names() == ["direct.bin"]
    run.download_file("direct.bin")
    assert (work / "direct.bin").read_bytes() == b"direct"


# --- snapshots ---------------------------------------------------------------------------------------


def _tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _zip_names(path: str) -> list[str]:
    with zipfile.ZipFile(path) as zf:
        return sorted(zf.namelist())


def test_snapshot_of_the_cwd_by_default_and_restore(experiment, work, tmp_path):
    _tree(work, {"train.py": "print(1)\n", "lib/util.py": "x = 1\n", "data/big.csv": "1,2\n", ".gitignore": "data/\n"})
    run = experiment.start_logging()
    snapshot_id = run.get_snapshot_id()
    assert snapshot_id and run.get_details()["properties"]["ContentSnapshotId"] == snapshot_id
    zip_path = run.restore_snapshot(path=str(tmp_path / "restored"))
    assert zip_path == str((tmp_path / "restored" / f"{snapshot_id}.zip").resolve())
    assert _zip_names(zip_path) == [".gitignore", "lib/util.py", "train.py"]
    with zipfile.ZipFile(zip_path) as zf:
        assert zf.read("lib/util.py") == b"x = 1\n"
    default = Run(experiment, run.id).restore_snapshot()  # a temp folder
    assert os.path.isabs(default) and _zip_names(default) == _zip_names(zip_path)
    # What a submitted run does on its node: unpack the snapshot into a working folder.
    from runwire import snapshot

    written = snapshot.unpack(run._transport.collector, snapshot_id, tmp_path / "unpacked")
    assert sorted(written) == [".gitignore", "lib/util.py", "train.py"]
    assert (tmp_path / "unpacked" / "lib" / "util.py").read_text() == "x = 1\n"
    with pytest.raises(SnapshotException, match="already has one"):
        run.take_snapshot(str(work))
    run.complete()

    # Unchanged folder: same id (stored once); a change gives a new id.
    again = experiment.start_logging()
    assert again.get_snapshot_id() == snapshot_id
    (work / "train.py").write_text("print(2)\n")
    changed = experiment.start_logging()
    assert changed.get_snapshot_id() != snapshot_id
    none = experiment.start_logging(snapshot_directory=None)
    assert none.get_snapshot_id() is None
    with pytest.raises(SnapshotException):
        none.restore_snapshot()
    for r in (again, changed, none):
        r.complete()


def test_ignore_file_precedence(experiment, work, tmp_path):
    files = {"a.txt": "a", "b.txt": "b", "c.txt": "c", "keep.py": "k"}
    _tree(work / "src", files)
    _tree(work / "src", {".gitignore": "a.txt\n", ".amlignore": "b.txt\n", ".runwireignore": "c.txt\n"})
    run = experiment.start_logging(snapshot_directory="src")
    names = _zip_names(run.restore_snapshot(path=str(tmp_path / "z1")))
    assert "c.txt" not in names and {"a.txt", "b.txt", "keep.py"} <= set(names)
    (work / "src" / ".runwireignore").unlink()
    run2 = experiment.start_logging(snapshot_directory="src")
    names = _zip_names(run2.restore_snapshot(path=str(tmp_path / "z2")))
    assert "b.txt" not in names and {"a.txt", "c.txt"} <= set(names)
    (work / "src" / ".amlignore").unlink()
    run3 = experiment.start_logging(snapshot_directory="src")
    names = _zip_names(run3.restore_snapshot(path=str(tmp_path / "z3")))
    assert "a.txt" not in names and {"b.txt", "c.txt", ".gitignore"} <= set(names)
    for r in (run, run2, run3):
        r.complete()


def test_snapshot_limits(experiment, work, monkeypatch):
    import runwire.snapshot as snapshot

    _tree(work, {f"f{i}.txt": "x" for i in range(5)})
    monkeypatch.setattr(snapshot, "SNAPSHOT_MAX_FILES", 3)
    with pytest.raises(SnapshotException, match="snapshot_directory=None"):
        experiment.start_logging()
    monkeypatch.setattr(snapshot, "SNAPSHOT_MAX_FILES", 2000)
    monkeypatch.setattr(snapshot, "SNAPSHOT_MAX_BYTES", 4)
    with pytest.raises(SnapshotException, match="SNAPSHOT_MAX_BYTES"):
        experiment.start_logging()
    experiment.start_logging(snapshot_directory=None).complete()


def test_take_snapshot_of_a_file_and_a_folder(experiment, work, tmp_path):
    _tree(work, {"one.py": "1", "pkg/two.py": "2"})
    run = experiment.start_logging(snapshot_directory=None)
    snapshot_id = run.take_snapshot("one.py")
    assert run.get_snapshot_id() == snapshot_id
    assert _zip_names(run.restore_snapshot(path=str(tmp_path / "z"))) == ["one.py"]
    other = experiment.start_logging(snapshot_directory=None)
    other.take_snapshot("pkg")
    assert _zip_names(other.restore_snapshot(path=str(tmp_path / "z"))) == ["two.py"]
    for r in (run, other):
        r.complete()


def test_upload_batch_results_per_file(experiment, cluster, work):
    """UploadBatch (the agent's path for small files): each file is checked and committed on its own."""
    run = experiment.start_logging(snapshot_directory=None)
    run.upload_file("taken.txt", io.BytesIO(b"first"))
    run.flush()
    stub = artifacts_pb2_grpc.ArtifactsStub(grpc.insecure_channel(cluster.collector))

    def entry(name: str, data: bytes, upload_id: str, sha: str | None = None) -> list:
        header = artifacts_pb2.UploadHeader(
            run_id=run.id,
            name=name,
            size=len(data),
            sha256=sha or hashlib.sha256(data).hexdigest(),
            upload_id=upload_id,
        )
        return [artifacts_pb2.UploadRequest(header=header), artifacts_pb2.UploadRequest(data=data)]

    requests = [
        *entry("good/a.txt", b"a", "u1"),
        *entry("../escape", b"x", "u2"),
        *entry("taken.txt", b"second", "u3"),
        *entry("bad-sum", b"abc", "u4", sha=hashlib.sha256(b"abd").hexdigest()),
        *entry("good/b.txt", b"b", "u5"),
    ]
    reply = stub.UploadBatch(iter(requests))
    assert [r.upload_id for r in reply.results] == ["u1", "u2", "u3", "u4", "u5"]
    ok, invalid, exists = (
        c.value[0] for c in (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.ALREADY_EXISTS)
    )
    assert [r.code for r in reply.results] == [ok, invalid, exists, invalid, ok]
    assert "Resource Conflict" in reply.results[2].message
    again = stub.UploadBatch(iter(entry("good/a.txt", b"a", "u1")))  # a retry: idempotent
    assert again.results[0].code == 0
    assert run.get_file_names() == ["taken.txt", "good/a.txt", "good/b.txt"]
    run.complete()
