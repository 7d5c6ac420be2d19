from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from adapters.errors import BadInputError
from adapters.times import parse_utc
from orchestrators.aml_events import (
    APP_PIPELINES,
    EXPERIMENT_PREFIX,
    Ignore,
    RecordTelemetry,
    SendAlert,
    StartModelTest,
    StartRetrain,
    experiment_for,
    parse_event,
    plan_reaction,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "events"


def load(path: Path) -> list[dict[str, Any]]:
    body = json.loads(path.read_text(encoding="utf-8"))
    return body if isinstance(body, list) else [body]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2017-06-26T18:41:00.9584103Z", datetime(2017, 6, 26, 18, 41, 0, 958410, tzinfo=UTC)),
        ("2019-10-20T17:08:08.467191+00:00", datetime(2019, 10, 20, 17, 8, 8, 467191, tzinfo=UTC)),
        ("2026-11-23T08:00:00Z", datetime(2026, 11, 23, 8, tzinfo=UTC)),
        ("2026-11-23T09:00:00+01:00", datetime(2026, 11, 23, 8, tzinfo=UTC)),
        ("2026-11-23T08:00:00", datetime(2026, 11, 23, 8, tzinfo=UTC)),
        ("yesterday", None),
        ("", None),
        (None, None),
    ],
)
def test_times(text: Any, expected: datetime | None) -> None:
    assert parse_utc(text) == expected


def test_model_registered_with_mixed_case_and_string_version() -> None:
    (raw,) = load(FIXTURES / "model_registered_mixed_case.json")
    event = parse_event(raw)
    assert event.time == datetime(2026, 11, 23, 6, 12, 44, 123456, tzinfo=UTC)
    assert event.workspace == {
        "subscription": "00000000-0000-0000-0000-000000000001",
        "resource_group": "rg-mlops-dev",
        "workspace": "mlw-forecast-dev",
    }
    expected = StartModelTest(
        "demand-r01-large-fast", "7", {"segment": "r01-large-fast", "gate": "champion"}
    )
    assert plan_reaction(event, model_prefix="demand-") == expected
    assert expected.instance_id == "model_test-demand-r01-large-fast-7"
    # Under the default prefix the same model is someone else's.
    assert isinstance(plan_reaction(event), Ignore)


def _registered(subject: str, data: dict[str, Any] | None = None) -> Any:
    return parse_event(
        {
            "id": "1",
            "eventType": "Microsoft.MachineLearningServices.ModelRegistered",
            "subject": subject,
            "data": data or {},
        }
    )


def test_model_registered_falls_back_to_the_subject() -> None:
    reaction = plan_reaction(_registered("models/forecast-r01-large-fast:12"))
    assert reaction == StartModelTest("forecast-r01-large-fast", "12", {})


@pytest.mark.parametrize(
    ("data", "subject", "why"),
    [
        ({"modelName": "forecast-team/other", "modelVersion": 1}, "", "not an Azure ML model"),
        ({"modelName": "forecast-a\\b", "modelVersion": 1}, "", "not an Azure ML model"),
        ({"modelName": "forecast-../../etc", "modelVersion": 1}, "", "not an Azure ML model"),
        ({"modelName": "forecast-x#y", "modelVersion": 1}, "", "not an Azure ML model"),
        ({"modelName": "forecast-line\nbreak", "modelVersion": 1}, "", "not an Azure ML model"),
        ({"modelName": "forecast-" + "x" * 247, "modelVersion": 1}, "", "not an Azure ML model"),
        ({"modelName": "forecast-" + "x" * 240, "modelVersion": 1}, "", "at most 256"),
        ({"modelName": "other-team-model", "modelVersion": 3}, "", "not one of this app's"),
        ({"modelName": "sklearn_regression_model", "modelVersion": 3}, "", "not one of this app"),
        ({"modelName": "forecast-r01-large-fast", "modelVersion": "1/2"}, "", "unusable version"),
        ({"modelName": "forecast-r01-large-fast", "modelVersion": "?"}, "", "unusable version"),
        ({"modelName": "forecast-r01-large-fast"}, "", "names no model"),
        ({}, "models/name:with:colons:12", "not an Azure ML model"),
        ({}, "models/", "names no model"),
        ({}, "", "names no model"),
    ],
)
def test_model_registrations_the_app_must_not_act_on_are_ignored_with_a_reason(
    data: dict[str, Any], subject: str, why: str
) -> None:
    reaction = plan_reaction(_registered(subject, data))
    assert isinstance(reaction, Ignore)
    assert why in reaction.reason


def test_the_model_prefix_decides_whose_models_are_tested() -> None:
    event = _registered("models/churn-model:2")
    assert isinstance(plan_reaction(event), Ignore)
    assert plan_reaction(event, model_prefix="churn-") == StartModelTest("churn-model", "2", {})


