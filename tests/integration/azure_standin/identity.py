"""A loopback stand-in of the managed identity endpoint a function app's worker calls.

Azure App Service and Azure Functions give the worker two environment variables,
``IDENTITY_ENDPOINT`` (a plain-HTTP URL on the instance) and ``IDENTITY_HEADER`` (a secret the
caller must echo in ``X-IDENTITY-HEADER``). azure-identity's ``ManagedIdentityCredential`` (and
``DefaultAzureCredential``, which tries it) then asks for a token with
``GET {IDENTITY_ENDPOINT}?api-version=2019-08-01&resource=<resource>[&client_id=<id>]`` and reads
``access_token`` and ``expires_on`` (epoch seconds) from the JSON answer — the App Service
protocol (learn.microsoft.com, "Managed identities for App Service and Azure Functions", REST
endpoint reference). Serving it means the app's real credential code path runs.

Identities are registered with ``add``; a request naming no client id, or one the app was
not given, is refused with 400 as the platform does for an identity that is not assigned.
Tokens are JWTs signed by ``credentials.make_jwt`` (so every stand-in can verify them) with
the claims Entra ID puts in an app-only token: ``aud`` (the resource), ``iss``, ``oid``
(principal id), ``appid`` (client id), ``tid``, ``iat``/``nbf``/``exp``. Azurite in OAuth
mode checks ``iss``, ``aud`` and the lifetime. Platform actors that are not the app (a Data
Factory, an Event Grid system topic, Azure ML compute) take their tokens from ``token_for``.
"""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass, field

from tests.integration.azure_standin.credentials import make_jwt
from tests.integration.azure_standin.http import App, Request, Response

TOKEN_LIFETIME = 3600


@dataclass(frozen=True)
class Identity:
    """One managed identity: ``name`` says whose it is (``app``, ``data-factory`` …)."""

    name: str
    client_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    principal_id: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass(frozen=True)
class Issued:
    identity: str
    resource: str


class ManagedIdentityEndpoint(App):
    """The identity endpoint of one app instance, and the token source of the other actors.

    ``url`` is set by whoever serves it (``StandInServer`` on plain HTTP, as the platform's
    endpoint is).
    """

    def __init__(self, tenant_id: str = "99999999-8888-7777-6666-555555555555") -> None:
        super().__init__()
        self.tenant_id = tenant_id
        self.secret = secrets.token_urlsafe(24)
        self.url = ""
        self.identities: dict[str, Identity] = {}  # client id → identity
        self.assigned: set[str] = set()  # client ids the app instance may use
        self.issued: list[Issued] = []
        self.refused: list[str] = []
        self.route("GET", "/msi/token", "identity.token", self._token)

    def add(self, name: str, *, assigned_to_app: bool = False) -> Identity:
        identity = Identity(name)
        with self.lock:
            self.identities[identity.client_id] = identity
            if assigned_to_app:
                self.assigned.add(identity.client_id)
        return identity

    def by_principal(self, principal_id: str) -> Identity | None:
        return next((i for i in self.identities.values() if i.principal_id == principal_id), None)

    def environment(self) -> dict[str, str]:
        """What the platform sets in the worker's environment."""
        return {"IDENTITY_ENDPOINT": f"{self.url}/msi/token", "IDENTITY_HEADER": self.secret}

    def token_for(self, identity: Identity, resource: str) -> str:
        """A token as Entra ID issues it to ``identity`` for ``resource``."""
        now = int(time.time())
        claims = {
            "aud": resource,
            "iss": f"https://sts.windows.net/{self.tenant_id}/",
            "oid": identity.principal_id,
            "sub": identity.principal_id,
            "appid": identity.client_id,
            "tid": self.tenant_id,
            "idtyp": "app",
            "iat": now,
            "nbf": now,
            "exp": now + TOKEN_LIFETIME,
        }
        with self.lock:
            self.issued.append(Issued(identity.name, resource))
        return make_jwt(claims)

    def _refuse(self, status: int, message: str) -> Response:
        with self.lock:
            self.refused.append(message)
        return Response(status, {"statusCode": status, "message": message})

    def _token(self, request: Request) -> Response:
        if request.header("X-IDENTITY-HEADER") != self.secret:
            return self._refuse(401, "X-IDENTITY-HEADER is missing or wrong")
        if request.query.get("api-version") != "2019-08-01":
            return self._refuse(400, f"unsupported api-version {request.query.get('api-version')}")
        resource = request.query.get("resource", "")
        if not resource:
            return self._refuse(400, "resource is required")
        client_id = request.query.get("client_id", "")
        if not client_id:
            # The app runs as a user-assigned identity only: without a client id the platform
            # looks for a system-assigned one, which it does not have.
            return self._refuse(400, "no system-assigned identity; name the client_id")
        with self.lock:
            identity = self.identities.get(client_id) if client_id in self.assigned else None
        if identity is None:
            return self._refuse(400, f"identity {client_id} is not assigned to this app")
        token = self.token_for(identity, resource)
        return Response(
            200,
            {
                "access_token": token,
                "expires_on": str(int(time.time()) + TOKEN_LIFETIME),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": identity.client_id,
            },
        )
