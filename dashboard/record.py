"""Keeping the dashboard's summary current, from the places that already see each event.

Each function takes the app's ``Services`` and one event the caller has just handled (a job
its monitor saw finish, a gated or tested model, a conditioned file, a collected scoring
run) and folds it into the summary (``dashboard.summary``). They are idempotent: the same
event twice leaves the summary as once. Callers treat a failure here as a lost dashboard
update, never as a failure of their own work: the summary is a view, not a record.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from adapters.errors import NotFoundError, TransientError
from dashboard.model import JobRun, StepRun
from dashboard.summary import (
    CONDITIONING,
    FORECAST_KEYS,
    HISTORY_WEEKS,
    MODELS,
    TARGET_SOURCE,
    ScoredSegment,
    hours_since_conditioning,
    model_point,
    models_from,
    read_actual_rows,
    record_actuals,
    record_dataset_version,
    record_job,
    record_model,
    record_scoring,
    wanted_actuals,
)

if TYPE_CHECKING:
    from adapters.registry import ModelVersion
    from adapters.summary import SummaryStore
    from composition import Services

log = logging.getLogger(__name__)


def _store(services: Services) -> SummaryStore:
    if services.summary is None:
        raise NotFoundError("no summary store is configured")
    return services.summary


def record_finished_job(services: Services, request: Mapping[str, Any]) -> None:
    """A monitored job ended: ``{"pipeline", "segment", "status", "duration_seconds",
    "job_name", "started_at", "error", "failed_step"}`` (as ``record_job_outcome`` gets it).

    Its steps come from the ``JobSteps`` port; a job whose steps cannot be read is recorded
    without them.
    """
    name = str(request.get("job_name", ""))
    if not name:
        return
    steps: tuple[StepRun, ...] = ()
    if services.job_steps is not None:
        try:
            steps = tuple(
                StepRun(s.name, s.status, s.started_at, s.ended_at, s.error)
                for s in services.job_steps.steps(name)
            )
        except (NotFoundError, TransientError) as exc:
            log.warning("dashboard: steps of job %s not read: %s", name, exc)
    from adapters.times import parse_utc

    started = parse_utc(request.get("started_at"))
    if started is None and steps:
        started = min((s.started_at for s in steps if s.started_at), default=None)
    job = JobRun(
        name=name,
        pipeline=str(request.get("pipeline", "")),
        status=str(request.get("status", "")),
        created_at=started,
        steps=steps,
        failed_step=str(request.get("failed_step", "")),
        error=str(request.get("error", "")),
    )
    duration = request.get("duration_seconds")
    record_job(
        _store(services),
        job,
        segment=str(request.get("segment", "")),
        duration_seconds=None if duration is None else float(duration),
    )


def record_gated_model(services: Services, version: ModelVersion) -> None:
    """A candidate's gate verdict and role were written to the registry: show them."""
    record_model(_store(services), model_point(version))


def record_tested_model(services: Services, version: ModelVersion, passed: bool) -> None:
    """An offline model test ended; roles are left to the gate."""
    point = replace(model_point(version, role=""), test="pass" if passed else "fail")
    record_model(_store(services), point)


def record_conditioned(
    services: Services, source: str, dataset_version: str, reject_counts: Mapping[str, int]
) -> None:
    """A raw file was conditioned or quarantined into ``dataset_version`` of ``source``.

    New shipments are also folded into the actuals of the latest forecasts.
    """
    if services.datasets is None:
        return
    entry = services.datasets.get(source, dataset_version)
    if entry is None:
        raise NotFoundError(f"dataset version {source}/{dataset_version} is not registered")
    store = _store(services)
    record_dataset_version(store, entry, reject_counts)
    if source != TARGET_SOURCE or entry.status != "conditioned":
        return
    # Only what the latest forecasts compare against is read: nothing before a first scoring.
    wanted = wanted_actuals(store.read(FORECAST_KEYS) or {})
    if wanted:
        container = services.settings.conditioned_container
        record_actuals(store, read_actual_rows(services.data_lake, entry.files, container, wanted))


def actual_rows_since(
    services: Services, since: date, pairs: Iterable[tuple[str, str]]
) -> dict[tuple[str, str, date], float]:
    """Actual shipments of ``pairs`` (store, product) from ``since`` on, from the conditioned
    versions that reach it. A later version's row replaces an earlier one for the same
    store, product and week.
    """
    rows: dict[tuple[str, str, date], float] = {}
    wanted = dict.fromkeys(pairs, since)
    if services.datasets is None or not wanted:
        return rows
    container = services.settings.conditioned_container
    for entry in services.datasets.versions(TARGET_SOURCE):
        if entry.status != "conditioned":
            continue
        if entry.period_end and entry.period_end[:10] < since.isoformat():
            continue
        rows.update(read_actual_rows(services.data_lake, entry.files, container, wanted))
    return rows


def record_scored(services: Services, scoring_date: str, scored: list[ScoredSegment]) -> None:
    """A scoring run's forecasts were collected: totals and actuals for the scoring page."""
    weeks = [
        date.fromisoformat(str(row["week_start"])[:10]) for item in scored for row in item.rows
    ]
    since = min(weeks) - timedelta(weeks=HISTORY_WEEKS) if weeks else date.max
    pairs = {(str(row["store_id"]), str(row["product_id"])) for item in scored for row in item.rows}
    actuals = actual_rows_since(services, since, pairs)
    record_scoring(_store(services), scoring_date, scored, actuals)


def report_health(services: Services, now: datetime, stale_after_days: float) -> dict[str, Any]:
    """Gauges the alert rules watch, from the summary (no registry or history scan):
    hours since data was last conditioned, and each champion's age."""
    from adapters.telemetry import record_conditioning_silence, record_model_age

    store = _store(services)
    hours = hours_since_conditioning(store.read(CONDITIONING), now)
    if hours is not None:
        record_conditioning_silence(hours)
    ages: dict[str, float] = {}
    champions = [m for m in models_from(store.read(MODELS) or {}) if m.role == "champion"]
    for model in champions:
        if model.trained_at is None:
            continue
        age = (now - model.trained_at).total_seconds() / 86400.0
        ages[model.segment] = round(age, 2)
        record_model_age(
            model.model_name, model.version, segment=model.segment, age_days=age,
            stale=age > stale_after_days,
        )  # fmt: skip
    return {"hours_since_conditioning": hours, "champion_age_days": ages}
