"""runwire._transports.channel against a real gRPC server that records what each call carried: the
token reaches the server on all four call kinds, on plaintext and TLS channels, sync and asyncio;
TLS refuses untrusted servers; bad settings are refused with the setting or file named."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from runwire._transports.channel import (
    ClientSecurity,
    ClientSecurityError,
    open_aio_channel,
    open_channel,
)
from tests.tls_pki import Pki, encrypted_key, make_pki

TOKEN = "rwt_0123456789ab_secret-part_of-the-token"
KINDS = ("UnaryUnary", "UnaryStream", "StreamUnary", "StreamStream")


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


class Recorder:
    """A gRPC server with one echo method per call kind; `seen[kind]` lists the `authorization`
    values of each call (a list per call, so that a duplicated header shows)."""

    def __init__(self, tls: Pki | None) -> None:
        self.seen: dict[str, list[list[str]]] = {k: [] for k in KINDS}
        self.other: list[str | None] = []
        self.tls = tls
        self.server: grpc.aio.Server | None = None
        self.target = ""

    def _record(self, kind: str, context: grpc.aio.ServicerContext) -> None:
        md = context.invocation_metadata() or ()
        self.seen[kind].append([v for k, v in md if k == "authorization"])
        self.other.append(next((v for k, v in md if k == "x-other"), None))

    async def start(self) -> Recorder:
        async def uu(request, context):
            self._record("UnaryUnary", context)
            return request

        async def us(request, context):
            self._record("UnaryStream", context)
            yield request
            yield request

        async def su(requests, context):
            self._record("StreamUnary", context)
            return b"".join([r async for r in requests])

        async def ss(requests, context):
            self._record("StreamStream", context)
            async for r in requests:
                yield r

        handler = grpc.method_handlers_generic_handler(
            "test.Echo",
            {
                "UnaryUnary": grpc.unary_unary_rpc_method_handler(uu),
                "UnaryStream": grpc.unary_stream_rpc_method_handler(us),
                "StreamUnary": grpc.stream_unary_rpc_method_handler(su),
                "StreamStream": grpc.stream_stream_rpc_method_handler(ss),
            },
        )
        self.server = grpc.aio.server()
        self.server.add_generic_rpc_handlers((handler,))
        if self.tls is None:
            port = self.server.add_insecure_port("127.0.0.1:0")
        else:
            creds = grpc.ssl_server_credentials([(self.tls.server_key.read_bytes(), self.tls.server_cert.read_bytes())])
            port = self.server.add_secure_port("127.0.0.1:0", creds)
        await self.server.start()
        self.target = f"127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(None)


@pytest.fixture(params=["plaintext", "tls"])
async def recorder(request, pki):
    rec = await Recorder(pki if request.param == "tls" else None).start()
    yield rec
    await rec.stop()


def _security(rec: Recorder, pki: Pki, token: str | None = TOKEN) -> ClientSecurity:
    return ClientSecurity(token=token, tls_ca=str(pki.ca) if rec.tls else None)


def _sync_calls(target: str, security: ClientSecurity, metadata=None) -> list:
    with open_channel(target, security) as ch:
        out = [ch.unary_unary("/test.Echo/UnaryUnary")(b"a", timeout=10, metadata=metadata)]
        out.append(list(ch.unary_stream("/test.Echo/UnaryStream")(b"b", timeout=10, metadata=metadata)))
        out.append(ch.stream_unary("/test.Echo/StreamUnary")(iter([b"c", b"d"]), timeout=10, metadata=metadata))
        out.append(list(ch.stream_stream("/test.Echo/StreamStream")(iter([b"e", b"f"]), timeout=10, metadata=metadata)))
    return out


async def _aio_calls(target: str, security: ClientSecurity, metadata=None) -> list:
    async with open_aio_channel(target, security) as ch:
        out = [await ch.unary_unary("/test.Echo/UnaryUnary")(b"a", timeout=10, metadata=metadata)]
        out.append([r async for r in ch.unary_stream("/test.Echo/UnaryStream")(b"b", timeout=10, metadata=metadata)])

        async def two(*items):
            for item in items:
                yield item

        out.append(await ch.stream_unary("/test.Echo/StreamUnary")(two(b"c", b"d"), timeout=10, metadata=metadata))
        # The agent's sender writes with call.write()/read(): that style too.
        call = ch.stream_stream("/test.Echo/StreamStream")(timeout=10, metadata=metadata)
        await call.write(b"e")
        await call.write(b"f")
        await call.done_writing()
        out.append([r async for r in call])
    return out


EXPECTED = [b"a", [b"b", b"b"], b"cd", [b"e", b"f"]]


async def test_the_token_reaches_the_server_once_on_every_call_kind_sync_and_aio(recorder, pki):
    security = _security(recorder, pki)
    assert await asyncio.to_thread(_sync_calls, recorder.target, security) == EXPECTED
    assert await _aio_calls(recorder.target, security) == EXPECTED
    for kind in KINDS:
        assert recorder.seen[kind] == [[f"Bearer {TOKEN}"]] * 2, kind


async def test_call_metadata_is_kept_beside_the_token(recorder, pki):
    security = _security(recorder, pki)
    md = (("x-other", "kept"),)
    await asyncio.to_thread(_sync_calls, recorder.target, security, md)
    await _aio_calls(recorder.target, security, md)
    assert recorder.other == ["kept"] * 8
    assert all(seen == [[f"Bearer {TOKEN}"]] * 2 for seen in recorder.seen.values())


async def test_no_token_no_authorization_header(recorder, pki):
    security = _security(recorder, pki, token=None)
    await asyncio.to_thread(_sync_calls, recorder.target, security)
    await _aio_calls(recorder.target, security)
    assert all(seen == [[]] * 2 for seen in recorder.seen.values())


@pytest.fixture
async def tls_server(pki):
    rec = await Recorder(pki).start()
    yield rec
    await rec.stop()


async def test_a_plaintext_client_cannot_talk_to_a_tls_server(tls_server):
    async with open_aio_channel(tls_server.target, ClientSecurity(token=TOKEN)) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await ch.unary_unary("/test.Echo/UnaryUnary")(b"a", timeout=5)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    assert tls_server.seen["UnaryUnary"] == []


async def test_a_client_that_does_not_trust_the_servers_ca_fails_and_sends_no_token(tls_server, pki):
    security = ClientSecurity(token=TOKEN, tls_ca=str(pki.other_ca))
    async with open_aio_channel(tls_server.target, security) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await ch.unary_unary("/test.Echo/UnaryUnary")(b"a", timeout=5)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(grpc.RpcError) as e2:
        await asyncio.to_thread(_sync_calls, tls_server.target, security)
    assert e2.value.code() == grpc.StatusCode.UNAVAILABLE
    assert tls_server.seen["UnaryUnary"] == []


# --- settings --------------------------------------------------------------------------------------


def test_from_env_and_env_round_trip(pki, tmp_path, monkeypatch):
    monkeypatch.chdir(pki.folder)
    env = {
        "RUNWIRE_TOKEN": TOKEN,
        "RUNWIRE_TLS_CA": "ca.pem",
        "RUNWIRE_TLS_CERT": str(pki.client_cert),
        "RUNWIRE_TLS_KEY": str(pki.client_key),
    }
    security = ClientSecurity.from_env(env)
    assert security.tls and security.token == TOKEN and security.tls_ca == "ca.pem"
    out = security.env()
    assert out["RUNWIRE_TLS_CA"] == str(pki.ca)  # absolute: jobs run in another folder
    assert ClientSecurity.from_env(out) == ClientSecurity(TOKEN, str(pki.ca), str(pki.client_cert), str(pki.client_key))
    assert ClientSecurity.from_env({}) == ClientSecurity()
    assert not ClientSecurity.from_env({"RUNWIRE_TLS_CA": ""}).tls


def test_endpoint_reads_tls_from_config_relative_to_the_file_and_env_overrides(tmp_path, monkeypatch):
    from runwire.config import load_endpoint

    folder = tmp_path / "proj" / ".runwire"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(
        '{"collector": "h:1", "token": "t1", "tls_ca": "certs/ca.pem", "tls_cert": "/abs/c.pem", "tls_key": "k.pem"}'
    )
    endpoint = load_endpoint(tmp_path / "proj")
    assert endpoint.tls_ca == str(folder / "certs" / "ca.pem")
    assert endpoint.tls_cert == "/abs/c.pem" and endpoint.tls_key == str(folder / "k.pem")
    assert "tls_ca" not in endpoint.extra
    monkeypatch.setenv("RUNWIRE_TLS_CA", "/env/ca.pem")
    monkeypatch.setenv("RUNWIRE_TOKEN", "t2")
    endpoint = load_endpoint(tmp_path / "proj")
    assert endpoint.tls_ca == "/env/ca.pem" and endpoint.token == "t2"
    security = ClientSecurity.from_endpoint(endpoint)
    assert security == ClientSecurity("t2", "/env/ca.pem", "/abs/c.pem", str(folder / "k.pem"))


BAD_SETTINGS = [
    (dict(token="two words"), "printable ASCII"),
    (dict(token="line\nbreak"), "printable ASCII"),
    (dict(token="caf\u00e9"), "printable ASCII"),
    (dict(tls_ca="ca.pem", tls_cert="c.pem"), "tls_cert is set without tls_key"),
    (dict(tls_ca="ca.pem", tls_key="k.pem"), "tls_key is set without tls_cert"),
    (dict(tls_cert="c.pem", tls_key="k.pem"), "without tls_ca"),
]


@pytest.mark.parametrize(("settings", "message"), BAD_SETTINGS)
def test_settings_that_cannot_work_are_refused_at_once(settings, message):
    with pytest.raises(ClientSecurityError, match=message):
        ClientSecurity(**settings)


def _bad_files(pki: Pki, tmp: Path) -> list[tuple[dict, str]]:
    empty = tmp / "empty.pem"
    empty.write_text("")
    garbage = tmp / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    locked = tmp / "locked.pem"
    locked.write_bytes(pki.ca.read_bytes())
    locked.chmod(0)
    enc = encrypted_key(pki, tmp / "encrypted.pem")
    ca = str(pki.ca)
    return [
        (dict(tls_ca=str(tmp / "missing.pem")), f"cannot read the TLS CA certificate file {tmp / 'missing.pem'}"),
        (dict(tls_ca=str(tmp)), f"cannot read the TLS CA certificate file {tmp}"),
        (dict(tls_ca=str(empty)), f"{empty} (tls_ca) is not PEM"),
        (dict(tls_ca=str(garbage)), f"{garbage} (tls_ca) holds no valid certificate"),
        (dict(tls_ca=str(pki.client_key)), f"{pki.client_key} (tls_ca) holds no"),
        (dict(tls_ca=ca, tls_cert=str(pki.client_key), tls_key=str(pki.client_key)), "(tls_cert) is not a PEM certif"),
        (dict(tls_ca=ca, tls_cert=str(pki.client_cert), tls_key=str(pki.client_cert)), "(tls_key): not a usable"),
        (dict(tls_ca=ca, tls_cert=str(pki.client_cert), tls_key=str(pki.other_client_key)), "not the private key of"),
        (dict(tls_ca=ca, tls_cert=str(pki.server_cert), tls_key=str(enc)), "encrypted"),
    ] + ([] if _is_root() else [(dict(tls_ca=str(locked)), f"cannot read the TLS CA certificate file {locked}")])


def _is_root() -> bool:
    import os

    return os.geteuid() == 0


def test_unusable_tls_files_are_refused_naming_the_file(pki, tmp_path):
    for settings, message in _bad_files(pki, tmp_path):
        security = ClientSecurity(token=TOKEN, **settings)
        with pytest.raises(ClientSecurityError) as e:
            open_channel("127.0.0.1:1", security)
        assert message in str(e.value), (settings, str(e.value))
        with pytest.raises(ClientSecurityError):
            open_aio_channel("127.0.0.1:1", security)


def test_unreachable_hints_name_the_likely_tls_setting():
    from runwire._transports.channel import unreachable_hint

    closed = "failed to connect to all addresses; last error: UNAVAILABLE: ipv4:127.0.0.1:1: Socket closed"
    verify = "Tls handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: CERTIFICATE_VERIFY_FAILED: unable to get"
    expired = "CERTIFICATE_VERIFY_FAILED: certificate has expired: OK"
    ca = ClientSecurity(tls_ca="ca.pem")
    with_cert = ClientSecurity(tls_ca="ca.pem", tls_cert="c.pem", tls_key="k.pem")
    assert "set RUNWIRE_TLS_CA" in unreachable_hint(None, closed)
    assert "RUNWIRE_TLS_CERT and RUNWIRE_TLS_KEY" in unreachable_hint(ca, closed)
    assert "--tls-client-ca" in unreachable_hint(with_cert, closed)
    assert "must hold the CA" in unreachable_hint(ca, verify)
    assert "has expired" in unreachable_hint(ca, expired)
    hostname = "Custom verification check failed with error: UNAUTHENTICATED: Hostname Verification Check failed."
    assert "does not name the address dialled" in unreachable_hint(ca, hostname)
    assert unreachable_hint(ca, "Failed to connect to remote host: Connection refused") == ""
