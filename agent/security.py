"""The agent's flags for reaching a collector that wants a token or TLS: `--token-file`, `--tls-ca`,
`--tls-cert`, `--tls-key`, each falling back to its environment variable (`RUNWIRE_TOKEN`,
`RUNWIRE_TLS_CA`, `RUNWIRE_TLS_CERT`, `RUNWIRE_TLS_KEY`)."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from runwire._transports.channel import (
    ENV_TLS_CA,
    ENV_TLS_CERT,
    ENV_TLS_KEY,
    ENV_TOKEN,
    ClientSecurity,
    ClientSecurityError,
    readable_by_others,
)

log = logging.getLogger("runwire.agent")


def add_security_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--token-file",
        default=None,
        metavar="PATH",
        help=f"file holding the bearer token for the collector (default: ${ENV_TOKEN}); passed to jobs as {ENV_TOKEN}",
    )
    parser.add_argument(
        "--tls-ca",
        default=None,
        metavar="PEM",
        help=f"speak TLS to the collector, trusting this CA certificate (default: ${ENV_TLS_CA}; unset: plaintext)",
    )
    parser.add_argument(
        "--tls-cert",
        default=None,
        metavar="PEM",
        help=f"client certificate for collectors that require one (mutual TLS; default: ${ENV_TLS_CERT})",
    )
    parser.add_argument(
        "--tls-key", default=None, metavar="PEM", help=f"private key of --tls-cert (default: ${ENV_TLS_KEY})"
    )


def read_token_file(path: str) -> str:
    p = Path(path).expanduser()
    try:
        token = p.read_text().strip()
    except (OSError, UnicodeDecodeError) as e:
        raise ClientSecurityError(f"cannot read --token-file {p}: {getattr(e, 'strerror', None) or e}") from None
    if not token:
        raise ClientSecurityError(f"--token-file {p} is empty (it should hold the token on one line)")
    _warn_if_shared(p, "--token-file")
    return token


def _warn_if_shared(path: Path, flag: str) -> None:
    mode = readable_by_others(path)
    if mode is not None:
        log.warning(
            f"{flag} {path} is readable by other users (mode {mode:04o}); make it 0600",
            extra={"fields": {"path": str(path), "mode": f"{mode:04o}"}},
        )


def _absolute(path: str | None) -> str | None:
    return str(Path(path).expanduser().absolute()) if path else None


def security_from_args(args: argparse.Namespace) -> ClientSecurity:
    """The agent's `ClientSecurity`: flags first, then the environment. The TLS files are read and checked
    here, so that a wrong file stops the agent at start with a message naming it."""
    env = os.environ.get
    token = read_token_file(args.token_file) if args.token_file else env(ENV_TOKEN) or None
    security = ClientSecurity(
        token=token,
        tls_ca=_absolute(args.tls_ca or env(ENV_TLS_CA)),
        tls_cert=_absolute(args.tls_cert or env(ENV_TLS_CERT)),
        tls_key=_absolute(args.tls_key or env(ENV_TLS_KEY)),
    )
    security.channel_credentials()
    if security.tls_key:
        _warn_if_shared(Path(security.tls_key), "--tls-key")
    return security
