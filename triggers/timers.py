"""Timers: the weekly retrain, the daily staleness check, the drift check, the alert outbox.

Schedules are app settings (``%NAME%``), so operators change them without a deployment.
Every start is idempotent: instance ids name the week, the day or the dataset version.
The checks read storage and registries, so the async timers run them in a thread: the worker
runs every async function on one event loop, and a blocked loop stalls all of them.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import azure.durable_functions as df
import azure.functions as func

from orchestrators.data_arrival import week_of
from orchestrators.policies import Segment
from triggers.starts import start_once, start_retrain

if TYPE_CHECKING:
    from composition import Services

log = logging.getLogger(__name__)
bp = df.Blueprint()


@bp.timer_trigger(arg_name="timer", schedule="%MLOPS_WEEKLY_RETRAIN_SCHEDULE%")
@bp.durable_client_input(client_name="client")
async def on_weekly_retrain_timer(
    timer: func.TimerRequest, client: df.DurableOrchestrationClient
) -> None:
    from composition import get_services
    from orchestrators.regions import covered_regions

    services = get_services()
    settings = services.settings
    # MLOPS_REGIONS, or every region with conditioned data: that reads the lake, off the loop.
    regions = await asyncio.to_thread(covered_regions, services)
    if not regions:
        log.warning(
            "weekly retrain skipped: MLOPS_REGIONS names no region and no conditioned store "
            "master names one yet"
        )
        return
    week = week_of(datetime.now(UTC).date() - timedelta(days=7)).isoformat()
    instance = f"train-weekly-{week}"
    started = await start_once(
        client,
        "run_train",
        instance,
        {"segments": [s.id for s in Segment.for_regions(regions)], "week": week, "score": True,
         "options": settings.automation.orchestration_options()},
    )  # fmt: skip
    log.info("weekly retrain %s %s", instance, "started" if started else "already exists")


@bp.timer_trigger(arg_name="timer", schedule="%MLOPS_STALENESS_SCHEDULE%")
@bp.durable_client_input(client_name="client")
async def on_daily_staleness_timer(
    timer: func.TimerRequest, client: df.DurableOrchestrationClient
) -> None:
    from composition import get_services
    from orchestrators.maintenance import stale_champions

    services = get_services()
    now = datetime.now(UTC)
    # Registry reads (MLflow or Azure ML) block: keep them off the worker's event loop.
    stale = await asyncio.to_thread(stale_champions, services, now)
    if not stale:
        log.info("staleness check: no stale champions")
        return
    instance = f"retrain-stale-{now.date().isoformat()}"
    started = await start_retrain(
        client,
        instance,
        segments=[m.segment for m in stale],
        reason="stale",
        source="staleness check",
        moment=now,
    )
    log.info(
        "staleness check: %d stale (%s); retrain %s %s",
        len(stale),
        ", ".join(f"{m.model_name}:{m.version}" for m in stale),
        instance,
        "started" if started else "exists",
    )


@bp.timer_trigger(arg_name="timer", schedule="%MLOPS_DRIFT_SCHEDULE%")
@bp.durable_client_input(client_name="client")
async def on_drift_check_timer(
    timer: func.TimerRequest, client: df.DurableOrchestrationClient
) -> None:
    from composition import get_services
    from orchestrators.maintenance import check_drift

    services = get_services()
    now = datetime.now(UTC)
    # Both read storage (the drift check every conditioned version, with pandas): never on
    # the worker's event loop.
    await asyncio.to_thread(_report_health, services, now)
    findings = await asyncio.to_thread(check_drift, services)
    for finding in findings:
        worst = finding["features"][0] if finding["features"] else None
        log.info(
            "drift check %s/%s: %s",
            finding["source"],
            finding["dataset_version"],
            f"worst PSI {worst['feature']}={worst['psi']}" if worst else "first version",
        )
        if not finding["drifted"]:
            continue
        instance = f"retrain-drift-{finding['source']}-{finding['dataset_version']}"
        await start_retrain(
            client,
            instance,
            segments=[],
            reason="drift",
            source=f"{finding['source']} PSI",
            moment=now,
        )


@bp.timer_trigger(arg_name="timer", schedule="%MLOPS_ALERT_FLUSH_SCHEDULE%")
def on_alert_outbox_timer(timer: func.TimerRequest) -> None:
    from composition import get_services
    from orchestrators.failure_alerts import flush_alerts, report_outbox

    services = get_services()
    report = flush_alerts(services)
    if report:
        log.info("alert outbox: %s", report)
    report_outbox(services, datetime.now(UTC))


def _report_health(services: Services, now: datetime) -> None:
    """Hourly gauges for the alert rules (time since data arrived, champion ages); a
    failure only logs, so the drift check still runs."""
    from dashboard.record import report_health

    try:
        health = report_health(services, now, services.settings.automation.stale_after_days)
    # Storage and SDK errors of every kind end here on purpose (see above).
    except Exception as exc:  # noqa: BLE001
        log.warning("health report not sent: %s", exc)
        return
    log.info("health report: %s", health)
