"""The workbook and the Ops alert rules as Bicep declares them (tests/integration/
test_monitoring_queries.py checks their queries against the telemetry itself)."""

from __future__ import annotations

import json
import re

from tests.infra.bicep import INFRA, Expr, load
from tests.infra.kql import MONITORING, WORKBOOK, alert_queries, workbook_queries

ALERT_PARAMS = ("opsAlertEmail", "functionFailureThreshold", "conditioningSilenceHours",
                "conditioningAlertEnabled", "alertOutboxMaxPending", "alertOutboxMaxAgeMinutes",
                "championMaxAgeDays")  # fmt: skip


def test_every_placeholder_of_an_alert_query_is_filled_in_by_the_bicep() -> None:
    rules = load(INFRA / "modules" / "ops-alerts.bicep").variables["logRules"]
    by_file = {}
    for rule in rules:
        text = rule["query"].text
        (path,) = re.findall(r"loadTextContent\('\.\./monitoring/([^']+)'\)", text)
        by_file[path] = set(re.findall(r"'\{([A-Z_]+)\}'", text))
    assert set(by_file) == {q.where for q in alert_queries()}
    for path, filled in by_file.items():
        wanted = set(re.findall(r"\{([A-Z_]+)\}", (MONITORING / path).read_text()))
        assert wanted == filled, path


def test_every_rule_pages_the_ops_action_group_by_email() -> None:
    module = load(INFRA / "modules" / "ops-alerts.bicep")
    (group,) = module.resources("Microsoft.Insights/actionGroups")
    assert len(group.body["properties"]["groupShortName"]) <= 12
    assert group.body["properties"]["emailReceivers"] == Expr("receivers")
    assert "split(opsEmails, ',')" in str(module.variables["receivers"])
    (metric,) = module.resources("Microsoft.Insights/metricAlerts")
    assert metric.body["properties"]["actions"] == [{"actionGroupId": Expr("actionGroup.id")}]
    criterion = metric.body["properties"]["criteria"]["allOf"][0]
    assert (criterion["metricName"], criterion["threshold"]) == (
        "requests/failed", Expr("functionFailureThreshold"),
    )  # fmt: skip
    (logs,) = module.resources("Microsoft.Insights/scheduledQueryRules")
    assert logs.loop
    assert logs.body["properties"]["actions"] == {"actionGroups": [Expr("actionGroup.id")]}


def test_main_passes_every_threshold_and_both_environments_set_them() -> None:
    main = load(INFRA / "main.bicep")
    (call,) = main.modules("modules/ops-alerts.bicep")
    passed = call.body["params"]
    for name in ALERT_PARAMS[1:]:
        assert passed[name] == Expr(name), name
    assert "opsAlertEmail" in passed["opsEmails"].text
    assert "alertRecipients" in passed["opsEmails"].text, "falls back to the app's recipients"
    (workbook,) = main.modules("modules/workbook.bicep")
    assert workbook.body["params"]["applicationInsightsId"] == Expr(
        "monitoring.outputs.applicationInsightsId"
    )
    for env in ("dev", "prod"):
        values = json.loads((INFRA / f"main.{env}.parameters.json").read_text())["parameters"]
        assert set(ALERT_PARAMS) <= set(values), env


def test_the_workbook_is_a_shared_workbook_over_application_insights() -> None:
    (workbook,) = load(INFRA / "modules" / "workbook.bicep").resources(
        "Microsoft.Insights/workbooks"
    )
    assert workbook.body["kind"] == "shared"
    properties = workbook.body["properties"]
    assert properties["category"] == "workbook"
    assert properties["sourceId"] == Expr("applicationInsightsId")
    data = json.loads(WORKBOOK.read_text())
    assert data["version"] == "Notebook/1.0"
    titles = [q.where for q in workbook_queries()]
    assert len(titles) == len(set(titles)), "every panel has its own title"
    for item in data["items"]:
        if item["type"] == 3:
            assert item["content"]["timeContextFromParameter"] == "TimeRange"