def test_failed_run_as_a_cloudevent_becomes_an_alert() -> None:
    (raw,) = load(FIXTURES / "run_status_failed_cloudevent.json")
    reaction = plan_reaction(parse_event(raw))
    assert isinstance(reaction, SendAlert)
    assert (reaction.segment, reaction.pipeline, reaction.status) == (
        "r02-small-slow",
        "train",
        "Failed",
    )
    assert reaction.run_id == "train_r02_small_slow_1700000000"


@pytest.mark.parametrize(
    "status", ["Failed", "failed", "Canceled", "NotResponding", "Not Responding"]
)
def test_every_terminal_failure_alerts(status: str) -> None:
    event = parse_event(
        {
            "id": "x",
            "eventType": "Microsoft.MachineLearningServices.RunStatusChanged",
            "data": {"runStatus": status, "runId": "r", "experimentName": "forecast-train"},
        }
    )
    assert isinstance(plan_reaction(event), SendAlert)


@pytest.mark.parametrize("status", ["Running", "Queued", "Completed", "Finalizing", ""])
def test_other_statuses_need_no_action(status: str) -> None:
    event = parse_event(
        {
            "id": "x",
            "eventType": "Microsoft.MachineLearningServices.RunStatusChanged",
            "data": {"RunStatus": status},
        }
    )
    assert isinstance(plan_reaction(event), Ignore)


def test_monitor_breach_retrains_instead_of_alerting() -> None:
    (raw,) = load(FIXTURES / "run_status_monitor_breach.json")
    reaction = plan_reaction(parse_event(raw))
    assert isinstance(reaction, StartRetrain)
    assert (reaction.reason, reaction.segment) == ("monitor_breach", "r03-large-slow")


def test_unknown_and_deployed_types_are_ignored_not_errors() -> None:
    for kind in (
        "Microsoft.Storage.BlobCreated",
        "Microsoft.MachineLearningServices.ModelDeployed",
    ):
        reaction = plan_reaction(parse_event({"id": "1", "eventType": kind, "data": {}}))
        assert isinstance(reaction, Ignore)


def test_a_retired_dataset_drift_event_is_acknowledged_with_the_reason() -> None:
    raw = {
        "id": "drift-1",
        "eventType": "Microsoft.MachineLearningServices.DatasetDriftDetected",
        "subject": "datadrift/01d29aa4/run/my_driftrun1_1550564444_fbbcdc0f",
        "data": {"dataDriftName": "mydatadriftmonitor", "driftCoefficient": 0.83},
    }
    reaction = plan_reaction(parse_event(raw))
    assert isinstance(reaction, Ignore)
    assert "retired" in reaction.reason and "RunStatusChanged" in reaction.reason


@pytest.mark.parametrize(
    "raw",
    [
        {},
        {"id": "1"},
        {"id": "1", "eventType": "x", "data": [1, 2]},
        {"specversion": "1.0", "id": "1", "source": "s"},
        {"eventType": "x", "data": {}},
    ],
)
def test_unusable_events_are_bad_input(raw: dict[str, Any]) -> None:
    with pytest.raises(BadInputError):
        parse_event(raw)


# ------------------------------------------------------------------ real payloads


EXPECTED_BY_TYPE = {
    # The real samples register other people's models (sklearn_regression_model, ...).
    "Microsoft.MachineLearningServices.ModelRegistered": Ignore,
    # v1 dataset monitors were retired on 2025-09-01: acknowledged, never acted on.
    "Microsoft.MachineLearningServices.DatasetDriftDetected": Ignore,
    "Microsoft.MachineLearningServices.RunCompleted": RecordTelemetry,
    "Microsoft.MachineLearningServices.ModelDeployed": Ignore,
}


def test_every_real_payload_parses_and_plans(shared_data: Path) -> None:
    files = sorted((shared_data / "events").rglob("*.json"))
    assert files
    planned = 0
    for path in files:
        if "expected-response" in path.name:
            continue
        for raw in load(path):
            if not raw.get("id") or not (raw.get("eventType") or raw.get("type")):
                with pytest.raises(BadInputError):
                    parse_event(raw)
                continue
            event = parse_event(raw)
            reaction = plan_reaction(event)
            expected = EXPECTED_BY_TYPE.get(event.type)
            if expected is not None:
                assert isinstance(reaction, expected), (path.name, reaction)
            planned += 1
    assert planned >= 20


def test_real_model_registered_payloads_give_name_and_version(shared_data: Path) -> None:
    seen = set()
    for path in (shared_data / "events").rglob("*ModelRegistered*.json"):
        for raw in load(path):
            event = parse_event(raw)
            ignored = plan_reaction(event)
            assert isinstance(ignored, Ignore) and "not one of this app's" in ignored.reason
            prefix = event.data.text("modelName")[:3] or event.subject[7:10]
            reaction = plan_reaction(event, model_prefix=prefix)
            assert isinstance(reaction, StartModelTest)
            assert reaction.model_name and reaction.model_version.isdigit()
            seen.add((reaction.model_name, reaction.model_version))
    assert ("sklearn_regression_model", "20") in seen and ("ncd-sklearn-model", "1") in seen


