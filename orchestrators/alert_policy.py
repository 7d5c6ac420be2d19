"""Which failure alerts become emails: dedup, rate limit and digest. Pure, time passed in.

Rules (``AlertPolicy`` holds the numbers):

* An alert's *signature* is (pipeline, segment, failure kind).
* **Dedup.** Once an email went out for a signature, further alerts with that signature are
  suppressed until ``window`` has passed since that email (a persistent failure is re-sent at
  most once per window).
* **Rate limit.** At most ``max_per_window`` alert emails go out in any sliding ``window``,
  whatever their signatures; further alerts are suppressed.
* **Digest.** Suppressed alerts are grouped by signature. When the oldest of them has waited
  ``digest_after``, one digest email lists them all and the groups start over. Digests are
  therefore at most one per ``digest_after`` and do not count toward the rate limit, so a storm
  of any size costs ``max_per_window`` emails plus a few digests per window.

``PolicyState`` is a plain value that the alert store keeps as JSON, so the decisions survive
restarts. State stays bounded: sent marks older than the window are pruned, suppressed alerts
are kept as per-signature counts with a few samples.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from adapters.errors import BadInputError

SAMPLES_PER_GROUP = 5


class FailureKind(StrEnum):
    """What went wrong; decides the advice in the email and part of the signature."""

    STEP_FAILED = "step_failed"
    TIMED_OUT = "timed_out"
    CANCELED = "canceled"
    NOT_RESPONDING = "not_responding"
    DATA_QUALITY = "data_quality"

    @classmethod
    def from_status(cls, status: str) -> FailureKind:
        """The kind for a terminal Azure ML status (``Failed``, ``Canceled``, ``NotResponding``)."""
        key = status.replace(" ", "").strip().lower()
        kinds = {"failed": cls.STEP_FAILED, "canceled": cls.CANCELED, "cancelled": cls.CANCELED,
                 "notresponding": cls.NOT_RESPONDING}  # fmt: skip
        try:
            return kinds[key]
        except KeyError:
            raise BadInputError(
                f"status {status!r} is not a terminal failure (Failed, Canceled, NotResponding)",
                code="bad_alert",
            ) from None


class Severity(StrEnum):
    ERROR = "ERROR"
    WARNING = "WARNING"


DEFAULT_SEVERITY: Mapping[FailureKind, Severity] = {
    FailureKind.STEP_FAILED: Severity.ERROR,
    FailureKind.TIMED_OUT: Severity.ERROR,
    FailureKind.NOT_RESPONDING: Severity.ERROR,
    FailureKind.CANCELED: Severity.WARNING,
    FailureKind.DATA_QUALITY: Severity.WARNING,
}


def _time(value: Any) -> datetime:
    moment = datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        raise BadInputError(f"time {value!r} has no UTC offset", code="bad_alert")
    return moment


def _aware(moment: datetime, name: str) -> None:
    if moment.tzinfo is None:
        raise BadInputError(f"{name} must be timezone-aware (UTC)", code="bad_alert")


@dataclass(frozen=True)
class Alert:
    """One failure worth telling Ops about.

    ``id`` makes raising idempotent (use the Event Grid event id, or the orchestration
    instance + segment). ``link`` points at the job (Azure ML studio URL in Azure, the local
    job record locally); ``log_excerpt`` is the tail of the failing step's log (the email keeps
    only its last lines); ``detail`` is one human sentence about the failure.
    """

    id: str
    kind: FailureKind
    pipeline: str
    segment: str
    occurred_at: datetime
    job_name: str = ""
    link: str = ""
    last_status: str = ""
    log_excerpt: str = ""
    detail: str = ""
    severity: Severity | None = None

    def __post_init__(self) -> None:
        if not self.id.strip():
            raise BadInputError("an alert needs an id", code="bad_alert")
        if not self.pipeline.strip():
            raise BadInputError(f"alert {self.id}: pipeline is empty", code="bad_alert")
        _aware(self.occurred_at, "Alert.occurred_at")
        object.__setattr__(self, "kind", FailureKind(self.kind))
        if self.severity is None:
            object.__setattr__(self, "severity", DEFAULT_SEVERITY[self.kind])

    @property
    def signature(self) -> Signature:
        return Signature(self.pipeline, self.segment, self.kind)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind.value,
            "pipeline": self.pipeline,
            "segment": self.segment,
            "occurred_at": self.occurred_at.isoformat(),
            "job_name": self.job_name,
            "link": self.link,
            "last_status": self.last_status,
            "log_excerpt": self.log_excerpt,
            "detail": self.detail,
            "severity": None if self.severity is None else self.severity.value,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Alert:
        severity = data.get("severity")
        return cls(
            id=str(data["id"]),
            kind=FailureKind(data["kind"]),
            pipeline=str(data["pipeline"]),
            segment=str(data.get("segment", "")),
            occurred_at=_time(data["occurred_at"]),
            job_name=str(data.get("job_name", "")),
            link=str(data.get("link", "")),
            last_status=str(data.get("last_status", "")),
            log_excerpt=str(data.get("log_excerpt", "")),
            detail=str(data.get("detail", "")),
            severity=None if severity is None else Severity(severity),
        )


@dataclass(frozen=True, order=True)
class Signature:
    pipeline: str
    segment: str
    kind: FailureKind

    def key(self) -> str:
        return f"{self.pipeline}|{self.segment}|{self.kind.value}"

    @classmethod
    def from_key(cls, key: str) -> Signature:
        pipeline, segment, kind = key.rsplit("|", 2)
        return cls(pipeline, segment, FailureKind(kind))

    def describe(self) -> str:
        return f"{self.pipeline} / {self.segment or 'all segments'} / {self.kind.value}"


class Verdict(StrEnum):
    SEND = "send"
    DUPLICATE = "duplicate"
    RATE_LIMITED = "rate_limited"


@dataclass(frozen=True)
class AlertPolicy:
    """The numbers behind the rules; ``retry_*`` govern re-sending after a failed delivery."""

    window: timedelta = timedelta(minutes=60)
    max_per_window: int = 10
    digest_after: timedelta = timedelta(minutes=15)
    retry_base: timedelta = timedelta(seconds=30)
    retry_cap: timedelta = timedelta(minutes=30)
    max_attempts: int = 200

    def __post_init__(self) -> None:
        if self.window <= timedelta(0) or self.digest_after <= timedelta(0):
            raise ValueError("AlertPolicy: window and digest_after must be positive")
        if self.max_per_window < 1 or self.max_attempts < 1:
            raise ValueError("AlertPolicy: max_per_window and max_attempts must be >= 1")
        if self.retry_base <= timedelta(0) or self.retry_cap < self.retry_base:
            raise ValueError("AlertPolicy: need 0 < retry_base <= retry_cap")


@dataclass(frozen=True)
class SentMark:
    signature: Signature
    at: datetime


@dataclass(frozen=True)
class Sample:
    """A suppressed alert, enough to find it again."""

    alert_id: str
    occurred_at: datetime
    job_name: str
    link: str


@dataclass(frozen=True)
class SuppressedGroup:
    signature: Signature
    duplicates: int
    rate_limited: int
    first_at: datetime
    last_at: datetime
    samples: tuple[Sample, ...] = ()

    @property
    def count(self) -> int:
        return self.duplicates + self.rate_limited


@dataclass(frozen=True)
class PolicyState:
    """What the policy remembers between alerts (kept by the alert store)."""

    sent: tuple[SentMark, ...] = ()
    suppressed: tuple[SuppressedGroup, ...] = ()
    digest_opened_at: datetime | None = None
    digests_sent: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "sent": [{"signature": m.signature.key(), "at": m.at.isoformat()} for m in self.sent],
            "suppressed": [
                {
                    "signature": g.signature.key(),
                    "duplicates": g.duplicates,
                    "rate_limited": g.rate_limited,
                    "first_at": g.first_at.isoformat(),
                    "last_at": g.last_at.isoformat(),
                    "samples": [
                        {
                            "alert_id": s.alert_id,
                            "occurred_at": s.occurred_at.isoformat(),
                            "job_name": s.job_name,
                            "link": s.link,
                        }
                        for s in g.samples
                    ],
                }
                for g in self.suppressed
            ],
            "digest_opened_at": (
                None if self.digest_opened_at is None else self.digest_opened_at.isoformat()
            ),
            "digests_sent": self.digests_sent,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> PolicyState:
        if not data:
            return cls()
        opened = data.get("digest_opened_at")
        return cls(
            sent=tuple(
                SentMark(Signature.from_key(m["signature"]), _time(m["at"]))
                for m in data.get("sent", [])
            ),
            suppressed=tuple(
                SuppressedGroup(
                    signature=Signature.from_key(g["signature"]),
                    duplicates=int(g["duplicates"]),
                    rate_limited=int(g["rate_limited"]),
                    first_at=_time(g["first_at"]),
                    last_at=_time(g["last_at"]),
                    samples=tuple(
                        Sample(
                            str(s["alert_id"]),
                            _time(s["occurred_at"]),
                            str(s["job_name"]),
                            str(s["link"]),
                        )
                        for s in g.get("samples", [])
                    ),
                )
                for g in data.get("suppressed", [])
            ),
            digest_opened_at=None if opened is None else _time(opened),
            digests_sent=int(data.get("digests_sent", 0)),
        )


@dataclass(frozen=True)
class Digest:
    """One email's worth of suppressed alerts; ``id`` is stable for the same batch."""

    id: str
    opened_at: datetime
    closed_at: datetime
    groups: tuple[SuppressedGroup, ...] = field(default_factory=tuple)

    @property
    def total(self) -> int:
        return sum(g.count for g in self.groups)


