"""Which function each Azure ML event reaches through the workspace subscriptions in Bicep.

The subscriptions' filters (event types, subject prefix, advanced filters) are evaluated the way
Event Grid documents them (subject and string comparisons case-insensitive by default) against
the events the app's own jobs and registrations produce and against real captured events in
../shared/data/events: the app's events must reach their functions, other teams' models must not.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from adapters.events import AzureMLEventType
from local.aml.events import model_registered_event, run_event
from orchestrators.aml_events import EXPERIMENT_PREFIX, experiment_for
from orchestrators.policies import Segment
from tests.infra.bicep import INFRA, Expr, load

BREACH = "The monitoring run has failed due to one or more features violating metric thresholds."


def _subscriptions(name_prefix: str = "func-app") -> list[dict[str, Any]]:
    """The workspace subscriptions with parameters at their defaults (``namePrefix`` given)."""
    module = load(INFRA / "modules" / "aml-event-subscriptions.bicep")
    params = {**module.param_defaults, "namePrefix": name_prefix}

    def text(value: Any) -> Any:
        if not isinstance(value, Expr):
            return value
        if value.text in params:
            return params[value.text]
        template = value.text.strip("'")
        for name, given in params.items():
            template = template.replace("${" + name + "}", str(given))
        return template

    resolved = []
    for sub in module.variables["subscriptions"]:
        filters = []
        for item in sub["advancedFilters"]:
            found = module.resolve(item)
            filters.append({**found, "values": [text(v) for v in found["values"]]})
        resolved.append(
            {
                **sub,
                "name": text(sub["name"]),
                "subjectBeginsWith": text(sub["subjectBeginsWith"]),
                "advancedFilters": filters,
            }
        )
    return resolved


def _lookup(data: Any, key: str) -> Any:
    for part in key.split("."):
        if not isinstance(data, Mapping):
            return None
        data = data.get(part)
    return data


def _passes(advanced: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    found = _lookup(event, advanced["key"])
    if not isinstance(found, str):
        return False
    values = [str(v).lower() for v in advanced["values"]]
    operator = advanced["operatorType"]
    if operator == "StringIn":
        return found.lower() in values
    if operator == "StringContains":
        return any(v in found.lower() for v in values)
    if operator == "StringBeginsWith":
        return any(found.lower().startswith(v) for v in values)
    raise AssertionError(f"the routing test does not evaluate {operator} filters")


def routed_to(event: Mapping[str, Any]) -> set[str]:
    """The functions ``event`` is delivered to."""
    targets = set()
    for sub in _subscriptions():
        if event["eventType"].lower() not in {t.lower() for t in sub["eventTypes"]}:
            continue
        if not str(event.get("subject", "")).lower().startswith(sub["subjectBeginsWith"].lower()):
            continue
        if all(_passes(f, event) for f in sub["advancedFilters"]):
            targets.add(sub["functionName"])
    return targets


def _run(
    event_type: AzureMLEventType,
    status: str | None,
    experiment: str = "forecast-train",
    **tags: str,
) -> dict[str, Any]:
    return run_event(
        event_type,
        experiment_name=experiment,
        run_id="train_0001",
        run_type="azureml.PipelineRun",
        status=status,
        tags=tags,
        properties={},
    )


def test_the_app_s_own_events_reach_their_functions() -> None:
    model = Segment("r01", "large", "fast").model_name
    assert routed_to(model_registered_event(model, "3", {}, {})) == {"on_model_registered"}
    for status in ("Failed", "Canceled", "NotResponding", "failed"):
        assert routed_to(_run(AzureMLEventType.RUN_STATUS_CHANGED, status)) == {
            "on_run_status_changed"
        }
    breach = _run(
        AzureMLEventType.RUN_STATUS_CHANGED,
        "Completed",
        azureml_modelmonitor_threshold_breached=BREACH,
    )
    assert routed_to(breach) == {"on_run_status_changed"}
    assert routed_to(_run(AzureMLEventType.RUN_COMPLETED, None)) == {"on_run_completed"}
    # Progress of a healthy run is nobody's business.
    assert routed_to(_run(AzureMLEventType.RUN_STATUS_CHANGED, "Running")) == set()


def test_runs_of_other_teams_experiments_are_not_delivered() -> None:
    for experiment in ("churn-train", "automl-demand", "Forecast_adhoc"):
        failed = _run(AzureMLEventType.RUN_STATUS_CHANGED, "Failed", experiment)
        assert routed_to(failed) == set(), experiment
        assert routed_to(_run(AzureMLEventType.RUN_COMPLETED, None, experiment)) == set()
    # Monitor breaches are judged by the segment they name, whatever the monitor's experiment.
    breach = _run(
        AzureMLEventType.RUN_STATUS_CHANGED,
        "Completed",
        "demand-monitor",
        azureml_modelmonitor_threshold_breached=BREACH,
    )
    assert routed_to(breach) == {"on_run_status_changed"}


def test_the_experiment_prefix_is_the_one_the_app_submits_under() -> None:
    module = load(INFRA / "modules" / "aml-event-subscriptions.bicep")
    assert module.param_defaults["experimentNamePrefix"] == EXPERIMENT_PREFIX
    assert experiment_for("model_test").startswith(EXPERIMENT_PREFIX)


def test_two_deployments_on_one_workspace_get_their_own_subscriptions() -> None:
    dev = {s["name"] for s in _subscriptions("func-devtoken")}
    prod = {s["name"] for s in _subscriptions("func-prodtoken")}
    assert len(dev) == len(_subscriptions()) and dev.isdisjoint(prod)
    assert all(name.startswith("func-devtoken-") for name in dev)
    # Event Grid: 3-64 letters, digits and hyphens (a function app name is at most 32).
    longest = max(_subscriptions("f" * 32), key=lambda s: len(s["name"]))["name"]
    assert re.fullmatch(r"[A-Za-z0-9-]{3,64}", longest), longest


def test_models_of_other_teams_are_not_delivered() -> None:
    for name in ("churn-model", "sklearn_regression_model", "Forecast", "my-forecast-r01"):
        assert routed_to(model_registered_event(name, "1", {}, {})) == set(), name


def test_the_subject_prefix_is_the_one_the_app_names_its_models_with() -> None:
    module = load(INFRA / "modules" / "aml-event-subscriptions.bicep")
    prefix = module.param_defaults["modelNamePrefix"]
    assert prefix == "forecast-"
    assert Segment("r01", "small", "slow").model_name.startswith(prefix)
    # One default everywhere the prefix is passed along.
    assert load(INFRA / "event-subscriptions.bicep").param_defaults["modelNamePrefix"] == prefix
    assert load(INFRA / "main.bicep").param_defaults["modelNamePrefix"] == prefix
    # Only ModelRegistered subjects carry a model name; run subjects are experiments/{GUID}/...
    filtered = {
        t for sub in _subscriptions() if sub["subjectBeginsWith"] for t in sub["eventTypes"]
    }
    assert filtered == {"Microsoft.MachineLearningServices.ModelRegistered"}


def _real_events(shared_data: Path) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for folder in ("docs-eventgrid-schema", "sdk-test-captures", "samples"):
        for path in sorted((shared_data / "events" / folder).glob("*.json")):
            try:
                body = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                continue  # the malformed samples are the webhook's business
            for event in body if isinstance(body, list) else [body]:
                if isinstance(event, dict) and "eventType" in event:
                    events.append(event)
    return events


def _experiment(event: Mapping[str, Any]) -> str:
    return str(_lookup(event, "data.experimentName") or "").lower()


def test_real_workspace_events_are_routed_as_their_shape_says(shared_data: Path) -> None:
    events = [
        e
        for e in _real_events(shared_data)
        if str(e["eventType"]).startswith("Microsoft.MachineLearningServices.")
    ]
    kinds = {e["eventType"].rsplit(".", 1)[-1] for e in events}
    assert {"ModelRegistered", "RunStatusChanged", "RunCompleted", "DatasetDriftDetected"} <= kinds
    for event in events:
        kind = event["eventType"].rsplit(".", 1)[-1]
        targets = routed_to(event)
        if kind == "ModelRegistered":
            # Real captures register sklearn_regression_model, ncd-sklearn-model: not ours.
            assert targets == set(), event["subject"]
        elif kind == "RunStatusChanged":
            failed = str(event["data"].get("runStatus", "")).lower() == "failed"
            ours = _experiment(event).startswith(EXPERIMENT_PREFIX)
            expected = {"on_run_status_changed"} if failed and ours else set()
            assert targets == expected, event["subject"]
        elif kind == "RunCompleted":
            ours = _experiment(event).startswith(EXPERIMENT_PREFIX)
            assert targets == ({"on_run_completed"} if ours else set()), event["subject"]
        elif kind == "DatasetDriftDetected":
            # Its source, v1 dataset monitors, was retired on 2025-09-01: not subscribed.
            assert targets == set()


@pytest.mark.parametrize("subject", ["models/forecast-r01-large-fast:1", "MODELS/FORECAST-x:2"])
def test_subject_matching_is_case_insensitive_like_event_grid(subject: str) -> None:
    event = model_registered_event("forecast-r01-large-fast", "1", {}, {})
    assert routed_to({**event, "subject": subject}) == {"on_model_registered"}
