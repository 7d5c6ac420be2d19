"""A token credential that needs no identity provider: it signs its own JWTs.

The Azure ML SDK decodes the token it gets for ``https://ml.azure.com/.default`` and checks the
audience before submitting a pipeline job, so the token must be a real JWT whose ``aud`` is the
requested resource — as Entra ID issues them. The signature (HS256 with a test key) is
checked by the stand-ins, which is how they know a request carries this credential's token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from typing import Any

from azure.core.credentials import AccessToken

SIGNING_KEY = b"stand-in signing key (tests only)"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_jwt(claims: dict[str, Any]) -> str:
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(claims).encode())
    signature = hmac.new(SIGNING_KEY, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(signature)}"


def verify_jwt(token: str) -> dict[str, Any] | None:
    """The claims of a token this module signed and that has not expired, else ``None``."""
    try:
        header, payload, signature = token.split(".")
        expected = hmac.new(SIGNING_KEY, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _unb64(signature)):
            return None
        claims: dict[str, Any] = json.loads(_unb64(payload))
    except (ValueError, json.JSONDecodeError):
        return None
    return claims if claims.get("exp", 0) > time.time() else None


class StaticTokenCredential:
    """``TokenCredential`` for one managed identity (``oid``) that records the scopes asked for."""

    def __init__(
        self,
        object_id: str = "11111111-2222-3333-4444-555555555555",
        tenant_id: str = "99999999-8888-7777-6666-555555555555",
    ) -> None:
        self.object_id = object_id
        self.tenant_id = tenant_id
        self.scopes: list[str] = []
        self._lock = threading.Lock()

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        with self._lock:
            self.scopes.extend(scopes)
        resource = scopes[0].removesuffix("/.default") if scopes else ""
        now = int(time.time())
        claims = {
            "aud": resource,
            "oid": self.object_id,
            "tid": self.tenant_id,
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
        }
        return AccessToken(make_jwt(claims), now + 3600)

    def close(self) -> None:
        pass
