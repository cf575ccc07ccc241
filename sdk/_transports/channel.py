"""Every client channel to the collector: plaintext or TLS, with the bearer token on each call.

`ClientSecurity` says how a client reaches the collector. With `tls_ca` set the channel speaks TLS
and trusts that CA (a PEM file); `tls_cert` + `tls_key` add a client certificate (mutual TLS).
Without `tls_ca` the channel is plaintext. The token travels as gRPC metadata
`authorization: Bearer <token>`: as call credentials on a TLS channel, and through a client
interceptor on a plaintext one (gRPC sends call credentials over secure channels only).

The PEM files are read and checked each time a channel is opened (an agent reconnecting picks up
renewed certificates); a missing, unreadable or malformed file is a `ClientSecurityError` naming it.
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import grpc

from runwire.exceptions import UserErrorException

ENV_TOKEN = "RUNWIRE_TOKEN"
ENV_TLS_CA = "RUNWIRE_TLS_CA"
ENV_TLS_CERT = "RUNWIRE_TLS_CERT"
ENV_TLS_KEY = "RUNWIRE_TLS_KEY"

AUTHORIZATION = "authorization"

_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")  # what an HTTP/2 header value can carry, no spaces
_PEM_CERT = "-----BEGIN CERTIFICATE-----"

Options = Sequence[tuple[str, Any]] | None


class ClientSecurityError(UserErrorException, ValueError):
    """A client's token or TLS settings cannot be used (names the setting or file and the rule)."""


