"""Storage accounts as Azure serves them to an identity-based app: Azurite behind a front door.

Azurite (``local/hosting/azurite.py``) runs with HTTPS and its OAuth mode, holding every
account of the deployment. ``StorageFront`` is what the app's endpoints point at: one HTTPS
server per service (blob, queue) that forwards each request to Azurite unchanged, after

- naming the REST operation (``Put Blob``, ``List Blobs``, ``Create Container`` …, the names
  of the Blob and Queue service REST references) and the RBAC data action Azure checks for
  it (learn.microsoft.com, "Authorize access to blobs/queues using Microsoft Entra ID":
  the permissions for calling data operations), and recording it with the caller's identity;
- refusing, with 403 ``KeyBasedAuthenticationNotPermitted`` as Azure does, any request that
  does not carry a bearer token to an account whose shared keys are disabled (the Bicep sets
  ``allowSharedKeyAccess: false``); Azurite alone would accept the account key.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from tests.integration.azure_standin.http import App, Request, Response, caller_of, forward

BLOB = "Microsoft.Storage/storageAccounts/blobServices"
QUEUE = "Microsoft.Storage/storageAccounts/queueServices"


@dataclass(frozen=True)
class StorageOperation:
    """One request a storage account served (or refused)."""

    service: str  # blob | queue
    account: str
    container: str
    operation: str
    method: str
    template: str
    action: str
    caller: str  # oid of the bearer token; "shared key" / "sas" / "anonymous" otherwise
    status: int


def blob_operation(method: str, parts: list[str], query: dict[str, str]) -> tuple[str, str, str]:
    """(operation, route template, RBAC data action) of a Blob service request whose path is
    ``/{account}/{container}/{blob}`` split into ``parts`` (the account first)."""
    comp = query.get("comp", "")
    restype = query.get("restype", "")
    if len(parts) <= 1 or (len(parts) == 2 and not parts[1]):
        template = "/{account}/"
        if comp == "list":
            return "List Containers", template, f"{BLOB}/containers/read"
        if comp == "userdelegationkey":
            return "Get User Delegation Key", template, f"{BLOB}/generateUserDelegationKey/action"
        return "Get Blob Service Properties", template, f"{BLOB}/read"
    if len(parts) == 2 or (restype == "container" and len(parts) >= 2):
        template = "/{account}/{container}"
        if comp == "list":
            return "List Blobs", template, f"{BLOB}/containers/blobs/read"
        if method == "PUT" and not comp:
            return "Create Container", template, f"{BLOB}/containers/write"
        if method == "DELETE":
            return "Delete Container", template, f"{BLOB}/containers/delete"
        if method == "PUT" and comp == "metadata":
            return "Set Container Metadata", template, f"{BLOB}/containers/write"
        return "Get Container Properties", template, f"{BLOB}/containers/read"
    template = "/{account}/{container}/{blob}"
    blobs = f"{BLOB}/containers/blobs"
    by_comp = {
        ("PUT", "block"): ("Put Block", f"{blobs}/write"),
        ("PUT", "blocklist"): ("Put Block List", f"{blobs}/write"),
        ("GET", "blocklist"): ("Get Block List", f"{blobs}/read"),
        ("PUT", "metadata"): ("Set Blob Metadata", f"{blobs}/write"),
        ("GET", "metadata"): ("Get Blob Metadata", f"{blobs}/read"),
        ("HEAD", "metadata"): ("Get Blob Metadata", f"{blobs}/read"),
        ("PUT", "properties"): ("Set Blob Properties", f"{blobs}/write"),
        ("PUT", "lease"): ("Lease Blob", f"{blobs}/write"),
        ("PUT", "tags"): ("Set Blob Tags", f"{blobs}/tags/write"),
        ("GET", "tags"): ("Get Blob Tags", f"{blobs}/tags/read"),
        ("PUT", "appendblock"): ("Append Block", f"{blobs}/write"),
    }
    if comp:
        name, action = by_comp.get((method, comp), (f"{method} comp={comp}", f"{blobs}/write"))
        return name, template, action
    simple = {
        "PUT": ("Put Blob", f"{blobs}/write"),
        "GET": ("Get Blob", f"{blobs}/read"),
        "HEAD": ("Get Blob Properties", f"{blobs}/read"),
        "DELETE": ("Delete Blob", f"{blobs}/delete"),
    }
    name, action = simple.get(method, (method, f"{blobs}/write"))
    return name, template, action


def queue_operation(method: str, parts: list[str], query: dict[str, str]) -> tuple[str, str, str]:
    """(operation, route template, RBAC data action) of a Queue service request."""
    queues = f"{QUEUE}/queues"
    if len(parts) <= 1:
        return "List Queues", "/{account}/", f"{queues}/read"
    if len(parts) == 2:
        template = "/{account}/{queue}"
        if method == "PUT" and not query.get("comp"):
            return "Create Queue", template, f"{queues}/write"
        if method == "DELETE":
            return "Delete Queue", template, f"{queues}/delete"
        return "Get Queue Metadata", template, f"{queues}/read"
    if len(parts) == 3:
        template = "/{account}/{queue}/messages"
        if method == "POST":
            return "Put Message", template, f"{queues}/messages/add/action"
        if method == "DELETE":
            return "Clear Messages", template, f"{queues}/messages/delete"
        if query.get("peekonly") == "true":
            return "Peek Messages", template, f"{queues}/messages/read"
        return "Get Messages", template, f"{queues}/messages/process/action"
    template = "/{account}/{queue}/messages/{messageid}"
    if method == "DELETE":
        return "Delete Message", template, f"{queues}/messages/delete"
    return "Update Message", template, f"{queues}/messages/write"


class StorageFront(App):
    """One storage service (``blob`` or ``queue``) of the accounts in Azurite at
    ``upstream_port``. ``keyless`` names the accounts whose shared keys are disabled."""

    def __init__(
        self,
        service: str,
        upstream_port: int,
        upstream_context: ssl.SSLContext,
        *,
        keyless: frozenset[str] = frozenset(),
    ) -> None:
        super().__init__()
        if service not in ("blob", "queue"):
            raise ValueError(f"no front for the {service} service")
        self.service = service
        self.upstream_port = upstream_port
        self.upstream_context = upstream_context
        self.keyless = keyless
        self.url = ""  # https://127.0.0.1:<port>, set by whoever serves it
        self.observed: list[StorageOperation] = []

    def endpoint(self, account: str) -> str:
        """The account's endpoint as ARM reports it (``primaryEndpoints``: trailing slash)."""
        return f"{self.url}/{account}/"

    def dispatch(self, request: Request) -> Response:
        parts = request.path.lstrip("/").split("/", 2)
        account = parts[0]
        classify = blob_operation if self.service == "blob" else queue_operation
        operation, template, action = classify(request.method, parts, request.query)
        auth = request.header("Authorization")
        if auth.startswith("Bearer "):
            caller = caller_of(request) or "bad token"
        elif auth.startswith("SharedKey"):
            caller = "shared key"
        elif "sig" in request.query:
            caller = "sas"
        else:
            caller = "anonymous"
        if account in self.keyless and not auth.startswith("Bearer "):
            response = Response(
                403,
                raw=b"<?xml version='1.0' encoding='utf-8'?><Error><Code>"
                b"KeyBasedAuthenticationNotPermitted</Code><Message>Key based authentication "
                b"is not permitted on this storage account.</Message></Error>",
                headers={"x-ms-error-code": "KeyBasedAuthenticationNotPermitted",
                         "Content-Type": "application/xml"},
            )  # fmt: skip
        else:
            response = self._forward(request)
        container = parts[1] if len(parts) > 1 else ""
        with self.lock:
            self.observed.append(
                StorageOperation(
                    self.service, account, container, operation, request.method, template,
                    action, caller, response.status,
                )
            )  # fmt: skip
        return response

    def _forward(self, request: Request) -> Response:
        query = urlencode(request.query)
        path = quote(request.path) + (f"?{query}" if query else "")
        return forward(request, self.upstream_port, path, self.upstream_context)
