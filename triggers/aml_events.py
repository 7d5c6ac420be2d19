"""Event Grid handlers for Azure ML workspace events, one function per concern.

Each handler is thin: turn the binding into plain data, plan the reaction (pure), start an
orchestration or raise an alert, log one line. They are idempotent by event id — Event Grid
delivers at least once and out of order:

* orchestrations start under ids derived from the event (model + version, event id), so a
  redelivery finds the instance that already exists;
* alerts are keyed by the failed job in the alert outbox, which only records them here: the
  outbox timer reads the job and sends the email.

They return quickly (start work, never do it inline) and never fail on an event they do not
understand, on malformed data or on a model that is not the app's: that is logged and
acknowledged (Event Grid would redeliver a failure for 24 hours, to no avail). A handler
fails — and the webhook answers 5xx so Event Grid retries — only when retrying can help,
e.g. when the durable client or storage cannot be reached.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from adapters.errors import BadInputError
from adapters.events import AzureMLEventType
from orchestrators.aml_events import (
    AmlEvent,
    Ignore,
    RecordTelemetry,
    SendAlert,
    StartModelTest,
    StartRetrain,
    parse_event,
    plan_reaction,
)
from triggers.starts import start_once, start_retrain

log = logging.getLogger(__name__)
bp = df.Blueprint()

# Which event types each function subscribes to. The Bicep's Event Grid subscriptions and
# the local runtime's event router are both checked against this table. DatasetDriftDetected
# is not among them: its source (v1 dataset monitors) was retired on 2025-09-01, and drift
# comes as a RunStatusChanged with the model-monitor tag; one that still arrives is
# acknowledged with a log line.
SUBSCRIPTIONS: dict[str, tuple[str, ...]] = {
    "on_model_registered": (AzureMLEventType.MODEL_REGISTERED,),
    "on_run_status_changed": (AzureMLEventType.RUN_STATUS_CHANGED,),
    "on_run_completed": (AzureMLEventType.RUN_COMPLETED,),
}


def event_as_dict(event: func.EventGridEvent | func.CloudEvent) -> dict[str, Any]:
    """The binding object back as the wire dict the pure parser reads."""
    if isinstance(event, func.CloudEvent):
        return {
            "specversion": event.specversion,
            "id": event.id,
            "source": event.source,
            "type": event.type,
            "subject": event.subject,
            "time": event.time.isoformat() if event.time else None,
            "data": event.get_json(),
        }
    return {
        "id": event.id,
        "topic": event.topic,
        "subject": event.subject,
        "eventType": event.event_type,
        "eventTime": event.event_time.isoformat() if event.event_time else None,
        "data": event.get_json(),
    }


def _parse(event: func.EventGridEvent | func.CloudEvent) -> AmlEvent | None:
    try:
        return parse_event(event_as_dict(event))
    except BadInputError as exc:
        # Redelivering an unusable event cannot help: acknowledge it and say why.
        log.warning("event %r ignored: %s", str(getattr(event, "id", "?"))[:80], exc)
        return None


def _options() -> dict[str, Any]:
    from composition import get_services

    return get_services().settings.automation.orchestration_options()


def _model_prefix() -> str:
    from composition import get_services

    return get_services().settings.model_name_prefix


async def _react(event: AmlEvent, client: df.DurableOrchestrationClient) -> str:
    reaction = plan_reaction(event, _model_prefix())
    if isinstance(reaction, StartModelTest):
        instance = reaction.instance_id
        started = await start_once(
            client,
            "run_model_test",
            instance,
            {"model_name": reaction.model_name, "model_version": reaction.model_version,
             "options": _options()},
        )  # fmt: skip
        return f"model_test {instance} {'started' if started else 'already exists'}"
    if isinstance(reaction, StartRetrain):
        instance = f"retrain-{event.id}"
        started = await start_retrain(
            client,
            instance,
            segments=[reaction.segment] if reaction.segment else [],
            reason=reaction.reason,
            source=reaction.source,
            moment=event.time or datetime.now(UTC),
        )
        return f"retrain {instance} ({reaction.reason}) {'started' if started else 'exists'}"
    if isinstance(reaction, SendAlert):
        from composition import get_services
        from orchestrators.failure_alerts import alert_for_failed_run

        # Only recorded in the outbox (a blob write, off the loop every handler shares): the
        # outbox timer reads the job and sends the email, which would not fit in a delivery.
        outcome = await asyncio.to_thread(alert_for_failed_run, get_services(), reaction, event)
        return f"alert for run {reaction.run_id}: {outcome}"
    if isinstance(reaction, RecordTelemetry):
        return f"run {reaction.run_id} of {reaction.experiment} completed"
    assert isinstance(reaction, Ignore)
    return f"ignored: {reaction.reason}"


async def _handle(
    function: str,
    event: func.EventGridEvent | func.CloudEvent,
    client: df.DurableOrchestrationClient,
) -> None:
    parsed = _parse(event)
    if parsed is None:
        return
    if parsed.type not in SUBSCRIPTIONS[function]:
        log.info("%s: event %s of type %s is not for this handler", function, parsed.id,
                 parsed.type)  # fmt: skip
        return
    from adapters.telemetry import Correlation, span

    with span(function, kind="consumer", correlation=Correlation(event_id=parsed.id)):
        try:
            outcome = await _react(parsed, client)
        except BadInputError as exc:
            # Bad data found on the way (e.g. a registry that refuses the name): retrying
            # the same event cannot fix it.
            outcome = f"ignored: {exc}"
    log.info("%s: event %s (%r): %s", function, parsed.id, parsed.subject[:200], outcome)


@bp.event_grid_trigger(arg_name="event")
@bp.durable_client_input(client_name="client")
async def on_model_registered(
    event: func.EventGridEvent, client: df.DurableOrchestrationClient
) -> None:
    await _handle("on_model_registered", event, client)


@bp.event_grid_trigger(arg_name="event")
@bp.durable_client_input(client_name="client")
async def on_run_status_changed(
    event: func.EventGridEvent, client: df.DurableOrchestrationClient
) -> None:
    await _handle("on_run_status_changed", event, client)


@bp.event_grid_trigger(arg_name="event")
@bp.durable_client_input(client_name="client")
async def on_run_completed(
    event: func.EventGridEvent, client: df.DurableOrchestrationClient
) -> None:
    await _handle("on_run_completed", event, client)
