"""Pure decisions the orchestrations take: segments, the promotion gate, staleness, ids.

No I/O, no clocks: every time is passed in. Unit-tested exhaustively in
tests/unit/orchestrators/test_policies.py.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from adapters.errors import BadInputError

MAPE_BAR = 0.45
STALE_AFTER = timedelta(days=60)
FORMATS = ("large", "small")
VELOCITIES = ("fast", "slow")
_REGION = re.compile(r"^[a-z0-9][a-z0-9_]{0,31}$")
_INSTANCE_ID_SAFE = re.compile(r"[^A-Za-z0-9_.:-]")


@dataclass(frozen=True, order=True)
class Segment:
    """One model's slice of the business: region × store format × product velocity."""

    region: str
    store_format: str
    velocity: str

    def __post_init__(self) -> None:
        if not _REGION.match(self.region):
            raise BadInputError(
                f"region {self.region!r} must be 1-32 lowercase letters, digits or '_'",
                code="bad_segment",
            )
        if self.store_format not in FORMATS:
            raise BadInputError(
                f"store format {self.store_format!r} must be one of {', '.join(FORMATS)}",
                code="bad_segment",
            )
        if self.velocity not in VELOCITIES:
            raise BadInputError(
                f"velocity {self.velocity!r} must be one of {', '.join(VELOCITIES)}",
                code="bad_segment",
            )

    @property
    def id(self) -> str:
        return f"{self.region}-{self.store_format}-{self.velocity}"

    @property
    def model_name(self) -> str:
        return f"forecast-{self.id}"

    @classmethod
    def parse(cls, text: str) -> Segment:
        """``"r01-large-fast"`` → ``Segment("r01", "large", "fast")``."""
        parts = str(text).strip().lower().rsplit("-", 2)
        if len(parts) != 3:
            raise BadInputError(
                f"segment {text!r} must look like REGION-FORMAT-VELOCITY, e.g. r01-large-fast",
                code="bad_segment",
            )
        return cls(*parts)

    @classmethod
    def for_regions(cls, regions: Iterable[str]) -> list[Segment]:
        return [cls(r, f, v) for r in regions for f in FORMATS for v in VELOCITIES]


def parse_segments(value: Any) -> list[Segment]:
    """Segments from a request: a list of ids, or ``{"regions": [...]}`` expanding to all four."""
    if isinstance(value, Mapping) and "regions" in value:
        regions = value["regions"]
        if not isinstance(regions, list) or not regions:
            raise BadInputError("'regions' must be a non-empty list", code="bad_segment")
        return sorted(set(Segment.for_regions(str(r).lower() for r in regions)))
    if not isinstance(value, list) or not value:
        raise BadInputError(
            "'segments' must be a non-empty list of ids like r01-large-fast", code="bad_segment"
        )
    return sorted({Segment.parse(str(v)) for v in value})


@dataclass(frozen=True)
class Metrics:
    """Forecast quality on one holdout. MAPE is a fraction (0.3 = 30%)."""

    mape: float
    rmse_zero: float | None = None
    rmse_all: float | None = None

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any], prefix: str = "") -> Metrics | None:
        value = m.get(f"{prefix}mape")
        if value is None:
            return None
        try:
            mape = float(value)
        except (TypeError, ValueError):
            return None
        if math.isnan(mape):
            return None

        def opt(key: str) -> float | None:
            raw = m.get(f"{prefix}{key}")
            try:
                return None if raw is None else float(raw)
            except (TypeError, ValueError):
                return None

        return cls(mape=mape, rmse_zero=opt("rmse_zero"), rmse_all=opt("rmse_all"))


@dataclass(frozen=True)
class GateVerdict:
    decision: str  # "champion" | "challenger" | "rejected"
    reasons: list[str] = field(default_factory=list)

    @property
    def promoted(self) -> bool:
        return self.decision == "champion"


