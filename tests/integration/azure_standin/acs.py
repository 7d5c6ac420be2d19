"""A loopback stand-in of Azure Communication Services Email (data plane, api-version 2025-09-01).

Two operations, as the service's REST specification defines them
(Azure/azure-rest-api-specs, ``specification/communication/data-plane/Email/stable/2025-09-01``):

- ``POST /emails:send`` takes an ``EmailMessage`` and an optional ``Operation-Id`` header and
  answers ``202`` with an ``EmailSendResult`` body (``id``, ``status``), an ``Operation-Location``
  header to poll and ``retry-after`` (seconds) while the operation is not finished;
- ``GET /emails/operations/{operationId}`` answers ``200`` with the ``EmailSendResult``: ``Running``
  until the scripted number of polls has passed, then ``Succeeded`` or ``Failed`` with an
  ``error`` (``code``, ``message``), the service's error detail.

Errors use the service's error body (``{"error": {"code", "message"}}`` and the
``x-ms-error-code`` header). Requests must carry a bearer token for
``https://communication.azure.com/``, which is what the SDK asks a managed identity for.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from tests.integration.azure_standin.credentials import verify_jwt
from tests.integration.azure_standin.http import App, Request, Response

API_VERSION = "2025-09-01"
AUDIENCE = "https://communication.azure.com/"


@dataclass
class SendOperation:
    id: str
    message: dict[str, Any]
    polls_left: int
    outcome: str
    error: dict[str, str] | None = None
    polls: int = 0
    status: str = "Running"
    done_at: float = 0.0  # monotonic time before which the operation stays Running


@dataclass
class AcsStandIn(App):
    """``url`` is set by the fixture. ``polls_until_done`` and ``outcome`` script the next
        operations; ``retry_after`` is what the service tells the client to wait between polls (the
    documented example says 20 s; ``None`` leaves the header out, so the client's own polling
    interval applies). ``latency_seconds`` keeps an operation Running at least that long after
    its send, as the service takes its time to deliver."""

    url: str = ""
    polls_until_done: int = 1
    outcome: str = "Succeeded"
    error: dict[str, str] | None = None
    retry_after: int | None = None
    latency_seconds: float = 0.0
    operations_by_id: dict[str, SendOperation] = field(default_factory=dict)
    sends: list[Request] = field(default_factory=list)
    auth_failures: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()
        self.route("POST", "/emails:send", "emails.send", self._send)
        self.route("GET", "/emails/operations/(?P<id>[^/]+)", "emails.getSendResult", self._poll)

    def error_body(self, status: int, request: Request) -> Any:
        codes = {
            400: "BadRequest",
            401: "Unauthorized",
            403: "Forbidden",
            404: "NotFound",
            429: "TooManyRequests",
            503: "ServiceUnavailable",
        }
        return {"error": {"code": codes.get(status, "Error"), "message": f"answered {status}"}}

    def dispatch(self, request: Request) -> Response:
        header = request.header("Authorization")
        token = header.removeprefix("Bearer ") if header.startswith("Bearer ") else ""
        claims = verify_jwt(token) if token else None
        if claims is None or claims.get("aud") != AUDIENCE:
            self.auth_failures.append(f"{request.method} {request.path}: {claims}")
            body = self.error_body(401, request)
            return Response(401, body, {"x-ms-error-code": "Unauthorized"})
        if request.query.get("api-version") != API_VERSION:
            return Response(400, {"error": {"code": "UnsupportedApiVersion", "message": "?"}})
        response = super().dispatch(request)
        if response.status >= 400 and isinstance(response.body, dict):
            code = str(response.body.get("error", {}).get("code", ""))
            response.headers.setdefault("x-ms-error-code", code)
        return response

    def _result(self, op: SendOperation) -> tuple[dict[str, Any], dict[str, str]]:
        body: dict[str, Any] = {"id": op.id, "status": op.status}
        if op.error is not None:
            body["error"] = op.error
        running = op.status not in ("Succeeded", "Failed", "Canceled")
        headers = {"retry-after": str(self.retry_after)} if running and self.retry_after else {}
        return body, headers

    def _send(self, request: Request) -> Response:
        message = request.json() or {}
        missing = [k for k in ("senderAddress", "content", "recipients") if k not in message]
        if missing or not (message.get("recipients") or {}).get("to"):
            return Response(
                400,
                {
                    "error": {
                        "code": "BadRequest",
                        "message": f"missing {missing or ['recipients.to']}",
                    }
                },
            )
        with self.lock:
            self.sends.append(request)
            op_id = request.header("Operation-Id") or str(uuid.uuid4())
            op = self.operations_by_id.get(op_id)
            if op is None:
                op = SendOperation(op_id, message, self.polls_until_done, self.outcome, None)
                op.done_at = time.monotonic() + self.latency_seconds
                if self.outcome == "Failed":
                    op.error = self.error or {
                        "code": "EmailDropped",
                        "message": "Email was dropped.",
                    }
                self.operations_by_id[op_id] = op
            body, headers = self._result(op)
        location = f"{self.url}/emails/operations/{op_id}?api-version={API_VERSION}"
        return Response(202, body, {"Operation-Location": location, **headers})

    def _poll(self, request: Request) -> Response:
        with self.lock:
            op = self.operations_by_id.get(request.params["id"])
            if op is None:
                return Response(404, {"error": {"code": "NotFound", "message": "no operation"}})
            op.polls += 1
            due = time.monotonic() >= op.done_at
            if op.status == "Running" and op.polls >= op.polls_left and due:
                op.status = op.outcome
            body, headers = self._result(op)
        return Response(200, body, headers)
