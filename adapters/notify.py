"""The notifier port: send one email to the operations team.

``Notifier`` is what the alert service depends on. ``SmtpNotifier`` talks SMTP (the local
aiosmtpd server in development, any relay in Azure); ``AcsEmailNotifier`` talks to Azure
Communication Services Email with a managed identity; ``InMemoryNotifier`` is the shipped fake.

Who receives mail and who sends it is configuration of the notifier, not of the message:
an ``Email`` carries only content and a stable ``message_id``, so re-sending the same alert
after a crash produces a message that mail clients (and ACS, via its operation id) recognise
as the same one.
"""

from __future__ import annotations

import contextlib
import json
import smtplib
import ssl
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email import policy as email_policy
from email.message import EmailMessage
from email.utils import formatdate
from typing import TYPE_CHECKING, Any, Protocol

from adapters.azure_calls import AzureService, RetrySettings, call_azure
from adapters.errors import BadInputError, TransientError

if TYPE_CHECKING:
    from azure.core.credentials import AzureKeyCredential, TokenCredential

MESSAGE_ID_DOMAIN = "mlops-alerts"
"""Right-hand side of the ``Message-ID`` header built from ``Email.message_id``."""

REFUSED = "email_refused"
"""``BadInputError.code`` when the mail system refuses a message or our credentials."""

ACS_OPERATION_NAMESPACE = uuid.UUID("5d3c1f0e-7a9b-4c2d-9e8f-1a2b3c4d5e6f")


