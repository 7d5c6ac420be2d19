from __future__ import annotations

import math
from datetime import date

import pytest
from forecasting import gate, metrics


def test_mape_counts_the_rows_of_at_least_one_unit_and_only_those() -> None:
    assert metrics.MIN_ACTUAL == 1.0
    # 0 and 0.5 are left out whatever was forecast; -4 (a net return) counts by its size
    value = metrics.mape([100, 200, 0, 0.5, -4], [110, 180, 50, 9, -2])
    assert value == pytest.approx((0.1 + 0.1 + 0.5) / 3)
    assert math.isnan(metrics.mape([0, 0.2], [1, 2]))
    assert list(metrics.mape_rows([0.99, 1.0, -1.0])) == [False, True, True]


def test_rmse_zero_only_looks_at_zero_actuals() -> None:
    assert metrics.rmse_zero([0, 0, 10], [3, 4, 0]) == pytest.approx(math.sqrt(12.5))
    assert math.isnan(metrics.rmse_zero([1, 2], [0, 0]))


def test_rmse_all_and_holiday_weighted_mae() -> None:
    assert metrics.rmse_all([1, 2, 3], [1, 2, 6]) == pytest.approx(math.sqrt(3))
    # holiday row error 10 weighted 5, normal row error 2: (50 + 2) / 6
    assert metrics.wmae([10, 10], [20, 12], [True, False]) == pytest.approx(52 / 6)


def test_wape_weighs_errors_by_volume_and_is_nan_without_volume() -> None:
    # errors 2 + 0 + 3 over actuals 0 + 10 + 10: defined even with a zero actual
    assert metrics.wape([0, 10, 10], [2, 10, 7]) == pytest.approx(0.25)
    assert math.isnan(metrics.wape([0, 0], [1, 1]))
    summary = metrics.summarize([0, 10, 10], [2, 10, 7])
    assert set(summary) == {*metrics.MEASURES, "rows"}


def test_summary_weighs_holiday_weeks_five_times_in_wmae() -> None:
    summary = metrics.summarize([10, 10], [20, 12], holiday=[True, False])
    assert summary["wmae"] == pytest.approx(52 / 6)
    assert metrics.summarize([10, 10], [20, 12])["wmae"] == pytest.approx(6.0)


def test_mismatched_lengths_are_rejected() -> None:
    with pytest.raises(ValueError, match="actual"):
        metrics.mape([1, 2], [1])


@pytest.mark.parametrize(
    ("candidate", "baseline", "champion", "passed"),
    [
        (0.30, 0.50, None, True),
        (0.30, 0.50, 0.35, True),
        (0.30, 0.50, 0.25, False),  # worse than the champion
        (0.46, 0.60, None, False),  # above the bar
        (0.40, 0.40, None, False),  # not better than the baseline
        (math.nan, 0.5, None, False),
    ],
)
def test_gate(candidate: float, baseline: float, champion: float | None, passed: bool) -> None:
    verdict = gate.gate(candidate, baseline, champion)
    assert verdict.passed is passed
    assert bool(verdict.reasons) is not passed


def test_gate_records_beating_seasonal_naive_but_does_not_require_it() -> None:
    verdict = gate.gate(0.30, 0.50, None, seasonal_naive_mape=0.25)
    assert verdict.passed and verdict.beats_seasonal_naive is False
    assert gate.gate(0.30, 0.50, None, seasonal_naive_mape=0.35).beats_seasonal_naive is True
    assert gate.gate(0.30, 0.50, None, seasonal_naive_mape=math.nan).beats_seasonal_naive is None
    assert gate.gate(0.30, 0.50).beats_seasonal_naive is None


def test_stale_after_sixty_days() -> None:
    assert not gate.is_stale(date(2024, 1, 1), date(2024, 3, 1))  # 60 days
    assert gate.is_stale(date(2024, 1, 1), date(2024, 3, 2))  # 61 days


def test_the_dashboard_measures_forecasts_with_the_pipelines_definition() -> None:
    """The app may not import pipeline code, so the dashboard restates the MAPE row filter:
    on the same weekly totals both must give the same figures."""
    from dataclasses import replace

    from dashboard.model import MIN_ACTUAL, ForecastSeries

    weeks = [date(2024, 1, 1) + (date(2024, 1, 8) - date(2024, 1, 1)) * k for k in range(5)]
    actual = [40.0, 0.0, 0.5, -3.0, 12.0]
    forecast = [50.0, 10.0, 2.0, -1.0, 12.0]
    series = ForecastSeries("s", "2024-01-01", "m", "1", False,
                            forecast=dict(zip(weeks, forecast, strict=True)),
                            actual=dict(zip(weeks, actual, strict=True)))  # fmt: skip
    assert MIN_ACTUAL == metrics.MIN_ACTUAL
    assert series.overlap_mape() == pytest.approx(metrics.mape(actual, forecast))
    assert series.overlap_wape() == pytest.approx(metrics.wape(actual, forecast))
    assert replace(series, actual={weeks[1]: 0.0}).overlap_mape() is None
