"""Azure ML Event Grid events as plain data, and what the app does about each (pure).

Parsing tolerates every quirk seen in real payloads: data keys in PascalCase or camelCase
(sometimes mixed), ``modelVersion`` as an integer or a string, Event Grid schema or CloudEvents,
subjects ``datadrifts/{id}/runs/{run}`` or ``datadrift/{id}/run/{run}``, times with seven
fractional digits and ``Z`` or ``+00:00``. ``plan_reaction`` maps an event to one ``Reaction``;
it never raises for an event type it does not know (those are logged and acknowledged).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from adapters.errors import BadInputError
from adapters.events import AzureMLEventType
from adapters.times import parse_utc

TERMINAL_FAILURES = frozenset({"failed", "canceled", "cancelled", "notresponding"})
BREACH_TAG = "azureml_modelmonitor_threshold_breached"
BREACH_TEXT = "has failed due to one or more features violating metric thresholds"
SEGMENT_TAG = "segment"
STEP_RUN = "azureml.steprun"
PIPELINE_TAG = "pipeline"

_WORKSPACE = re.compile(
    r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/"
    r"Microsoft\.MachineLearningServices/workspaces/(?P<ws>[^/]+)",
    re.I,
)


class CaseInsensitive(Mapping[str, Any]):
    """A read-only view of event data whose keys match regardless of case."""

    def __init__(self, data: Mapping[str, Any] | None) -> None:
        self._data = dict(data or {})
        self._keys = {k.lower(): k for k in self._data}

    def __getitem__(self, key: str) -> Any:
        return self._data[self._keys[key.lower()]]

    def __iter__(self) -> Any:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def text(self, key: str, default: str = "") -> str:
        value = self.get(key)
        return default if value is None else str(value)

    def mapping(self, key: str) -> dict[str, str]:
        value = self.get(key)
        if not isinstance(value, Mapping):
            return {}
        return {str(k): "" if v is None else str(v) for k, v in value.items()}


@dataclass(frozen=True)
class AmlEvent:
    id: str
    type: str
    subject: str
    time: datetime | None
    topic: str
    data: CaseInsensitive = field(compare=False)

    @property
    def known_type(self) -> AzureMLEventType | None:
        try:
            return AzureMLEventType(self.type)
        except ValueError:
            return None

    @property
    def workspace(self) -> dict[str, str] | None:
        m = _WORKSPACE.search(self.topic or "")
        return (
            None
            if m is None
            else {"subscription": m["sub"], "resource_group": m["rg"], "workspace": m["ws"]}
        )


def parse_event(raw: Mapping[str, Any]) -> AmlEvent:
    """One Event Grid or CloudEvents event (a dict) → ``AmlEvent``; ``BadInputError`` if not."""
    if not isinstance(raw, Mapping):
        raise BadInputError("an event must be a JSON object", code="bad_event")
    event_id = raw.get("id")
    if not event_id:
        raise BadInputError("the event has no id", code="bad_event")
    cloud = "specversion" in raw
    event_type = raw.get("type") if cloud else raw.get("eventType")
    if not event_type:
        raise BadInputError(f"event {event_id} has no event type", code="bad_event")
    data = raw.get("data")
    if data is not None and not isinstance(data, Mapping):
        raise BadInputError(f"event {event_id}: data must be an object", code="bad_event")
    return AmlEvent(
        id=str(event_id),
        type=str(event_type),
        subject=str(raw.get("subject") or ""),
        time=parse_utc(raw.get("time") if cloud else raw.get("eventTime")),
        topic=str((raw.get("source") if cloud else raw.get("topic")) or ""),
        data=CaseInsensitive(data),
    )


# ------------------------------------------------------------------ reactions


@dataclass(frozen=True)
class StartModelTest:
    model_name: str
    model_version: str
    tags: dict[str, str]


@dataclass(frozen=True)
class SendAlert:
    run_id: str
    experiment: str
    status: str
    pipeline: str
    segment: str
    tags: dict[str, str]


@dataclass(frozen=True)
class StartRetrain:
    reason: str  # "drift" | "monitor_breach"
    segment: str  # "" when the event does not name one: resolved by the retrain flow
    source: str  # monitor / drift monitor name for the audit trail
    detail: dict[str, str]


@dataclass(frozen=True)
class RecordTelemetry:
    run_id: str
    experiment: str
    status: str
    tags: dict[str, str]


@dataclass(frozen=True)
class Ignore:
    reason: str


Reaction = StartModelTest | SendAlert | StartRetrain | RecordTelemetry | Ignore


def _model_from_subject(subject: str) -> tuple[str, str]:
    # models/{name}:{version}
    m = re.match(r"^models/(?P<name>.+):(?P<version>[^:]+)$", subject or "")
    return (m["name"], m["version"]) if m else ("", "")


def plan_reaction(event: AmlEvent) -> Reaction:
    """What to do about ``event``. Pure: no I/O, and total over every input."""
    kind = event.known_type
    d = event.data
    if kind is AzureMLEventType.MODEL_REGISTERED:
        name, version = d.text("modelName"), d.text("modelVersion")
        if not name or not version:
            name, version = _model_from_subject(event.subject)
        if not name or not version:
            return Ignore(f"ModelRegistered {event.id} names no model")
        return StartModelTest(name, version, d.mapping("modelTags"))
    if kind is AzureMLEventType.RUN_STATUS_CHANGED:
        status = d.text("runStatus")
        tags = d.mapping("runTags")
        breach = tags.get(BREACH_TAG, "")
        if breach and (BREACH_TEXT in breach or breach.lower() == "true"):
            return StartRetrain(
                reason="monitor_breach",
                segment=tags.get(SEGMENT_TAG, ""),
                source=d.text("experimentName"),
                detail={"run_id": d.text("runId"), "message": breach[:500]},
            )
        if status.replace(" ", "").lower() in TERMINAL_FAILURES:
            if d.text("runType").lower() == STEP_RUN:
                # The pipeline run fails too and its event carries the whole story.
                return Ignore(f"step run {d.text('runId')} {status}: reported by its pipeline")
            return SendAlert(
                run_id=d.text("runId"),
                experiment=d.text("experimentName"),
                status=status,
                pipeline=tags.get(PIPELINE_TAG, d.text("experimentName")),
                segment=tags.get(SEGMENT_TAG, ""),
                tags=tags,
            )
        return Ignore(f"run status {status or 'unknown'} needs no action")
    if kind is AzureMLEventType.DATASET_DRIFT_DETECTED:
        return StartRetrain(
            reason="drift",
            segment="",
            source=d.text("dataDriftName"),
            detail={
                "drift_id": d.text("dataDriftId"),
                "run_id": d.text("runId"),
                "drift_coefficient": d.text("driftCoefficient"),
                "target_dataset": d.text("targetDatasetId"),
            },
        )
    if kind is AzureMLEventType.RUN_COMPLETED:
        return RecordTelemetry(
            run_id=d.text("runId"),
            experiment=d.text("experimentName"),
            status="Completed",
            tags=d.mapping("runTags"),
        )
    if kind is AzureMLEventType.MODEL_DEPLOYED:
        return Ignore("model deployments are not automated by this app")
    return Ignore(f"unknown event type {event.type}")
