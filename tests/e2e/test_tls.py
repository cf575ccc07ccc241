"""TLS and mutual TLS end to end, with certificates made in the test: a real collector with
--tls-cert/--tls-key (and --tls-client-ca), agents with --tls-ca (and client certificates), training
scripts and CLI commands as subprocesses; HTTPS for /healthz and the studio API; refusals of
plaintext clients, untrusted CAs, missing or foreign client certificates, and unusable PEM files."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import ssl
import subprocess
import sys
import textwrap
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from runwire import jobs
from runwire._transports.channel import ClientSecurity, open_channel
from runwire.cli._common import agent_status
from runwire.server.tls import TLSConfigError, tls_from_args
from tests.procs import Cluster, run_script, running_cluster, short_tmpdir, wait_for
from tests.tls_pki import Pki, encrypted_key, make_pki

TRAIN = textwrap.dedent(
    """
    from runwire import Experiment, Workspace

    run = Experiment(Workspace.from_config(), "tls").start_logging()
    for i in range(50):
        run.log("loss", 1.0 / (i + 1), step=i)
    run.complete()
    print("RUN", run.id)
    """
)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def server_tls(pki: Pki, mutual: bool = False) -> list[str]:
    args = ["--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key)]
    return [*args, "--tls-client-ca", str(pki.ca)] if mutual else args


def client_env(cluster: Cluster, pki: Pki, client_cert: bool = False) -> dict[str, str]:
    env = {**cluster.env(), "RUNWIRE_TLS_CA": str(pki.ca)}
    if client_cert:
        env |= {"RUNWIRE_TLS_CERT": str(pki.client_cert), "RUNWIRE_TLS_KEY": str(pki.client_key)}
    return env


def train(cluster: Cluster, env: dict[str, str]) -> str:
    result = run_script(TRAIN, env, timeout=120)
    assert result.returncode == 0, (result.stderr, cluster.logs())
    return next(line.split()[1] for line in result.stdout.splitlines() if line.startswith("RUN "))


def loss_of(env: dict[str, str], run_id: str) -> list[float]:
    code = f"from runwire import Experiment, Run, Workspace\nprint(Run(Experiment(Workspace.from_config(), 'tls'), {run_id!r}).get_metrics()['loss'])"  # noqa: E501
    result = run_script(code, env, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip())


def health(target: str, security: ClientSecurity) -> health_pb2.HealthCheckResponse:
    with open_channel(target, security) as ch:
        return health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)


def refused(target: str, security: ClientSecurity) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as e:
        health(target, security)
    return e.value.code()


def https_get(url: str, context: ssl.SSLContext | None) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10, context=context) as r:
        return r.status, r.read()


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "runwire.cli.main", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


# --- TLS ------------------------------------------------------------------------------------------


@pytest.fixture
def tls_cluster(request, pki):
    with running_cluster(request, server_args=server_tls(pki), agent_args=["--tls-ca", str(pki.ca)]) as c:
        yield c


def test_tls_collector_agent_and_a_training_script(tls_cluster, pki):
    info = tls_cluster.server.info
    assert info["tls"] is True
    assert info["grpc"].startswith("127.0.0.1:") and info["http"].startswith("127.0.0.1:")  # addresses as before
    env = client_env(tls_cluster, pki)
    run_id = train(tls_cluster, env)
    assert loss_of(env, run_id) == [1.0 / (i + 1) for i in range(50)]
    st = agent_status(tls_cluster.socket)
    assert st.collector_connected and st.records_acked > 0
    listed = cli(env, "runs", "list", "--experiment", "tls")  # the CLI takes the endpoint's TLS too
    assert listed.returncode == 0 and run_id in listed.stdout, listed.stderr


def test_clients_that_do_not_speak_tls_or_do_not_trust_the_ca_are_refused(tls_cluster, pki):
    target = tls_cluster.collector
    assert health(target, ClientSecurity(tls_ca=str(pki.ca))).status == health_pb2.HealthCheckResponse.SERVING
    assert refused(target, ClientSecurity()) == grpc.StatusCode.UNAVAILABLE  # plaintext
    assert refused(target, ClientSecurity(tls_ca=str(pki.other_ca))) == grpc.StatusCode.UNAVAILABLE
    # A training process without RUNWIRE_TLS_CA is told the collector cannot be reached.
    result = cli(tls_cluster.env(), "status", "--json")
    assert result.returncode == 1
    collector = json.loads(result.stdout)["collector"]
    assert collector["up"] is False and "set RUNWIRE_TLS_CA" in collector["error"], collector
    result = cli({**tls_cluster.env(), "RUNWIRE_TLS_CA": str(pki.other_ca)}, "status", "--json")
    assert "the TLS handshake failed" in json.loads(result.stdout)["collector"]["error"]
    # The same command with the CA says it is up.
    result = cli(client_env(tls_cluster, pki), "status", "--json")
    assert json.loads(result.stdout)["collector"]["up"] is True, result.stdout


def test_https_healthz_and_studio_api_with_the_ca(tls_cluster, pki):
    base = f"https://{tls_cluster.server.info['http']}"
    trusting = ssl.create_default_context(cafile=str(pki.ca))
    status, body = https_get(f"{base}/healthz", trusting)
    assert status == 200 and json.loads(body)["status"] == "ok"
    status, body = https_get(f"{base}/api/v1/status", trusting)
    assert status == 200 and "version" in json.loads(body)
    status, body = https_get(f"{base}/api/v1/experiments", trusting)
    assert status == 200
    with pytest.raises(urllib.error.URLError) as e:
        https_get(f"{base}/healthz", ssl.create_default_context(cafile=str(pki.other_ca)))
    assert isinstance(e.value.reason, ssl.SSLCertVerificationError)
    with pytest.raises((urllib.error.URLError, ConnectionError)):  # plain HTTP to the HTTPS port
        https_get(f"http://{tls_cluster.server.info['http']}/healthz", None)


def test_an_agent_without_the_ca_cannot_reach_the_tls_collector(tls_cluster, pki):
    agent = tls_cluster.start_extra_agent("plain")
    wait_for(lambda: "unreachable" in agent.log_tail(), 30, "the plaintext agent to report the collector unreachable")
    assert "if the collector serves TLS, set RUNWIRE_TLS_CA (the agent: --tls-ca)" in agent.log_tail()
    assert not agent_status(str(tls_cluster.root / "plain.sock")).collector_connected


# --- mutual TLS -----------------------------------------------------------------------------------


@pytest.fixture
def mtls_cluster(request, pki):
    agent_tls = ["--tls-ca", str(pki.ca), "--tls-cert", str(pki.client_cert), "--tls-key", str(pki.client_key)]
    with running_cluster(request, server_args=server_tls(pki, mutual=True), agent_args=agent_tls) as c:
        yield c


def test_mutual_tls_agent_with_a_client_certificate_delivers(mtls_cluster, pki):
    env = client_env(mtls_cluster, pki, client_cert=True)
    run_id = train(mtls_cluster, env)
    assert loss_of(env, run_id) == [1.0 / (i + 1) for i in range(50)]
    assert agent_status(mtls_cluster.socket).collector_connected
    # HTTP stays server-authenticated only: a browser has no client certificate.
    status, _ = https_get(
        f"https://{mtls_cluster.server.info['http']}/healthz", ssl.create_default_context(cafile=str(pki.ca))
    )
    assert status == 200


def test_mutual_tls_refuses_clients_without_a_certificate_or_with_one_from_another_ca(mtls_cluster, pki):
    target = mtls_cluster.collector
    ca = str(pki.ca)
    ok = ClientSecurity(tls_ca=ca, tls_cert=str(pki.client_cert), tls_key=str(pki.client_key))
    assert health(target, ok).status == health_pb2.HealthCheckResponse.SERVING
    assert refused(target, ClientSecurity(tls_ca=ca)) == grpc.StatusCode.UNAVAILABLE
    foreign = ClientSecurity(tls_ca=ca, tls_cert=str(pki.other_client_cert), tls_key=str(pki.other_client_key))
    assert refused(target, foreign) == grpc.StatusCode.UNAVAILABLE
    for name, args, hint in (
        ("nocert", ["--tls-ca", ca], "requires client certificates (mutual TLS)"),
        (
            "foreign",
            ["--tls-ca", ca, "--tls-cert", str(pki.other_client_cert), "--tls-key", str(pki.other_client_key)],
            "may not accept this client certificate",
        ),
    ):
        agent = mtls_cluster.start_extra_agent(name, args)
        wait_for(lambda a=agent: "unreachable" in a.log_tail(), 30, f"agent {name} to be refused")
        assert hint in agent.log_tail(), (name, agent.log_tail())
        assert not agent_status(str(mtls_cluster.root / f"{name}.sock")).collector_connected, name


# --- jobs -----------------------------------------------------------------------------------------


def test_jobs_get_the_agents_token_and_tls_settings(request, pki, tmp_path):
    from runwire._transports.collector import CollectorClient
    from runwire.v1 import compute_pb2, compute_pb2_grpc, runs_pb2, runs_pb2_grpc

    token = "rwt_0123456789ab_job-token-passed-on"
    (tmp_path / "token").write_text(token + "\n")
    agent_args = ["--tls-ca", str(pki.ca), "--token-file", str(tmp_path / "token"), "--compute-target", "t1"]
    with running_cluster(request, server_args=server_tls(pki), agent_args=agent_args) as c:
        client = CollectorClient(c.collector, security=ClientSecurity(token=token, tls_ca=str(pki.ca)))
        src = tmp_path / "src"
        src.mkdir()
        (src / "train.py").write_text(
            textwrap.dedent(
                f"""
                import os
                from runwire import Run
                print("token", os.environ.get("RUNWIRE_TOKEN") == {token!r})
                print("ca", os.environ.get("RUNWIRE_TLS_CA") == {str(pki.ca)!r})
                run = Run.get_context()
                run.log("job_metric", 7)
                print("metric from the collector", run.get_metrics()["job_metric"])
                """
            )
        )
        from runwire import snapshot

        request_ = compute_pb2.SubmitRunRequest(
            run=runs_pb2.CreateRunRequest(experiment_name="exp", target="t1"),
            definition=compute_pb2.JobDefinition(script="train.py", snapshot_id=snapshot.take(client, src)),
        )
        run_id = compute_pb2_grpc.ComputeStub(client.channel).SubmitRun(request_, timeout=30).run_id
        runs = runs_pb2_grpc.RunsStub(client.channel)

        def ended():
            info = runs.GetRun(runs_pb2.GetRunRequest(run_id=run_id), timeout=30)
            return info if info.status in ("Completed", "Failed", "Canceled") else None

        info = wait_for(ended, 120, "the job to end")
        lines = [
            ln
            for chunk in runs.GetLog(runs_pb2.GetLogRequest(run_id=run_id, path=jobs.STD_LOG_PATH), timeout=30)
            for ln in chunk.lines
        ]
        assert info.status == "Completed", (lines, c.logs())
        assert "token True" in lines and "ca True" in lines, lines
        assert "metric from the collector 7" in lines, lines
        client.close()


# --- unusable settings ----------------------------------------------------------------------------


def _args(cert=None, key=None, client_ca=None) -> argparse.Namespace:
    p = lambda v: None if v is None else Path(v)  # noqa: E731
    return argparse.Namespace(tls_cert=p(cert), tls_key=p(key), tls_client_ca=p(client_ca))


def bad_server_inputs(pki: Pki, tmp: Path) -> list[tuple[argparse.Namespace, str]]:
    empty = tmp / "empty.pem"
    empty.write_text("")
    garbage = tmp / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    enc = encrypted_key(pki, tmp / "encrypted-key.pem")
    cert, key = pki.server_cert, pki.server_key
    return [
        (_args(cert=cert), "--tls-cert needs --tls-key"),
        (_args(key=key), "--tls-key needs --tls-cert"),
        (_args(client_ca=pki.ca), "--tls-client-ca needs --tls-cert and --tls-key"),
        (_args(tmp / "missing.pem", key), f"cannot read --tls-cert {tmp / 'missing.pem'}"),
        (_args(tmp, key), f"cannot read --tls-cert {tmp}"),
        (_args(empty, key), f"--tls-cert {empty} is not a PEM file"),
        (_args(garbage, key), f"--tls-cert {garbage} holds no valid PEM certificate"),
        (_args(key, key), f"--tls-cert {key} holds no"),
        (_args(cert, tmp / "missing.pem"), f"cannot read --tls-key {tmp / 'missing.pem'}"),
        (_args(cert, empty), f"--tls-key {empty} is not a PEM file"),
        (_args(cert, cert), f"the key file {cert} (--tls-key): not a usable PEM private key"),
        (_args(cert, pki.client_key), f"the key file {pki.client_key} (--tls-key): it is not the private key of"),
        (_args(cert, enc), "encrypted"),
        (_args(cert, key, tmp / "missing.pem"), f"cannot read --tls-client-ca {tmp / 'missing.pem'}"),
        (_args(cert, key, garbage), f"--tls-client-ca {garbage} holds no valid PEM certificate"),
        (_args(cert, key, pki.client_key), f"--tls-client-ca {pki.client_key} holds no"),
    ]


def test_unusable_server_tls_inputs_are_refused_naming_the_flag_and_file(pki, tmp_path):
    for args, message in bad_server_inputs(pki, tmp_path):
        with pytest.raises(TLSConfigError) as e:
            tls_from_args(args)
        assert message in str(e.value), (vars(args), str(e.value))
    assert tls_from_args(_args()) is None
    assert tls_from_args(_args(pki.server_cert, pki.server_key, pki.ca)).mutual


def _start(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=60)


def test_the_collector_refuses_to_start_with_unusable_tls_flags(pki, tmp_path):
    base = ["--data-dir", str(tmp_path / "data"), "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"]
    base += ["--auth", "off", "--ready-file", str(tmp_path / "ready.json")]
    only_cert = _start("runwire.server", *base, "--tls-cert", str(pki.server_cert))
    assert only_cert.returncode == 2 and "--tls-cert needs --tls-key" in only_cert.stderr
    mismatch = _start("runwire.server", *base, "--tls-cert", str(pki.server_cert), "--tls-key", str(pki.client_key))
    assert mismatch.returncode == 2
    assert f"the key file {pki.client_key} (--tls-key): it is not the private key of" in mismatch.stderr
    assert not (tmp_path / "ready.json").exists()


def test_the_agent_refuses_to_start_with_unusable_tls_or_token_flags(pki, tmp_path):
    base = ["--socket", str(tmp_path / "a.sock"), "--spool-dir", str(tmp_path / "spool"), "--collector", "127.0.0.1:1"]
    missing = tmp_path / "missing.pem"
    cases = [
        (["--tls-ca", str(missing)], f"cannot read the TLS CA certificate file {missing}"),
        (["--tls-ca", str(pki.ca), "--tls-cert", str(pki.client_cert)], "tls_cert is set without tls_key"),
        (["--tls-cert", str(pki.client_cert), "--tls-key", str(pki.client_key)], "without tls_ca"),
        (["--token-file", str(missing)], f"cannot read --token-file {missing}"),
    ]
    for flags, message in cases:
        result = _start("runwire.agent", *base, *flags)
        assert result.returncode == 2 and message in result.stderr, (flags, result.stderr)


# --- tokens over TLS against the real collector ---------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_tokens_over_mutual_tls_with_auth_on(pki, tmp_path, request):
    """`--auth on` + mutual TLS: the agent's token (call credentials on its TLS channels) and the training
    script's are checked by the collector; a wrong token over the same TLS channel is refused."""
    from runwire._transports.collector import CollectorClient
    from runwire.exceptions import UserErrorException
    from runwire.v1 import runs_pb2

    agent_tls = ["--tls-ca", str(pki.ca), "--tls-cert", str(pki.client_cert), "--tls-key", str(pki.client_key)]
    c = Cluster(root=short_tmpdir(), auth=True, server_args=server_tls(pki, mutual=True))
    try:
        c.start_server()
        agent_token, script_token = c.create_token("write"), c.create_token("write")
        (tmp_path / "token").write_text(agent_token + "\n")
        c.agent_args = [*agent_tls, "--token-file", str(tmp_path / "token")]
        c.start_agent()
        env = {**client_env(c, pki, client_cert=True), "RUNWIRE_TOKEN": script_token}
        run_id = train(c, env)
        assert loss_of(env, run_id) == [1.0 / (i + 1) for i in range(50)]  # the agent's ingest was let in
        wrong = "rwt_000000000000_" + "A" * 43
        client = CollectorClient(c.collector, security=ClientSecurity(wrong, *agent_tls[1::2]))
        with pytest.raises(UserErrorException, match="refused"):
            client.call("ListExperiments", runs_pb2.ListExperimentsRequest())
        client.close()
        https = f"https://{c.server.info['http']}"
        trusting = ssl.create_default_context(cafile=str(pki.ca))
        with pytest.raises(urllib.error.HTTPError) as e:
            https_get(f"{https}/api/v1/experiments", trusting)
        assert e.value.code == 401  # HTTPS does not replace the token
        req = urllib.request.Request(f"{https}/api/v1/experiments", headers={"Authorization": f"Bearer {script_token}"})
        with urllib.request.urlopen(req, timeout=10, context=trusting) as r:
            assert r.status == 200
        # The studio's login cookie is Secure over HTTPS.
        form = urllib.parse.urlencode({"token": script_token, "next": "/"}).encode()
        opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=trusting), _NoRedirect())
        with pytest.raises(urllib.error.HTTPError) as e:
            opener.open(urllib.request.Request(f"{https}/login", data=form), timeout=10)
        assert e.value.code == 303
        cookie = e.value.headers["Set-Cookie"]
        assert "runwire_token=" in cookie and "Secure" in cookie and "HttpOnly" in cookie, cookie
        no_token = cli({k: v for k, v in env.items() if k != "RUNWIRE_TOKEN"}, "runs", "list", "--experiment", "tls")
        assert no_token.returncode != 0 and "refused" in no_token.stderr, no_token.stderr
    finally:
        c.stop()
        shutil.rmtree(c.root, ignore_errors=True)
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            print(c.logs())
