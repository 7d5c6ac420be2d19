"""The rehearsal: the app as the Bicep deploys it, for each parameter file, on stand-ins of Azure.

The ``loop`` fixture (conftest.py) runs the whole automation loop once per parameter file
(tests/rehearsal/loop.py); each test here checks one outcome of it. The stand-ins and what
they were checked against: the Azure ML workspace answers with bodies from azure-ai-ml's
recorded service traffic and the REST API's examples (../shared/data/azureml-rest) and really
runs the submitted jobs on the local executor; storage is Azurite in OAuth mode; the managed
identity endpoint follows the App Service protocol azure-identity implements; Event Grid's
delivery rules, Communication Services' send-and-poll and Application Insights' ingestion
follow their documentation (see each stand-in's module).

Time budgets (wide on purpose; the measured figures are printed at the end of the session):
every Event Grid handler answers within 5 s, from a cold worker too; every HTTP start within
10 s. Slow work belongs in durable orchestrations or the alert outbox, never in the answer.
"""

from __future__ import annotations

import re

import pytest

from tests.infra.kql import alert_queries, problems, workbook_queries
from tests.infra.permissions import matrix
from tests.rehearsal.loop import FAILING_SEGMENT, SEGMENTS, Loop, deliveries
from tests.rehearsal.permissions import observed_operations, ungranted

pytestmark = [pytest.mark.azure_rehearsal, pytest.mark.timeout(2400)]

# The exporter's own traffic to fixed Microsoft hosts, not the app's: its usage statistics
# (statsbeat) and its dynamic configuration ("OneSettings", polled hourly unless
# APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED is set; azure-monitor-opentelemetry-exporter 1.0.0b58).
EXPORTER_OWN = re.compile(
    r"[a-z0-9-]+\.in\.applicationinsights\.azure\.com|settings\.sdk\.monitor\.azure\.com"
)
EVENT_GRID_BUDGET = 5.0
HTTP_START_BUDGET = 10.0


def need(loop: Loop, *stages: str) -> None:
    problem = loop.require(*stages)
    if problem:
        pytest.fail(problem)


def test_the_app_runs_with_the_settings_the_bicep_gives_it(loop: Loop) -> None:
    r = loop.rehearsal
    settings = r.settings
    assert settings["MLOPS_ENVIRONMENT"] == "azure"
    for connection in ("AzureWebJobsStorage", "MLOPS_DATALAKE"):
        assert connection not in settings, "identity-based, never a connection string"
        assert settings[f"{connection}__credential"] == "managedidentity"
        assert settings[f"{connection}__blobServiceUri"].startswith(r.blob.url)
        assert settings[f"{connection}__clientId"] in r.identities.assigned
    assert settings["MLOPS_ACS_ENDPOINT"] == r.acs.url
    assert r.ingestion.url in settings["APPLICATIONINSIGHTS_CONNECTION_STRING"]
    assert r.app.started_seconds > 0
    # Every token the app asked for was for the identity the Bicep gives it.
    assert r.identities.refused == []
    issued = {i.identity for i in r.identities.issued}
    assert set(r.cloud.app_identities) <= issued


def test_a_raw_drop_is_conditioned_through_identity_based_storage(loop: Loop) -> None:
    need(loop, "drop and conditioning")
    assert set(loop.conditioned) == {"shipments", "stores", "weather", "events"}
    r = loop.rehearsal
    lake = r.accounts["dataLake"]
    app_ops = [o for o in r.blob.observed if o.account == lake and o.container == "conditioned"]
    assert app_ops and all(o.caller not in ("shared key", "sas") for o in app_ops)


def test_adf_starts_training_and_waits_for_it(loop: Loop) -> None:
    need(loop, "drop and conditioning", "ADF train")
    assert loop.adf is not None
    assert loop.adf.variables["runtimeStatus"] == "Completed"
    output = loop.train_output["output"]
    assert set(output["segments"]) == set(SEGMENTS)
    for segment in output["segments"].values():
        assert segment.get("job_status") == "Completed", segment
        assert segment["decision"] in ("champion", "challenger", "rejected"), segment


def test_jobs_ran_as_the_sdk_submitted_them(loop: Loop) -> None:
    need(loop, "ADF train")
    r = loop.rehearsal
    assert r.workspace.refused == []
    train_jobs = [j for j in r.workspace.jobs.values() if j.properties.get("tags", {}).get(
        "pipeline") == "train" and j.status == "Completed"]  # fmt: skip
    assert len(train_jobs) >= len(SEGMENTS)
    for job in train_jobs:
        assert {c.node for c in job.children} == {"prep", "train", "evaluate", "register"}
        # Rebuilt from the uploaded snapshot, not from the repository.
        assert (r.workspace.work / "jobs" / job.name / "pipeline.yml").is_file()


