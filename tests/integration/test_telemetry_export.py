"""The real Azure Monitor exporter delivers our spans, metrics and logs to an ingestion endpoint.

A local HTTP server on 127.0.0.1 plays Application Insights' ingestion service
(``POST /v2.1/track``, JSON or gzip JSON, answering with ``itemsReceived``/``itemsAccepted``).
The scenario runs in a child process because OpenTelemetry's providers are process-wide and
can be set once: it configures telemetry from a connection string whose ``IngestionEndpoint``
is that server, handles one blob drop and one orchestration the way the triggers and
activities do, flushes, and exits.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from adapters.settings import load_settings
from adapters.telemetry import (
    Correlation,
    configure_telemetry,
    flush_telemetry,
    log_fields,
    record_alert_outbox,
    record_alert_sent,
    record_conditioning,
    record_conditioning_silence,
    record_job,
    record_model_age,
    record_model_quality,
    span,
    trace_carrier,
)

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
IKEY = "11111111-2222-3333-4444-555555555555"
BLOB = "raw/shipments/2024-03-04/vendor.csv"
INSTANCE = "train-2024-w10-abc123"
JOB = "train_5f2c9a1b"


class _Ingestion(ThreadingHTTPServer):
    envelopes: list[dict[str, Any]]
    paths: list[str]
    lock: threading.Lock


class _Handler(BaseHTTPRequestHandler):
    server: _Ingestion

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Encoding", "").lower() == "gzip" or body[:2] == b"\x1f\x8b":
            body = gzip.decompress(body)
        text = body.decode("utf-8").strip()
        # The service takes a JSON array or newline-delimited JSON objects.
        items = (
            json.loads(text) if text.startswith("[") else [json.loads(x) for x in text.split("\n")]
        )
        with self.server.lock:
            self.server.paths.append(self.path)
            if self.path.rstrip("/").endswith("/v2.1/track"):
                self.server.envelopes.extend(items)
        answer = json.dumps(
            {"itemsReceived": len(items), "itemsAccepted": len(items), "errors": []}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def ingestion() -> Iterator[_Ingestion]:
    server = _Ingestion(("127.0.0.1", 0), _Handler)
    server.envelopes, server.paths, server.lock = [], [], threading.Lock()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def emit_scenario() -> None:
    """Child process: one blob drop and one train orchestration, as the app records them."""
    import logging

    settings = load_settings(os.environ)
    assert configure_telemetry(settings, offline_storage=False)
    assert configure_telemetry(settings, offline_storage=False)  # idempotent
    log = logging.getLogger("triggers.blob")
    log.setLevel(logging.INFO)

    # Trigger: a raw blob is conditioned.
    drop = Correlation(blob_name=BLOB, event_id="evt-0001")
    with span("on_raw_blob_created", kind="consumer", correlation=drop):
        log.info("conditioned %s", BLOB, extra=log_fields(drop))
        record_conditioning(
            "shipments",
            status="conditioned",
            rows_out=970,
            rows_rejected=30,
            reject_counts={"bad_date": 18, "negative_quantity": 7},
        )

    # HTTP starter → orchestration input carries the trace → activity → Azure ML job.
    with span("start_train", kind="server", correlation=Correlation(instance_id=INSTANCE)):
        carrier = trace_carrier()
    orchestration_input = {"trace": carrier}
    with span(
        "submit_pipeline_job",
        parent=orchestration_input["trace"],
        correlation=Correlation(instance_id=INSTANCE, segment="north-large-fast"),
    ) as activity:
        with span("aml.train", kind="client", correlation=Correlation(job_name=JOB)):
            pass
        activity.set("mlops.pipeline", "train")
    record_job(
        "train",
        status="Completed",
        duration_seconds=61.4,
        segment="north-large-fast",
        job_name=JOB,
    )
    record_job(
        "score",
        status="Failed",
        duration_seconds=12.0,
        segment="south-small-slow",
        job_name="score_0001",
        failed_step="score",
        error="score exited with code 1",
    )
    record_model_quality(
        "forecast-north-large-fast",
        "3",
        segment="north/large/fast",
        metrics={
            "ensemble_mape": 0.176,
            "baseline_mape": 0.681,
            "ensemble_rmse_all": 8.5,
            "ensemble_rmse_zero": 2.1,
        },
        role="champion",
    )
    record_model_age(
        "forecast-north-large-fast", "3", segment="north/large/fast", age_days=12.5, stale=False
    )
    record_alert_sent("job_failed", digest=True, count=3)
    record_alert_outbox(4, 37.5)
    record_conditioning_silence(30.25)
    assert flush_telemetry(20)


def _run_child(ingestion: _Ingestion) -> subprocess.CompletedProcess[str]:
    port = ingestion.server_address[1]
    endpoint = f"http://127.0.0.1:{port}/"
    env = {
        **{
            k: v for k, v in os.environ.items() if not k.startswith(("APPLICATIONINSIGHTS", "OTEL"))
        },
        "APPLICATIONINSIGHTS_CONNECTION_STRING": (
            f"InstrumentationKey={IKEY};IngestionEndpoint={endpoint};LiveEndpoint={endpoint}"
        ),
        # The exporter's own side channels (SDK stats, remote configuration) would call
        # Microsoft endpoints: this test talks to loopback only.
        "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
        "APPLICATIONINSIGHTS_SDKSTATS_DISABLED": "true",
        "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true",
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "MLOPS_DATALAKE": "UseDevelopmentStorage=true",
        "MLOPS_ENVIRONMENT": "local",
    }
    code = "from tests.integration.test_telemetry_export import emit_scenario; emit_scenario()"
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _props(envelope: dict[str, Any]) -> dict[str, Any]:
    return dict(envelope["data"]["baseData"].get("properties") or {})


def test_exporter_delivers_spans_metrics_and_logs_with_correlation_ids(
    ingestion: _Ingestion,
) -> None:
    result = _run_child(ingestion)
    assert result.returncode == 0, result.stderr[-3000:]
    envelopes = ingestion.envelopes
    assert envelopes, f"nothing arrived; paths seen: {ingestion.paths}"
    assert all(e["iKey"] == IKEY for e in envelopes)
    assert all(p.rstrip("/").endswith("/v2.1/track") for p in ingestion.paths)

    requests = {
        e["data"]["baseData"]["name"]: e
        for e in envelopes
        if e["data"]["baseType"] == "RequestData"
    }
    dependencies = {
        e["data"]["baseData"]["name"]: e
        for e in envelopes
        if e["data"]["baseType"] == "RemoteDependencyData"
    }
    # The blob drop is a request carrying the blob name and event id.
    drop = requests["on_raw_blob_created"]
    assert _props(drop)["mlops.blob_name"] == BLOB
    assert _props(drop)["mlops.event_id"] == "evt-0001"

    # The orchestration: starter, activity and job share one operation (trace) id, and the
    # activity's parent is the starter's span, although it continued from a carrier.
    starter = requests["start_train"]
    activity = dependencies["submit_pipeline_job"]
    job = dependencies["aml.train"]
    operation = starter["tags"]["ai.operation.id"]
    assert activity["tags"]["ai.operation.id"] == operation
    assert job["tags"]["ai.operation.id"] == operation
    assert activity["tags"]["ai.operation.parentId"] == starter["data"]["baseData"]["id"]
    assert _props(activity)["mlops.instance_id"] == INSTANCE
    assert _props(activity)["mlops.pipeline"] == "train"
    assert _props(job)["mlops.job_name"] == JOB
    assert drop["tags"]["ai.operation.id"] != operation

    # Custom metrics with their dimensions.
    metrics: dict[tuple[str, tuple[tuple[str, str], ...]], dict[str, Any]] = {}
    for e in envelopes:
        if e["data"]["baseType"] == "MetricData":
            point = e["data"]["baseData"]["metrics"][0]
            key = (point["name"], tuple(sorted(_props(e).items())))
            metrics[key] = point
    names = {name for name, _ in metrics}

    def value(name: str, **dims: str) -> float:
        found = [
            p for (n, d), p in metrics.items() if n == name and dims.items() <= dict(d).items()
        ]
        assert len(found) == 1, (name, dims, sorted(names))
        return float(found[0]["value"])

    assert value("mlops.conditioning.rows_conditioned", source="shipments") == 970
    assert value("mlops.conditioning.rows_rejected", source="shipments", reason="bad_date") == 18
    assert value("mlops.conditioning.rows_rejected", reason="negative_quantity") == 7
    assert value("mlops.conditioning.rows_rejected", reason="unspecified") == 5
    assert value("mlops.job.duration", pipeline="train", status="Completed") == pytest.approx(61.4)
    assert value("mlops.job.outcomes", status="Completed") == 1
    assert value("mlops.model.mape", component="ensemble", role="champion") == pytest.approx(0.176)
    assert value("mlops.model.mape", component="baseline") == pytest.approx(0.681)
    assert value("mlops.model.rmse_all", component="ensemble") == pytest.approx(8.5)
    assert value("mlops.model.age_days", stale="false") == pytest.approx(12.5)
    assert value("mlops.alerts.sent", kind="job_failed", delivery="digest") == 3
    assert value("mlops.alerts.pending") == 4
    assert value("mlops.alerts.oldest_pending_minutes") == pytest.approx(37.5)
    assert value("mlops.conditioning.hours_since_last") == pytest.approx(30.25)

    # Each finished job is also a custom event naming it.
    events = {_props(e)["job_name"]: e for e in envelopes if e["data"]["baseType"] == "EventData"}
    assert {e["data"]["baseData"]["name"] for e in events.values()} == {"mlops.job.finished"}
    failed = _props(events["score_0001"])
    assert failed["status"] == "Failed" and failed["failed_step"] == "score"
    assert failed["error"] == "score exited with code 1"
    assert _props(events[JOB])["pipeline"] == "train"

    # The structured log line is a trace message inside the blob drop's operation.
    messages = [e for e in envelopes if e["data"]["baseType"] == "MessageData"]
    logged = [m for m in messages if m["data"]["baseData"]["message"] == f"conditioned {BLOB}"]
    assert len(logged) == 1
    assert _props(logged[0])["mlops.blob_name"] == BLOB
    assert logged[0]["tags"]["ai.operation.id"] == drop["tags"]["ai.operation.id"]


def test_off_without_a_connection_string_and_helpers_are_safe() -> None:
    settings = load_settings(
        {
            "AzureWebJobsStorage": "UseDevelopmentStorage=true",
            "MLOPS_DATALAKE": "UseDevelopmentStorage=true",
        }
    )
    assert settings.app_insights_connection_string is None
    assert configure_telemetry(settings) is False
    with span("anything", correlation=Correlation(blob_name="b")) as current:
        current.set("k", "v")
        assert current.recording is False
        assert trace_carrier() == {}
    record_conditioning("s", status="conditioned", rows_out=1, rows_rejected=0)
    record_job("train", status="Failed", duration_seconds=1.0)
    record_alert_sent("x")
    record_alert_outbox(1, 1.0)
    record_conditioning_silence(1.0)
    assert flush_telemetry() is True
    with pytest.raises(ValueError, match="boom"), span("failing"):
        raise ValueError("boom")
