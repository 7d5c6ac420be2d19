"""Failed Azure ML jobs become alerts, from whichever path notices first.

Two paths see a failure: the Event Grid handler (``RunStatusChanged``) and the orchestration
that polls the job (Azure ML may emit no event at all). Both build the alert with the same id,
``job-<job name>-<status>``, so the outbox records it once and Ops gets one email; the alert
policy also deduplicates by signature (pipeline, segment, failure kind) across jobs.

Both only record: an Event Grid delivery must be answered within seconds (Event Grid gives a
webhook 30 and then redelivers), and reading the failed job (azure.ai.ml, seconds to import)
and sending the email (tens of seconds through Communication Services) do not fit. The outbox
sender, ``flush_alerts`` on the alert outbox timer, reads the job's failed step and log for
each recorded alert before it sends it.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from adapters.alerts import AlertSettings
from orchestrators.alert_content import studio_run_url
from orchestrators.alert_policy import Alert, AlertPolicy, FailureKind

if TYPE_CHECKING:
    from composition import Services
    from orchestrators.alerting import FlushReport
    from orchestrators.aml_events import AmlEvent, SendAlert


def _policy(services: Services) -> AlertPolicy:
    from orchestrators.alerting import policy_from_settings

    return policy_from_settings(AlertSettings.from_settings(services.settings))


def job_link(services: Services, job_name: str) -> str:
    """Where a person sees the job: Azure ML studio, or the local job record."""
    s = services.settings
    if s.environment == "azure" and s.aml_subscription_id:
        return studio_run_url(job_name, s.aml_subscription_id, s.aml_resource_group,
                              s.aml_workspace)  # fmt: skip
    return str(s.local_root / "aml" / "jobs" / job_name / "job.json")


def _job_details(services: Services, job_name: str) -> tuple[str, str]:
    """(log excerpt, failed step) from the job's record; empty when it cannot be read."""
    if services.pipeline_jobs is None or not job_name:
        return "", ""
    try:
        info = services.pipeline_jobs.status(job_name)
    except Exception:  # noqa: BLE001 - an alert without an excerpt beats no alert
        return "", ""
    return info.error, info.failed_step


def _record(services: Services, alert: Alert) -> dict[str, Any]:
    from orchestrators.alerting import record_alert

    assert services.alert_store is not None
    outcome = record_alert(
        alert,
        store=services.alert_store,
        now=datetime.now(UTC),
        policy=_policy(services),
        needs_details=True,
    )
    return {"alert_id": outcome.alert_id, "action": outcome.action}


def alert_for_job_failure(services: Services, request: dict[str, Any]) -> dict[str, Any]:
    """From an orchestration: ``{"pipeline", "segment", "job_name", "status", "timed_out",
    "error", "failed_step"}``. Records the alert; the outbox sender completes and sends it."""
    job_name = str(request.get("job_name", ""))
    status = str(request.get("status", "Failed"))
    kind = FailureKind.TIMED_OUT if request.get("timed_out") else FailureKind.from_status(status)
    failed_step = str(request.get("failed_step") or "")
    detail = str(request.get("error") or f"the job ended {status}")
    if failed_step:
        detail = f"step '{failed_step}' failed: {detail}"
    alert = Alert(
        id=f"job-{job_name}-{status}",
        kind=kind,
        pipeline=str(request.get("pipeline", "")),
        segment=str(request.get("segment", "")),
        occurred_at=datetime.now(UTC),
        job_name=job_name,
        link=job_link(services, job_name),
        last_status=status,
        log_excerpt=str(request.get("error", "")),
        detail=detail,
    )
    return _record(services, alert)


def alert_for_failed_run(services: Services, reaction: SendAlert, event: AmlEvent) -> str:
    """From the Event Grid handler: records the alert and returns what happened, for the log
    line. Reads no job and sends nothing (see the module docstring)."""
    alert = Alert(
        id=f"job-{reaction.run_id}-{reaction.status}",
        kind=FailureKind.from_status(reaction.status),
        pipeline=reaction.pipeline or reaction.experiment or "unknown",
        segment=reaction.segment,
        occurred_at=event.time or datetime.now(UTC),
        job_name=reaction.run_id,
        link=job_link(services, reaction.run_id),
        last_status=reaction.status,
        detail=f"the run ended {reaction.status}",
    )
    return str(_record(services, alert)["action"])


def with_job_details(services: Services, alert: Alert) -> Alert:
    """``alert`` with the failed step and the end of its error read from the job (the
    outbox sender calls this before the first attempt; see ``flush_pending``)."""
    excerpt, step = _job_details(services, alert.job_name)
    detail = alert.detail
    if step and not detail.startswith("step "):
        detail = f"step '{step}' failed: {detail}"
    return replace(alert, log_excerpt=excerpt or alert.log_excerpt, detail=detail)


def flush_alerts(services: Services) -> FlushReport | None:
    """The outbox sender: complete recorded alerts with their job's details, send them, retry
    pending ones and send a due digest; ``None`` when there was nothing to do."""
    from orchestrators.alerting import flush_pending

    assert services.alert_store is not None and services.notifier is not None
    report = flush_pending(
        store=services.alert_store,
        notifier=services.notifier,
        now=datetime.now(UTC),
        policy=_policy(services),
        complete=lambda alert: with_job_details(services, alert),
    )
    if not (report.sent or report.retrying or report.failed or report.digest_id):
        return None
    return report


def report_outbox(services: Services, now: datetime) -> tuple[int, float]:
    """Emit how many alerts wait in the outbox and the age of the oldest, in minutes (the
    "outbox backing up" alert rule watches these); returns them."""
    from adapters.telemetry import record_alert_outbox

    assert services.alert_store is not None
    pending = services.alert_store.pending()
    oldest = min((r.created_at for r in pending), default=None)
    minutes = 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds() / 60.0)
    record_alert_outbox(len(pending), minutes)
    return len(pending), minutes
