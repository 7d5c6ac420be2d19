"""A small, realistic ``DashboardData``: two segments, a stale and a fresh champion, a failed
job, rejects from two sources and one scoring run with overlapping actuals."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from dashboard.model import (
    ConditioningRun,
    DashboardData,
    ForecastSeries,
    JobRun,
    ModelPoint,
    StepRun,
)

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def _model(segment: str, version: int, days_ago: float, mape: float, role: str = "") -> ModelPoint:
    name = "forecast-" + segment.replace("/", "-")
    return ModelPoint(
        model_name=name,
        version=str(version),
        segment=segment,
        trained_at=NOW - timedelta(days=days_ago),
        metrics={
            "ensemble_mape": mape,
            "baseline_mape": 0.62,
            "seasonal_naive_mape": 0.41,
            "ensemble_rmse_all": 8.0 * mape,
            "baseline_rmse_all": 9.5,
            "ensemble_rmse_zero": float("nan"),
            **({"champion_mape": mape + 0.05} if version > 1 else {}),
        },
        role=role,
        gate="pass" if mape <= 0.45 else "fail",
    )


def _job(name: str, start: datetime, failed: bool) -> JobRun:
    steps = []
    t = start
    for step, seconds in (("prep", 4.0), ("train", 40.0), ("evaluate", 6.0), ("register", 3.0)):
        status = "Completed"
        if failed and step == "evaluate":
            status = "Failed"
        steps.append(StepRun(step, status, t, t + timedelta(seconds=seconds)))
        t += timedelta(seconds=seconds)
        if status == "Failed":
            break
    return JobRun(
        name=name,
        pipeline="train",
        status="Failed" if failed else "Completed",
        created_at=start,
        steps=tuple(steps),
        failed_step="evaluate" if failed else "",
        error="evaluate exited with code 1" if failed else "",
    )


def sample_data() -> DashboardData:
    weeks = [date(2024, 5, 6) + timedelta(weeks=i) for i in range(6)]
    return DashboardData(
        generated_at=NOW,
        models=(
            _model("north/large/fast", 1, 120.0, 0.31),
            _model("north/large/fast", 2, 90.0, 0.24, role="champion"),
            _model("south/small/slow", 1, 20.0, 0.52),
            _model("south/small/slow", 2, 10.0, 0.39, role="champion"),
        ),
        jobs=(
            _job("train_aaa", NOW - timedelta(days=2), failed=False),
            _job("train_bbb", NOW - timedelta(days=1), failed=True),
        ),
        conditioning=(
            ConditioningRun(
                "shipments",
                "v1",
                "conditioned",
                1000,
                970,
                30,
                {"bad_date": 18, "negative_quantity": 12},
                NOW,
            ),
            ConditioningRun("weather", "v1", "conditioned", 500, 495, 5, {"bad_date": 5}, NOW),
            ConditioningRun(
                "returns", "v9", "quarantined", 40, 0, 40, {}, NOW, reason_code="unknown_source"
            ),
        ),
        forecasts=(
            ForecastSeries(
                segment="north-large-fast",
                scoring_date="2024-05-20",
                model_name="forecast-north-large-fast",
                model_version="2",
                stale=True,
                forecast={weeks[3]: 110.0, weeks[4]: 90.0, weeks[5]: 100.0},
                actual={weeks[0]: 95.0, weeks[1]: 105.0, weeks[2]: 99.0, weeks[3]: 100.0},
                rows=3,
            ),
        ),
    )
