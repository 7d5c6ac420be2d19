"""A loopback stand-in of Key Vault's secrets data plane (``GET /secrets/{name}``).

Answers the Get Secret operation of the Key Vault REST API (api-version 7.4): ``{"value",
"id", "attributes"}``; the caller must bring an Entra ID token for ``https://vault.azure.net``
(RBAC-authorised vaults), otherwise 401 as the service answers.
"""

from __future__ import annotations

from typing import Any

from tests.integration.azure_standin.credentials import verify_jwt
from tests.integration.azure_standin.http import App, Request, Response

AUDIENCE = "https://vault.azure.net"


class KeyVaultStandIn(App):
    def __init__(self) -> None:
        super().__init__()
        self.url = ""
        self.secrets: dict[str, str] = {}
        self.route("GET", "/secrets/(?P<name>[^/]+)(?:/(?P<version>[^/]*))?", "secrets.get",
                   self._get)  # fmt: skip

    def dispatch(self, request: Request) -> Response:
        header = request.header("Authorization")
        claims = (
            verify_jwt(header.removeprefix("Bearer ")) if header.startswith("Bearer ") else None
        )
        if claims is None or str(claims.get("aud", "")).rstrip("/") != AUDIENCE:
            return Response(401, {"error": {"code": "Unauthorized", "message": "no valid token"}})
        return super().dispatch(request)

    def _get(self, request: Request) -> Response:
        name = request.params["name"]
        value = self.secrets.get(name)
        if value is None:
            return Response(404, {"error": {"code": "SecretNotFound", "message": name}})
        body: dict[str, Any] = {
            "value": value,
            "id": f"{self.url}/secrets/{name}/1",
            "attributes": {"enabled": True},
        }
        return Response(200, body)
