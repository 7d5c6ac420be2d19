"""Activities: the orchestrations' only way to touch the world, always through the ports.

Each activity takes and returns a JSON object, gets its collaborators from the composition
root, and raises on failure (``TransientError`` for what a retry may fix; the orchestrator
retries those and nothing else). ``get_job_status`` is the one exception: a status it cannot
read right now is reported as ``Unknown`` so monitoring simply polls again.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import azure.durable_functions as df

from adapters.errors import BadInputError, ConflictError, NotFoundError, TransientError
from orchestrators.aml_events import experiment_for
from orchestrators.policies import Segment

if TYPE_CHECKING:
    from adapters.datasets import DatasetVersion
    from adapters.registry import ModelVersion
    from composition import Services

log = logging.getLogger(__name__)
bp = df.Blueprint()

PIPELINES = {"train": "pipelines/train.yml", "score": "pipelines/score.yml",
             "model_test": "pipelines/model_test.yml",
             "train_many": "pipelines/train_many.yml"}  # fmt: skip
# Pipelines that take the segment as inputs (model_test finds it from the model version).
SEGMENTED_PIPELINES = ("train", "score", "train_many")
CLAIMS_PREFIX = "_automation/retrain-claims"
CHAMPION = "champion"
CHALLENGER = "challenger"


def _services() -> Services:
    from composition import get_services

    return get_services()


def _segment_key(segment: Segment) -> str:
    """The pipelines' segment key (``region/format/velocity``)."""
    return f"{segment.region}/{segment.store_format}/{segment.velocity}"


def _usable_versions(services: Services, source: str) -> list[DatasetVersion]:
    assert services.datasets is not None
    return [v for v in services.datasets.versions(source) if v.status == "conditioned"]


def _data_inputs(services: Services) -> tuple[dict[str, str], list[str], dict[str, Any]]:
    """Pipeline data inputs for every required source, what is missing, and the versions used."""
    assert services.locator is not None
    inputs: dict[str, str] = {}
    missing: list[str] = []
    used: dict[str, Any] = {}
    for source in services.settings.automation.training_sources:
        versions = _usable_versions(services, source)
        if not versions:
            missing.append(f"{source}: no conditioned data yet")
            continue
        inputs[source] = _input_for(services, source, versions)
        used[source] = {
            "versions": [v.dataset_version for v in versions],
            "period_end": max((v.period_end or "" for v in versions), default=""),
        }
    return inputs, missing, used


def _input_for(services: Services, source: str, versions: list[DatasetVersion]) -> str:
    """The pipeline input for ``versions`` of ``source``.

    One version is named by its data asset (``azureml:<source>:<version>``), so the job's
    lineage points at exactly that data; a version conditioned before data assets were
    registered is registered now. Several versions cannot be one asset (an asset is one
    folder): they are the folder the locator prepares.
    """
    assert services.locator is not None
    if services.data_assets is None or len(versions) != 1:
        return services.locator.folder_for(source, versions)
    (version,) = versions
    try:
        return services.data_assets.get(source, version.dataset_version).reference
    except NotFoundError:
        container, _, name = version.manifest.partition("/")
        digest = hashlib.sha256(services.data_lake.read(container, name)).hexdigest()
        return services.data_assets.register(version, manifest_sha256=digest).reference


@bp.activity_trigger(input_name="request")
def check_training_inputs(request: dict[str, Any]) -> dict[str, Any]:
    """Are the week's required sources conditioned? → pipeline inputs, or what is missing."""
    services = _services()
    segments = [Segment.parse(s).id for s in request["segments"]]
    inputs, missing, used = _data_inputs(services)
    week = request.get("week")
    shipments = used.get("shipments")
    if week and shipments and shipments["period_end"] and shipments["period_end"] < week:
        missing.append(
            f"shipments: conditioned data ends {shipments['period_end']}, before the week {week}"
        )
    return {"segments": segments, "inputs": inputs, "missing": missing, "datasets": used}


