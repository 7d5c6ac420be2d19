"""AcsEmailNotifier against a loopback server that speaks the ACS Email send API."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from azure.core.credentials import AzureKeyCredential

from adapters.errors import BadInputError, TransientError
from adapters.notify import AcsEmailNotifier, Email

pytestmark = pytest.mark.integration


class FakeAcs(ThreadingHTTPServer):
    """Accepts POST /emails:send (202 + Operation-Location), answers operation polls."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[dict[str, Any]] = []
        self.answer = 202
        self.final_status = "Succeeded"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeAcs

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _json(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length))
        self.server.requests.append(
            {"path": self.path, "headers": dict(self.headers), "body": body}
        )
        if not self.path.startswith("/emails:send?api-version="):
            self._json(404, {"error": {"code": "NotFound", "message": self.path}})
        elif self.server.answer != 202:
            self._json(self.server.answer, {"error": {"code": "Nope", "message": "refused"}})
        else:
            op = self.headers.get("Operation-Id") or str(uuid.uuid4())
            where = f"{self.server.endpoint}/emails/operations/{op}?api-version=2025-09-01"
            self._json(202, {"id": op, "status": "Running"}, {"Operation-Location": where})

    def do_GET(self) -> None:
        op = self.path.split("/emails/operations/")[1].split("?")[0]
        self._json(200, {"id": op, "status": self.server.final_status})


@pytest.fixture
def acs() -> Iterator[FakeAcs]:
    server = FakeAcs()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def notifier(acs: FakeAcs) -> AcsEmailNotifier:
    return AcsEmailNotifier(
        acs.endpoint,
        sender="DoNotReply@mlops.example.com",
        recipients=["ops@example.com", "oncall@example.com"],
        credential=AzureKeyCredential("c2VjcmV0LWtleQ=="),
        wait_seconds=10,
        polling_interval=0.05,
        retry_total=0,
    )


EMAIL = Email(
    "alert-evt-1",
    "ERROR east: train step failed",
    "plain body",
    "<p>html</p>",
    {"X-MLOps-Alert-Id": "evt-1"},
)


def test_send_posts_the_message_and_waits_for_success(acs: FakeAcs) -> None:
    notifier(acs).send(EMAIL)
    (request,) = acs.requests
    body = request["body"]
    assert body["senderAddress"] == "DoNotReply@mlops.example.com"
    assert [r["address"] for r in body["recipients"]["to"]] == [
        "ops@example.com",
        "oncall@example.com",
    ]
    assert body["content"] == {
        "subject": EMAIL.subject,
        "plainText": "plain body",
        "html": "<p>html</p>",
    }
    assert body["headers"] == {"X-MLOps-Alert-Id": "evt-1"}
    assert request["headers"]["Authorization"].startswith("HMAC-SHA256")


def test_the_same_email_reuses_its_operation_id(acs: FakeAcs) -> None:
    n = notifier(acs)
    n.send(EMAIL)
    n.send(EMAIL)
    n.send(Email("alert-evt-2", "s", "t"))
    ids = [r["headers"]["Operation-Id"] for r in acs.requests]
    assert ids[0] == ids[1] != ids[2]


@pytest.mark.parametrize(
    ("answer", "error"), [(503, TransientError), (429, TransientError), (400, BadInputError)]
)
def test_service_errors_are_translated(acs: FakeAcs, answer: int, error: type[Exception]) -> None:
    acs.answer = answer
    with pytest.raises(error):
        notifier(acs).send(EMAIL)


def test_a_failed_send_operation_is_not_reported_as_delivered(acs: FakeAcs) -> None:
    acs.final_status = "Failed"
    with pytest.raises((TransientError, BadInputError)):
        notifier(acs).send(EMAIL)


def test_unreachable_service_is_transient(acs: FakeAcs) -> None:
    endpoint = acs.endpoint
    acs.shutdown()
    acs.server_close()
    n = AcsEmailNotifier(
        endpoint,
        sender="a@example.com",
        recipients=["b@example.com"],
        credential=AzureKeyCredential("c2VjcmV0"),
        retry_total=0,
    )
    with pytest.raises(TransientError, match="unreachable"):
        n.send(EMAIL)