def test_real_run_status_captures(shared_data: Path) -> None:
    running = load(
        shared_data
        / "events/sdk-test-captures/Microsoft.MachineLearningServices.RunStatusChanged.json"
    )[0]
    assert isinstance(plan_reaction(parse_event(running)), Ignore)
    docs = load(
        shared_data
        / "events/docs-eventgrid-schema/Microsoft.MachineLearningServices.RunStatusChanged.json"
    )[0]
    # runStatus "failed", but experiment automl-local-regression with no tags: another team's.
    ignored = plan_reaction(parse_event(docs))
    assert isinstance(ignored, Ignore) and "automl-local-regression" in ignored.reason
    docs["data"]["experimentName"] = "forecast-score"
    assert isinstance(plan_reaction(parse_event(docs)), SendAlert)


def _run_status(data: dict[str, Any]) -> Any:
    return parse_event(
        {"id": "r", "eventType": "Microsoft.MachineLearningServices.RunStatusChanged", "data": data}
    )


@pytest.mark.parametrize("run_id", ["", "../../etc/passwd", "a/b", "run id", "x" * 256])
def test_a_failed_run_with_an_unusable_id_is_ignored(run_id: str) -> None:
    reaction = plan_reaction(_run_status({"runStatus": "Failed", "runId": run_id}))
    assert isinstance(reaction, Ignore) and "unusable run id" in reaction.reason


def test_a_failed_run_keeps_its_alert_but_drops_a_bad_segment_tag() -> None:
    good = plan_reaction(
        _run_status(
            {
                "runStatus": "Failed",
                "runId": "train_1",
                "runTags": {"segment": "r01/large/fast", "pipeline": "train"},
            }
        )
    )
    bad = plan_reaction(
        _run_status(
            {
                "runStatus": "Failed",
                "runId": "train_2",
                "runTags": {"segment": "../x", "pipeline": "train"},
            }
        )
    )
    assert isinstance(good, SendAlert) and good.segment == "r01-large-fast"
    assert isinstance(bad, SendAlert) and bad.segment == ""


@pytest.mark.parametrize("segment", ["r01-medium-fast", "../r01", "r01/large/fast/extra", "x" * 80])
def test_a_monitor_breach_naming_a_bad_segment_retrains_nothing(segment: str) -> None:
    tags = {"segment": segment, "azureml_modelmonitor_threshold_breached": "true"}
    reaction = plan_reaction(_run_status({"runStatus": "Failed", "runId": "m", "runTags": tags}))
    assert isinstance(reaction, Ignore) and "REGION-FORMAT-VELOCITY" in reaction.reason


def test_free_text_from_an_event_loses_its_control_characters() -> None:
    reaction = plan_reaction(
        _run_status(
            {"runStatus": "Failed", "runId": "r1", "experimentName": "forecast-x\nFAKE LOG LINE"}
        )
    )
    assert isinstance(reaction, SendAlert) and "\n" not in reaction.experiment


@pytest.mark.parametrize("event_id", ["a/b", "a?b", "line\nbreak", "x" * 129, 42])
def test_events_with_an_unusable_id_are_bad_input(event_id: Any) -> None:
    with pytest.raises(BadInputError, match="event id"):
        parse_event({"id": event_id, "eventType": "x", "data": {}})


def test_a_failed_step_run_is_left_to_its_pipeline_run() -> None:
    step = {
        "id": "s",
        "eventType": "Microsoft.MachineLearningServices.RunStatusChanged",
        "data": {
            "runStatus": "Failed",
            "runType": "azureml.StepRun",
            "runId": "r_prep",
            "experimentName": "forecast-train",
        },
    }
    assert isinstance(plan_reaction(parse_event(step)), Ignore)
    step["data"]["runType"] = "azureml.PipelineRun"
    assert isinstance(plan_reaction(parse_event(step)), SendAlert)


@pytest.mark.parametrize(
    ("experiment", "tags", "alerts"),
    [
        ("forecast-train", {}, True),
        ("forecast-model-test", {}, True),
        ("demand-train", {"pipeline": "train"}, True),
        ("demand-train", {"pipeline": "train_many"}, True),
        ("automl-local-regression", {}, False),
        ("team-b-train", {"pipeline": "etl"}, False),
        ("", {}, False),
    ],
)
def test_only_the_apps_failed_runs_alert(
    experiment: str, tags: dict[str, str], alerts: bool
) -> None:
    data = {"runStatus": "Failed", "runId": "r1", "experimentName": experiment, "runTags": tags}
    reaction = plan_reaction(_run_status(data))
    if alerts:
        assert isinstance(reaction, SendAlert)
    else:
        assert isinstance(reaction, Ignore) and "is not this app's" in reaction.reason


def test_the_apps_pipelines_are_the_ones_it_submits_under_its_experiments() -> None:
    from orchestrators.activities import PIPELINES

    assert set(PIPELINES) == APP_PIPELINES
    assert all(experiment_for(p).startswith(EXPERIMENT_PREFIX) for p in PIPELINES)
    assert experiment_for("model_test") == "forecast-model-test"
