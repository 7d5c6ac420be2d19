from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrators.polling import (
    DEFAULT_POLICY,
    PollingPolicy,
    is_terminal,
    job_deadline,
    next_poll_at,
    next_poll_delay,
    past_deadline,
)

S = timedelta(seconds=1)
NON_TERMINAL = [
    "NotStarted",
    "Queued",
    "Starting",
    "Preparing",
    "Provisioning",
    "Running",
    "Finalizing",
    "CancelRequested",
    "Paused",
    "SomethingNew",
]
statuses = st.sampled_from(NON_TERMINAL)
elapsed_s = st.floats(min_value=0, max_value=7 * 24 * 3600, allow_nan=False)
hints = st.none() | st.floats(min_value=1, max_value=2 * 24 * 3600).map(lambda s: s * S)


@given(elapsed_s, st.integers(min_value=0, max_value=10_000), statuses, hints)
def test_delay_is_always_within_the_bounds(
    elapsed: float, polls: int, status: str, hint: timedelta | None
) -> None:
    delay = next_poll_delay(elapsed * S, polls, status, hint)
    p = DEFAULT_POLICY
    assert min(p.first_delay, p.ending_delay) <= delay <= p.max_delay


@given(elapsed_s, elapsed_s, st.integers(min_value=1, max_value=100))
def test_running_delay_never_shrinks_as_the_job_ages(a: float, b: float, polls: int) -> None:
    early, late = sorted((a, b))
    assert next_poll_delay(early * S, polls, "Running") <= next_poll_delay(
        late * S, polls, "Running"
    )


@given(elapsed_s, st.integers(min_value=1, max_value=100), statuses, hints)
def test_a_hint_never_lengthens_the_delay(
    elapsed: float, polls: int, status: str, hint: timedelta | None
) -> None:
    without = next_poll_delay(elapsed * S, polls, status)
    assert next_poll_delay(elapsed * S, polls, status, hint) <= without


@given(st.floats(min_value=0, max_value=3600 * 48), statuses)
def test_first_call_comes_quickly_to_catch_jobs_that_fail_on_submission(
    elapsed: float, status: str
) -> None:
    assert next_poll_delay(elapsed * S, 0, status) == DEFAULT_POLICY.first_delay


def test_delay_is_a_bounded_fraction_of_elapsed_time() -> None:
    p = DEFAULT_POLICY
    assert next_poll_delay(timedelta(minutes=5), 3, "Running") == p.min_delay
    two_hours = timedelta(hours=2)
    assert next_poll_delay(two_hours, 20, "Running") == two_hours * p.growth
    assert next_poll_delay(timedelta(days=3), 60, "Running") == p.max_delay


def test_status_strings_are_compared_case_insensitively_and_shape_the_delay() -> None:
    p = DEFAULT_POLICY
    for status in ("Finalizing", "finalizing", " CANCELREQUESTED "):
        assert next_poll_delay(timedelta(hours=5), 9, status) == p.ending_delay
    assert next_poll_delay(timedelta(minutes=10), 4, "Paused") == p.max_delay
    # An unknown future status is polled like Running, not treated as an error.
    assert next_poll_delay(timedelta(hours=1), 9, "Throttled") == next_poll_delay(
        timedelta(hours=1), 9, "Running"
    )


@pytest.mark.parametrize("status", ["Completed", "failed", "Canceled", "NotResponding"])
def test_a_finished_job_is_not_polled_again(status: str) -> None:
    assert is_terminal(status)
    with pytest.raises(ValueError, match="stop polling"):
        next_poll_delay(timedelta(minutes=1), 1, status)


def test_is_terminal_rejects_running_and_none() -> None:
    assert not is_terminal(None)
    assert not is_terminal("Running")


def test_hint_lands_a_call_at_the_expected_end() -> None:
    elapsed = timedelta(hours=1)
    expected = elapsed + timedelta(minutes=3)
    assert next_poll_delay(elapsed, 10, "Running", expected) == timedelta(minutes=3)
    # Past the hint, or too close to it, the plain back-off applies.
    plain = next_poll_delay(elapsed, 10, "Running")
    assert next_poll_delay(elapsed, 10, "Running", timedelta(minutes=30)) == plain
    assert next_poll_delay(elapsed, 10, "Running", elapsed + timedelta(seconds=10)) == plain


def test_policy_simulation_detects_completion_quickly_with_few_calls() -> None:
    # An 8 h job: far fewer calls than fixed 60 s polling (480), detected within 5% of its length.
    duration = 8 * 3600.0
    t, calls, status = 0.0, 0, None
    while not is_terminal(status):
        t += next_poll_delay(t * S, calls, status).total_seconds()
        calls += 1
        status = "Completed" if t >= duration else "Running"
    assert calls <= 480 / 5
    assert t - duration <= 0.05 * duration + DEFAULT_POLICY.max_delay.total_seconds()


def test_negative_inputs_and_bad_policies_are_rejected() -> None:
    with pytest.raises(ValueError, match="polls"):
        next_poll_delay(timedelta(0), -1, None)
    assert next_poll_delay(-timedelta(minutes=5), 2, "Queued") == DEFAULT_POLICY.min_delay
    with pytest.raises(ValueError, match="growth"):
        PollingPolicy(growth=0)
    with pytest.raises(ValueError, match="positive"):
        PollingPolicy(min_delay=timedelta(0))
    with pytest.raises(ValueError, match="exceed"):
        PollingPolicy(min_delay=timedelta(hours=2), max_delay=timedelta(hours=1))


T0 = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)


def test_deadline_uses_the_expected_duration_with_slack_and_bounds() -> None:
    assert job_deadline(T0) == T0 + timedelta(hours=12)
    assert job_deadline(T0, timedelta(hours=2)) == T0 + timedelta(hours=6)
    assert job_deadline(T0, timedelta(minutes=1)) == T0 + timedelta(minutes=30)
    assert job_deadline(T0, timedelta(days=5)) == T0 + timedelta(hours=48)
    with pytest.raises(ValueError):
        job_deadline(T0, slack_factor=0.5)


@given(
    st.integers(min_value=0, max_value=10**6),
    st.integers(min_value=1, max_value=10**5),
    st.integers(min_value=-(10**5), max_value=10**6),
)
def test_next_poll_never_passes_the_deadline(now_s: int, delay_s: int, deadline_s: int) -> None:
    now = T0 + now_s * S
    deadline = T0 + deadline_s * S
    at = next_poll_at(now, delay_s * S, deadline)
    assert now <= at <= now + delay_s * S
    if deadline >= now:
        assert at <= deadline
    assert past_deadline(at, deadline) == (at >= deadline)
