"""The agent's --token-file/--tls-* flags and the collector's --tls-key: secrets readable by other users are
warned about; the flags fall back to RUNWIRE_TOKEN / RUNWIRE_TLS_*; paths become absolute (jobs run elsewhere)."""

from __future__ import annotations

import argparse
import logging

import pytest

from runwire.agent.security import add_security_arguments, security_from_args
from runwire.server.tls import ServerTLS
from tests.tls_pki import make_pki


@pytest.fixture
def pki(tmp_path):
    return make_pki(tmp_path / "pki")


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_security_arguments(parser)
    return parser.parse_args(list(argv))


def test_flags_win_over_the_environment_and_paths_become_absolute(pki, tmp_path, monkeypatch):
    monkeypatch.chdir(pki.folder)
    monkeypatch.setenv("RUNWIRE_TOKEN", "from-env")
    monkeypatch.setenv("RUNWIRE_TLS_CA", "/nowhere/ca.pem")
    token = tmp_path / "token"
    token.write_text("from-file\n")
    token.chmod(0o600)
    security = security_from_args(
        _parse(
            "--token-file",
            str(token),
            "--tls-ca",
            "ca.pem",
            "--tls-cert",
            "client_cert.pem",
            "--tls-key",
            "client_key.pem",
        )
    )
    assert security.token == "from-file"
    assert security.tls_ca == str(pki.ca) and security.tls_key == str(pki.client_key)
    env_only = security_from_args(_parse("--tls-ca", str(pki.ca)))
    assert env_only.token == "from-env"


def test_secrets_readable_by_others_are_warned_about(pki, tmp_path, caplog):
    token = tmp_path / "token"
    token.write_text("t\n")
    token.chmod(0o644)
    pki.client_key.chmod(0o640)
    with caplog.at_level(logging.WARNING):
        security_from_args(
            _parse("--token-file", str(token), "--tls-ca", str(pki.ca), "--tls-cert", str(pki.client_cert),
                   "--tls-key", str(pki.client_key))
        )  # fmt: skip
    text = caplog.text
    assert f"--token-file {token} is readable by other users (mode 0644); make it 0600" in text
    assert f"--tls-key {pki.client_key} is readable by other users (mode 0640)" in text
    caplog.clear()
    pki.server_key.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        ServerTLS.load(pki.server_cert, pki.server_key)
    assert f"--tls-key {pki.server_key} is readable by other users (mode 0644)" in caplog.text
    caplog.clear()
    pki.server_key.chmod(0o600)
    token.chmod(0o600)
    with caplog.at_level(logging.WARNING):
        ServerTLS.load(pki.server_cert, pki.server_key)
        security_from_args(_parse("--token-file", str(token)))
    assert "readable by other users" not in caplog.text