@bp.activity_trigger(input_name="request")
def submit_pipeline_job(request: dict[str, Any]) -> dict[str, Any]:
    """Submit ``pipelines/<pipeline>.yml``; a segment adds its region/format/velocity inputs."""
    services = _services()
    assert services.pipeline_jobs is not None
    pipeline = request["pipeline"]
    if pipeline not in PIPELINES:
        raise BadInputError(f"unknown pipeline {pipeline!r}")
    inputs = dict(request.get("inputs") or {})
    tags = {str(k): str(v) for k, v in (request.get("tags") or {}).items()}
    tags["pipeline"] = pipeline
    if request.get("segment"):
        segment = Segment.parse(request["segment"])
        tags["segment"] = segment.id
        if pipeline in SEGMENTED_PIPELINES:
            inputs.update(
                region=segment.region, store_format=segment.store_format, velocity=segment.velocity
            )
    from adapters.telemetry import Correlation, span, trace_carrier

    correlation = Correlation(segment=tags.get("segment", ""))
    with span(f"aml.{pipeline}", kind="client", parent=request.get("trace"),
              correlation=correlation):  # fmt: skip
        tags.update(trace_carrier())  # the job carries the trace into Azure ML
        name = services.pipeline_jobs.submit(
            PIPELINES[pipeline],
            inputs,
            experiment_name=experiment_for(pipeline),
            tags=tags,
            display_name=f"{pipeline}-{request.get('segment') or 'all'}",
        )
    log.info("submitted %s job %s for %s", pipeline, name, request.get("segment") or "all")
    return {"job_name": name}


@bp.activity_trigger(input_name="request")
def get_job_status(request: dict[str, Any]) -> dict[str, Any]:
    services = _services()
    assert services.pipeline_jobs is not None
    try:
        info = services.pipeline_jobs.status(request["job_name"])
    except TransientError as exc:
        return {"status": "Unknown", "error": str(exc), "failed_step": ""}
    return {"status": info.status, "error": info.error, "failed_step": info.failed_step}


@bp.activity_trigger(input_name="request")
def cancel_pipeline_job(request: dict[str, Any]) -> dict[str, Any]:
    services = _services()
    assert services.pipeline_jobs is not None
    services.pipeline_jobs.cancel(request["job_name"])
    return {"job_name": request["job_name"], "cancel_requested": True}


def _version_view(version: ModelVersion | None, prefix: str = "ensemble_") -> dict[str, Any] | None:
    if version is None:
        return None
    metrics = version.metrics
    return {
        "model_name": version.name,
        "version": version.version,
        "segment": version.tags.get("segment", ""),
        "trained_at": version.trained_at.isoformat() if version.trained_at else None,
        "metrics": {k.removeprefix(prefix): v for k, v in metrics.items() if k.startswith(prefix)},
        "aliases": list(version.aliases),
    }


def _registered_by(services: Services, job_name: str, segment: Segment) -> ModelVersion | None:
    """The version this job's register step created for ``segment`` (its ``registered`` output).

    Asking the job, not "the newest version", keeps two trainings of one segment apart.
    """
    assert services.pipeline_jobs is not None and services.model_registry is not None
    index = services.pipeline_jobs.read_output_file(job_name, "registered", "registered.json")
    for entry in json.loads(index).get("models", []):
        if entry.get("name") == segment.model_name:
            return services.model_registry.get(segment.model_name, str(entry["version"]))
    return None


@bp.activity_trigger(input_name="request")
def read_training_result(request: dict[str, Any]) -> dict[str, Any]:
    """The candidate registered by a finished train job, with its and the baseline's metrics."""
    services = _services()
    assert services.pipeline_jobs is not None and services.model_registry is not None
    segment = Segment.parse(request["segment"])
    metrics = services.pipeline_jobs.metrics(request["job_name"])
    seg = (metrics.get("segments") or {}).get(_segment_key(segment))
    if seg is None:
        raise BadInputError(
            f"job {request['job_name']} reported no metrics for segment {segment.id} "
            "(no data for it?)"
        )
    candidate = _registered_by(services, request["job_name"], segment)
    return {
        "segment": segment.id,
        "model_name": segment.model_name,
        "model_version": candidate.version if candidate else None,
        "trained_at": candidate.trained_at.isoformat()
        if candidate and candidate.trained_at
        else None,
        "candidate": seg.get("ensemble"),
        "baseline": seg.get("baseline"),
        "seasonal_naive": seg.get("seasonal_naive"),
        "models": {k: seg.get(k) for k in ("lasso", "nn") if seg.get(k)},
        "diverged": sorted(seg.get("diverged") or {}),
        # Many models: how many partitions passed their own gate, and the worst failures.
        "partitions": seg.get("partitions"),
    }


