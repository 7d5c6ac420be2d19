from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from adapters.alerts import (
    AlertSettings,
    AlertStore,
    DataLakeAlertStore,
    DeliveryStatus,
    InMemoryAlertStore,
)
from adapters.datalake import InMemoryDataLake
from adapters.errors import BadInputError
from adapters.notify import InMemoryNotifier
from orchestrators.alert_policy import Alert, AlertPolicy, FailureKind, Verdict
from orchestrators.alerting import (
    DETAILS_PENDING,
    flush_pending,
    policy_from_settings,
    raise_alert,
    record_alert,
)

T0 = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)
POLICY = AlertPolicy(
    max_per_window=10,
    digest_after=timedelta(minutes=15),
    retry_base=timedelta(seconds=30),
    max_attempts=4,
)


def lake_store() -> AlertStore:
    return DataLakeAlertStore(InMemoryDataLake(), "ops")


@pytest.fixture(params=[InMemoryAlertStore, lake_store], ids=["memory", "datalake"])
def store(request: pytest.FixtureRequest) -> AlertStore:
    factory: Callable[[], AlertStore] = request.param
    return factory()


def failure(n: int, segment: str = "east-large-fast") -> Alert:
    return Alert(
        id=f"evt-{n}",
        kind=FailureKind.STEP_FAILED,
        pipeline="train",
        segment=segment,
        occurred_at=T0,
        job_name=f"job-{n}",
    )


def test_one_alert_is_emailed_once_even_when_the_event_repeats(store: AlertStore) -> None:
    mail = InMemoryNotifier()
    outcomes = [
        raise_alert(failure(1), store=store, notifier=mail, now=T0, policy=POLICY)
        for _ in range(10)
    ]
    assert outcomes[0].action == "sent" and outcomes[0].status is DeliveryStatus.SENT
    assert {o.action for o in outcomes[1:]} == {"already_recorded"}
    assert len(mail.sent) == 1 and mail.sent[0].subject.startswith("ERROR east-large-fast")
    assert flush_pending(store=store, notifier=mail, now=T0 + timedelta(hours=2)).sent == ()
    assert len(mail.sent) == 1


def test_storm_costs_one_email_per_signature_plus_one_digest(store: AlertStore) -> None:
    mail = InMemoryNotifier()
    for i in range(100):
        now = T0 + timedelta(seconds=i * 0.6)
        raise_alert(
            failure(i, segment=f"seg{i % 3}"), store=store, notifier=mail, now=now, policy=POLICY
        )
        flush_pending(store=store, notifier=mail, now=now, policy=POLICY)
    assert len(mail.sent) == 3
    report = flush_pending(
        store=store, notifier=mail, now=T0 + timedelta(minutes=16), policy=POLICY
    )
    assert report.digest_id is not None and report.sent == (report.digest_id,)
    assert len(mail.sent) == 4 and "97 more failure alert(s)" in mail.sent[-1].subject
    assert (
        flush_pending(store=store, notifier=mail, now=T0 + timedelta(hours=3), policy=POLICY).sent
        == ()
    )
    assert len(mail.sent) == 4


def test_failed_delivery_stays_pending_with_back_off_until_it_succeeds(store: AlertStore) -> None:
    mail = InMemoryNotifier()
    mail.fail_next(2)
    first = raise_alert(failure(1), store=store, notifier=mail, now=T0, policy=POLICY)
    assert first.action == "pending" and first.attempts == 1
    assert first.next_try_at == T0 + timedelta(seconds=30)
    assert "simulated" in first.last_error
    # Not due yet: nothing is attempted.
    assert (
        flush_pending(
            store=store, notifier=mail, now=T0 + timedelta(seconds=29), policy=POLICY
        ).retrying
        == ()
    )
    assert mail.attempts == 1
    second = flush_pending(
        store=store, notifier=mail, now=T0 + timedelta(seconds=30), policy=POLICY
    )
    assert second.retrying == ("evt-1",)
    (pending,) = store.pending()
    assert pending.attempts == 2 and pending.next_try_at == T0 + timedelta(seconds=90)
    third = flush_pending(store=store, notifier=mail, now=T0 + timedelta(seconds=90), policy=POLICY)
    assert third.sent == ("evt-1",) and len(mail.sent) == 1
    assert store.pending() == []
    record = store.get("evt-1")
    assert record is not None and record.status is DeliveryStatus.SENT and record.attempts == 3


def test_gives_up_after_max_attempts_but_keeps_the_record(store: AlertStore) -> None:
    mail = InMemoryNotifier()
    mail.fail_next(10, BadInputError("recipient refused", code="email_refused"))
    raise_alert(failure(1), store=store, notifier=mail, now=T0, policy=POLICY)
    now = T0
    failed: tuple[str, ...] = ()
    for _ in range(5):
        now += timedelta(hours=1)
        failed += flush_pending(store=store, notifier=mail, now=now, policy=POLICY).failed
    assert failed == ("evt-1",) and mail.attempts == 4
    record = store.get("evt-1")
    assert record is not None and record.status is DeliveryStatus.FAILED
    assert "recipient refused" in record.last_error


