"""Rendering the dashboard pages from plain data: what a reader sees on each page."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from dashboard.model import DashboardData, ForecastSeries
from dashboard.pages import PAGES, render_dashboard
from tests.unit.dashboard.sample import NOW, sample_data


@pytest.fixture(scope="module")
def pages() -> dict[str, str]:
    return render_dashboard(sample_data())


def charts(html: str) -> dict[str, str]:
    return dict(re.findall(r'<svg [^>]*data-chart="([^"]+)"[^>]*>(.*?)</svg>', html, re.S))


def test_every_page_is_self_contained_html_linking_to_the_others(pages: dict[str, str]) -> None:
    assert set(pages) == set(PAGES)
    for name, html in pages.items():
        assert html.startswith("<!DOCTYPE html>")
        assert "<script" not in html
        # no network: the only URL is the SVG namespace
        assert set(re.findall(r"https?://[^\s\"'<>]+", html)) <= {"http://www.w3.org/2000/svg"}
        for other in PAGES:
            assert f'href="{other}.html"' in html
        assert f'href="{name}.html" class=current' in html
        assert "nan" not in re.sub(r"<[^>]+>", " ", html).split()


def test_training_plots_each_measure_per_segment_against_baseline_and_champion(
    pages: dict[str, str],
) -> None:
    found = charts(pages["training"])
    for segment in ("north/large/fast", "south/small/slow"):
        for measure in ("mape", "rmse_zero", "rmse_all"):
            assert f"training-{segment}-{measure}" in found
    mape = found["training-north/large/fast-mape"]
    # two versions → two candidate points and two baseline points, one champion point (v2)
    assert len(re.findall(r"<title>candidate ", mape)) == 2
    assert len(re.findall(r"<title>baseline ", mape)) == 2
    # the second baseline, seasonal naive, sits next to the historical average
    assert len(re.findall(r"<title>seasonal naive ", mape)) == 2
    assert len(re.findall(r"<title>champion ", mape)) == 1
    assert "MAPE bar: 0.45" in mape
    # RMSE 0 is undefined here (no zero actuals): the chart says so rather than plotting NaN
    assert "no rows with actual = 0" in found["training-north/large/fast-rmse_zero"]
    assert "<circle" not in found["training-north/large/fast-rmse_zero"]
    # the table shows the MAPE reduction against the baseline: 1 - 0.24 / 0.62 = 61%
    assert "61%" in pages["training"]
    assert "seasonal naive MAPE" in pages["training"]
    assert ">0.410<" in pages["training"]


def test_monitoring_marks_stale_champions_and_shows_rejects_and_failed_steps(
    pages: dict[str, str],
) -> None:
    found = charts(pages["monitoring"])
    age = found["model-age"]
    assert "forecast-north-large-fast v2: 90.0 days" in age
    assert "90 d STALE" in age and "10 d<" in age
    assert "stale after 60 days" in age
    rejects = found["rejects"]
    assert "shipments: 18 rows bad_date" in rejects
    assert "shipments: 12 rows negative_quantity" in rejects
    assert "returns: 40 rows unknown_source" in rejects  # whole file quarantined
    steps = found["pipeline-steps"]
    assert "train_bbb evaluate: 6.0 s (Failed)" in steps
    assert 'fill="#dc2626"><title>train_bbb evaluate' in steps
    assert "Failed at evaluate" in steps
    assert "evaluate exited with code 1" in pages["monitoring"]


def test_scoring_plots_forecast_against_actuals_and_scores_the_overlap(
    pages: dict[str, str],
) -> None:
    chart = charts(pages["scoring"])["scoring-north-large-fast"]
    assert chart.count("<polyline") == 2
    assert len(re.findall(r"<title>actual ", chart)) == 4
    assert len(re.findall(r"<title>forecast ", chart)) == 3
    assert "(stale model)" in chart
    # one overlapping week: |110 - 100| / 100
    assert "0.100" in pages["scoring"]
    assert "scoring date 2024-05-20" in pages["scoring"]


def test_overview_counts_what_needs_attention(pages: dict[str, str]) -> None:
    text = re.sub(r"<[^>]+>", "|", pages["index"])
    assert "|1|" in text and "stale champions (&gt; 60 days)" in pages["index"]
    assert "1 / 2" in text  # failed jobs
    assert "75|" in text and "rows rejected of 1,540" in pages["index"]


def test_empty_state_renders_every_page_with_explanations() -> None:
    data = DashboardData(generated_at=NOW, problems=("data lake: not configured",))
    pages = render_dashboard(data)
    assert "No model versions in the registry yet." in pages["training"]
    assert "no champion models yet" in pages["monitoring"]
    assert "No scoring run has written forecasts yet." in pages["scoring"]
    assert all("data lake: not configured" in html for html in pages.values())


def test_text_from_the_data_is_escaped() -> None:
    data = sample_data()
    hostile = replace(data.jobs[1], error="<img src=x onerror=alert(1)>")
    pages = render_dashboard(replace(data, jobs=(data.jobs[0], hostile)))
    assert "<img" not in pages["monitoring"]
    assert "&lt;img src=x" in pages["monitoring"]


def test_overlap_mape_ignores_weeks_without_both_values_or_below_one_unit() -> None:
    from datetime import date

    w = [date(2024, 1, 1), date(2024, 1, 8), date(2024, 1, 15)]
    series = ForecastSeries(
        "s", "2024-01-01", "m", "1", False,
        forecast={w[0]: 50.0, w[1]: 10.0, w[2]: 30.0},
        actual={w[0]: 40.0, w[1]: 0.0},
    )  # fmt: skip
    assert series.overlap_mape() == pytest.approx(0.25)
    assert replace(series, actual={}).overlap_mape() is None