@dataclass(frozen=True)
class Email:
    """One message: a short subject, a plain-text body and an optional HTML alternative.

    ``message_id`` is stable per alert (it becomes the ``Message-ID`` header and the ACS
    operation id); ``headers`` are extra ``X-`` headers for filtering rules.
    """

    message_id: str
    subject: str
    text: str
    html: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.message_id.strip():
            raise ValueError("Email.message_id must not be empty")
        if "\n" in self.subject or "\r" in self.subject:
            raise ValueError("Email.subject must be one line")

    def to_json(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "subject": self.subject,
            "text": self.text,
            "html": self.html,
            "headers": dict(self.headers),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Email:
        return cls(
            message_id=str(data["message_id"]),
            subject=str(data["subject"]),
            text=str(data["text"]),
            html=None if data.get("html") is None else str(data["html"]),
            headers={str(k): str(v) for k, v in dict(data.get("headers") or {}).items()},
        )


class Notifier(Protocol):
    """Delivers an ``Email`` to the configured recipients.

    ``send`` returns once the mail system has accepted the message. It raises
    ``TransientError`` when delivery may succeed later (server down, timeout, throttling)
    and ``BadInputError`` when the message or the configuration was rejected (bad address,
    authentication refused); either way nothing was delivered as far as the caller can tell.
    """

    def send(self, email: Email) -> None: ...


def build_mime(email: Email, *, sender: str, recipients: Sequence[str]) -> EmailMessage:
    """The RFC 5322 message for ``email``: text/plain, plus text/html as an alternative."""
    # Long subjects stay on one line (RFC 5322 allows 998): folded ones come back with a
    # leading space in some parsers.
    msg = EmailMessage(policy=email_policy.SMTP.clone(max_line_length=998))
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Subject"] = email.subject
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    msg["Message-ID"] = f"<{_header_safe(email.message_id)}@{MESSAGE_ID_DOMAIN}>"
    for name, value in email.headers.items():
        msg[name] = value
    msg.set_content(email.text)
    if email.html is not None:
        msg.add_alternative(email.html, subtype="html")
    return msg


def _header_safe(value: str) -> str:
    return "".join(c if c.isalnum() or c in "-._" else "_" for c in value)


def _check_addresses(sender: str, recipients: Sequence[str]) -> None:
    if "@" not in sender:
        raise BadInputError(f"sender {sender!r} is not an email address", code="bad_email")
    if not recipients or any("@" not in r for r in recipients):
        raise BadInputError(
            f"recipients {list(recipients)!r} must be one or more email addresses",
            code="bad_email",
        )


class SmtpNotifier:
    """``Notifier`` over SMTP with ``smtplib``: one connection per message.

    ``starttls`` upgrades the connection before authenticating (required by most relays);
    ``timeout`` (seconds) bounds connecting and every command, so a dead server costs at most
    that long. Connection failures, timeouts and 4xx replies raise ``TransientError``;
    5xx replies (refused recipient, bad credentials) raise ``BadInputError``.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        sender: str,
        recipients: Sequence[str],
        starttls: bool = False,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        _check_addresses(sender, recipients)
        self.host = host
        self.port = port
        self.sender = sender
        self.recipients = tuple(recipients)
        self._starttls = starttls
        self._username = username
        self._password = password
        self._timeout = timeout

    def send(self, email: Email) -> None:
        message = build_mime(email, sender=self.sender, recipients=self.recipients)
        where = f"SMTP server {self.host}:{self.port}"
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self._timeout) as smtp:
                if self._starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self._username:
                    smtp.login(self._username, self._password or "")
                smtp.send_message(message, from_addr=self.sender, to_addrs=list(self.recipients))
        except smtplib.SMTPResponseException as exc:
            if 400 <= exc.smtp_code < 500:
                raise TransientError(f"{where} deferred the message: {exc}") from exc
            raise BadInputError(f"{where} refused the message: {exc}", code=REFUSED) from exc
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            if any(400 <= code < 500 for code in codes):
                raise TransientError(f"{where} deferred the recipients: {exc}") from exc
            raise BadInputError(f"{where} refused every recipient: {exc}", code=REFUSED) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise TransientError(f"{where} unreachable: {exc}") from exc


ACS = AzureService(
    "Azure Communication Services",
    role="Contributor",
    grant="on the Communication Services resource; infra/modules/rbac.bicep assigns it",
)


class AcsEmailNotifier:
    """``Notifier`` over Azure Communication Services Email (``azure-communication-email``).

    Authenticates with ``DefaultAzureCredential`` (the app's managed identity, ``client_id``
    for a user-assigned one) unless ``credential`` is given. The SDK is imported on first
    send. The ACS operation id is derived from ``Email.message_id``, so a repeated send of the
    same alert carries the same id. ``send`` waits up to ``wait_seconds`` for the send
    operation to finish; one still running then counts as accepted (ACS has queued it).

    Throttling (429) and service errors are retried inside the call by azure-core's policy
    (``retry``; a ``Retry-After`` is honoured up to its ceiling, never for minutes), then
    raise ``TransientError``; so does a send operation that ends ``Failed`` (with the
    service's error code and message). A refused identity raises ``AccessDeniedError``; a
    message the service rejects, ``BadInputError``. ``client_options`` go to ``EmailClient``
    (e.g. ``polling_interval``, ``connection_verify``).
    """

    def __init__(
        self,
        endpoint: str,
        *,
        sender: str,
        recipients: Sequence[str],
        credential: TokenCredential | AzureKeyCredential | None = None,
        client_id: str | None = None,
        wait_seconds: float = 60.0,
        retry: RetrySettings | None = None,
        **client_options: Any,
    ) -> None:
        _check_addresses(sender, recipients)
        self.endpoint = endpoint
        self.sender = sender
        self.recipients = tuple(recipients)
        self._credential = credential
        self._client_id = client_id
        self._wait_seconds = wait_seconds
        self._retry = retry or RetrySettings()
        self._client_options = client_options
        self._client: Any = None
        self._lock = threading.Lock()

    def _get_client(self) -> Any:
        with self._lock:
            if self._client is None:
                from azure.communication.email import EmailClient

                credential = self._credential
                if credential is None:
                    from azure.identity import DefaultAzureCredential

                    credential = DefaultAzureCredential(managed_identity_client_id=self._client_id)
                self._client = EmailClient(
                    self.endpoint,
                    credential,
                    retry_policy=self._retry.policy(),
                    **self._client_options,
                )
            return self._client

    def _payload(self, email: Email) -> dict[str, Any]:
        content: dict[str, str] = {"subject": email.subject, "plainText": email.text}
        if email.html is not None:
            content["html"] = email.html
        payload: dict[str, Any] = {
            "senderAddress": self.sender,
            "recipients": {"to": [{"address": r} for r in self.recipients]},
            "content": content,
        }
        if email.headers:
            payload["headers"] = dict(email.headers)
        return payload

    def send(self, email: Email) -> None:
        operation_id = str(uuid.uuid5(ACS_OPERATION_NAMESPACE, email.message_id))
        what = f"send alert {email.message_id}"
        poller = call_azure(
            lambda: self._get_client().begin_send(self._payload(email), operation_id=operation_id),
            what,
            ACS,
        )
        call_azure(lambda: _wait(poller, self._wait_seconds, email.message_id), what, ACS)
        if not poller.done():
            return
        outcome = poller.result() or {}
        state = str(outcome.get("status", "")).lower()
        if state and state != "succeeded":
            raise TransientError(f"{ACS.name} reports the send as {state}: {outcome.get('error')}")


def _wait(poller: Any, seconds: float, message_id: str) -> None:
    """Wait for the send operation; one that ended Failed raises ``TransientError``.

    The SDK reports such an operation as an ``HttpResponseError`` on the last poll, whose
    answer itself was fine (200): the operation's own ``error`` says what happened.
    """
    from azure.core.exceptions import HttpResponseError

    try:
        poller.wait(timeout=seconds)
    except HttpResponseError as exc:
        if (exc.status_code or 0) >= 300:
            raise
        error: dict[str, Any] = {}
        with contextlib.suppress(ValueError, AttributeError):
            body = json.loads(exc.response.text()) if exc.response is not None else {}
            error = dict(body.get("error") or {})
        detail = f"{error.get('code', '')}: {error.get('message', '')}" if error else str(exc)
        raise TransientError(f"{ACS.name} did not deliver {message_id}: {detail}") from exc


class InMemoryNotifier:
    """A ``Notifier`` fake that keeps what it was asked to send.

    ``fail_next(n)`` makes the next ``n`` sends raise ``error`` (default: a ``TransientError``),
    which is how tests play "mail server down".
    """

    def __init__(self) -> None:
        self.sent: list[Email] = []
        self.attempts = 0
        self._failures: list[Exception] = []
        self._lock = threading.Lock()

    def fail_next(self, n: int = 1, error: Exception | None = None) -> None:
        with self._lock:
            for _ in range(n):
                self._failures.append(error or TransientError("mail server down (simulated)"))

    def send(self, email: Email) -> None:
        with self._lock:
            self.attempts += 1
            if self._failures:
                raise self._failures.pop(0)
            self.sent.append(email)