def test_registered_models_get_their_offline_test(loop: Loop) -> None:
    need(loop, "ADF train", "model tests")
    assert len(loop.model_tests) == len(SEGMENTS)
    for model, status in loop.model_tests.items():
        assert status["runtimeStatus"] == "Completed", (model, status)
    delivered = [f for f, _ in loop.rehearsal.topic.delivered]
    assert delivered.count("on_model_registered") >= len(SEGMENTS)


def test_a_failed_job_sends_exactly_one_email(loop: Loop) -> None:
    need(loop, "injected failure")
    assert "ended with runtimeStatus Failed" in loop.failing_adf, loop.failing_adf
    assert loop.emails_after_failure == 1
    (operation,) = [
        op for op in loop.rehearsal.acs.operations_by_id.values() if FAILING_SEGMENT in str(
            op.message.get("content", {}).get("subject", ""))
    ]  # fmt: skip
    assert operation.status == "Succeeded"


def test_event_grid_handlers_answer_within_budget_even_cold(loop: Loop) -> None:
    need(loop, "cold starts")
    measured = deliveries(loop)
    assert measured, "no Event Grid delivery reached the app"
    slow = {f: max(v) for f, v in measured.items() if max(v) > EVENT_GRID_BUDGET}
    cold = {f: s for f, s in loop.cold.items() if f != "start_orchestration"}
    assert set(cold) == set(measured)
    slow_cold = {f: s for f, s in cold.items() if s > EVENT_GRID_BUDGET}
    assert all(200 <= loop.cold_status[f] <= 204 for f in cold), loop.cold_status
    assert slow == {} and slow_cold == {}, (
        f"Event Grid handlers over {EVENT_GRID_BUDGET:g} s: warm {slow}, cold {slow_cold}"
    )


def test_http_starts_answer_within_budget_even_cold(loop: Loop) -> None:
    need(loop, "ADF train", "cold starts")
    assert loop.cold_status["start_orchestration"] in (200, 202)
    starts = [loop.cold["start_orchestration"], *loop.http_starts]
    assert max(starts) <= HTTP_START_BUDGET, f"HTTP starts took {starts}"


def test_the_weekly_timer_starts_training_in_prod(loop: Loop) -> None:
    if loop.rehearsal.environment != "prod":
        pytest.skip("the weekly timer is rehearsed with the prod parameters")
    need(loop, "weekly timer")
    assert loop.weekly["admin_status"] == 202
    assert loop.weekly["runtimeStatus"] in ("Pending", "Running", "Completed")
    assert loop.weekly["jobs"], "the weekly run submitted no job"


def test_telemetry_carries_every_name_the_workbook_and_alerts_query(loop: Loop) -> None:
    need(loop, "telemetry")
    catalogue: dict[str, dict[str, set[str]]] = {"metric": {}, "event": {}}
    for table, kind in (("customMetrics", "metric"), ("customEvents", "event")):
        for row in loop.telemetry.get(table, []):
            dims = catalogue[kind].setdefault(str(row["name"]), set())
            dims.update(row["customDimensions"])
    found = problems(workbook_queries() + alert_queries(), catalogue)
    assert found == []
    assert loop.rehearsal.ingestion.auth_failures == []


def test_undeliverable_events_are_dead_lettered(loop: Loop) -> None:
    need(loop, "dead letter")
    assert len(loop.dead_letters) == 1
    # Only the stage's own event counts: with the prod parameters the weekly run's jobs may
    # still be publishing while the app is down, and Event Grid dead-letters those too.
    (dead,) = [
        d for d in loop.rehearsal.topic.dead_letters if d.event.get("id") == loop.dead_letter_event
    ]
    assert dead.reason
    assert dead.attempts == 30


def test_every_operation_is_granted_by_the_permission_matrix(loop: Loop) -> None:
    """Every operation a stand-in served, by whoever performed it, is granted by a row of
    docs/permissions.md (tests/infra/test_permissions.py holds those rows to the Bicep)."""
    observed = observed_operations(loop.rehearsal)
    identities = {o.identity for o in observed}
    assert {"app", "adf", "aml-topic", "aml-compute", "operator"} <= identities
    missing = ungranted(observed, matrix().rows)
    assert missing == [], "docs/permissions.md grants none of:\n" + "\n".join(map(str, missing))


def test_the_stand_ins_saw_only_what_they_serve(loop: Loop) -> None:
    r = loop.rehearsal
    problems_seen = (
        r.workspace.unrouted + r.workspace.auth_failures + r.acs.auth_failures
        + r.rest_shape_deviations
    )  # fmt: skip
    assert problems_seen == []
    refused = [o for o in (*r.blob.observed, *r.queue.observed) if o.status == 403]
    assert refused == []
    # The app reached no Azure host that no stand-in plays; the exporter's own usage
    # statistics and configuration poll are the exceptions (EXPORTER_OWN).
    unplayed = [h for h in r.proxy.refused_tunnels if not EXPORTER_OWN.fullmatch(h)]
    assert unplayed == []