@dataclass(frozen=True)
class ClientSecurity:
    """How a client authenticates to the collector and checks it: token, TLS CA, client certificate."""

    token: str | None = None
    tls_ca: str | None = None
    """PEM file of the CA that signed the collector's certificate; set: TLS, unset: plaintext."""
    tls_cert: str | None = None
    """PEM file of this client's certificate (mutual TLS); needs `tls_key` and `tls_ca`."""
    tls_key: str | None = None
    """PEM file of the private key of `tls_cert` (not encrypted)."""

    def __post_init__(self) -> None:
        for name in ("token", "tls_ca", "tls_cert", "tls_key"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                object.__setattr__(self, name, os.fspath(value))
            elif value == "":
                object.__setattr__(self, name, None)
        if self.token is not None and not _HEADER_SAFE.fullmatch(self.token):
            raise ClientSecurityError(
                "the token (RUNWIRE_TOKEN, config key token or --token-file) must be printable ASCII "
                "without spaces or line breaks"
            )
        if (self.tls_cert is None) != (self.tls_key is None):
            given, missing = ("tls_cert", "tls_key") if self.tls_key is None else ("tls_key", "tls_cert")
            raise ClientSecurityError(
                f"{given} is set without {missing}: a client certificate needs both "
                "(RUNWIRE_TLS_CERT and RUNWIRE_TLS_KEY, or --tls-cert and --tls-key)"
            )
        if self.tls_cert is not None and self.tls_ca is None:
            raise ClientSecurityError(
                "a client certificate (tls_cert, tls_key) is set without tls_ca: TLS needs the CA that signed "
                "the collector's certificate (RUNWIRE_TLS_CA or --tls-ca)"
            )

    @property
    def tls(self) -> bool:
        return self.tls_ca is not None

    @classmethod
    def from_endpoint(cls, endpoint: Any) -> ClientSecurity:
        """The security of a `runwire.config.Endpoint` (its token and TLS files)."""
        return cls(
            token=getattr(endpoint, "token", None),
            tls_ca=getattr(endpoint, "tls_ca", None),
            tls_cert=getattr(endpoint, "tls_cert", None),
            tls_key=getattr(endpoint, "tls_key", None),
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ClientSecurity:
        """`RUNWIRE_TOKEN`, `RUNWIRE_TLS_CA`, `RUNWIRE_TLS_CERT`, `RUNWIRE_TLS_KEY`."""
        env = os.environ if environ is None else environ
        return cls(
            token=env.get(ENV_TOKEN) or None,
            tls_ca=env.get(ENV_TLS_CA) or None,
            tls_cert=env.get(ENV_TLS_CERT) or None,
            tls_key=env.get(ENV_TLS_KEY) or None,
        )

    def env(self) -> dict[str, str]:
        """The environment variables that give a child process (a job) this security; paths absolute."""
        out: dict[str, str] = {}
        if self.token:
            out[ENV_TOKEN] = self.token
        for var, value in ((ENV_TLS_CA, self.tls_ca), (ENV_TLS_CERT, self.tls_cert), (ENV_TLS_KEY, self.tls_key)):
            if value:
                out[var] = str(Path(value).expanduser().absolute())
        return out

    def channel_credentials(self) -> grpc.ChannelCredentials | None:
        """TLS credentials with the token as call credentials, or None for a plaintext channel."""
        if self.tls_ca is None:
            return None
        ca = _read_pem(self.tls_ca, "tls_ca", "TLS CA certificate")
        _check_ca(self.tls_ca, ca)
        key = cert = None
        if self.tls_cert is not None and self.tls_key is not None:
            cert = _read_pem(self.tls_cert, "tls_cert", "TLS client certificate")
            key = _read_pem(self.tls_key, "tls_key", "TLS client key")
            check_cert_and_key(self.tls_cert, self.tls_key, "tls_cert", "tls_key")
        creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
        if self.token:
            creds = grpc.composite_channel_credentials(creds, grpc.access_token_call_credentials(self.token))
        return creds


def _read_pem(path: str, setting: str, what: str) -> bytes:
    p = Path(path).expanduser()
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ClientSecurityError(f"cannot read the {what} file {p} ({setting}): {e.strerror or e}") from None
    if b"-----BEGIN " not in data:
        raise ClientSecurityError(f"the {what} file {p} ({setting}) is not PEM (no '-----BEGIN ' line)")
    return data


class NoCertificate(ValueError):
    """PEM data with no usable certificate; `invalid` when some PEM block failed to parse."""

    def __init__(self, detail: str = "", invalid: bool = False) -> None:
        super().__init__(detail)
        self.invalid = invalid


def check_certificates(data: bytes) -> None:
    """Raise NoCertificate unless `data` holds at least one PEM certificate that parses."""
    text = data.decode("ascii", "replace")
    try:
        ctx = ssl.create_default_context(cadata=text)
    except (ssl.SSLError, ValueError) as e:
        raise NoCertificate(str(e), invalid=True) from None
    if _PEM_CERT not in text or not ctx.cert_store_stats().get("x509"):
        raise NoCertificate()


def _check_ca(path: str, data: bytes) -> None:
    try:
        check_certificates(data)
    except NoCertificate as e:
        what = f"no valid certificate: {e}" if e.invalid else "no certificate"
        raise ClientSecurityError(f"the TLS CA certificate file {path} (tls_ca) holds {what}") from None


def readable_by_others(path: str | os.PathLike[str]) -> int | None:
    """The file's mode when users other than its owner may read it (a secret should be 0600), else None."""
    try:
        mode = os.stat(Path(path).expanduser()).st_mode & 0o777
    except OSError:
        return None
    return mode if mode & 0o044 else None


def _refuse_password() -> bytes:
    raise ssl.SSLError("the key is encrypted (a passphrase-protected key cannot be used: decrypt it first)")


def check_cert_and_key(cert: str, key: str, cert_setting: str, key_setting: str) -> None:
    """Raise `ClientSecurityError` unless `cert` holds a certificate and `key` its private key (PEM)."""
    cert_path, key_path = Path(cert).expanduser(), Path(key).expanduser()
    try:
        ssl.create_default_context(cadata=cert_path.read_text(errors="replace"))
    except (ssl.SSLError, ValueError, OSError) as e:
        raise ClientSecurityError(
            f"the certificate file {cert_path} ({cert_setting}) is not a PEM certificate: {e}"
        ) from None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        ctx.load_cert_chain(cert_path, key_path, password=_refuse_password)
    except OSError as e:  # ssl.SSLError is an OSError too
        reason = getattr(e, "reason", None) or str(e)
        if reason == "KEY_VALUES_MISMATCH":
            detail = f"it is not the private key of the certificate {cert_path} ({cert_setting})"
        else:
            detail = f"not a usable PEM private key ({e})"
        raise ClientSecurityError(f"the key file {key_path} ({key_setting}): {detail}") from None


# --- the token on plaintext channels -----------------------------------------------------------------


class _CallDetails(NamedTuple):
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: bool | None
    compression: Any


class _SyncDetails(_CallDetails, grpc.ClientCallDetails):
    pass


def _with_token(metadata: Any, pair: tuple[str, str]) -> list[tuple[str, Any]]:
    items = list(metadata or ())
    if not any(k == AUTHORIZATION for k, _ in items):
        items.append(pair)
    return items


class _TokenInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds `authorization: Bearer <token>` to every call of a synchronous channel."""

    def __init__(self, token: str) -> None:
        self._pair = (AUTHORIZATION, f"Bearer {token}")

    def _details(self, d: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        md = _with_token(d.metadata, self._pair)
        return _SyncDetails(d.method, d.timeout, md, d.credentials, d.wait_for_ready, getattr(d, "compression", None))

    def intercept_unary_unary(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)

    def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return continuation(self._details(client_call_details), request_iterator)

    def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return continuation(self._details(client_call_details), request_iterator)


class _AioToken:
    def __init__(self, token: str) -> None:
        self._pair = (AUTHORIZATION, f"Bearer {token}")

    def _details(self, d: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        md = grpc.aio.Metadata(*_with_token(d.metadata, self._pair))
        return grpc.aio.ClientCallDetails(d.method, d.timeout, md, d.credentials, d.wait_for_ready)


# grpc.aio files an interceptor under the first of the four kinds it is an instance of: one class per kind.
class _AioUnaryUnary(_AioToken, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation, client_call_details, request):
        return await continuation(self._details(client_call_details), request)


class _AioUnaryStream(_AioToken, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation, client_call_details, request):
        return await continuation(self._details(client_call_details), request)


class _AioStreamUnary(_AioToken, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return await continuation(self._details(client_call_details), request_iterator)


class _AioStreamStream(_AioToken, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return await continuation(self._details(client_call_details), request_iterator)


def aio_token_interceptors(token: str) -> list[grpc.aio.ClientInterceptor]:
    return [_AioUnaryUnary(token), _AioUnaryStream(token), _AioStreamUnary(token), _AioStreamStream(token)]


# --- what an unreachable collector may mean ----------------------------------------------------------


def unreachable_hint(security: ClientSecurity | None, details: str | None) -> str:
    """A hint for an UNAVAILABLE call whose `details` look like a TLS mismatch, or ''. gRPC says only
    "Socket closed" when a TLS collector drops a plaintext client or one without an accepted certificate."""
    security = security or ClientSecurity()
    text = details or ""
    if "Hostname Verification" in text:
        return (
            "the collector's certificate does not name the address dialled: its subjectAltName must list that "
            "DNS name or IP address"
        )
    if "certificate has expired" in text:
        return "the TLS handshake failed: the collector's certificate has expired (or this machine's clock is wrong)"
    if "CERTIFICATE_VERIFY_FAILED" in text or "handshake failed" in text.lower():
        return (
            "the TLS handshake failed: tls_ca (RUNWIRE_TLS_CA, --tls-ca) must hold the CA that signed the "
            "collector's certificate, and that certificate must name the address dialled"
        )
    if "Socket closed" not in text and "Connection reset" not in text:
        return ""
    if not security.tls:
        return "if the collector serves TLS, set RUNWIRE_TLS_CA (the agent: --tls-ca) to its CA certificate"
    if security.tls_cert is None:
        return (
            "if the collector requires client certificates (mutual TLS), set RUNWIRE_TLS_CERT and RUNWIRE_TLS_KEY "
            "(the agent: --tls-cert, --tls-key)"
        )
    return "the collector may not accept this client certificate (is it signed by the collector's --tls-client-ca?)"


# --- channels ----------------------------------------------------------------------------------------


def open_channel(target: str, security: ClientSecurity | None = None, options: Options = None) -> grpc.Channel:
    """A synchronous channel to `target` (HOST:PORT) as `security` says."""
    security = security or ClientSecurity()
    opts = list(options or ())
    creds = security.channel_credentials()
    if creds is not None:
        return grpc.secure_channel(target, creds, options=opts)
    channel = grpc.insecure_channel(target, options=opts)
    if security.token:
        channel = grpc.intercept_channel(channel, _TokenInterceptor(security.token))
    return channel


def open_aio_channel(target: str, security: ClientSecurity | None = None, options: Options = None) -> grpc.aio.Channel:
    """An asyncio channel to `target` (HOST:PORT) as `security` says."""
    security = security or ClientSecurity()
    opts = list(options or ())
    creds = security.channel_credentials()
    if creds is not None:
        return grpc.aio.secure_channel(target, creds, options=opts)
    interceptors = aio_token_interceptors(security.token) if security.token else None
    return grpc.aio.insecure_channel(target, options=opts, interceptors=interceptors)
