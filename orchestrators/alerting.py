"""The alert service: record an alert durably, apply the policy, send, retry until delivered.

Entry points, all safe to call concurrently within a process and again after a crash:

* ``record_alert`` — for the Event Grid failure handler and the orchestrations. Records the
  alert and applies the policy, and sends nothing: an Event Grid delivery must be answered
  within seconds, and an email send can take tens of seconds. Idempotent by ``Alert.id``: the
  same event delivered ten times records one alert. ``needs_details`` leaves the slow lookups
  (the failed job's step and log) to the sender.
* ``flush_pending`` — the outbox sender (a timer). Completes recorded alerts with their details,
  sends the digest that is due and every pending email whose back-off has expired.
* ``raise_alert`` — ``record_alert`` and a first delivery attempt at once, for callers that
  may wait for the mail system.

Delivery is at least once: an email is recorded as pending *before* the first attempt and is
marked sent only after the mail system accepted it. A failed attempt leaves it pending with
its attempt count and next try time (exponential back-off); after ``policy.max_attempts`` it is
marked failed, logged as an error and kept in the store. A crash between "accepted" and
"marked sent" re-sends the same message (same ``Message-ID``), never loses it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from adapters.alerts import AlertSettings, AlertStore, DeliveryStatus, OutboxRecord
from adapters.errors import ConflictError, MlopsError
from adapters.notify import Notifier
from orchestrators.alert_content import render_alert, render_digest
from orchestrators.alert_policy import (
    Alert,
    AlertPolicy,
    PolicyState,
    Verdict,
    decide,
    retry_delay,
    take_digest,
)

log = logging.getLogger("mlops.alerts")

DEFAULT_ALERT_POLICY = AlertPolicy()
DETAILS_PENDING = "details_pending"
"""Payload key of a record whose alert the sender completes before its first attempt."""


def policy_from_settings(settings: AlertSettings) -> AlertPolicy:
    """The ``AlertPolicy`` the ``MLOPS_ALERT_*`` settings describe."""
    return AlertPolicy(
        window=timedelta(minutes=settings.window_minutes),
        max_per_window=settings.max_per_window,
        digest_after=timedelta(minutes=settings.digest_minutes),
    )


@dataclass(frozen=True)
class AlertOutcome:
    """What ``raise_alert`` did.

    ``action``: ``sent`` (emailed now), ``pending`` (recorded; the first attempt failed and it
    will be retried), ``suppressed`` (folded into a later digest: ``verdict`` says why),
    ``already_recorded`` (this alert id was seen before; nothing done), ``failed`` (gave up).
    """

    alert_id: str
    action: str
    status: DeliveryStatus
    verdict: Verdict | None
    attempts: int
    next_try_at: datetime | None
    last_error: str = ""


@dataclass(frozen=True)
class FlushReport:
    """What ``flush_pending`` did: ids sent, still pending (retry later), given up; the digest."""

    sent: tuple[str, ...] = ()
    retrying: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    digest_id: str | None = None


def _outcome(record: OutboxRecord, action: str) -> AlertOutcome:
    verdict = Verdict(record.note) if record.note in set(Verdict) else None
    return AlertOutcome(
        alert_id=record.id,
        action=action,
        status=record.status,
        verdict=verdict,
        attempts=record.attempts,
        next_try_at=record.next_try_at,
        last_error=record.last_error,
    )


def record_alert(
    alert: Alert,
    *,
    store: AlertStore,
    now: datetime,
    policy: AlertPolicy = DEFAULT_ALERT_POLICY,
    needs_details: bool = False,
) -> AlertOutcome:
    """Record ``alert`` and decide whether it is emailed; never send (see the module doc).

    ``action`` is ``recorded`` (pending: the sender emails it), ``suppressed`` (folded into a
    later digest) or ``already_recorded``. With ``needs_details`` the sender completes the alert
    (``flush_pending``'s ``complete``) before its first attempt. Raises ``TransientError`` only
    when the store itself is unreachable (then nothing was recorded and the caller should let
    the platform retry).
    """
    with store.lock():
        existing = store.get(alert.id)
        if existing is not None:
            return _outcome(existing, "already_recorded")
        state = PolicyState.from_json(store.load_state())
        verdict, after = decide(state, alert, now, policy)
        payload = alert.to_json()
        if verdict is Verdict.SEND:
            if needs_details:
                payload[DETAILS_PENDING] = True
            record = OutboxRecord(
                id=alert.id,
                kind="alert",
                status=DeliveryStatus.PENDING,
                created_at=now,
                email=render_alert(alert),
                next_try_at=now,
                payload=payload,
            )
        else:
            record = OutboxRecord(
                id=alert.id,
                kind="alert",
                status=DeliveryStatus.SUPPRESSED,
                created_at=now,
                note=verdict.value,
                payload=payload,
            )
        try:
            store.add(record)
        except ConflictError:
            current = store.get(alert.id)
            return _outcome(current or record, "already_recorded")
        store.save_state(after.to_json())
    log.info("alert %s recorded: %s (signature %s)", alert.id, verdict.value, alert.signature.key())
    return _outcome(record, "recorded" if verdict is Verdict.SEND else "suppressed")


def raise_alert(
    alert: Alert,
    *,
    store: AlertStore,
    notifier: Notifier,
    now: datetime,
    policy: AlertPolicy = DEFAULT_ALERT_POLICY,
) -> AlertOutcome:
    """Record ``alert``, decide whether it is emailed, and make the first delivery attempt.

    Raises ``TransientError`` only when the store itself is unreachable (then nothing was
    recorded and the caller should let the platform retry the event). Mail failures do not
    raise: they leave the alert pending, reported as ``action="pending"``.
    """
    outcome = record_alert(alert, store=store, now=now, policy=policy)
    if outcome.action != "recorded":
        return outcome
    with store.lock():
        record = store.get(alert.id)
        assert record is not None
        record = _attempt(record, store=store, notifier=notifier, now=now, policy=policy)
    action = {DeliveryStatus.SENT: "sent", DeliveryStatus.FAILED: "failed"}.get(
        record.status, "pending"
    )
    return _outcome(record, action)


def flush_pending(
    *,
    store: AlertStore,
    notifier: Notifier,
    now: datetime,
    policy: AlertPolicy = DEFAULT_ALERT_POLICY,
    limit: int = 100,
    complete: Callable[[Alert], Alert] | None = None,
) -> FlushReport:
    """Send the digest due at ``now`` (if any) and retry up to ``limit`` pending emails.

    A record recorded with ``needs_details`` is first completed with ``complete`` (the slow
    lookups: the failed job's step and log) and stored again, so they run once; a ``complete``
    that fails leaves the alert as it was recorded (an alert without its excerpt beats no
    alert). Safe to call as often as wanted: a record is only retried once its ``next_try_at``
    has come, and a sent record is never sent again. Mail failures do not raise.
    """
    sent: list[str] = []
    retrying: list[str] = []
    failed: list[str] = []
    digest_id: str | None = None
    with store.lock():
        state = PolicyState.from_json(store.load_state())
        digest, after = take_digest(state, now, policy)
        if digest is not None:
            record = OutboxRecord(
                id=digest.id,
                kind="digest",
                status=DeliveryStatus.PENDING,
                created_at=now,
                email=render_digest(digest),
                next_try_at=now,
                payload={
                    "opened_at": digest.opened_at.isoformat(),
                    "closed_at": digest.closed_at.isoformat(),
                    "suppressed": digest.total,
                    "signatures": [g.signature.key() for g in digest.groups],
                },
            )
            try:
                store.add(record)
            except ConflictError:
                log.info("digest %s was recorded before a restart; not recreating it", digest.id)
            store.save_state(after.to_json())
            digest_id = digest.id
            log.info("digest %s recorded: %d suppressed alert(s)", digest.id, digest.total)
        for due in store.due(now, limit):
            record = _complete(due, complete, store) if due.payload.get(DETAILS_PENDING) else due
            done = _attempt(record, store=store, notifier=notifier, now=now, policy=policy)
            {DeliveryStatus.SENT: sent, DeliveryStatus.FAILED: failed}.get(
                done.status, retrying
            ).append(done.id)
    return FlushReport(tuple(sent), tuple(retrying), tuple(failed), digest_id)


def _complete(
    record: OutboxRecord, complete: Callable[[Alert], Alert] | None, store: AlertStore
) -> OutboxRecord:
    """``record`` with its alert completed and re-rendered, stored; the details mark gone."""
    alert = Alert.from_json(record.payload)
    if complete is not None:
        try:
            alert = complete(alert)
        # Whatever the lookup raises, the alert goes out as it was recorded.
        except Exception as exc:  # noqa: BLE001
            log.warning("alert %s goes out without its details: %s", record.id, exc)
    updated = replace(record, email=render_alert(alert), payload=alert.to_json())
    store.update(updated)
    return updated


def _attempt(
    record: OutboxRecord,
    *,
    store: AlertStore,
    notifier: Notifier,
    now: datetime,
    policy: AlertPolicy,
) -> OutboxRecord:
    """One delivery attempt of a pending record; the updated record is stored and returned."""
    if record.status is not DeliveryStatus.PENDING or record.email is None:
        return record
    attempts = record.attempts + 1
    try:
        notifier.send(record.email)
    except MlopsError as exc:
        error = f"{type(exc).__name__}: {exc}"
        if attempts >= policy.max_attempts:
            updated = replace(
                record, status=DeliveryStatus.FAILED, attempts=attempts, next_try_at=None,
                last_error=error,
            )  # fmt: skip
            log.error("alert email %s given up after %d attempts: %s", record.id, attempts, error)
        else:
            updated = replace(
                record, attempts=attempts, next_try_at=now + retry_delay(attempts, policy),
                last_error=error,
            )  # fmt: skip
            log.warning(
                "alert email %s not delivered (attempt %d), next try at %s: %s",
                record.id, attempts, updated.next_try_at, error,
            )  # fmt: skip
        store.update(updated)
        return updated
    updated = replace(
        record, status=DeliveryStatus.SENT, attempts=attempts, sent_at=now, next_try_at=None,
        last_error="",
    )  # fmt: skip
    store.update(updated)
    log.info("alert email %s sent (attempt %d): %s", record.id, attempts, record.email.subject)
    from adapters.telemetry import record_alert_sent

    folded = int(record.payload.get("suppressed", 1)) if record.kind == "digest" else 1
    record_alert_sent(
        str(record.payload.get("kind", record.kind)), digest=record.kind == "digest", count=folded
    )
    return updated
