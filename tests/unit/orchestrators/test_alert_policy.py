from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.errors import BadInputError
from orchestrators.alert_policy import (
    Alert,
    AlertPolicy,
    FailureKind,
    PolicyState,
    Severity,
    Signature,
    Verdict,
    decide,
    retry_delay,
    take_digest,
)

T0 = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)
POLICY = AlertPolicy(
    window=timedelta(minutes=60), max_per_window=3, digest_after=timedelta(minutes=15)
)


def alert(
    n: int,
    pipeline: str = "train",
    segment: str = "east-large-fast",
    kind: FailureKind = FailureKind.STEP_FAILED,
    at: datetime = T0,
) -> Alert:
    return Alert(
        id=f"evt-{n}",
        kind=kind,
        pipeline=pipeline,
        segment=segment,
        occurred_at=at,
        job_name=f"job-{n}",
        link=f"https://ml.azure.com/runs/job-{n}",
    )


def run(
    events: list[tuple[Alert, datetime]], policy: AlertPolicy = POLICY
) -> tuple[list[Verdict], PolicyState]:
    state = PolicyState()
    verdicts = []
    for a, now in events:
        v, state = decide(state, a, now, policy)
        # Every decision survives a round trip through the store's JSON.
        state = PolicyState.from_json(state.to_json())
        verdicts.append(v)
    return verdicts, state


def test_first_alert_of_a_signature_is_sent_and_repeats_are_duplicates() -> None:
    verdicts, state = run([(alert(i), T0 + timedelta(minutes=i)) for i in range(5)])
    assert verdicts == [Verdict.SEND] + [Verdict.DUPLICATE] * 4
    (group,) = state.suppressed
    assert (group.duplicates, group.rate_limited, group.count) == (4, 0, 4)
    assert [s.alert_id for s in group.samples] == ["evt-1", "evt-2", "evt-3", "evt-4"]


def test_signature_is_pipeline_segment_and_kind() -> None:
    a = alert(1)
    variants = [
        alert(2, pipeline="score"),
        alert(3, segment="west-small-slow"),
        alert(4, kind=FailureKind.TIMED_OUT),
    ]
    verdicts, _ = run([(x, T0) for x in [a, *variants]], AlertPolicy(max_per_window=10))
    assert verdicts == [Verdict.SEND] * 4
    assert a.signature == Signature("train", "east-large-fast", FailureKind.STEP_FAILED)


def test_same_signature_is_sent_again_once_the_window_has_passed() -> None:
    events = [
        (alert(1), T0),
        (alert(2), T0 + timedelta(minutes=59)),
        (alert(3), T0 + timedelta(minutes=60)),
    ]
    verdicts, _ = run(events)
    assert verdicts == [Verdict.SEND, Verdict.DUPLICATE, Verdict.SEND]


def test_rate_limit_counts_every_signature_in_a_sliding_window() -> None:
    events = [(alert(i, segment=f"seg{i}"), T0 + timedelta(minutes=i)) for i in range(5)]
    events.append((alert(9, segment="late"), T0 + timedelta(minutes=60)))
    verdicts, state = run(events)
    assert verdicts == [Verdict.SEND] * 3 + [Verdict.RATE_LIMITED] * 2 + [Verdict.SEND]
    assert sorted(g.signature.segment for g in state.suppressed) == ["seg3", "seg4"]
    assert all(g.rate_limited == 1 for g in state.suppressed)


def test_digest_waits_for_digest_after_then_lists_everything_once() -> None:
    events = [(alert(i, segment=f"s{i % 3}"), T0 + timedelta(seconds=i)) for i in range(100)]
    verdicts, state = run(events)
    assert verdicts.count(Verdict.SEND) == 3
    assert take_digest(state, T0 + timedelta(minutes=14), POLICY)[0] is None
    digest, after = take_digest(state, T0 + timedelta(minutes=16), POLICY)
    assert digest is not None
    assert digest.total == 97 and len(digest.groups) == 3
    assert after.suppressed == () and after.digest_opened_at is None
    assert take_digest(after, T0 + timedelta(hours=5), POLICY)[0] is None


