"""Authentication end to end with real processes: `runwire token` through the CLI, a collector with
`--auth on`, an agent given a write token with `--token-file`, a training script given one as
RUNWIRE_TOKEN; a read token queries but cannot create runs; a revoked token is refused; and a collector
with `--auth off` beyond loopback refuses to start."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import grpc
import pytest

from runwire.server import limits as server_limits
from runwire.server.auth.tokens import parse_token
from runwire.v1 import runs_pb2, runs_pb2_grpc
from tests.procs import Cluster, run_script, short_tmpdir, wait_for

REVOKE_WAIT_S = server_limits.AUTH_CACHE_TTL_S + 20


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "runwire.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize(
    "listen",
    [
        ["--grpc-listen", "0.0.0.0:0", "--http-listen", "127.0.0.1:0"],
        ["--grpc-listen", "127.0.0.1:0", "--http-listen", "0.0.0.0:0"],
    ],
)
def test_auth_off_beyond_loopback_refuses_to_start(tmp_path, listen):
    out = cli("server", "--auth", "off", "--data-dir", str(tmp_path), *listen)
    assert out.returncode == 2, out.stderr
    address = "0.0.0.0:0"
    assert (
        f"refusing to listen for {'gRPC' if listen[1] == address else 'HTTP'} on {address} with --auth off"
        in out.stderr
    )
    assert "--auth on" in out.stderr and "runwire token create" in out.stderr
    assert not (tmp_path / "runwire.sqlite3").exists()  # refused before opening anything


def test_token_cli_create_list_revoke(tmp_path):
    data = ["--data-dir", str(tmp_path)]
    missing = cli("token", "list", *data)
    assert missing.returncode == 1 and "no collector database under" in missing.stderr

    made = cli(
        "token", "create", "--scope", "write", "--experiment", "exp-a", "--experiment", "exp-b", "--name", "ci", *data
    )
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert made.stdout.count("\n") == 1  # only the token on stdout, so scripts can capture it
    parsed = parse_token(token)
    assert f"created token {parsed.token_id} (scope write, exp-a, exp-b)" in made.stderr
    admin = cli("token", "create", "--scope", "admin", *data).stdout.strip().splitlines()[-1]

    listed = cli("token", "list", *data)
    assert listed.returncode == 0
    assert parsed.secret not in listed.stdout and parse_token(admin).secret not in listed.stdout
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["ID", "SCOPE", "EXPERIMENTS", "STATE", "CREATED", "LAST", "USED", "NAME"]
    row = next(line for line in lines if line.startswith(parsed.token_id))
    assert row.split()[1:4] == ["write", "exp-a,exp-b", "active"] and row.endswith("ci")

    revoked = cli("token", "revoke", parsed.token_id, *data)
    assert revoked.returncode == 0 and f"revoked token {parsed.token_id}" in revoked.stdout
    as_json = json.loads(cli("token", "list", "--json", *data).stdout)
    by_id = {t["id"]: t for t in as_json}
    assert by_id[parsed.token_id]["revoked_time"] and by_id[parse_token(admin).token_id]["revoked_time"] is None
    assert by_id[parsed.token_id]["experiments"] == ["exp-a", "exp-b"]
    assert all("secret" not in json.dumps(t) for t in as_json)

    unknown = cli("token", "revoke", "0123456789ab", *data)
    assert unknown.returncode == 1 and "no token with id '0123456789ab'" in unknown.stderr
    bad_scope = cli("token", "create", "--scope", "root", *data)
    assert bad_scope.returncode == 2 and "unknown scope 'root'" in bad_scope.stderr
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("runwire.sqlite3"))
    assert parsed.secret.encode() not in raw and parse_token(admin).secret.encode() not in raw


@pytest.fixture
def cluster(request):
    root = short_tmpdir()
    c = Cluster(root, auth=True)
    try:
        yield c
    finally:
        c.stop()
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            print(c.logs())
        shutil.rmtree(root, ignore_errors=True)


def status_code(address: str, token: str | None) -> grpc.StatusCode:
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    with grpc.insecure_channel(address) as channel:
        try:
            runs_pb2_grpc.RunsStub(channel).GetCollectorStatus(
                runs_pb2.CollectorStatusRequest(), metadata=metadata, timeout=10
            )
        except grpc.RpcError as e:
            return e.code()
    return grpc.StatusCode.OK


TRAIN = textwrap.dedent(
    """
    from runwire import Experiment, Workspace
    run = Experiment(Workspace.from_config(), "secure").start_logging()
    for i in range(50):
        run.log("loss", 1.0 / (i + 1), step=i)
    run.complete()
    print(run.id)
    """
)

READ = textwrap.dedent(
    """
    import sys
    from runwire import Experiment, Run, Workspace
    ws = Workspace.from_config()
    print(len(Run(Experiment(ws, "secure"), sys.argv[1]).get_metrics()["loss"]))
    try:
        Experiment(ws, "secure").start_logging()
    except Exception as e:
        print("REFUSED", type(e).__name__, e)
    """
)


def test_tokens_end_to_end(cluster):
    cluster.start_server()
    assert "runwire token create --scope admin" in cluster.server.log_tail(20000)  # no token yet: warned
    address = cluster.collector
    assert status_code(address, None) == grpc.StatusCode.UNAUTHENTICATED

    agent_token = cluster.create_token("write", "--name", "agent")  # made while the collector runs
    script_token = cluster.create_token("write", "--experiment", "secure", "--name", "training")
    reader = cluster.create_token("read", "--name", "dashboard")
    token_file = cluster.root / "agent.token"
    token_file.write_text(agent_token + "\n")
    token_file.chmod(0o600)
    cluster.agent_args = ["--token-file", str(token_file)]
    cluster.start_agent()

    out = run_script(TRAIN, {**cluster.env(), "RUNWIRE_TOKEN": script_token}, timeout=120)
    assert out.returncode == 0, out.stderr
    run_id = out.stdout.strip().splitlines()[-1]

    read = subprocess.run(
        [sys.executable, "-c", READ, run_id],
        env={**os.environ, **cluster.env(), "RUNWIRE_TOKEN": reader},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert read.returncode == 0, read.stderr
    lines = read.stdout.splitlines()
    assert lines[0] == "50"  # every point the agent delivered with its write token
    assert lines[1].startswith("REFUSED") and "scope write or higher" in lines[1], lines[1]

    assert status_code(address, reader) == grpc.StatusCode.OK
    revoke = cli("token", "revoke", parse_token(reader).token_id, "--data-dir", str(cluster.root / "collector"))
    assert revoke.returncode == 0, revoke.stderr
    wait_for(lambda: status_code(address, reader) == grpc.StatusCode.UNAUTHENTICATED, REVOKE_WAIT_S, "revocation")
    assert status_code(address, agent_token) == grpc.StatusCode.OK
    listed = cli("token", "list", "--data-dir", str(cluster.root / "collector")).stdout
    agent_row = next(line for line in listed.splitlines() if line.startswith(parse_token(agent_token).token_id))
    assert " - " not in agent_row  # LAST USED is filled in: the agent used it


WRONG_AGENT_TOKEN = textwrap.dedent(
    """
    import sys
    from runwire import Experiment, Workspace
    run = Experiment(Workspace.from_config(), "secure").start_logging(snapshot_directory=None)
    for i in range(20):
        run.log("loss", float(i))
    run.upload_file("notes.txt", sys.argv[1])
    run.flush(timeout_seconds=2)  # the agent holds both: its token is refused for now
    print(run.id)
    """
)


def test_an_agent_with_a_refused_token_keeps_points_and_files_until_it_is_fixed(cluster, tmp_path):
    cluster.start_server()
    reader = cluster.create_token("read", "--name", "not-for-agents")
    writer = cluster.create_token("write", "--name", "agent")
    token_file = cluster.root / "agent.token"
    token_file.write_text(reader + "\n")  # the operator's mistake: a read token for the agent
    token_file.chmod(0o600)
    cluster.agent_args = ["--token-file", str(token_file)]
    cluster.start_agent()
    notes = tmp_path / "notes.txt"
    notes.write_text("kept by the agent\n")
    out = subprocess.run(
        [sys.executable, "-c", WRONG_AGENT_TOKEN, str(notes)],
        env={**os.environ, **cluster.env(), "RUNWIRE_TOKEN": writer},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    run_id = out.stdout.strip().splitlines()[-1]
    wait_for(
        lambda: "refused the agent's credentials for an upload" in cluster.agent.log_tail(200_000),
        60,
        "the refused upload, logged",
    )

    token_file.write_text(writer + "\n")  # fixed; the agent restarts with it
    cluster.agent.stop()
    cluster.start_agent()
    metadata = (("authorization", f"Bearer {reader}"),)
    with grpc.insecure_channel(cluster.collector) as channel:
        runs = runs_pb2_grpc.RunsStub(channel)

        def points() -> int:
            req = runs_pb2.GetMetricsRequest(run_id=run_id, names=["loss"])
            return sum(m.count for m in runs.GetMetrics(req, metadata=metadata, timeout=10))

        wait_for(lambda: points() == 20, 60, "the points the agent kept, delivered")
    from runwire.v1 import artifacts_pb2, artifacts_pb2_grpc

    with grpc.insecure_channel(cluster.collector) as channel:
        stub = artifacts_pb2_grpc.ArtifactsStub(channel)
        wait_for(
            lambda: (
                [
                    a.name
                    for a in stub.List(artifacts_pb2.ListArtifactsRequest(run_id=run_id), metadata=metadata).artifacts
                ]
                == ["notes.txt"]
            ),
            60,
            "the file the agent kept, uploaded",
        )


def test_status_says_refused_not_down_when_the_token_is_missing(cluster):
    cluster.start_server()
    env = {k: v for k, v in cluster.env().items() if k != "RUNWIRE_AGENT_SOCKET"}
    out = cli("status", "--json", env={**env, "RUNWIRE_TOKEN": ""})
    collector = json.loads(out.stdout)["collector"]
    assert out.returncode == 1 and collector["up"] is True and collector["refused"] is True, out.stdout
    assert "no token" in collector["error"]
    text = cli("status", env={**env, "RUNWIRE_TOKEN": ""}).stdout
    assert "collector  REFUSED" in text
