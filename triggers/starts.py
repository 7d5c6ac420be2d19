"""Starting orchestrations from triggers: once per instance id, whatever delivers twice."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import azure.durable_functions as df

from composition import get_services
from orchestrators.policies import StartIds
from orchestrators.requests import retrain_input

# A finished run with these statuses is started again under its id by a repeated request
# (a retry); a run in any other status is the run the request asks for.
RESTARTABLE = frozenset({"Failed", "Terminated", "Canceled"})


def status_name(status: Any) -> str | None:
    """The runtime status of a ``get_status`` answer as text; ``None`` when there is no such
    instance."""
    runtime = getattr(status, "runtime_status", None)
    if runtime is None:
        return None
    return str(getattr(runtime, "value", runtime))


def _created(status: Any) -> datetime | None:
    created = getattr(status, "created_time", None)
    if not isinstance(created, datetime):
        return None
    return created if created.tzinfo else created.replace(tzinfo=UTC)


async def find_or_start(
    client: df.DurableOrchestrationClient, orchestrator: str, ids: StartIds, payload: Any
) -> tuple[str, bool]:
    """The instance a start request asks for: ``(instance id, started now)``.

    An existing run that is not ``RESTARTABLE`` is returned as it is: under ``ids.earlier``
    when it was created at or after ``ids.not_before``, else under ``ids.instance_id``.
    Otherwise ``orchestrator`` starts as ``ids.instance_id`` with ``payload``. Check-then-start
    can race (two identical requests at the same moment); the orchestrations' actions are
    idempotent, which keeps such a double harmless.
    """
    if ids.earlier is not None and ids.not_before is not None:
        earlier = await client.get_status(ids.earlier)
        created = _created(earlier)
        status = status_name(earlier)
        recent = created is not None and created >= ids.not_before
        if status is not None and status not in RESTARTABLE and recent:
            return ids.earlier, False
    status = status_name(await client.get_status(ids.instance_id))
    if status is not None and status not in RESTARTABLE:
        return ids.instance_id, False
    await client.start_new(orchestrator, ids.instance_id, payload)
    return ids.instance_id, True


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
