"""The workbook's and the alert rules' queries use only what the app really emits.

"What the app emits" is captured, not declared: the telemetry scenario of
test_telemetry_export (every ``record_*`` helper of adapters/telemetry.py) runs in a child
process through the real Azure Monitor exporter into a loopback ingestion endpoint, and the
envelopes that arrive give each metric's and event's name and custom dimensions, exactly as
Application Insights stores them in ``customMetrics`` / ``customEvents``.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Iterator

import pytest

from adapters import telemetry
from tests.infra.kql import Catalogue, Query, alert_queries, problems, uses, workbook_queries
from tests.integration.test_telemetry_export import _Handler, _Ingestion, _props, _run_child

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def emitted() -> Iterator[dict[str, dict[str, set[str]]]]:
    import threading

    server = _Ingestion(("127.0.0.1", 0), _Handler)
    server.envelopes, server.paths, server.lock = [], [], threading.Lock()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        result = _run_child(server)
        assert result.returncode == 0, result.stderr[-3000:]
        catalogue: dict[str, dict[str, set[str]]] = {"metric": {}, "event": {}}
        for envelope in server.envelopes:
            base = envelope["data"]["baseType"]
            if base == "MetricData":
                name = envelope["data"]["baseData"]["metrics"][0]["name"]
                if not name.startswith("mlops."):
                    continue  # the exporter's own resource metric
                catalogue["metric"].setdefault(name, set()).update(_props(envelope))
            elif base == "EventData":
                name = envelope["data"]["baseData"]["name"]
                catalogue["event"].setdefault(name, set()).update(_props(envelope))
        yield catalogue
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _all_queries() -> list[Query]:
    return workbook_queries() + alert_queries()


def test_the_scenario_emits_every_metric_telemetry_declares(emitted: Catalogue) -> None:
    """The capture is complete: each metric named in telemetry.py's source arrives."""
    source = inspect.getsource(telemetry)
    declared = set(re.findall(r'"(mlops\.[a-z_]+\.[a-z_.]+)"', source))
    declared |= {f"mlops.model.{m}" for m in ("mape", "rmse_zero", "rmse_all")}
    assert "mlops.job.outcomes" in declared and "mlops.job.finished" in declared
    arrived = set(emitted["metric"]) | set(emitted["event"])
    assert declared <= arrived, sorted(declared - arrived)


def test_workbook_and_alert_queries_use_only_emitted_names(emitted: Catalogue) -> None:
    queries = _all_queries()
    assert len(workbook_queries()) >= 12 and len(alert_queries()) == 3
    assert problems(queries, emitted) == []


def test_every_emitted_metric_appears_in_the_workbook(emitted: Catalogue) -> None:
    used = set()
    for query in workbook_queries():
        used |= uses(query.text).names
    missing = set(emitted["metric"]) - used - {"mlops.model.rmse_zero", "mlops.model.rmse_all"}
    assert missing == set(), "metrics nobody looks at in Azure"


def test_a_name_renamed_in_the_workbook_only_is_reported(emitted: Catalogue) -> None:
    renamed = [
        Query(q.where, q.text.replace("mlops.conditioning.rows_rejected", "mlops.rows_rejected"))
        for q in _all_queries()
    ]
    found = problems(renamed, emitted)
    assert found and all("'mlops.rows_rejected' is not emitted" in p for p in found), found
    dims = [Query(q.where, q.text.replace("customDimensions.reason", "customDimensions.cause"))
            for q in workbook_queries()]  # fmt: skip
    assert any("no dimension 'cause'" in p for p in problems(dims, emitted))


def test_a_name_renamed_in_the_telemetry_only_is_reported(emitted: Catalogue) -> None:
    """As if telemetry.py renamed a metric, a dimension and the event, the queries not."""
    metrics = {k: set(v) for k, v in emitted["metric"].items()}
    metrics["mlops.job.runs"] = metrics.pop("mlops.job.outcomes")
    metrics["mlops.model.age_days"] = (metrics["mlops.model.age_days"] - {"segment"}) | {"seg"}
    events = {"mlops.job.done": set(emitted["event"]["mlops.job.finished"])}
    found = problems(_all_queries(), {"metric": metrics, "event": events})
    assert any("'mlops.job.outcomes' is not emitted" in p for p in found), found
    assert any("'mlops.model.age_days' has no dimension 'segment'" in p for p in found), found
    assert any("event 'mlops.job.finished' is not emitted" in p for p in found), found
    assert any(p.startswith("stale-champion.kql") for p in found), "alert rules are checked too"


def test_renamed_on_both_sides_passes(emitted: Catalogue) -> None:
    metrics = {k: set(v) for k, v in emitted["metric"].items()}
    metrics["mlops.job.runs"] = metrics.pop("mlops.job.outcomes")
    renamed = [Query(q.where, q.text.replace("mlops.job.outcomes", "mlops.job.runs"))
               for q in _all_queries()]  # fmt: skip
    assert problems(renamed, {"metric": metrics, "event": dict(emitted["event"])}) == []


def test_the_bicep_loads_the_files_the_test_checks() -> None:
    from tests.infra.bicep import INFRA

    workbook = (INFRA / "modules" / "workbook.bicep").read_text()
    alerts = (INFRA / "modules" / "ops-alerts.bicep").read_text()
    assert "loadTextContent('../monitoring/model-health.workbook.json')" in workbook
    for query in alert_queries():
        assert f"loadTextContent('../monitoring/{query.where}')" in alerts
    data = json.loads((INFRA / "monitoring" / "model-health.workbook.json").read_text())
    assert data["fallbackResourceIds"] == ["__APP_INSIGHTS_ID__"]
