"""What the dashboard shows, as plain data: collected from the local state, rendered to HTML.

Everything here is a frozen value; ``dashboard.collect`` builds it from the registry, job
records and the data lake, and tests build it directly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

MEASURES = ("mape", "wape", "wmae", "rmse_zero", "rmse_all")
MEASURE_TITLES = {
    "mape": "MAPE",
    "wape": "WAPE",
    "wmae": "WMAE (holiday weeks × 5)",
    "rmse_zero": "RMSE 0 (actual = 0)",
    "rmse_all": "RMSE All",
}
# The pipelines' one MAPE definition (pipelines/src/forecasting/metrics.py, which the app may
# not import): only actuals of at least one unit count. A unit test checks the two agree.
MIN_ACTUAL = 1.0


@dataclass(frozen=True)
class ModelPoint:
    """One registered model version and its holdout metrics.

    ``metrics`` holds registry tags ``{component}_{measure}``: ``ensemble_*`` is the candidate,
    ``baseline_*`` the historical-average baseline, ``champion_*`` the champion it was
    compared with when it was trained. ``test`` is the offline model test's verdict
    (``pass``/``fail``, empty until one ran).
    """

    model_name: str
    version: str
    segment: str
    trained_at: datetime | None
    metrics: Mapping[str, float] = field(default_factory=dict)
    role: str = ""
    gate: str = ""
    test: str = ""

    def metric(self, component: str, measure: str) -> float | None:
        """The metric, or ``None`` when it is missing or undefined (NaN: e.g. no zero actuals)."""
        value = self.metrics.get(f"{component}_{measure}")
        return value if value is not None and math.isfinite(value) else None


@dataclass(frozen=True)
class StepRun:
    name: str
    status: str
    started_at: datetime | None
    ended_at: datetime | None
    error: str = ""

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return max(0.0, (self.ended_at - self.started_at).total_seconds())


@dataclass(frozen=True)
class JobRun:
    """One finished pipeline job with its steps, as the app recorded it."""

    name: str
    pipeline: str
    status: str
    created_at: datetime | None
    steps: tuple[StepRun, ...] = ()
    failed_step: str = ""
    error: str = ""

    @property
    def failed(self) -> bool:
        return self.status.lower() in ("failed", "canceled", "notresponding")


@dataclass(frozen=True)
class ConditioningRun:
    """One dataset version the conditioning service produced or quarantined."""

    source: str
    dataset_version: str
    status: str
    rows_in: int
    rows_out: int
    rows_rejected: int
    reject_counts: Mapping[str, int] = field(default_factory=dict)
    registered_at: datetime | None = None
    reason_code: str = ""


@dataclass(frozen=True)
class ForecastSeries:
    """The latest scoring run of one segment: forecast and actual totals per week."""

    segment: str
    scoring_date: str
    model_name: str
    model_version: str
    stale: bool
    forecast: Mapping[date, float]
    actual: Mapping[date, float] = field(default_factory=dict)
    rows: int = 0

    def _pairs(self) -> list[tuple[float, float]]:
        return [(self.forecast[w], a) for w, a in self.actual.items() if w in self.forecast]

    def overlap_mape(self) -> float | None:
        """MAPE of the weekly totals where a forecast exists, over the actuals of at least
        ``MIN_ACTUAL`` (the pipelines' definition)."""
        pairs = [(f, a) for f, a in self._pairs() if abs(a) >= MIN_ACTUAL]
        if not pairs:
            return None
        return sum(abs(f - a) / abs(a) for f, a in pairs) / len(pairs)

    def overlap_wape(self) -> float | None:
        """WAPE of the weekly totals where a forecast exists."""
        pairs = self._pairs()
        total = sum(abs(a) for _, a in pairs)
        return sum(abs(f - a) for f, a in pairs) / total if total else None


@dataclass(frozen=True)
class DashboardData:
    """Everything one build of the dashboard shows. ``problems`` lists what could not be read.

    ``jobs`` are the latest jobs; ``failures`` the latest failed jobs, which may be older
    than every job in ``jobs`` (empty: the failed ones among ``jobs``).
    """

    generated_at: datetime
    models: tuple[ModelPoint, ...] = ()
    jobs: tuple[JobRun, ...] = ()
    failures: tuple[JobRun, ...] = ()
    conditioning: tuple[ConditioningRun, ...] = ()
    forecasts: tuple[ForecastSeries, ...] = ()
    stale_after_days: float = 60.0
    max_mape: float = 0.45
    problems: tuple[str, ...] = ()

    def failed_jobs(self) -> list[JobRun]:
        """The latest failed jobs, newest last, each once."""
        found = {j.name: j for j in (*self.failures, *(j for j in self.jobs if j.failed))}
        return sorted(
            found.values(), key=lambda j: (j.created_at.isoformat() if j.created_at else "", j.name)
        )

    def is_empty(self) -> bool:
        return not (self.models or self.jobs or self.failures or self.conditioning
                    or self.forecasts)  # fmt: skip

    def segments(self) -> list[str]:
        return sorted({m.segment for m in self.models})

    def champions(self) -> dict[str, ModelPoint]:
        """The current champion of each segment (by role), if it has one."""
        out: dict[str, ModelPoint] = {}
        for m in sorted(self.models, key=lambda m: int(m.version) if m.version.isdigit() else 0):
            if m.role == "champion":
                out[m.segment] = m
        return out

    def age_days(self, model: ModelPoint) -> float | None:
        if model.trained_at is None:
            return None
        trained = (
            model.trained_at if model.trained_at.tzinfo else model.trained_at.replace(tzinfo=UTC)
        )
        return (self.generated_at - trained).total_seconds() / 86400.0
