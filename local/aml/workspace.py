"""The local workspace's identity, as a job sees it: names, URIs, run tokens and TLS.

Azure ML hands every job the workspace's coordinates and an ``azureml://`` MLflow tracking URI
with a run token; the ``azureml-mlflow`` plugin turns them into HTTPS calls to the
workspace's MLflow endpoint. Locally the endpoint is ``local.aml.mlflow_front`` on loopback,
so the URIs carry ``127.0.0.1:PORT`` where Azure has ``<region>.api.azureml.ms``, and the
TLS certificate is one this module makes once per state folder (steps trust it through
``REQUESTS_CA_BUNDLE``, a bundle of the usual public roots plus this certificate).

Run tokens are JWTs (the plugin reads their ``exp`` claim without verifying them, as it
does in Azure), signed here with a per-folder secret the endpoint checks.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TOKEN_LIFETIME_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True)
class WorkspaceIdentity:
    """Where the local workspace says it lives (placeholders shaped like Azure's)."""

    subscription_id: str = "00000000-0000-0000-0000-000000000000"
    resource_group: str = "local"
    workspace_name: str = "local"
    workspace_id: str = "00000000-0000-0000-0000-00000000a11e"

    @property
    def scope(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.MachineLearningServices/workspaces/{self.workspace_name}"
        )

    def tracking_uri(self, netloc: str) -> str:
        """The ``azureml://`` tracking URI Azure ML gives jobs, pointed at ``netloc``."""
        return f"azureml://{netloc}/mlflow/v1.0{self.scope}"

    def artifact_uri(self, netloc: str, experiment_id: str, run_id: str, path: str = "") -> str:
        """A run's artifact URI as Azure ML reports it (``…/experiments/E/runs/R/artifacts``)."""
        tail = f"/{path.strip('/')}" if path.strip("/") else ""
        return (
            f"azureml://{netloc}/mlflow/v2.0{self.scope}/experiments/{experiment_id}"
            f"/runs/{run_id}/artifacts{tail}"
        )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenError(ValueError):
    """A request's bearer token is missing, malformed, badly signed or expired."""


class RunTokens:
    """Mints and checks the HS256 run tokens of one local workspace."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def mint(self, run_id: str, experiment: str, lifetime: float = TOKEN_LIFETIME_SECONDS) -> str:
        now = int(time.time())
        header = {"alg": "HS256", "typ": "JWT"}
        claims = {
            "aud": "https://management.azure.com/",
            "iss": "local.aml",
            "iat": now,
            "nbf": now,
            "exp": now + int(lifetime),
            "runId": run_id,
            "experiment": experiment,
        }
        signing = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        signature = hmac.new(self._secret, signing.encode("ascii"), hashlib.sha256).digest()
        return f"{signing}.{_b64(signature)}"

    def check(self, token: str) -> dict[str, Any]:
        """The token's claims; ``TokenError`` unless it is ours and unexpired."""
        parts = token.split(".")
        if len(parts) != 3:
            raise TokenError("not a JWT")
        signing = f"{parts[0]}.{parts[1]}".encode("ascii")
        expected = hmac.new(self._secret, signing, hashlib.sha256).digest()
        try:
            signature = _unb64(parts[2])
            claims = json.loads(_unb64(parts[1]))
        except (ValueError, TypeError) as exc:
            raise TokenError("malformed token") from exc
        if not hmac.compare_digest(signature, expected):
            raise TokenError("bad signature")
        if not isinstance(claims, dict) or float(claims.get("exp", 0)) < time.time():
            raise TokenError("expired token")
        return claims


@dataclass(frozen=True)
class TlsMaterial:
    cert: Path
    key: Path
    ca_bundle: Path


def workspace_secret(folder: Path) -> bytes:
    """The folder's token secret, made on first use (mode 0600)."""
    path = folder / "token.key"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    folder.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_bytes(32)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(secret)
    tmp.chmod(0o600)
    try:
        os.link(tmp, path)  # first writer wins; others read what it wrote
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_bytes()


def tls_material(folder: Path) -> TlsMaterial:
    """A self-signed certificate for 127.0.0.1/localhost and a CA bundle that trusts it."""
    import fcntl

    cert, key, bundle = folder / "tls.crt", folder / "tls.key", folder / "ca-bundle.pem"
    if not (cert.exists() and key.exists() and bundle.exists()):
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / ".tls.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one process makes it; the key must match the cert
            if not (cert.exists() and key.exists() and bundle.exists()):
                _make_tls(folder, cert, key, bundle)
    return TlsMaterial(cert=cert, key=key, ca_bundle=bundle)


def _make_tls(folder: Path, cert_path: Path, key_path: Path, bundle_path: Path) -> None:
    import ipaddress

    import certifi
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "local Azure ML workspace")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    # The blob host jobs reach through the endpoint's proxy.
                    x509.DNSName("*.blob.core.windows.net"),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    suffix = f".{os.getpid()}.tmp"
    for path, data, mode in (
        (key_path, key_pem, 0o600),
        (cert_path, pem, 0o644),
        (bundle_path, Path(certifi.where()).read_bytes() + b"\n" + pem, 0o644),
    ):
        tmp = path.with_suffix(path.suffix + suffix)
        tmp.write_bytes(data)
        tmp.chmod(mode)
        tmp.replace(path)


__all__ = [
    "RunTokens",
    "TlsMaterial",
    "TokenError",
    "WorkspaceIdentity",
    "tls_material",
    "workspace_secret",
]