@bp.activity_trigger(input_name="request")
def get_champion(request: dict[str, Any]) -> dict[str, Any] | None:
    services = _services()
    assert services.model_registry is not None
    segment = Segment.parse(request["segment"])
    return _version_view(services.model_registry.get_by_alias(segment.model_name, CHAMPION))


@bp.activity_trigger(input_name="request")
def get_champions(request: dict[str, Any]) -> dict[str, Any]:
    """``{segment: champion or None}`` for many segments in one call, so a scoring run of
    hundreds of segments adds one event pair to its history instead of one per segment."""
    services = _services()
    registry = services.model_registry
    assert registry is not None
    return {
        s: _version_view(registry.get_by_alias(Segment.parse(s).model_name, CHAMPION))
        for s in request["segments"]
    }


@bp.activity_trigger(input_name="request")
def apply_gate_verdict(request: dict[str, Any]) -> dict[str, Any]:
    """Record the gate's decision on the version; move the champion/challenger alias."""
    services = _services()
    registry = services.model_registry
    assert registry is not None
    name, version = request.get("model_name"), request.get("model_version")
    if not name or not version:
        raise BadInputError("no registered model version to apply the gate verdict to")
    decision = request["decision"]
    tags = {"gate": decision, "gate_reasons": "; ".join(request.get("reasons") or [])}
    beats_naive = request.get("beats_seasonal_naive")
    if beats_naive is not None:
        tags["beats_seasonal_naive"] = str(bool(beats_naive)).lower()
    registry.set_tags(name, str(version), tags)
    if decision in (CHAMPION, CHALLENGER):
        registry.set_alias(name, decision, str(version))
    from adapters.telemetry import record_model_quality

    candidate = registry.get(name, str(version))
    record_model_quality(
        name,
        str(version),
        segment=str(request.get("segment", "")),
        metrics=candidate.metrics,
        role=decision,
    )
    _update_dashboard("gated model", lambda: _record_gated(services, candidate))
    log.info("model %s:%s is %s", name, version, decision)
    return {"model_name": name, "model_version": str(version), "decision": decision}


@bp.activity_trigger(input_name="request")
def score_inputs(request: dict[str, Any]) -> dict[str, Any]:
    services = _services()
    inputs, missing, _ = _data_inputs(services)
    if missing:
        raise BadInputError("cannot score: " + "; ".join(missing))
    inputs["scoring_date"] = request["scoring_date"]
    segments = [Segment.parse(s) for s in request["segments"]]
    if len(segments) == 1:
        only = segments[0]
        inputs.update(region=only.region, store_format=only.store_format, velocity=only.velocity)
    return {"inputs": inputs}


@bp.activity_trigger(input_name="request")
def collect_forecasts(request: dict[str, Any]) -> dict[str, Any]:
    """Copy a score job's forecasts into the forecasts container, one CSV per segment."""
    import pandas as pd

    services = _services()
    assert services.pipeline_jobs is not None
    data = services.pipeline_jobs.read_output_file(
        request["job_name"], "forecasts", "forecasts.csv"
    )
    frame = pd.read_csv(io.BytesIO(data), dtype=str)
    lake, container = services.data_lake, services.settings.forecasts_container
    lake.ensure_container(container)
    result: dict[str, Any] = {}
    from dashboard.summary import ScoredSegment

    scored: list[ScoredSegment] = []
    for segment_id in request["segments"]:
        segment = Segment.parse(segment_id)
        rows = frame[frame.get("segment", pd.Series(dtype=str)) == _segment_key(segment)]
        blob = f"{request['scoring_date']}/{segment.id}.csv"
        lake.write(container, blob, rows.to_csv(index=False).encode(), content_type="text/csv")
        result[segment.id] = {"blob": f"{container}/{blob}", "rows": len(rows)}
        scored.append(ScoredSegment(segment.id, tuple(rows.fillna("").to_dict("records"))))
    from dashboard.record import record_scored

    scoring_date = str(request["scoring_date"])
    _update_dashboard("forecasts", lambda: record_scored(services, scoring_date, scored))
    return result