def test_digest_ids_are_stable_for_the_same_state_and_differ_between_batches() -> None:
    _, state = run([(alert(1), T0), (alert(2), T0)])
    first, after = take_digest(state, T0 + timedelta(minutes=20), POLICY)
    again, _ = take_digest(state, T0 + timedelta(minutes=21), POLICY)
    assert first is not None and again is not None and first.id == again.id
    after2 = decide(after, alert(3), T0 + timedelta(minutes=30), POLICY)[1]
    second, _ = take_digest(after2, T0 + timedelta(minutes=50), POLICY)
    assert second is not None and second.id != first.id


signatures = st.tuples(
    st.sampled_from(["train", "score"]),
    st.sampled_from(["a", "b", "c", ""]),
    st.sampled_from(list(FailureKind)),
)
streams = st.lists(st.tuples(signatures, st.integers(min_value=0, max_value=600)), max_size=120)


@settings(max_examples=150, deadline=None)
@given(streams, st.integers(min_value=1, max_value=5))
def test_storm_invariants(stream: list[tuple[tuple[str, str, FailureKind], int]], cap: int) -> None:
    """Any stream: per window at most one email per signature and at most ``cap`` in all;
    every suppressed alert is reported by exactly one digest; digests are spaced out."""
    policy = AlertPolicy(
        window=timedelta(minutes=60), max_per_window=cap, digest_after=timedelta(minutes=15)
    )
    state = PolicyState()
    sends: list[tuple[Signature, datetime]] = []
    suppressed = 0
    reported = 0
    digest_times: list[datetime] = []
    minutes = 0
    for i, ((pipeline, segment, kind), gap_s) in enumerate(stream):
        minutes += gap_s
        now = T0 + timedelta(seconds=minutes)
        a = Alert(f"e{i}", kind, pipeline, segment, now)
        verdict, state = decide(state, a, now, policy)
        if verdict is Verdict.SEND:
            sends.append((a.signature, now))
        else:
            suppressed += 1
        digest, state = take_digest(state, now, policy)
        if digest is not None:
            reported += digest.total
            digest_times.append(now)
    final, state = take_digest(state, T0 + timedelta(days=30), policy)
    reported += final.total if final else 0
    assert reported == suppressed
    for sig, at in sends:
        in_window = [(s, t) for s, t in sends if at <= t < at + policy.window]
        assert len(in_window) <= cap
        assert sum(1 for s, _ in in_window if s == sig) == 1
    gaps = [b - a for a, b in itertools.pairwise(digest_times)]
    assert all(gap >= policy.digest_after for gap in gaps)


def test_retry_delay_doubles_then_caps() -> None:
    p = AlertPolicy(retry_base=timedelta(seconds=30), retry_cap=timedelta(minutes=30))
    assert [retry_delay(n, p).total_seconds() for n in range(1, 9)] == [
        30,
        60,
        120,
        240,
        480,
        960,
        1800,
        1800,
    ]
    assert retry_delay(10_000, p) == timedelta(minutes=30)
    with pytest.raises(ValueError):
        retry_delay(0, p)


def test_failure_kind_from_azure_ml_status_and_default_severity() -> None:
    assert FailureKind.from_status("Failed") is FailureKind.STEP_FAILED
    assert FailureKind.from_status("canceled") is FailureKind.CANCELED
    assert FailureKind.from_status("Not Responding") is FailureKind.NOT_RESPONDING
    with pytest.raises(BadInputError, match="not a terminal failure"):
        FailureKind.from_status("Running")
    assert alert(1).severity is Severity.ERROR
    assert alert(1, kind=FailureKind.DATA_QUALITY).severity is Severity.WARNING


def test_alert_validates_itself_and_round_trips() -> None:
    a = alert(7)
    assert Alert.from_json(a.to_json()) == a
    with pytest.raises(BadInputError, match="timezone"):
        Alert("x", FailureKind.CANCELED, "train", "s", datetime(2025, 1, 1))
    with pytest.raises(BadInputError, match="id"):
        Alert(" ", FailureKind.CANCELED, "train", "s", T0)
    with pytest.raises(ValueError):
        AlertPolicy(max_per_window=0)
