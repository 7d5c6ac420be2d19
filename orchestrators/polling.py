"""When to ask Azure ML about a running job next: an adaptive back-off policy.

Pure and deterministic (no clock reads, no I/O), so an orchestrator can call it during replay.
The orchestrator passes what it knows: the time since the job was submitted, how many status
calls it has made, the last status it saw and, when it has one, how long this kind of job
usually takes. The answer is a delay for the next durable timer.

Why this shape. The delay grows with the elapsed time (``growth`` × elapsed), so the
completion-detection delay stays a small, roughly constant *fraction* of the job's duration
while the number of calls grows only logarithmically with it: a 5-minute job is polled about
every ``min_delay`` (2 minutes); an 8-hour job every ``max_delay`` (30 minutes) near its end.
A short first delay catches jobs that fail straight after submission (bad input, missing
compute), which is the most common way a job ends early. ``Finalizing`` means the end is
imminent, so it is polled quickly. An expected-duration hint only ever *shortens* a delay (to
land a call right at the expected end), so a wrong hint can cost a few calls but never delays
detection.

Status strings are Azure ML's (CONTRACTS.md) and are compared case-insensitively.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

TERMINAL_STATUSES = frozenset({"completed", "failed", "canceled", "notresponding"})
"""Azure ML job states after which the job never changes again (lower case)."""

ENDING_STATUSES = frozenset({"finalizing", "cancelrequested"})
"""States that announce the job is about to reach a terminal state."""

WAITING_STATUSES = frozenset({"paused"})
"""States that need someone to act; nothing will change soon."""


def is_terminal(status: str | None) -> bool:
    """True when ``status`` is a terminal Azure ML job state (case-insensitive)."""
    return status is not None and status.strip().lower() in TERMINAL_STATUSES


@dataclass(frozen=True)
class PollingPolicy:
    """Tunable bounds of the back-off; the defaults meet the polling benchmark's goal.

    ``growth`` is the delay as a fraction of the elapsed time; the median detection delay is
    then about ``growth / 2`` of the job's duration (and about ``min_delay / 2`` for short
    jobs). ``make bench-polling`` measures the trade-off. All durations are positive and
    ``first_delay <= max_delay``, ``min_delay <= max_delay``.
    """

    first_delay: timedelta = timedelta(seconds=60)
    min_delay: timedelta = timedelta(seconds=120)
    max_delay: timedelta = timedelta(minutes=30)
    growth: float = 0.11
    ending_delay: timedelta = timedelta(seconds=30)

    def __post_init__(self) -> None:
        for name in ("first_delay", "min_delay", "max_delay", "ending_delay"):
            if getattr(self, name) <= timedelta(0):
                raise ValueError(f"PollingPolicy.{name} must be positive")
        if self.min_delay > self.max_delay or self.first_delay > self.max_delay:
            raise ValueError("PollingPolicy: min_delay and first_delay must not exceed max_delay")
        if not 0 < self.growth <= 1:
            raise ValueError("PollingPolicy.growth must be in (0, 1]")

    def next_delay(
        self,
        *,
        elapsed: timedelta,
        polls: int,
        last_status: str | None,
        expected_duration: timedelta | None = None,
    ) -> timedelta:
        """The wait before the next status call, always within ``[min(first, ending), max]``.

        ``elapsed`` is the time since submission (negative values count as zero), ``polls``
        the status calls made so far, ``last_status`` the latest status seen (``None`` before
        the first call). Raises ``ValueError`` for a terminal status or negative ``polls``:
        a finished job is not polled again.
        """
        if polls < 0:
            raise ValueError("polls must be >= 0")
        status = (last_status or "").strip().lower()
        if status in TERMINAL_STATUSES:
            raise ValueError(f"job is already {last_status}; stop polling")
        elapsed = max(elapsed, timedelta(0))
        if polls == 0:
            return self.first_delay
        if status in ENDING_STATUSES:
            return min(self.ending_delay, self.max_delay)
        if status in WAITING_STATUSES:
            return self.max_delay
        delay = min(max(elapsed * self.growth, self.min_delay), self.max_delay)
        if expected_duration is not None:
            remaining = expected_duration - elapsed
            # Land one call at the expected end instead of overshooting it; never lengthen.
            if self.min_delay <= remaining < delay:
                delay = remaining
        return delay


DEFAULT_POLICY = PollingPolicy()


def next_poll_delay(
    elapsed: timedelta,
    polls: int,
    last_status: str | None,
    expected_duration: timedelta | None = None,
    policy: PollingPolicy = DEFAULT_POLICY,
) -> timedelta:
    """``policy.next_delay(...)`` as a plain function (see ``PollingPolicy.next_delay``)."""
    return policy.next_delay(
        elapsed=elapsed,
        polls=polls,
        last_status=last_status,
        expected_duration=expected_duration,
    )


def job_deadline(
    submitted_at: datetime,
    expected_duration: timedelta | None = None,
    *,
    default_timeout: timedelta = timedelta(hours=12),
    slack_factor: float = 3.0,
    minimum: timedelta = timedelta(minutes=30),
    maximum: timedelta = timedelta(hours=48),
) -> datetime:
    """When to give up on a job (then cancel it): ``submitted_at`` + a bounded timeout.

    With an expected duration the timeout is ``slack_factor`` × that, clamped to
    ``[minimum, maximum]``; without one it is ``default_timeout`` (also clamped).
    """
    if slack_factor < 1:
        raise ValueError("slack_factor must be >= 1")
    if minimum > maximum:
        raise ValueError("minimum must not exceed maximum")
    timeout = default_timeout if expected_duration is None else expected_duration * slack_factor
    return submitted_at + min(max(timeout, minimum), maximum)


def next_poll_at(now: datetime, delay: timedelta, deadline: datetime) -> datetime:
    """When the next durable timer should fire: after ``delay``, but never after ``deadline``.

    Capping at the deadline guarantees one last status call exactly at the deadline before
    the orchestrator cancels the job, so a job that finished in the meantime is not canceled.
    """
    return min(now + delay, max(deadline, now))


def past_deadline(now: datetime, deadline: datetime) -> bool:
    """True when ``now`` is at or after ``deadline``."""
    return now >= deadline
