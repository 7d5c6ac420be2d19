"""Reliability of the automation loop, through the local runtime on real parts.

The real function app runs on the local host, with Azurite, the Durable Task engine, the alert
outbox in Azurite, an aiosmtpd server and an MLflow sqlite registry. Only the Azure ML control
plane is scripted (``ScriptedPipelineJobs``): jobs finish, fail or refuse submissions as each
test needs, and publish Azure ML–shaped events to the app's Event Grid functions.
"""

from __future__ import annotations

import contextlib
import email
import json
import os
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from adapters.events import EventGridWebhookPublisher
from local.azurite import Azurite
from local.host import HostConfig, LocalFunctionsHost
from local.keys import HostKeys
from local.processes import free_port
from local.smtp import LocalSmtpServer
from tests.e2e.fakes import ScriptedPipelineJobs
from tests.support import wait_until as _wait_until

pytestmark = pytest.mark.e2e


def wait_until(predicate: Callable[[], Any], timeout: float = 60.0) -> Any:
    return _wait_until(predicate, timeout, step=0.2)


def call(url: str, body: Any = None, method: str | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw else None


@dataclass
class Automation:
    host: LocalFunctionsHost
    jobs: ScriptedPipelineJobs
    smtp: LocalSmtpServer
    state: Path
    tracking_uri: str
    register: Callable[[str, str, Mapping[str, str]], str]

    def url(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.host.base_url}/api/{path}{sep}code={self.host.keys.default_function_key}"

    def start(self, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        status, payload = call(self.url(f"orchestrations/{name}"), body, "POST")
        assert status == 202, payload
        return dict(payload)

    def wait_done(self, status_url: str, timeout: float = 90) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            _, body = call(status_url)
            if body and body.get("runtimeStatus") in ("Completed", "Failed", "Terminated"):
                return dict(body)
            return None

        return dict(wait_until(done, timeout))

    def emails(self) -> list[email.message.Message]:
        return [email.message_from_bytes(p.read_bytes()) for p in self.smtp.messages()]

    def publish(self, events: list[dict[str, Any]]) -> None:
        EventGridWebhookPublisher(self.host.topic_url("aml")).publish(events)

    def deliver(self, function: str, events: list[dict[str, Any]]) -> int:
        status, _ = call(self.host.url_for(function), events, "POST")
        return status


@pytest.fixture(scope="module")
def automation(azurite: Azurite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Automation]:
    from adapters.settings import SETTINGS, load_settings
    from composition import build_services, use_services
    from triggers.aml_events import SUBSCRIPTIONS

    state = tmp_path_factory.mktemp("automation")
    smtp = LocalSmtpServer(state).start()
    keys = HostKeys.load_or_create(state / "host-keys.json")
    port = free_port()
    tracking_uri = f"sqlite:///{state / 'mlflow.db'}"
    env = {s.key: s.default for s in SETTINGS if s.default is not None}
    env.update(
        {
            "AzureWebJobsStorage": azurite.connection_string,
            "MLOPS_DATALAKE": azurite.connection_string,
            "MLOPS_ENVIRONMENT": "local",
            "MLOPS_LOCAL_DIR": str(state),
            "MLOPS_MLFLOW_TRACKING_URI": tracking_uri,
            "MLOPS_TASK_HUB": "e2ehub",
            "MLOPS_CONDITIONED_CONTAINER": f"cond{uuid.uuid4().hex[:8]}",
            "MLOPS_RAW_CONTAINER": f"raw{uuid.uuid4().hex[:8]}",
            "MLOPS_QUARANTINE_CONTAINER": f"quar{uuid.uuid4().hex[:8]}",
            "MLOPS_TRAIN_ON_ARRIVAL": "true",
            "MLOPS_ALERTS_CONTAINER": f"ops{uuid.uuid4().hex[:8]}",
            "MLOPS_SMTP_HOST": "127.0.0.1",
            "MLOPS_SMTP_PORT": str(smtp.port),
            "MLOPS_SMTP_TIMEOUT_SECONDS": "2",
            "MLOPS_POLL_FIRST_SECONDS": "0.5",
            "MLOPS_POLL_MIN_SECONDS": "0.5",
            "MLOPS_POLL_MAX_SECONDS": "2",
            "MLOPS_REGIONS": "r01,r02",
            "MLOPS_ALERT_MAX_PER_WINDOW": "10",
        }
    )
    saved = dict(os.environ)
    os.environ.update(env)
    settings = load_settings()
    services = build_services(settings)

    def register(model: str, job: str, tags: Mapping[str, str]) -> str:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        with contextlib.suppress(MlflowException):  # registered before
            client.create_registered_model(model)
        folder = state / "models" / job
        folder.mkdir(parents=True, exist_ok=True)
        return str(client.create_model_version(model, str(folder), tags=dict(tags)).version)

    jobs = ScriptedPipelineJobs(
        EventGridWebhookPublisher(
            f"http://127.0.0.1:{port}/runtime/local/topics/aml"
            f"?code={keys.system_keys['eventgrid_extension']}"
        ),
        register,
        state / "jobs",
    )
    services.pipeline_jobs = jobs
    use_services(services)
    import function_app

    config = HostConfig(
        state_dir=state,
        environ=os.environ,
        task_hub=settings.task_hub,
        port=port,
        blob_poll_interval=0.3,
        topics={"aml": {f: tuple(map(str, t)) for f, t in SUBSCRIPTIONS.items()}},
    )
    host = LocalFunctionsHost(function_app.app.get_functions(), config).start()
    try:
        running = Automation(host, jobs, smtp, state, tracking_uri, register)
        _seed_conditioned_data()
        yield running
    finally:
        host.stop()
        smtp.stop()
        use_services(None)
        os.environ.clear()
        os.environ.update(saved)


def _seed_conditioned_data() -> None:
    """Register one conditioned version of every training source, as conditioning would."""
    from adapters.datasets import DatasetVersion
    from composition import get_services

    services = get_services()
    assert services.datasets is not None
    lake = services.data_lake
    container = services.settings.conditioned_container
    lake.ensure_container(container)
    for source in services.settings.automation.training_sources:
        blob = f"{source}/v1/part-00000.csv"
        lake.write(container, blob, b"store_id,value\n1,2\n")
        # Conditioning writes the manifest last; its sha256 tags the version's data asset.
        lake.write(container, f"{source}/v1/manifest.json", b'{"rows_out": 1}')
        services.datasets.register(
            DatasetVersion(
                source=source, dataset_version="v1", status="conditioned", input_name=source,
                input_etag="e", input_sha256="x",
                manifest=f"{container}/{source}/v1/manifest.json",
                files=(f"{container}/{blob}",), rows_in=1, rows_out=1, period_end="2026-11-23",
                registered_at="2026-11-24T00:00:00+00:00",
            )
        )  # fmt: skip


def test_train_from_an_adf_call_to_champion_and_scoring(automation: Automation) -> None:
    body = {"segments": ["r01-large-fast", "r01-small-slow"], "week": "2026-11-23"}
    started = automation.start("train", body)
    again = automation.start("train", body)
    assert again["id"] == started["id"]  # a repeated call is the same run
    result = automation.wait_done(started["statusQueryGetUri"])
    assert result["runtimeStatus"] == "Completed", result.get("output")
    output = result["output"]
    assert output["status"] == "succeeded"
    assert output["promoted"] == ["r01-large-fast", "r01-small-slow"]
    seg = output["segments"]["r01-large-fast"]
    assert seg["decision"] == "champion" and seg["model_version"] == "1"
    assert output["score"]["segments"]["r01-large-fast"]["status"] == "scored"
    train_jobs = [j for j in automation.jobs.submissions if j.pipeline == "train"]
    assert len(train_jobs) == 2  # one job per segment, and the repeat started nothing
    # The ADF-facing status endpoint tells the same story in one JSON object.
    status, view = call(automation.url(f"orchestrations/{started['id']}"))
    assert status == 200 and view["runtimeStatus"] == "Completed"
    # ModelRegistered events from the registrations started offline model tests.
    wait_until(lambda: len([j for j in automation.jobs.submissions
                            if j.pipeline == "model_test"]) >= 2)  # fmt: skip


def test_the_same_event_ten_times_starts_one_model_test(automation: Automation) -> None:
    from local.aml.events import model_registered_event

    tags = {"segment": "r02/large/fast", "trained_at": datetime.now(UTC).isoformat()}
    version = automation.register("forecast-r02-large-fast", "manual", tags)
    event = model_registered_event("forecast-r02-large-fast", version, tags, {})
    for _ in range(10):
        assert automation.deliver("on_model_registered", [event]) == 200

    def tests_of_this_version() -> list[Any]:
        return [j for j in automation.jobs.submissions
                if j.pipeline == "model_test" and j.inputs.get("model_version") == version
                and j.inputs.get("model_name") == "forecast-r02-large-fast"]  # fmt: skip

    wait_until(tests_of_this_version)
    time.sleep(1.5)
    assert len(tests_of_this_version()) == 1


def test_a_failing_job_names_its_segment_and_sends_one_alert(automation: Automation) -> None:
    automation.jobs.script.failing_segments = {"r02-small-fast"}
    before = len(automation.emails())
    started = automation.start(
        "train", {"segments": ["r02-small-fast", "r02-large-slow"], "week": "2026-11-23"}
    )
    result = automation.wait_done(started["statusQueryGetUri"])
    automation.jobs.script.failing_segments = set()
    assert result["runtimeStatus"] == "Completed"
    output = result["output"]
    assert output["status"] == "partial"
    assert list(output["failed"]) == ["r02-small-fast"]
    assert output["segments"]["r02-large-slow"]["status"] == "completed"
    # The orchestrator and the RunStatusChanged event both report the failure: one email.
    wait_until(lambda: len(automation.emails()) == before + 1)
    time.sleep(1.5)
    mails = automation.emails()[before:]
    assert len(mails) == 1
    mail = mails[0]
    assert "r02-small-fast" in mail["Subject"]
    text = mail.get_payload()[0].get_payload(decode=True).decode() if mail.is_multipart() else (
        mail.get_payload(decode=True).decode()
    )  # fmt: skip
    assert "train" in text and "scripted failure" in text


def test_a_transient_submit_error_is_retried(automation: Automation) -> None:
    automation.jobs.script.transient_submit_failures = 1
    refused = automation.jobs.refused
    started = automation.start(
        "train", {"segments": ["r01-large-slow"], "week": "2026-11-23", "score": False}
    )
    result = automation.wait_done(started["statusQueryGetUri"])
    assert automation.jobs.refused == refused + 1
    assert result["output"]["segments"]["r01-large-slow"]["status"] == "completed"


def test_a_worker_restart_mid_orchestration_resumes(automation: Automation) -> None:
    automation.jobs.script.duration = 3.0
    try:
        started = automation.start(
            "train", {"segments": ["r02-large-fast"], "week": "2026-11-23", "score": False}
        )
        wait_until(lambda: any(j.tags.get("segment") == "r02-large-fast"
                               for j in automation.jobs.submissions))  # fmt: skip
        assert automation.host.durable is not None
        automation.host.durable.restart_worker()
        result = automation.wait_done(started["statusQueryGetUri"])
    finally:
        automation.jobs.script.duration = 1.0
    assert result["runtimeStatus"] == "Completed"
    assert result["output"]["segments"]["r02-large-fast"]["status"] == "completed"


def _failure_event(run_id: str, segment: str, pipeline: str) -> dict[str, Any]:
    from adapters.events import AzureMLEventType
    from local.aml.events import run_event

    return run_event(
        AzureMLEventType.RUN_STATUS_CHANGED,
        experiment_name=f"forecast-{pipeline}",
        run_id=run_id,
        run_type="azureml.PipelineRun",
        status="Failed",
        tags={"segment": segment, "pipeline": pipeline},
        properties={},
    )


def test_a_storm_of_failures_sends_one_email_per_signature_and_one_digest(
    automation: Automation,
) -> None:
    from composition import get_services
    from orchestrators.alerting import flush_pending
    from orchestrators.failure_alerts import _policy

    before = len(automation.emails())
    signatures = [
        ("r09-large-fast", "score"),
        ("r09-small-fast", "score"),
        ("r09-small-slow", "model_test"),
    ]
    events = [
        _failure_event(f"storm-{uuid.uuid4().hex[:8]}", *signatures[i % 3]) for i in range(100)
    ]
    for start in range(0, 100, 10):
        assert automation.deliver("on_run_status_changed", events[start : start + 10]) == 200
    wait_until(lambda: len(automation.emails()) >= before + 3)
    time.sleep(1.0)
    assert len(automation.emails()) == before + 3
    services = get_services()
    assert services.alert_store is not None and services.notifier is not None
    report = flush_pending(
        store=services.alert_store,
        notifier=services.notifier,
        now=datetime.now(UTC) + timedelta(hours=2),
        policy=_policy(services),
    )
    assert report.digest_id is not None
    wait_until(lambda: len(automation.emails()) == before + 4)
    digest = automation.emails()[-1]
    assert "97" in digest["Subject"] or "97" in str(digest.get_payload())


def test_an_alert_survives_the_mail_server_being_down(automation: Automation) -> None:
    before = len(automation.emails())
    automation.smtp.stop()
    try:
        event = _failure_event(f"down-{uuid.uuid4().hex[:8]}", "r08-large-fast", "train")
        assert automation.deliver("on_run_status_changed", [event]) == 200
        time.sleep(0.5)
        assert len(automation.emails()) == before
    finally:
        automation.smtp.start()
    from composition import get_services
    from orchestrators.alerting import flush_pending
    from orchestrators.failure_alerts import _policy

    services = get_services()
    assert services.alert_store is not None and services.notifier is not None
    flush_pending(
        store=services.alert_store,
        notifier=services.notifier,
        now=datetime.now(UTC) + timedelta(minutes=5),
        policy=_policy(services),
    )
    wait_until(lambda: len(automation.emails()) == before + 1)
    assert "r08-large-fast" in automation.emails()[-1]["Subject"]


def test_bad_requests_are_json_400s(automation: Automation) -> None:
    cases: list[tuple[str, Any]] = [
        ("train", {"segments": ["r01-medium-fast"]}),
        ("train", {"week": "2026-11-23"}),
        ("train", {"segments": ["r01-large-fast"], "week": "23/11/2026"}),
        ("train", {"segments": ["r01-large-fast"], "surprise": 1}),
        ("score", {"segments": ["r01-large-fast"]}),
        ("model_test", {"model_name": "", "model_version": 1}),
    ]
    for name, body in cases:
        status, payload = call(automation.url(f"orchestrations/{name}"), body, "POST")
        assert status == 400, (name, body, payload)
        assert isinstance(payload, dict) and payload["error"]["message"]
    status, payload = call(automation.url("orchestrations/explode"), {}, "POST")
    assert status == 404 and "train" in payload["error"]["message"]
    status, payload = call(automation.url("orchestrations/no-such-instance"))
    assert status == 404
    req = urllib.request.Request(automation.url("orchestrations/train"), data=b"[1,2]",
                                 method="POST")  # fmt: skip
    try:
        urllib.request.urlopen(req, timeout=10)
        raise AssertionError("an array body must be refused")
    except urllib.error.HTTPError as exc:
        assert exc.code == 400


def test_the_same_blob_twice_starts_one_training(automation: Automation, tmp_path: Path) -> None:
    from composition import get_services
    from conditioning.synthetic import SyntheticSpec, write_stores

    services = get_services()
    lake, raw = services.data_lake, services.settings.raw_container
    lake.ensure_container(raw)
    stores = tmp_path / "stores.csv"
    write_stores(stores, SyntheticSpec(regions=2))
    for attempt in range(2):  # the same content delivered twice (a new ETag each time)
        lake.write(raw, "stores/2026-11-23/stores.csv", stores.read_bytes())
        wait_until(
            lambda n=attempt: automation.host.blob_stats["on_raw_blob_created"].invocations >= n + 1
        )
    instance = "train-data-2026-11-23"
    management = (
        f"{automation.host.base_url}/runtime/webhooks/durabletask/instances/{instance}"
        f"?code={automation.host.keys.system_keys['durabletask_extension']}"
    )
    result = automation.wait_done(management)
    assert result["runtimeStatus"] == "Completed", result.get("output")
    runs = {j.tags.get("orchestration") for j in automation.jobs.submissions
            if j.pipeline == "train"}  # fmt: skip
    assert instance in runs
    trained = [j for j in automation.jobs.submissions
               if j.pipeline == "train" and j.tags.get("orchestration") == instance]  # fmt: skip
    assert len(trained) == 8  # two regions x four segments, started once
    assert sorted(v.status for v in services.datasets.versions("stores")).count("conditioned") == 2


ADF_PIPELINE = Path(__file__).resolve().parents[2] / "infra/adf/pipeline/pl_run_orchestration.json"


def _adf_http(automation: Automation) -> Any:
    def http(method: str, target: str, body: Any) -> tuple[int, Any]:
        # The linked service turns a function name into <app>/api/<name>?code=<function key>.
        url = target if target.startswith("http") else automation.url(target)
        return call(url, body, method)

    return http


def test_the_adf_pipeline_replays_against_the_local_host(automation: Automation) -> None:
    from tests.e2e.adf import replay

    pipeline = json.loads(ADF_PIPELINE.read_text(encoding="utf-8"))
    parameters = {
        "orchestration": "train",
        "input": {"segments": ["r02-small-slow"], "week": "2026-11-23", "score": False},
        "pollIntervalSeconds": 50,
    }
    run = replay(pipeline, parameters, _adf_http(automation))
    assert run.variables["runtimeStatus"] == "Completed"
    assert run.calls[0] == ("POST", "orchestrations/train")
    polls = [url for method, url in run.calls if method == "GET"]
    assert polls and all(url == run.outputs["Start orchestration"]["statusQueryGetUri"]
                         for url in polls)  # fmt: skip
    # ADF retries the activity on a timeout: the repeat finds the same instance.
    again = replay(pipeline, parameters, _adf_http(automation))
    assert again.outputs["Start orchestration"]["id"] == run.outputs["Start orchestration"]["id"]


def test_the_adf_pipeline_fails_when_the_orchestration_fails(automation: Automation) -> None:
    from tests.e2e.adf import PipelineFailed, replay

    automation.jobs.script.failing_segments = {"r03-small-slow"}
    pipeline = json.loads(ADF_PIPELINE.read_text(encoding="utf-8"))
    parameters = {
        "orchestration": "train",
        "input": {"segments": ["r03-small-slow"], "week": "2026-11-23"},
        "pollIntervalSeconds": 50,
    }
    try:
        with pytest.raises(PipelineFailed, match="ended with runtimeStatus Failed"):
            replay(pipeline, parameters, _adf_http(automation))
    finally:
        automation.jobs.script.failing_segments = set()


def test_retrain_on_a_monitor_breach_is_debounced_per_segment_and_window(
    automation: Automation,
) -> None:
    from adapters.events import AzureMLEventType
    from local.aml.events import run_event

    def breach() -> dict[str, Any]:
        return run_event(
            AzureMLEventType.RUN_STATUS_CHANGED,
            experiment_name="forecast-r01-small-fast-monitor",
            run_id=f"monitor-{uuid.uuid4().hex[:8]}",
            run_type="azureml.modelmonitor",
            status="Failed",
            tags={
                "segment": "r01-small-fast",
                "azureml_modelmonitor_threshold_breached": "The monitoring run has failed due "
                "to one or more features violating metric thresholds.",
            },
            properties={},
        )

    first, second = breach(), breach()  # two breaches (two event ids) in the same window
    emails_before = len(automation.emails())
    assert automation.deliver("on_run_status_changed", [first]) == 200
    assert automation.deliver("on_run_status_changed", [second]) == 200
    key = automation.host.keys.system_keys["durabletask_extension"]

    def outcome(event: dict[str, Any]) -> dict[str, Any]:
        url = (
            f"{automation.host.base_url}/runtime/webhooks/durabletask/instances/"
            f"retrain-{event['id']}?code={key}"
        )
        return automation.wait_done(url)

    results = sorted((outcome(first)["output"], outcome(second)["output"]),
                     key=lambda o: o["status"])  # fmt: skip
    assert [r["status"] for r in results] == ["debounced", "retrained"]
    assert results[0]["skipped"] == ["r01-small-fast"]
    retrained = results[1]
    assert retrained["segments"] == ["r01-small-fast"] and retrained["reason"] == "monitor_breach"
    assert retrained["train"]["segments"]["r01-small-fast"]["status"] == "completed"
    assert len(automation.emails()) == emails_before  # a breach retrains; it is not a failure alert
