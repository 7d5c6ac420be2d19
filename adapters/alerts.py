"""The alert outbox: every alert is recorded durably before anyone tries to email it.

``AlertStore`` is the port; ``DataLakeAlertStore`` keeps JSON records in a blob container
(through the ``DataLake`` port) and ``InMemoryAlertStore`` is the fake. The store also keeps
the alert policy's state (dedup marks, suppressed alerts) as one JSON document, so dedup
survives restarts.

Blob layout under ``prefix`` (default ``alerts/``)::

    records/{id}.json     one OutboxRecord per alert or digest (status, attempts, the email)
    pending/{id}.json     an index entry while the record still has to be delivered
    state/policy.json     the policy state

The pending index is written *before* the record and removed *after* it, so a crash in
between leaves a stale index entry (harmless: it is cleaned when read), never a pending record
that nobody retries.

``lock()`` serialises read-modify-write sequences within one process. Two processes (Azure
Functions scale-out) may still race on the policy state; the worst outcome is one duplicate
email, never a lost alert.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Mapping
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from adapters.errors import ConflictError, NotFoundError
from adapters.notify import Email

if TYPE_CHECKING:
    from adapters.datalake import DataLake
    from adapters.notify import Notifier
    from adapters.settings import Settings

_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
ORPHAN_AFTER = timedelta(hours=1)


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # to be sent; ``next_try_at`` says when
    SENT = "sent"
    SUPPRESSED = "suppressed"  # folded into a digest by the policy; never emailed alone
    FAILED = "failed"  # gave up after the policy's max attempts; kept for operators


@dataclass(frozen=True)
class OutboxRecord:
    """One alert (or digest) and what happened to its email.

    ``payload`` is the alert as JSON (for audit and re-rendering); ``note`` says why a record
    is suppressed (``duplicate`` / ``rate_limited``).
    """

    id: str
    kind: str
    status: DeliveryStatus
    created_at: datetime
    email: Email | None = None
    attempts: int = 0
    next_try_at: datetime | None = None
    sent_at: datetime | None = None
    last_error: str = ""
    note: str = ""
    payload: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        def iso(t: datetime | None) -> str | None:
            return None if t is None else t.isoformat()

        return {
            "id": self.id,
            "kind": self.kind,
            "status": self.status.value,
            "created_at": self.created_at.isoformat(),
            "email": None if self.email is None else self.email.to_json(),
            "attempts": self.attempts,
            "next_try_at": iso(self.next_try_at),
            "sent_at": iso(self.sent_at),
            "last_error": self.last_error,
            "note": self.note,
            "payload": dict(self.payload),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OutboxRecord:
        def when(key: str) -> datetime | None:
            value = data.get(key)
            return None if value is None else datetime.fromisoformat(value)

        email = data.get("email")
        return cls(
            id=str(data["id"]),
            kind=str(data["kind"]),
            status=DeliveryStatus(data["status"]),
            created_at=datetime.fromisoformat(data["created_at"]),
            email=None if email is None else Email.from_json(email),
            attempts=int(data.get("attempts", 0)),
            next_try_at=when("next_try_at"),
            sent_at=when("sent_at"),
            last_error=str(data.get("last_error", "")),
            note=str(data.get("note", "")),
            payload=dict(data.get("payload") or {}),
        )


class AlertStore(Protocol):
    """Durable outbox records plus the policy state.

    ``add`` raises ``ConflictError`` when a record with that id exists (this is what makes
    raising an alert idempotent). ``due`` returns pending records whose ``next_try_at`` is at
    or before ``now``, oldest first. Storage failures raise ``TransientError``.
    """

    def lock(self) -> AbstractContextManager[Any]: ...

    def add(self, record: OutboxRecord) -> None: ...

    def get(self, record_id: str) -> OutboxRecord | None: ...

    def update(self, record: OutboxRecord) -> None: ...

    def due(self, now: datetime, limit: int = 100) -> list[OutboxRecord]: ...

    def pending(self) -> list[OutboxRecord]: ...

    def load_state(self) -> dict[str, Any]: ...

    def save_state(self, state: Mapping[str, Any]) -> None: ...


def _due_sorted(records: list[OutboxRecord], now: datetime, limit: int) -> list[OutboxRecord]:
    ready = [r for r in records if r.next_try_at is None or r.next_try_at <= now]
    ready.sort(key=lambda r: (r.next_try_at or r.created_at, r.created_at, r.id))
    return ready[:limit]


class InMemoryAlertStore:
    """An ``AlertStore`` in a dict; records survive as long as the object does."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._records: dict[str, OutboxRecord] = {}
        self._state: dict[str, Any] = {}

    def lock(self) -> AbstractContextManager[Any]:
        return self._lock

    def add(self, record: OutboxRecord) -> None:
        with self._lock:
            if record.id in self._records:
                raise ConflictError(f"alert record {record.id} exists already")
            self._records[record.id] = record

    def get(self, record_id: str) -> OutboxRecord | None:
        with self._lock:
            return self._records.get(record_id)

    def update(self, record: OutboxRecord) -> None:
        with self._lock:
            if record.id not in self._records:
                raise NotFoundError(f"alert record {record.id} does not exist")
            self._records[record.id] = record

    def due(self, now: datetime, limit: int = 100) -> list[OutboxRecord]:
        return _due_sorted(self.pending(), now, limit)

    def pending(self) -> list[OutboxRecord]:
        with self._lock:
            return [r for r in self._records.values() if r.status is DeliveryStatus.PENDING]

    def records(self) -> list[OutboxRecord]:
        """Every record, for tests and operators."""
        with self._lock:
            return list(self._records.values())

    def load_state(self) -> dict[str, Any]:
        with self._lock:
            return json.loads(json.dumps(self._state))  # type: ignore[no-any-return]

    def save_state(self, state: Mapping[str, Any]) -> None:
        with self._lock:
            self._state = json.loads(json.dumps(dict(state)))