def test_suppressed_alerts_are_recorded_with_the_reason(store: AlertStore) -> None:
    mail = InMemoryNotifier()
    raise_alert(failure(1), store=store, notifier=mail, now=T0, policy=POLICY)
    dup = raise_alert(failure(2), store=store, notifier=mail, now=T0, policy=POLICY)
    assert dup.action == "suppressed" and dup.verdict is Verdict.DUPLICATE
    record = store.get("evt-2")
    assert record is not None and record.status is DeliveryStatus.SUPPRESSED
    assert record.payload["job_name"] == "job-2"


def test_dedup_and_outbox_survive_a_restart() -> None:
    lake = InMemoryDataLake()
    mail = InMemoryNotifier()
    mail.fail_next(1)
    raise_alert(
        failure(1), store=DataLakeAlertStore(lake, "ops"), notifier=mail, now=T0, policy=POLICY
    )
    # A new process: new store object over the same storage.
    restarted = DataLakeAlertStore(lake, "ops")
    again = raise_alert(failure(2), store=restarted, notifier=mail, now=T0, policy=POLICY)
    assert again.verdict is Verdict.DUPLICATE
    report = flush_pending(
        store=restarted, notifier=mail, now=T0 + timedelta(minutes=1), policy=POLICY
    )
    assert report.sent == ("evt-1",)
    names = [b.name for b in lake.list("ops")]
    assert "alerts/state/policy.json" in names and "alerts/records/evt-1.json" in names
    assert not any(n.startswith("alerts/pending/") for n in names)


def test_unsafe_ids_are_stored_under_safe_names() -> None:
    lake = InMemoryDataLake()
    store = DataLakeAlertStore(lake, "ops")
    odd = Alert(
        id="topic/evt 1?x", kind=FailureKind.CANCELED, pipeline="score", segment="s", occurred_at=T0
    )
    raise_alert(odd, store=store, notifier=InMemoryNotifier(), now=T0, policy=POLICY)
    record = store.get("topic/evt 1?x")
    assert record is not None and record.status is DeliveryStatus.SENT
    assert all("?" not in b.name and " " not in b.name for b in lake.list("ops"))


def test_recording_sends_nothing_and_the_sender_completes_each_alert_once(
    store: AlertStore,
) -> None:
    mail = InMemoryNotifier()
    looked_up: list[str] = []

    def complete(alert: Alert) -> Alert:
        looked_up.append(alert.job_name)
        return replace(
            alert, log_excerpt="Traceback ...\nValueError: no rows", detail="step 'prep'"
        )

    recorded = record_alert(failure(1), store=store, now=T0, policy=POLICY, needs_details=True)
    assert recorded.action == "recorded" and recorded.attempts == 0
    assert mail.attempts == 0 and looked_up == []
    record = store.get("evt-1")
    assert record is not None and record.payload[DETAILS_PENDING] is True
    # The first attempt fails: the details are kept, not looked up again on the retry.
    mail.fail_next(1)
    flush_pending(store=store, notifier=mail, now=T0, policy=POLICY, complete=complete)
    report = flush_pending(
        store=store, notifier=mail, now=T0 + timedelta(minutes=5), policy=POLICY, complete=complete
    )
    assert report.sent == ("evt-1",) and looked_up == ["job-1"]
    assert "ValueError: no rows" in mail.sent[0].text
    sent = store.get("evt-1")
    assert sent is not None and DETAILS_PENDING not in sent.payload


def test_an_alert_whose_details_cannot_be_read_still_goes_out(store: AlertStore) -> None:
    mail = InMemoryNotifier()

    def complete(alert: Alert) -> Alert:
        raise ConnectionError("workspace unreachable")

    record_alert(failure(1), store=store, now=T0, policy=POLICY, needs_details=True)
    report = flush_pending(store=store, notifier=mail, now=T0, policy=POLICY, complete=complete)
    assert report.sent == ("evt-1",) and len(mail.sent) == 1


def test_recorded_alerts_keep_the_dedup_rate_limit_and_digest_rules(store: AlertStore) -> None:
    mail = InMemoryNotifier()
    actions = [
        record_alert(
            failure(i, segment=f"seg{i % 3}"),
            store=store,
            now=T0 + timedelta(seconds=i * 0.6),
            policy=POLICY,
            needs_details=True,
        ).action
        for i in range(100)
    ]
    assert actions.count("recorded") == 3 and actions.count("suppressed") == 97
    assert mail.attempts == 0
    flush_pending(store=store, notifier=mail, now=T0 + timedelta(minutes=1), policy=POLICY)
    assert len(mail.sent) == 3
    report = flush_pending(
        store=store, notifier=mail, now=T0 + timedelta(minutes=16), policy=POLICY
    )
    assert report.digest_id is not None and "97 more failure alert(s)" in mail.sent[-1].subject


def test_policy_from_settings() -> None:
    s = AlertSettings.from_env(
        {"MLOPS_ALERT_WINDOW_MINUTES": "30", "MLOPS_ALERT_MAX_PER_WINDOW": "4"}
    )
    p = policy_from_settings(s)
    assert (p.window, p.max_per_window, p.digest_after) == (
        timedelta(minutes=30),
        4,
        timedelta(minutes=15),
    )