def promotion_gate(
    candidate: Metrics | None,
    baseline: Metrics | None,
    champion: Metrics | None,
    mape_bar: float = MAPE_BAR,
) -> GateVerdict:
    """Champion when the candidate meets the bar and beats the baseline and the champion.

    A candidate that meets the bar and beats the baseline but not the champion is a
    challenger; anything else is rejected. Missing metrics reject (never promote blind).
    """
    if candidate is None:
        return GateVerdict("rejected", ["the candidate reported no MAPE"])
    reasons: list[str] = []
    if candidate.mape > mape_bar:
        reasons.append(f"MAPE {candidate.mape:.3f} is above the bar {mape_bar:.2f}")
    if baseline is None:
        reasons.append("no historical-average baseline to compare against")
    elif candidate.mape >= baseline.mape:
        reasons.append(
            f"MAPE {candidate.mape:.3f} does not beat the baseline's {baseline.mape:.3f}"
        )
    if reasons:
        return GateVerdict("rejected", reasons)
    if champion is not None and candidate.mape >= champion.mape:
        return GateVerdict(
            "challenger",
            [f"MAPE {candidate.mape:.3f} does not beat the champion's {champion.mape:.3f}"],
        )
    why = (
        "no current champion"
        if champion is None
        else (f"MAPE {candidate.mape:.3f} beats the champion's {champion.mape:.3f}")
    )
    return GateVerdict("champion", [why])


def is_stale(
    trained_at: datetime, scoring_time: datetime, max_age: timedelta = STALE_AFTER
) -> bool:
    """A model trained more than ``max_age`` before the scoring run is stale."""
    return scoring_time - trained_at > max_age


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


MAX_KEY_LENGTH = 80


@dataclass(frozen=True)
class StartIds:
    """Where the run a start request asks for lives.

    ``instance_id`` is the id the run has, or gets when it is started now. ``earlier`` is the
    id an identical request may have started its run under in the previous dedupe window; that
    run is the same run only if it was created at or after ``not_before``.
    """

    instance_id: str
    earlier: str | None = None
    not_before: datetime | None = None


def keyed_instance_id(name: str, key: Any) -> str:
    """The instance id for a caller's ``idempotencyKey`` (ADF sends its pipeline run id).

    The same key always finds the same instance, so a retried call finds its run and a new
    key (a new pipeline run) starts a new one. Characters Durable does not allow in instance
    ids become ``_``.
    """
    text = _INSTANCE_ID_SAFE.sub("_", str(key).strip())[:MAX_KEY_LENGTH]
    if not text.strip("_"):
        raise BadInputError("idempotencyKey must not be empty", code="bad_request")
    return f"{name}-{text}"


def start_ids(
    name: str,
    body: Mapping[str, Any],
    key: Any,
    now: datetime,
    dedupe_window: timedelta,
) -> StartIds:
    """Where the run for a start request lives.

    With an ``idempotencyKey`` the key decides (``keyed_instance_id``). Without one, each
    request starts a new run unless the same request (same orchestration, same body) arrived
    less than ``dedupe_window`` before ``now``: its id names the request's digest and the fixed
    window ``now`` falls in, and the run of the previous window counts only when it is recent
    enough, which makes the window slide.
    """
    if key is not None:
        return StartIds(keyed_instance_id(name, key))
    request = {k: v for k, v in body.items() if k != "idempotencyKey"}
    digest = hashlib.sha256(canonical_json({"name": name, "body": request}).encode()).hexdigest()
    current = window_start(now, dedupe_window)
    previous = current - dedupe_window

    def named(start: datetime) -> str:
        return f"{name}-{digest[:24]}-{start.strftime('%Y%m%dT%H%M%S')}"

    return StartIds(named(current), earlier=named(previous), not_before=now - dedupe_window)


def window_start(moment: datetime, window: timedelta) -> datetime:
    """The start of the fixed window (aligned to the Unix epoch) that contains ``moment``."""
    seconds = int(window.total_seconds())
    if seconds <= 0:
        raise ValueError("the window must be positive")
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, tz=moment.tzinfo)


def retrain_instance_id(segment: Segment, moment: datetime, window: timedelta) -> str:
    """At most one retrain per segment per window: the id names the segment and the window."""
    start = window_start(moment, window)
    return f"retrain-{segment.id}-{start.strftime('%Y%m%dT%H%M')}"