@bp.activity_trigger(input_name="request")
def model_test_inputs(request: dict[str, Any]) -> dict[str, Any]:
    services = _services()
    assert services.model_registry is not None
    version = services.model_registry.get(request["model_name"], str(request["model_version"]))
    inputs, missing, _ = _data_inputs(services)
    if missing:
        raise BadInputError("cannot test the model: " + "; ".join(missing))
    inputs.update(model_name=version.name, model_version=version.version)
    raw = version.tags.get("segment", "")
    segment = Segment.parse(raw.replace("/", "-")).id if raw else ""
    return {"inputs": inputs, "segment": segment}


@bp.activity_trigger(input_name="request")
def read_model_test_verdict(request: dict[str, Any]) -> dict[str, Any]:
    services = _services()
    assert services.pipeline_jobs is not None and services.model_registry is not None
    verdict = services.pipeline_jobs.metrics(request["job_name"])
    version = services.model_registry.get(request["model_name"], str(request["model_version"]))
    from dashboard.record import record_tested_model

    passed = bool(verdict.get("passed"))
    _update_dashboard("model test", lambda: record_tested_model(services, version, passed))
    return {
        "passed": bool(verdict.get("passed")),
        "reasons": verdict.get("reasons") or [],
        "mape": verdict.get("model", {}).get("mape") if isinstance(verdict.get("model"), dict)
        else version.tags.get("test_mape"),
        "tags": {k: v for k, v in version.tags.items() if k.startswith("test_")},
    }  # fmt: skip


@bp.activity_trigger(input_name="request")
def list_champion_segments(request: dict[str, Any]) -> list[str]:
    """Segments of the covered regions (``covered_regions``) that have a champion (what a
    blanket retrain covers)."""
    from orchestrators.regions import covered_regions

    services = _services()
    assert services.model_registry is not None
    segments = Segment.for_regions(covered_regions(services))
    return [s.id for s in segments if services.model_registry.get_by_alias(s.model_name, CHAMPION)]


@bp.activity_trigger(input_name="request")
def claim_retrain_slot(request: dict[str, Any]) -> bool:
    """First claim of (segment, window) wins; later ones in the same window are debounced."""
    services = _services()
    lake, container = services.data_lake, services.settings.conditioned_container
    segment = Segment.parse(request["segment"])
    window = str(request["window_start"]).replace(":", "").replace("+", "Z")
    try:
        lake.write(
            container,
            f"{CLAIMS_PREFIX}/{segment.id}/{window}.json",
            json.dumps(request, sort_keys=True).encode(),
            if_absent=True,
            content_type="application/json",
        )
    except ConflictError:
        return False
    return True


@bp.activity_trigger(input_name="request")
def send_job_failure_alert(request: dict[str, Any]) -> dict[str, Any]:
    """Record the alert that a job failed (deduplicated with the Event Grid path by id and
    signature); the outbox timer completes and sends it. The name stays what in-flight
    orchestrations' histories call."""
    from orchestrators.failure_alerts import alert_for_job_failure

    return alert_for_job_failure(_services(), request)


@bp.activity_trigger(input_name="request")
def record_job_outcome(request: dict[str, Any]) -> dict[str, Any]:
    """Job duration and outcome as telemetry (a no-op without Application Insights), and the
    job with its steps in the dashboard's summary."""
    from adapters.telemetry import record_job
    from dashboard.record import record_finished_job

    record_job(
        str(request["pipeline"]),
        status=str(request["status"]),
        duration_seconds=float(request["duration_seconds"]),
        segment=str(request.get("segment", "")),
        job_name=str(request.get("job_name", "")),
        failed_step=str(request.get("failed_step", "")),
        error=str(request.get("error", "")),
    )
    services = _services()
    summarised = _update_dashboard("job", lambda: record_finished_job(services, request))
    return {"recorded": True, "summarised": summarised}


def _record_gated(services: Services, version: ModelVersion) -> None:
    from dashboard.record import record_gated_model

    record_gated_model(services, version)


def _update_dashboard(what: str, update: Callable[[], None]) -> bool:
    """Run a dashboard summary update; its failure is logged, never the caller's failure.

    The summary is a view of what the activity did: losing one update leaves a page behind,
    failing the activity would redo (or abandon) the work itself.
    """
    try:
        update()
    # Storage and SDK errors of every kind end here on purpose (see above).
    except Exception as exc:  # noqa: BLE001
        log.warning("dashboard summary not updated (%s): %s", what, exc)
        return False
    return True