def _prune(state: PolicyState, now: datetime, window: timedelta) -> PolicyState:
    return replace(state, sent=tuple(m for m in state.sent if now - m.at < window))


def decide(
    state: PolicyState, alert: Alert, now: datetime, policy: AlertPolicy
) -> tuple[Verdict, PolicyState]:
    """Decide whether ``alert`` is emailed now, and the state after that decision."""
    _aware(now, "now")
    state = _prune(state, now, policy.window)
    signature = alert.signature
    if any(m.signature == signature for m in state.sent):
        verdict = Verdict.DUPLICATE
    elif len(state.sent) >= policy.max_per_window:
        verdict = Verdict.RATE_LIMITED
    else:
        return Verdict.SEND, replace(state, sent=(*state.sent, SentMark(signature, now)))
    return verdict, _suppress(state, alert, verdict, now)


def _suppress(state: PolicyState, alert: Alert, verdict: Verdict, now: datetime) -> PolicyState:
    sample = Sample(alert.id, alert.occurred_at, alert.job_name, alert.link)
    dup = 1 if verdict is Verdict.DUPLICATE else 0
    groups = list(state.suppressed)
    for i, g in enumerate(groups):
        if g.signature == alert.signature:
            samples = g.samples if len(g.samples) >= SAMPLES_PER_GROUP else (*g.samples, sample)
            groups[i] = replace(
                g,
                duplicates=g.duplicates + dup,
                rate_limited=g.rate_limited + 1 - dup,
                last_at=max(g.last_at, now),
                samples=samples,
            )
            break
    else:
        groups.append(SuppressedGroup(alert.signature, dup, 1 - dup, now, now, (sample,)))
    opened = state.digest_opened_at if state.digest_opened_at is not None else now
    return replace(state, suppressed=tuple(groups), digest_opened_at=opened)


def take_digest(
    state: PolicyState, now: datetime, policy: AlertPolicy
) -> tuple[Digest | None, PolicyState]:
    """The digest that is due at ``now`` (or ``None``) and the state once it is taken."""
    _aware(now, "now")
    opened = state.digest_opened_at
    if not state.suppressed or opened is None or now - opened < policy.digest_after:
        return None, state
    digest = Digest(
        id=f"digest-{opened.strftime('%Y%m%dT%H%M%S%fZ')}-{state.digests_sent + 1}",
        opened_at=opened,
        closed_at=now,
        groups=tuple(sorted(state.suppressed, key=lambda g: g.signature)),
    )
    after = replace(
        _prune(state, now, policy.window),
        suppressed=(),
        digest_opened_at=None,
        digests_sent=state.digests_sent + 1,
    )
    return digest, after


def retry_delay(attempts: int, policy: AlertPolicy) -> timedelta:
    """Back-off after ``attempts`` failed deliveries: base × 2^(attempts-1), capped."""
    if attempts < 1:
        raise ValueError("attempts must be >= 1")
    # Cap the exponent first so huge attempt counts cannot overflow timedelta.
    factor = 1 << min(attempts - 1, 30)
    return min(policy.retry_base * factor, policy.retry_cap)
