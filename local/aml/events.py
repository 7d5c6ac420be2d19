"""Azure ML–shaped Event Grid events, built as plain dicts (pure) and published through a port.

Shapes follow the events Azure ML sends (see CONTRACTS.md): camelCase data keys as in real
captures, subjects ``experiments/{experimentId}/runs/{runId}`` and ``models/{name}:{version}``,
``dataVersion`` "2" and ``metadataVersion`` "1".
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from adapters.events import AzureMLEventType
from local.aml.store import utc_now

LOCAL_TOPIC = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/local/providers/"
    "Microsoft.MachineLearningServices/workspaces/local"
)
_NAMESPACE = uuid.UUID("6f1f6c3e-1c51-4d43-9d35-6a0ad0a3a1f4")


def experiment_id(experiment_name: str) -> str:
    """A stable id per experiment name (Azure ML uses a GUID per experiment)."""
    return str(uuid.uuid5(_NAMESPACE, experiment_name))


def _event(
    event_type: AzureMLEventType, subject: str, data: dict[str, Any], topic: str
) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "topic": topic,
        "subject": subject,
        "eventType": event_type.value,
        "eventTime": utc_now(),
        "data": data,
        "dataVersion": "2",
        "metadataVersion": "1",
    }


def run_event(
    event_type: AzureMLEventType,
    *,
    experiment_name: str,
    run_id: str,
    run_type: str,
    status: str | None,
    tags: Mapping[str, str],
    properties: Mapping[str, str],
    topic: str = LOCAL_TOPIC,
) -> dict[str, Any]:
    """A RunStatusChanged (with ``status``) or RunCompleted event for one run."""
    exp_id = experiment_id(experiment_name)
    data: dict[str, Any] = {
        "experimentId": exp_id,
        "experimentName": experiment_name,
        "runId": run_id,
        "runType": run_type,
        "runTags": dict(tags),
        "runProperties": dict(properties),
    }
    if status is not None:
        data["runStatus"] = status
    return _event(event_type, f"experiments/{exp_id}/runs/{run_id}", data, topic)


def model_registered_event(
    name: str,
    version: str,
    tags: Mapping[str, str],
    properties: Mapping[str, str],
    topic: str = LOCAL_TOPIC,
) -> dict[str, Any]:
    data = {
        "modelName": name,
        "modelVersion": str(version),
        "modelTags": dict(tags),
        "modelProperties": dict(properties),
    }
    return _event(AzureMLEventType.MODEL_REGISTERED, f"models/{name}:{version}", data, topic)
