"""The promotion gate and staleness rule, as pure functions.

A candidate passes when its MAPE is at most ``max_mape`` (0.45), strictly lower than the
historical-average baseline's, and — when a champion exists — strictly lower than the
champion's on the same holdout. A NaN MAPE never passes. Whether it also beats the seasonal
naive forecast (same week last year) is recorded, not required: the case study's rule stays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, timedelta

MAX_MAPE = 0.45
STALE_AFTER_DAYS = 60


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reasons: list[str] = field(default_factory=list)
    beats_seasonal_naive: bool | None = None  # None: no seasonal-naive MAPE to compare with

    @property
    def label(self) -> str:
        return "pass" if self.passed else "fail"


def gate(
    candidate_mape: float,
    baseline_mape: float,
    champion_mape: float | None = None,
    max_mape: float = MAX_MAPE,
    seasonal_naive_mape: float | None = None,
) -> Verdict:
    reasons: list[str] = []
    if math.isnan(candidate_mape):
        return Verdict(False, ["candidate MAPE is undefined (no rows with large enough actuals)"])
    beats_naive = (
        None
        if seasonal_naive_mape is None or math.isnan(seasonal_naive_mape)
        else candidate_mape < seasonal_naive_mape
    )
    if candidate_mape > max_mape:
        reasons.append(f"MAPE {candidate_mape:.3f} above the {max_mape:.2f} bar")
    if not math.isnan(baseline_mape) and candidate_mape >= baseline_mape:
        reasons.append(f"MAPE {candidate_mape:.3f} not below baseline {baseline_mape:.3f}")
    beaten = champion_mape is not None and not math.isnan(champion_mape)
    if beaten and candidate_mape >= (champion_mape or 0.0):
        reasons.append(f"MAPE {candidate_mape:.3f} not below champion {champion_mape:.3f}")
    return Verdict(not reasons, reasons, beats_naive)


def is_stale(trained_at: date, scoring_date: date, days: int = STALE_AFTER_DAYS) -> bool:
    """True when the model was trained more than ``days`` days before ``scoring_date``."""
    return scoring_date - trained_at > timedelta(days=days)
