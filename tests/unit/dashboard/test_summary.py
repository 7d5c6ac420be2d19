"""The dashboard's summary: folding events in is idempotent, bounded, and what pages show."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date, timedelta
from typing import Any

import pytest

from adapters.datasets import DatasetVersion
from adapters.errors import TransientError
from adapters.registry import ModelVersion
from adapters.summary import InMemorySummaryStore
from dashboard.model import JobRun, ModelPoint
from dashboard.pages import render_page
from dashboard.summary import (
    FORECASTS,
    KEEP_FAILURES,
    KEEP_JOBS,
    KEEP_VERSIONS,
    MODELS,
    ScoredSegment,
    backfill,
    fold_actuals,
    fold_conditioning,
    fold_job,
    fold_model,
    hours_since_conditioning,
    job_entry,
    load_dashboard,
    model_point,
    models_from,
    record_actuals,
    record_dataset_version,
    record_job,
    record_model,
    record_scoring,
)
from tests.unit.dashboard.sample import NOW, _job, _model, sample_data


def _point(segment: str, version: int, role: str = "", days_ago: float = 10) -> ModelPoint:
    return replace(_model(segment, version, days_ago, 0.3), role=role)


def test_folding_the_same_model_twice_changes_nothing() -> None:
    once = fold_model({}, _point("n/l/f", 1, "champion"))
    twice = fold_model(json.loads(json.dumps(once)), _point("n/l/f", 1, "champion"))
    assert once == twice
    assert [m.version for m in models_from(twice)] == ["1"]


def test_a_new_champion_takes_the_role_and_empty_fields_never_erase() -> None:
    doc = fold_model({}, _point("n/l/f", 1, "champion"))
    doc = fold_model(doc, _point("n/l/f", 2, "champion"))
    doc = fold_model(doc, replace(_point("n/l/f", 1), test="pass", gate=""))
    roles = {m.version: (m.role, m.gate, m.test) for m in models_from(doc)}
    assert roles == {"1": ("", "pass", "pass"), "2": ("champion", "pass", "")}


def test_each_segment_keeps_its_newest_versions_and_its_champion() -> None:
    doc = fold_model({}, _point("n/l/f", 1, "champion"))
    for version in range(2, KEEP_VERSIONS + 40):
        doc = fold_model(doc, _point("n/l/f", version, "challenger"))
    versions = [int(m.version) for m in models_from(doc)]
    assert len(versions) == KEEP_VERSIONS + 1
    assert 1 in versions and max(versions) == KEEP_VERSIONS + 39
    assert [m.version for m in models_from(doc) if m.role == "challenger"] == [
        str(KEEP_VERSIONS + 39)
    ]


def test_model_point_reads_role_gate_and_test_from_the_registry_version() -> None:
    version = ModelVersion(
        "forecast-n-l-f", "3",
        tags={"segment": "n/l/f", "gate": "champion", "test_passed": "True",
              "trained_at": "2024-05-01T00:00:00Z", "ensemble_mape": "0.2",
              "ensemble_rmse_zero": "nan"},
        aliases=("champion",),
    )  # fmt: skip
    point = model_point(version)
    assert (point.role, point.gate, point.test, point.segment) == (
        "champion", "champion", "pass", "n/l/f",
    )  # fmt: skip
    assert point.metrics == {"ensemble_mape": 0.2}
    assert model_point(version, role="").role == ""
    assert point.min_actual is None and point.mape_min_actual == 1.0  # not recorded: 1 unit


def test_the_mape_row_filter_a_version_was_gated_with_is_kept_and_never_erased() -> None:
    tags = {"segment": "n/l/f", "min_actual": "100", "trained_at": "2024-05-01T00:00:00Z"}
    version = ModelVersion("forecast-n-l-f", "4", tags=tags)
    doc = fold_model({}, model_point(version))
    (point,) = models_from(doc)
    assert point.min_actual == 100.0 and point.mape_min_actual == 100.0
    # A later event about the version without the tag (a role change) keeps what was known.
    doc = fold_model(doc, replace(point, min_actual=None, role="champion"))
    assert models_from(doc)[0].min_actual == 100.0
    assert model_point(replace(version, tags={"min_actual": "-3"})).min_actual is None


def test_jobs_keep_the_latest_and_failures_outlive_them() -> None:
    doc: dict[str, Any] = {}
    start = NOW - timedelta(days=30)
    for i in range(KEEP_JOBS * 2):
        failed = i % 10 == 0
        job = _job(f"train_{i:03d}", start + timedelta(hours=i), failed)
        doc = fold_job(doc, job_entry(job))
        doc = fold_job(doc, job_entry(job))  # an activity retry records it again
    assert len(doc["recent"]) == KEEP_JOBS
    assert min(doc["recent"]) == f"train_{KEEP_JOBS:03d}"
    assert len(doc["failures"]) == min(KEEP_FAILURES, 10)
    assert "train_000" in doc["failures"], "a failure older than every recent job stays listed"


def test_conditioning_counts_each_version_once_and_tracks_the_last_usable_drop() -> None:
    entry = {
        "source": "shipments", "dataset_version": "v1", "status": "conditioned",
        "rows_in": 10, "rows_out": 8, "rows_rejected": 2, "reject_counts": {"bad_date": 2},
        "registered_at": "2024-06-01T10:00:00+00:00", "reason_code": "",
    }  # fmt: skip
    doc = fold_conditioning(fold_conditioning({}, entry), entry)
    doc = fold_conditioning(
        doc, {**entry, "dataset_version": "q1", "status": "quarantined",
              "registered_at": "2024-06-01T11:00:00+00:00"},
    )  # fmt: skip
    assert sorted(doc["sources"]["shipments"]) == ["q1", "v1"]
    assert doc["last_conditioned_at"] == "2024-06-01T10:00:00+00:00"
    assert hours_since_conditioning(doc, NOW) == pytest.approx(2.0)
    assert hours_since_conditioning({}, NOW) is None


def _rows(segment: str, store: str, product: str, weeks: list[date]) -> ScoredSegment:
    return ScoredSegment(
        segment,
        tuple(
            {"store_id": store, "product_id": product, "week_start": w.isoformat(),
             "forecast": "10", "model_name": f"forecast-{segment}", "model_version": "4",
             "stale": "False"}
            for w in weeks
        ),
    )  # fmt: skip


def test_forecasts_take_history_at_scoring_and_later_actuals_replace_not_add() -> None:
    store = InMemorySummaryStore()
    first = date(2024, 6, 3)
    weeks = [first + timedelta(weeks=i) for i in range(3)]
    history = {("1", "A", first - timedelta(weeks=1)): 7.0, ("2", "B", first): 99.0}
    record_scoring(store, "2024-06-03", [_rows("n-l-f", "1", "A", weeks)], history)
    series = load_dashboard(store, now=NOW).forecasts
    assert len(series) == 1 and series[0].forecast[first] == 10.0
    assert series[0].actual == {first - timedelta(weeks=1): 7.0}  # store 2 is not this segment's

    assert record_actuals(
        store, {("1", "A", first): 12.0, ("1", "A", first - timedelta(weeks=9)): 1.0}
    )
    assert record_actuals(store, {("1", "A", first): 13.0})  # a redelivered week replaces
    actual = load_dashboard(store, now=NOW).forecasts[0].actual
    assert actual == {first - timedelta(weeks=1): 7.0, first: 13.0}
    assert load_dashboard(store, now=NOW).forecasts[0].overlap_mape() == pytest.approx(3 / 13)

    # a later scoring run replaces the page; an earlier one arriving late does not
    record_scoring(store, "2024-06-10", [_rows("s-s-s", "2", "B", weeks[1:])], {})
    record_scoring(store, "2024-06-03", [_rows("n-l-f", "1", "A", weeks)], history)
    assert [f.segment for f in load_dashboard(store, now=NOW).forecasts] == ["s-s-s"]


def test_actuals_without_a_scoring_run_are_ignored() -> None:
    store = InMemorySummaryStore()
    assert record_actuals(store, {("1", "A", date(2024, 6, 3)): 1.0}) is False
    assert fold_actuals({}, {("1", "A", date(2024, 6, 3)): 1.0}) == {}


def test_a_summary_recorded_event_by_event_renders_like_the_sample() -> None:
    store = InMemorySummaryStore()
    data = sample_data()
    for model in data.models:
        record_model(store, model)
    for job in data.jobs:
        record_job(store, job)
    for run in data.conditioning:
        record_dataset_version(
            store,
            DatasetVersion(
                source=run.source, dataset_version=run.dataset_version, status=run.status,
                input_name="x", input_etag=None, input_sha256="", manifest="",
                rows_in=run.rows_in, rows_out=run.rows_out, rows_rejected=run.rows_rejected,
                registered_at=run.registered_at.isoformat() if run.registered_at else "",
                reason_code=run.reason_code,
            ),
            run.reject_counts,
        )  # fmt: skip
    loaded = load_dashboard(store, now=NOW)
    assert sorted((m.segment, m.version, m.role) for m in loaded.models) == sorted(
        (m.segment, m.version, m.role) for m in data.models
    )
    assert [j.name for j in loaded.jobs] == [j.name for j in data.jobs]
    assert [j.name for j in loaded.failed_jobs()] == [j.name for j in data.jobs if j.failed]
    assert sum(r.rows_rejected for r in loaded.conditioning) == sum(
        r.rows_rejected for r in data.conditioning
    )
    assert loaded.problems == ()
    monitoring = render_page(loaded, "monitoring")
    assert 'data-chart="model-age"' in monitoring and "STALE" in monitoring


def test_backfill_folds_a_full_scan_once_however_often_it_runs() -> None:
    store = InMemorySummaryStore()
    data = sample_data()
    backfill(store, data)
    first = store.read(MODELS), store.read(FORECASTS)
    backfill(store, data)
    assert (store.read(MODELS), store.read(FORECASTS)) == first
    loaded = load_dashboard(store, now=NOW)
    assert len(loaded.forecasts) == len(data.forecasts)
    assert loaded.forecasts[0].actual == data.forecasts[0].actual


def test_an_empty_summary_renders_every_page_saying_so() -> None:
    data = load_dashboard(InMemorySummaryStore(), now=NOW)
    assert data.is_empty() and data.problems == ()
    assert "No data recorded yet" in render_page(data, "index")
    assert "No model versions in the registry yet" in render_page(data, "training")
    monitoring = render_page(data, "monitoring")
    for message in ("no champion models yet", "No conditioning runs recorded",
                    "no pipeline jobs recorded", "No failed jobs"):  # fmt: skip
        assert message in monitoring
    assert "No scoring run has written forecasts yet" in render_page(data, "scoring")


class _Unreadable(InMemorySummaryStore):
    def read(self, name: str) -> dict[str, Any] | None:
        if name == "jobs":
            raise TransientError("storage answered 503 for blob ops/dashboard/jobs.json")
        return super().read(name)


def test_an_unreadable_document_empties_its_part_and_says_why() -> None:
    store = _Unreadable()
    record_model(store, _point("n/l/f", 1, "champion"))
    data = load_dashboard(store, now=NOW)
    assert len(data.models) == 1 and data.jobs == ()
    assert data.problems == (
        "summary jobs: transient: storage answered 503 for blob ops/dashboard/jobs.json",
    )
    assert "Some data could not be read" in render_page(data, "monitoring")


def test_a_job_run_records_with_segment_and_duration() -> None:
    store = InMemorySummaryStore()
    job = _job("score_1", NOW, failed=True)
    record_job(store, replace(job, pipeline="score"), segment="n-l-f", duration_seconds=61.0)
    held = (store.read("jobs") or {})["failures"]["score_1"]
    assert (held["segment"], held["duration_seconds"], held["pipeline"]) == ("n-l-f", 61.0, "score")
    assert isinstance(load_dashboard(store, now=NOW).jobs[0], JobRun)
