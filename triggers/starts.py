"""Starting orchestrations from triggers: once per instance id, whatever delivers twice."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import azure.durable_functions as df

from composition import get_services
from orchestrators.requests import retrain_input


async def start_once(
    client: df.DurableOrchestrationClient, orchestrator: str, instance_id: str, payload: Any
) -> bool:
    """Start ``orchestrator`` as ``instance_id`` unless that instance exists already.

    Check-then-start can race; it is the instance id (derived from what triggered the start)
    together with the orchestrations' own idempotent actions that make a repeat harmless.
    """
    status = await client.get_status(instance_id)
    if getattr(status, "runtime_status", None) is not None:
        return False
    await client.start_new(orchestrator, instance_id, payload)
    return True


async def start_retrain(
    client: df.DurableOrchestrationClient,
    instance_id: str,
    *,
    segments: list[str],
    reason: str,
    source: str,
    moment: datetime,
) -> bool:
    """Start ``run_retrain`` (debounced per segment and window inside the orchestration)."""
    payload = retrain_input(get_services().settings, segments, reason, source, moment)
    return await start_once(client, "run_retrain", instance_id, payload)
