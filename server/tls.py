"""The collector's TLS: `--tls-cert PEM --tls-key PEM` for gRPC and HTTPS together, `--tls-client-ca PEM`
to require client certificates on gRPC (mutual TLS between agents and collectors; HTTP stays
server-authenticated only, for browsers).

`ServerTLS.load` reads and checks the files before anything listens, so a wrong file stops the
collector at start with a message naming it (`TLSConfigError`).
"""

from __future__ import annotations

import argparse
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc

from runwire._transports.channel import (
    ClientSecurityError,
    NoCertificate,
    check_cert_and_key,
    check_certificates,
    readable_by_others,
)

log = logging.getLogger("runwire.server")


class TLSConfigError(ValueError):
    """A TLS flag names a file that cannot be used (missing, unreadable, not PEM, key not matching)."""


def _read(path: Path, flag: str, kind: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise TLSConfigError(f"cannot read {flag} {path}: {e.strerror or e}") from None
    if b"-----BEGIN " not in data:
        raise TLSConfigError(f"{flag} {path} is not a PEM file (no '-----BEGIN ' line); it should hold {kind}")
    return data


def _check_certificates(path: Path, data: bytes, flag: str) -> None:
    try:
        check_certificates(data)
    except NoCertificate as e:
        what = f"no valid PEM certificate: {e}" if e.invalid else "no certificate"
        raise TLSConfigError(f"{flag} {path} holds {what}") from None


@dataclass(frozen=True)
class ServerTLS:
    cert_path: Path
    key_path: Path
    client_ca_path: Path | None
    cert: bytes
    key: bytes
    client_ca: bytes | None

    @classmethod
    def load(cls, cert: str | Path, key: str | Path, client_ca: str | Path | None = None) -> ServerTLS:
        cert_path, key_path = Path(cert).expanduser(), Path(key).expanduser()
        cert_pem = _read(cert_path, "--tls-cert", "the collector's certificate (chain)")
        _check_certificates(cert_path, cert_pem, "--tls-cert")
        key_pem = _read(key_path, "--tls-key", "the private key of --tls-cert")
        try:
            check_cert_and_key(str(cert_path), str(key_path), "--tls-cert", "--tls-key")
        except ClientSecurityError as e:
            raise TLSConfigError(str(e)) from None
        mode = readable_by_others(key_path)
        if mode is not None:
            log.warning(
                f"--tls-key {key_path} is readable by other users (mode {mode:04o}); make it 0600",
                extra={"fields": {"path": str(key_path), "mode": f"{mode:04o}"}},
            )
        ca_path = ca_pem = None
        if client_ca is not None:
            ca_path = Path(client_ca).expanduser()
            ca_pem = _read(ca_path, "--tls-client-ca", "the CA certificate(s) that sign client certificates")
            _check_certificates(ca_path, ca_pem, "--tls-client-ca")
        return cls(cert_path, key_path, ca_path, cert_pem, key_pem, ca_pem)

    @property
    def mutual(self) -> bool:
        return self.client_ca is not None

    def grpc_credentials(self) -> grpc.ServerCredentials:
        """Server credentials for `add_secure_port`; with a client CA, clients must present a certificate it signed."""
        return grpc.ssl_server_credentials(
            [(self.key, self.cert)], root_certificates=self.client_ca, require_client_auth=self.mutual
        )

    def ssl_context(self) -> ssl.SSLContext:
        """The HTTPS context of the HTTP site (server certificate only: browsers have no client certificate)."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert_path, self.key_path)
        return ctx


def add_grpc_port(server: grpc.aio.Server, address: str, tls: ServerTLS | None) -> int:
    """Listen on `address` (HOST:PORT) in plaintext, or with TLS when `tls` is set; the bound port (0: failed)."""
    if tls is None:
        return server.add_insecure_port(address)
    return server.add_secure_port(address, tls.grpc_credentials())


def add_tls_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tls-cert",
        type=Path,
        default=None,
        metavar="PEM",
        help="serve gRPC and HTTP over TLS with this certificate (chain); needs --tls-key (default: plaintext)",
    )
    parser.add_argument("--tls-key", type=Path, default=None, metavar="PEM", help="private key of --tls-cert")
    parser.add_argument(
        "--tls-client-ca",
        type=Path,
        default=None,
        metavar="PEM",
        help="require gRPC clients to present a certificate signed by this CA (mutual TLS; needs --tls-cert)",
    )


def tls_from_args(args: argparse.Namespace) -> ServerTLS | None:
    """The `ServerTLS` the flags ask for, or None (plaintext); `TLSConfigError` for flags that do not go
    together and for files that cannot be used."""
    cert, key, client_ca = args.tls_cert, args.tls_key, args.tls_client_ca
    if (cert is None) != (key is None):
        given, missing = ("--tls-cert", "--tls-key") if key is None else ("--tls-key", "--tls-cert")
        raise TLSConfigError(f"{given} needs {missing}: TLS takes both the certificate and its private key")
    if cert is None:
        if client_ca is not None:
            raise TLSConfigError("--tls-client-ca needs --tls-cert and --tls-key (mutual TLS is TLS first)")
        return None
    return ServerTLS.load(cert, key, client_ca)