class DataLakeAlertStore:
    """An ``AlertStore`` of JSON blobs in ``container`` under ``prefix`` (see module doc)."""

    def __init__(self, lake: DataLake, container: str, prefix: str = "alerts/") -> None:
        self._lake = lake
        self._container = container
        self._prefix = prefix if prefix.endswith("/") or not prefix else prefix + "/"
        self._lock = threading.RLock()
        self._ready = False

    def lock(self) -> AbstractContextManager[Any]:
        return self._lock

    # -- names
    @staticmethod
    def _key(record_id: str) -> str:
        if _SAFE_ID.match(record_id):
            return record_id
        digest = hashlib.sha256(record_id.encode()).hexdigest()[:32]
        readable = re.sub(r"[^A-Za-z0-9._-]", "_", record_id)[:40]
        return f"{readable}-{digest}"

    def _record_name(self, record_id: str) -> str:
        return f"{self._prefix}records/{self._key(record_id)}.json"

    def _pending_name(self, record_id: str) -> str:
        return f"{self._prefix}pending/{self._key(record_id)}.json"

    @property
    def _state_name(self) -> str:
        return f"{self._prefix}state/policy.json"

    def _ensure(self) -> None:
        if not self._ready:
            self._lake.ensure_container(self._container)
            self._ready = True

    def _write_json(self, name: str, value: Mapping[str, Any], *, if_absent: bool = False) -> None:
        data = json.dumps(value, sort_keys=True).encode()
        self._lake.write(
            self._container, name, data, if_absent=if_absent, content_type="application/json"
        )

    def _read_json(self, name: str) -> dict[str, Any] | None:
        try:
            return json.loads(self._lake.read(self._container, name))  # type: ignore[no-any-return]
        except NotFoundError:
            return None

    def _mark_pending(self, record: OutboxRecord) -> None:
        entry = {"id": record.id, "created_at": record.created_at.isoformat()}
        self._write_json(self._pending_name(record.id), entry)

    def _unmark(self, record_id: str) -> None:
        with suppress(NotFoundError):
            self._lake.delete(self._container, self._pending_name(record_id))

    # -- port
    def add(self, record: OutboxRecord) -> None:
        with self._lock:
            self._ensure()
            if record.status is DeliveryStatus.PENDING:
                self._mark_pending(record)
            try:
                self._write_json(self._record_name(record.id), record.to_json(), if_absent=True)
            except ConflictError:
                raise ConflictError(f"alert record {record.id} exists already") from None

    def get(self, record_id: str) -> OutboxRecord | None:
        with self._lock:
            self._ensure()
            data = self._read_json(self._record_name(record_id))
            return None if data is None else OutboxRecord.from_json(data)

    def update(self, record: OutboxRecord) -> None:
        with self._lock:
            self._ensure()
            if record.status is DeliveryStatus.PENDING:
                self._mark_pending(record)
            self._write_json(self._record_name(record.id), record.to_json())
            if record.status is not DeliveryStatus.PENDING:
                self._unmark(record.id)

    def pending(self) -> list[OutboxRecord]:
        with self._lock:
            self._ensure()
            found: list[OutboxRecord] = []
            for info in list(self._lake.list(self._container, f"{self._prefix}pending/")):
                entry = self._read_json(info.name)
                if entry is None:
                    continue
                record = self.get(str(entry["id"]))
                if record is not None and record.status is DeliveryStatus.PENDING:
                    found.append(record)
                elif record is not None or self._orphaned(entry):
                    # Stale index entry: the record moved on, or its writer died before it.
                    self._unmark(str(entry["id"]))
            return found

    @staticmethod
    def _orphaned(entry: Mapping[str, Any]) -> bool:
        created = datetime.fromisoformat(str(entry["created_at"]))
        return datetime.now(created.tzinfo) - created > ORPHAN_AFTER

    def due(self, now: datetime, limit: int = 100) -> list[OutboxRecord]:
        return _due_sorted(self.pending(), now, limit)

    def load_state(self) -> dict[str, Any]:
        with self._lock:
            self._ensure()
            return self._read_json(self._state_name) or {}

    def save_state(self, state: Mapping[str, Any]) -> None:
        with self._lock:
            self._ensure()
            self._write_json(self._state_name, state)


