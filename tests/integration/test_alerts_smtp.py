"""Alerts end to end over the real local SMTP server (aiosmtpd writing .eml files)."""

from __future__ import annotations

import email
import email.policy
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest

from adapters.alerts import AlertStore, DataLakeAlertStore, DeliveryStatus, InMemoryAlertStore
from adapters.datalake import AzureBlobDataLake
from adapters.notify import SmtpNotifier
from adapters.settings import Connection
from local.hosting.azurite import Azurite
from local.hosting.smtp import LocalSmtpServer
from orchestrators.alert_content import studio_run_url
from orchestrators.alert_policy import Alert, AlertPolicy, FailureKind
from orchestrators.alerting import flush_pending, raise_alert

pytestmark = pytest.mark.integration

T0 = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)
POLICY = AlertPolicy()  # the production defaults: 60 min window, 10 per window, digest after 15


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[LocalSmtpServer]:
    with LocalSmtpServer(tmp_path / "local") as server:
        yield server


def notifier(server: LocalSmtpServer) -> SmtpNotifier:
    return SmtpNotifier(
        server.host,
        server.port,
        sender="mlops-alerts@example.com",
        recipients=["ops@example.com"],
        timeout=5,
    )


def read(path: Path) -> EmailMessage:
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def failure(n: int, segment: str = "east-large-fast", at: datetime = T0) -> Alert:
    return Alert(
        id=f"evt-{n}",
        kind=FailureKind.STEP_FAILED,
        pipeline="train",
        segment=segment,
        occurred_at=at,
        job_name=f"train_{segment}_{n}",
        link=studio_run_url(f"train_{segment}_{n}", "sub", "rg", "ws"),
        last_status="Failed",
        log_excerpt="Traceback ...\nValueError: no rows for week",
    )


def test_one_alert_becomes_one_eml_with_the_expected_headers_and_body(
    smtp: LocalSmtpServer,
) -> None:
    outcome = raise_alert(
        failure(1), store=InMemoryAlertStore(), notifier=notifier(smtp), now=T0, policy=POLICY
    )
    assert outcome.action == "sent"
    (path,) = smtp.messages()
    assert path.parent == smtp.mail_dir and path.suffix == ".eml"
    msg = read(path)
    assert msg["Subject"] == "ERROR east-large-fast: train step failed (train_east-large-fast_1)"
    assert msg["From"] == "mlops-alerts@example.com" and msg["To"] == "ops@example.com"
    assert msg["Message-ID"] == "<alert-evt-1@mlops-alerts>"
    assert msg["X-MLOps-Alert-Id"] == "evt-1"
    text = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    body = text.get_content()
    assert "https://ml.azure.com/runs/train_east-large-fast_1?wsid=/subscriptions/sub" in body
    assert "ValueError: no rows for week" in body and "What to do next" in body
    assert "<h2>" in html.get_content()


def test_a_hundred_failures_in_a_minute_give_one_email_per_signature_and_one_digest(
    smtp: LocalSmtpServer,
) -> None:
    store = InMemoryAlertStore()
    mail = notifier(smtp)
    for i in range(100):
        now = T0 + timedelta(seconds=i * 0.6)
        raise_alert(
            failure(i, segment=f"region{i % 3}", at=now),
            store=store,
            notifier=mail,
            now=now,
            policy=POLICY,
        )
        flush_pending(store=store, notifier=mail, now=now, policy=POLICY)
    assert len(smtp.messages()) == 3
    # The timer flushes later: the digest goes out once, then nothing more.
    for minutes in (5, 16, 30, 90):
        flush_pending(
            store=store, notifier=mail, now=T0 + timedelta(minutes=minutes), policy=POLICY
        )
    messages = [read(p) for p in smtp.messages()]
    subjects = sorted(str(m["Subject"]) for m in messages)
    assert len(subjects) == 4
    assert sum(s.startswith("ERROR region") for s in subjects) == 3
    assert len({s.split(":")[0] for s in subjects if s.startswith("ERROR")}) == 3
    (digest,) = [m for m in messages if m["X-MLOps-Digest-Id"]]
    assert digest["Subject"] == "WARNING 3 segments: 97 more failure alert(s) in 3 signature(s)"


@pytest.fixture(params=["memory", "azurite"])
def store(request: pytest.FixtureRequest) -> AlertStore:
    if request.param == "memory":
        return InMemoryAlertStore()
    azurite: Azurite = request.getfixturevalue("azurite")
    lake = AzureBlobDataLake.from_connection(
        Connection(name="lake", connection_string=azurite.connection_string)
    )
    return DataLakeAlertStore(lake, f"ops-{uuid.uuid4().hex[:12]}")


def test_smtp_down_keeps_the_alert_and_delivers_it_exactly_once_when_back(
    smtp: LocalSmtpServer, store: AlertStore
) -> None:
    mail = notifier(smtp)
    smtp.stop()
    outcome = raise_alert(failure(1), store=store, notifier=mail, now=T0, policy=POLICY)
    assert outcome.action == "pending" and outcome.attempts == 1
    assert outcome.next_try_at is not None and outcome.next_try_at > T0
    assert "unreachable" in outcome.last_error
    # Still down at the next try: kept, with a longer back-off.
    report = flush_pending(store=store, notifier=mail, now=outcome.next_try_at, policy=POLICY)
    assert report.retrying == ("evt-1",) and smtp.messages() == []
    (pending,) = store.pending()
    assert pending.attempts == 2 and pending.next_try_at is not None
    smtp.start()  # back on the same port
    assert (
        flush_pending(store=store, notifier=mail, now=outcome.next_try_at, policy=POLICY).sent == ()
    )
    report = flush_pending(store=store, notifier=mail, now=pending.next_try_at, policy=POLICY)
    assert report.sent == ("evt-1",)
    for later in (1, 2, 24):
        flush_pending(store=store, notifier=mail, now=T0 + timedelta(hours=later), policy=POLICY)
    assert len(smtp.messages()) == 1
    record = store.get("evt-1")
    assert record is not None and record.status is DeliveryStatus.SENT and record.attempts == 3
