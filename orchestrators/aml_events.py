"""Azure ML Event Grid events as plain data, and what the app does about each (pure).

Parsing tolerates every quirk seen in real payloads: data keys in PascalCase or camelCase
(sometimes mixed), ``modelVersion`` as an integer or a string, Event Grid schema or CloudEvents,
times with seven
fractional digits and ``Z`` or ``+00:00``. ``plan_reaction`` maps an event to one ``Reaction``;
it never raises for an event type it does not know (those are logged and acknowledged).

Names taken from an event (model names and versions, run ids, segments, the event id) reach
instance ids, blob paths and job lookups, so they are validated here first: an event with a
name that fails its rule, or about a model that is not the app's (``model_prefix``), plans
``Ignore`` with the reason, which the handler logs and acknowledges.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from adapters.durable_limits import instance_id_problem
from adapters.errors import BadInputError
from adapters.events import AzureMLEventType
from adapters.times import parse_utc
from orchestrators.policies import Segment

TERMINAL_FAILURES = frozenset({"failed", "canceled", "cancelled", "notresponding"})
BREACH_TAG = "azureml_modelmonitor_threshold_breached"
BREACH_TEXT = "has failed due to one or more features violating metric thresholds"
SEGMENT_TAG = "segment"
STEP_RUN = "azureml.steprun"
PIPELINE_TAG = "pipeline"
# The app's Azure ML pipelines (``pipeline`` tag on every job it submits) and the experiment
# names they run under. A failed run in neither is another team's, and not Ops' to answer for.
APP_PIPELINES = frozenset({"train", "score", "model_test", "train_many"})
EXPERIMENT_PREFIX = "forecast-"


def experiment_for(pipeline: str) -> str:
    """The experiment the app's ``pipeline`` jobs run under (``forecast-model-test``, …)."""
    return EXPERIMENT_PREFIX + pipeline.replace("_", "-")


def _is_apps_run(experiment: str, tags: Mapping[str, str]) -> bool:
    return experiment.startswith(EXPERIMENT_PREFIX) or tags.get(PIPELINE_TAG) in APP_PIPELINES


# Names as Azure ML spells them: an asset name is letters, digits, '-', '_' and '.', starting
# with a letter or digit (at most 255); a job/run name the same without '.', so no '..'
# can reach a path. Event ids are GUIDs from system topics; anything else the app must not
# put into an instance id or a log line is refused.
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
_MODEL_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,254}$")
_EVENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_TEXT_LIMIT = 200

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
    if not isinstance(event_id, str) or not _EVENT_ID.match(event_id):
        raise BadInputError(
            f"event id {str(event_id)[:80]!r} is not a usable id (letters, digits, '.', '_', "
            "':' or '-', at most 128)",
            code="bad_event",
        )
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

    @property
    def instance_id(self) -> str:
        """One model test per model version, whatever delivers the event again."""
        return model_test_instance_id(self.model_name, self.model_version)


def model_test_instance_id(model_name: str, model_version: str) -> str:
    return f"model_test-{model_name}-{model_version}"


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
    reason: str  # "monitor_breach" (retrain's other reasons come from the timers)
    segment: str  # "" when the event does not name one: resolved by the retrain flow
    source: str  # the monitor's name, for the audit trail
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


def _text(value: str) -> str:
    """Free text from an event, safe for a log line or an email: no control characters."""
    return "".join(c if c.isprintable() else " " for c in value)[:_TEXT_LIMIT]


def _segment(raw: str) -> str | None:
    """A segment id from a tag (``r01-large-fast`` or ``r01/large/fast``); ``None`` if bad."""
    try:
        return Segment.parse(raw.replace("/", "-")).id
    except BadInputError:
        return None