# ---------------------------------------------------------------- settings


@dataclass(frozen=True)
class AlertSettings:
    """The ``MLOPS_ALERT_*``, ``MLOPS_SMTP_*`` and ``MLOPS_ACS_*`` settings, parsed."""

    recipients: tuple[str, ...] = ("ops@example.com",)
    sender: str = "mlops-alerts@example.com"
    transport: str = "smtp"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_starttls: bool = False
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_timeout_seconds: float = 10.0
    acs_endpoint: str = ""
    window_minutes: int = 60
    max_per_window: int = 10
    digest_minutes: int = 15
    container: str = "ops"

    @classmethod
    def from_settings(cls, settings: Settings) -> AlertSettings:
        """Read from ``settings.extra`` with the parsers declared in ``adapters.settings``."""
        return cls.from_env(settings.extra)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AlertSettings:
        from adapters.settings import SETTINGS

        specs = {s.key: s for s in SETTINGS}
        defaults = cls()

        def value(key: str, fallback: Any) -> Any:
            spec = specs.get(key)
            raw = env.get(key, "").strip()
            if spec is None:
                return fallback  # not declared in adapters.settings: not configurable
            if not raw:
                if spec.default is None or spec.default == "":
                    return fallback
                raw = spec.default
            return spec.parse(raw)

        return cls(
            recipients=tuple(value("MLOPS_ALERT_TO", defaults.recipients)),
            sender=value("MLOPS_ALERT_FROM", defaults.sender),
            transport=value("MLOPS_ALERT_TRANSPORT", defaults.transport),
            smtp_host=value("MLOPS_SMTP_HOST", defaults.smtp_host),
            smtp_port=value("MLOPS_SMTP_PORT", defaults.smtp_port),
            smtp_starttls=value("MLOPS_SMTP_STARTTLS", defaults.smtp_starttls),
            smtp_username=value("MLOPS_SMTP_USERNAME", defaults.smtp_username),
            smtp_password=value("MLOPS_SMTP_PASSWORD", defaults.smtp_password),
            smtp_timeout_seconds=float(
                value("MLOPS_SMTP_TIMEOUT_SECONDS", int(defaults.smtp_timeout_seconds))
            ),
            acs_endpoint=value("MLOPS_ACS_ENDPOINT", defaults.acs_endpoint),
            window_minutes=value("MLOPS_ALERT_WINDOW_MINUTES", defaults.window_minutes),
            max_per_window=value("MLOPS_ALERT_MAX_PER_WINDOW", defaults.max_per_window),
            digest_minutes=value("MLOPS_ALERT_DIGEST_MINUTES", defaults.digest_minutes),
            container=value("MLOPS_ALERTS_CONTAINER", defaults.container),
        )


def build_notifier(
    alert_settings: AlertSettings, *, client_id: str | None = None, smtp_port: int | None = None
) -> Notifier:
    """The notifier the settings ask for; ``smtp_port`` overrides the port (local runtime)."""
    from adapters.notify import AcsEmailNotifier, SmtpNotifier

    s = alert_settings
    if s.transport == "acs":
        return AcsEmailNotifier(
            s.acs_endpoint, sender=s.sender, recipients=s.recipients, client_id=client_id
        )
    return SmtpNotifier(
        s.smtp_host,
        s.smtp_port if smtp_port is None else smtp_port,
        sender=s.sender,
        recipients=s.recipients,
        starttls=s.smtp_starttls,
        username=s.smtp_username or None,
        password=s.smtp_password or None,
        timeout=s.smtp_timeout_seconds,
    )
