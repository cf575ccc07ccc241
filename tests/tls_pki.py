"""Certificates made in the test (trustme): a CA, a collector certificate for 127.0.0.1/localhost, a
client certificate from that CA, and a second CA with its own client certificate (one nobody trusts)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class Pki:
    folder: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path
    other_client_cert: Path
    other_client_key: Path

    def read(self, path: Path) -> bytes:
        return path.read_bytes()


def make_pki(folder: Path) -> Pki:
    folder.mkdir(parents=True, exist_ok=True)
    ca, other = trustme.CA(), trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("agent-1.example")
    stranger = other.issue_cert("agent-1.example")
    files = {
        "ca": ca.cert_pem,
        "server_cert": server.cert_chain_pems[0],
        "server_key": server.private_key_pem,
        "client_cert": client.cert_chain_pems[0],
        "client_key": client.private_key_pem,
        "other_ca": other.cert_pem,
        "other_client_cert": stranger.cert_chain_pems[0],
        "other_client_key": stranger.private_key_pem,
    }
    paths = {}
    for name, blob in files.items():
        path = folder / f"{name}.pem"
        blob.write_to_path(str(path))
        path.chmod(0o600)
        paths[name] = path
    return Pki(folder=folder, **paths)


def encrypted_key(pki: Pki, path: Path, passphrase: bytes = b"secret") -> Path:
    """The collector's key, encrypted with a passphrase (which runwire cannot use)."""
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(pki.server_key.read_bytes(), password=None)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(passphrase),
        )
    )
    return path