def _model_test(event: AmlEvent, model_prefix: str) -> Reaction:
    d = event.data
    name, version = d.text("modelName"), d.text("modelVersion")
    if not name or not version:
        name, version = _model_from_subject(event.subject)
    if not name or not version:
        return Ignore(f"ModelRegistered {event.id} names no model")
    if not _MODEL_NAME.match(name):
        return Ignore(f"model name {name[:80]!r} is not an Azure ML model name")
    if not name.startswith(model_prefix):
        return Ignore(f"model {name!r} is not one of this app's (names start {model_prefix!r})")
    if not _MODEL_VERSION.match(version):
        return Ignore(f"model {name} has an unusable version {version[:40]!r}")
    problem = instance_id_problem(model_test_instance_id(name, version))
    if problem is not None:
        return Ignore(f"model {name}:{version} cannot name an orchestration: {problem}")
    return StartModelTest(name, version, d.mapping("modelTags"))


def plan_reaction(event: AmlEvent, model_prefix: str = "forecast-") -> Reaction:
    """What to do about ``event``. Pure: no I/O, and total over every input.

    ``model_prefix`` is how the app's models are named (``MLOPS_MODEL_NAME_PREFIX``): a
    registration of any other model is someone else's and is ignored. Likewise a failed run
    alerts only when it is the app's (its experiment or its ``pipeline`` tag); monitor breaches
    name their segment and are judged by that.
    """
    kind = event.known_type
    d = event.data
    if kind is AzureMLEventType.MODEL_REGISTERED:
        return _model_test(event, model_prefix)
    if kind is AzureMLEventType.RUN_STATUS_CHANGED:
        status = d.text("runStatus")
        tags = d.mapping("runTags")
        breach = tags.get(BREACH_TAG, "")
        if breach and (BREACH_TEXT in breach or breach.lower() == "true"):
            raw_segment = tags.get(SEGMENT_TAG, "")
            segment = _segment(raw_segment) if raw_segment else ""
            if segment is None:
                return Ignore(
                    f"monitor breach names segment {raw_segment[:40]!r}, not REGION-FORMAT-VELOCITY"
                )
            return StartRetrain(
                reason="monitor_breach",
                segment=segment,
                source=_text(d.text("experimentName")),
                detail={"run_id": _text(d.text("runId")), "message": _text(breach)},
            )
        if status.replace(" ", "").lower() in TERMINAL_FAILURES:
            run_id = d.text("runId")
            if d.text("runType").lower() == STEP_RUN:
                # The pipeline run fails too and its event carries the whole story.
                return Ignore(f"step run {_text(run_id)} {status}: reported by its pipeline")
            if not _RUN_ID.match(run_id):
                return Ignore(f"run status {_text(status)} for an unusable run id {run_id[:80]!r}")
            experiment = d.text("experimentName")
            if not _is_apps_run(experiment, tags):
                return Ignore(
                    f"run {run_id} {_text(status)} in experiment {_text(experiment)!r} is not "
                    f"this app's (experiments start {EXPERIMENT_PREFIX!r}, or a '{PIPELINE_TAG}' "
                    "tag names one of its pipelines)"
                )
            raw_segment = tags.get(SEGMENT_TAG, "")
            return SendAlert(
                run_id=run_id,
                experiment=_text(experiment),
                status=_text(status),
                pipeline=_text(tags.get(PIPELINE_TAG, d.text("experimentName"))),
                # A bad tag must not reach the alert's signature; the alert still goes out.
                segment=(_segment(raw_segment) or "") if raw_segment else "",
                tags=tags,
            )
        return Ignore(f"run status {_text(status) or 'unknown'} needs no action")
    if kind is AzureMLEventType.DATASET_DRIFT_DETECTED:
        return Ignore(
            "DatasetDriftDetected comes from v1 dataset monitors, retired on 2025-09-01; drift "
            "arrives as a RunStatusChanged with the model-monitor threshold tag"
        )
    if kind is AzureMLEventType.RUN_COMPLETED:
        return RecordTelemetry(
            run_id=_text(d.text("runId")),
            experiment=_text(d.text("experimentName")),
            status="Completed",
            tags=d.mapping("runTags"),
        )
    if kind is AzureMLEventType.MODEL_DEPLOYED:
        return Ignore("model deployments are not automated by this app")
    return Ignore(f"unknown event type {_text(event.type)}")
