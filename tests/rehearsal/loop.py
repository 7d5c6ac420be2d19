"""The automation loop, run once through a ``Rehearsal``: every stage timed, every outcome kept.

``run_loop`` drives the deployment only through its public surfaces, in the order the
weekly cycle has them:

1. the operator drops raw files into the lake; the blob trigger conditions them;
2. the Data Factory pipeline (``infra/adf/pipeline/pl_run_orchestration.json``, interpreted
   as ADF runs it, following 202 + Location) starts ``train`` for two segments and polls the
   app until it ends; Azure ML runs one job per segment, the gate decides, the register step
   registers, ``ModelRegistered`` starts a model test, which runs and records its verdict;
3. a second pipeline run trains a region with no data: its job fails for real, and Ops must
   get exactly one email, through Communication Services;
4. cold starts: a fresh app process answers each Event Grid handler's first delivery, and
   an HTTP start;
5. with the prod parameters, the weekly retrain timer is run through the host's admin API
   and must start training (its first job is waited for, not the whole run);
6. the app stops (flushing telemetry) and the rows Application Insights received are kept;
7. an event published while the app is down exhausts Event Grid's retries and is
   dead-lettered.

A stage that fails is recorded (``Loop.errors``) and the loop goes on where it can, so each
test reports its own stage.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import traceback
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.e2e.adf import PipelineFailed, Run, replay
from tests.infra.bicep import INFRA
from tests.integration.azure_standin.eventgrid import Subscription, webhook_delivery
from tests.rehearsal.app import AppProcess, call
from tests.rehearsal.harness import Rehearsal, wait_for

PIPELINE = json.loads((INFRA / "adf/pipeline/pl_run_orchestration.json").read_text("utf-8"))
SEGMENTS = ["r01-large-fast", "r01-small-slow"]
FAILING_SEGMENT = "r99-large-fast"  # a region with no data: its prep step fails
SOURCES = {
    "shipments": "shipments_vendor_eu.csv",
    "stores": "stores.csv",
    "weather": "weather.csv",
    "events": "events.jsonl",
}
WEEKS = 80
ADF_SPEED = 0.1  # the pipeline's 50 s poll interval becomes 5 s
TERMINAL = ("Completed", "Failed", "Terminated", "Canceled")
START_ACTIVITY = "Start orchestration"


@dataclass
class Loop:
    rehearsal: Rehearsal
    began: datetime = field(default_factory=lambda: datetime.now(UTC))
    timings: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    adf: Run | None = None
    failing_adf: str = ""
    emails_after_failure: int = -1
    model_tests: dict[str, dict[str, Any]] = field(default_factory=dict)
    train_output: dict[str, Any] = field(default_factory=dict)
    weekly: dict[str, Any] = field(default_factory=dict)
    cold: dict[str, float] = field(default_factory=dict)  # what → seconds of the first answer
    cold_status: dict[str, int] = field(default_factory=dict)
    http_starts: list[float] = field(default_factory=list)
    telemetry: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    dead_letters: list[str] = field(default_factory=list)
    dead_letter_event: str = ""  # the id of the event the dead-letter stage published
    conditioned: dict[str, str] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        except Exception as exc:
            self.errors[name] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}"
        finally:
            self.timings[name] = time.monotonic() - started

    def since(self, iso: str | None) -> float | None:
        """Seconds from the loop's start to an ISO time (a record's), or ``None``."""
        if not iso:
            return None
        moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
        return (moment - self.began).total_seconds()

    def require(self, *stages: str) -> str | None:
        failed = [s for s in stages if s in self.errors]
        return f"stage {failed[0]} failed:\n{self.errors[failed[0]]}" if failed else None


def status_of(r: Rehearsal, instance: str) -> dict[str, Any]:
    status, body, _ = call(r.app.api(f"orchestrations/{instance}"))
    return dict(body or {}) if status == 200 else {}


def run_loop(r: Rehearsal) -> Loop:
    loop = Loop(r)
    with loop.stage("drop and conditioning"):
        _drop(loop)
    with loop.stage("ADF train"):
        _train(loop)
    with loop.stage("model tests"):
        _model_tests(loop)
    with loop.stage("injected failure"):
        _failure(loop)
    with loop.stage("cold starts"):
        _cold_starts(loop)
    if r.environment == "prod":
        with loop.stage("weekly timer"):
            _weekly_timer(loop)
    with loop.stage("telemetry"):
        _telemetry(loop)
    with loop.stage("dead letter"):
        _dead_letter(loop)
    return loop


def _drop(loop: Loop) -> None:
    from conditioning.synthetic import SyntheticSpec, write_drop
    from orchestrators.data_arrival import week_of

    r = loop.rehearsal
    # History up to this week, so the weekly retrain (which trains last week) finds it current.
    first = week_of(datetime.now(UTC).date()) - dt.timedelta(weeks=WEEKS - 1)
    spec = SyntheticSpec(regions=1, stores_per_region=2, products=6, weeks=WEEKS,
                         first_week=first, defect_rate=0.01)  # fmt: skip
    folder = r.work / "drop"
    write_drop(folder, spec)
    batch = (spec.first_week + dt.timedelta(weeks=WEEKS - 1)).isoformat()
    blobs = r.upload_raw({s: folder / f for s, f in SOURCES.items()}, batch)
    conditioned = r.settings["MLOPS_CONDITIONED_CONTAINER"]

    def manifests() -> dict[str, str] | None:
        names = r.lake_blobs(conditioned)
        found = {}
        for source in blobs:
            for name in names:
                if name.startswith(f"{source}/") and name.endswith("manifest.json"):
                    manifest = json.loads(r.read_lake(conditioned, name))
                    if str(manifest.get("input", {}).get("name", "")).endswith(blobs[source]):
                        found[source] = name
        return found if len(found) == len(blobs) else None

    loop.conditioned = wait_for("every drop conditioned", manifests, 300, step=1.0)


def _adf(loop: Loop, body: dict[str, Any]) -> Run:
    """One pipeline run; how long its Start activity held ADF is kept (the HTTP budget)."""
    r = loop.rehearsal
    r.adf_spans.clear()
    try:
        return replay(PIPELINE, r.adf_parameters("train", body), r.adf_http(), speed=ADF_SPEED)
    finally:
        span = r.adf_spans.get(START_ACTIVITY)
        if span:
            loop.http_starts.append(span[1] - span[0])


def _train(loop: Loop) -> None:
    run = _adf(loop, {"segments": SEGMENTS, "score": False})
    loop.adf = run
    instance = run.outputs[START_ACTIVITY]["id"]
    loop.train_output = status_of(loop.rehearsal, instance)


def _model_tests(loop: Loop) -> None:
    r = loop.rehearsal
    output = loop.train_output.get("output") or {}
    registered = [
        (s["model_name"], s["model_version"])
        for s in (output.get("segments") or {}).values()
        if s.get("model_version")
    ]
    if len(registered) != len(SEGMENTS):
        raise AssertionError(f"the train run registered {registered}, not one per segment")
    for name, version in registered:
        instance = f"model_test-{name}-{version}"

        def done(instance: str = instance) -> dict[str, Any] | None:
            body = status_of(r, instance)
            return body if body.get("runtimeStatus") in TERMINAL else None

        loop.model_tests[f"{name}:{version}"] = wait_for(f"model test {instance}", done, 600, 2)


def _failure(loop: Loop) -> None:
    r = loop.rehearsal
    before = len(r.acs.operations_by_id)
    try:
        run = _adf(loop, {"segments": [FAILING_SEGMENT], "score": False})
        loop.failing_adf = f"the pipeline succeeded: {run.variables}"
    except PipelineFailed as exc:
        loop.failing_adf = str(exc)

    def sent() -> bool:
        # The alert outbox timer runs every minute; ask for it now rather than wait.
        r.app.run_function("on_alert_outbox_timer")
        return len(r.acs.operations_by_id) > before

    wait_for("an alert email", sent, 180, step=5.0)
    time.sleep(15)  # anything that would send a second email has had time to
    r.app.run_function("on_alert_outbox_timer")
    r.topic.wait_idle(60)
    time.sleep(5)
    loop.emails_after_failure = len(r.acs.operations_by_id) - before


def _weekly_timer(loop: Loop) -> None:
    from orchestrators.data_arrival import week_of

    r = loop.rehearsal
    week = week_of(datetime.now(UTC).date() - dt.timedelta(days=7)).isoformat()
    instance = f"train-weekly-{week}"
    jobs_before = set(r.workspace.jobs)
    status = r.app.run_function("on_weekly_retrain_timer")
    loop.weekly["admin_status"] = status
    loop.weekly["instance"] = instance
    body = wait_for(f"orchestration {instance}", lambda: status_of(r, instance), 60, 1.0)
    loop.weekly["runtimeStatus"] = body.get("runtimeStatus")
    loop.weekly["input_segments"] = (body.get("customStatus") or {}).get("segments")
    new = wait_for("the weekly run's first job", lambda: set(r.workspace.jobs) - jobs_before,
                   120, 1.0)  # fmt: skip
    loop.weekly["jobs"] = sorted(new)


def _cold_starts(loop: Loop) -> None:
    """A fresh worker per Event Grid handler (its first delivery) and for an HTTP start."""
    r = loop.rehearsal
    slowest: dict[str, tuple[float, dict[str, Any]]] = {}
    with r.topic.lock:
        delivered = list(r.topic.delivered)
        attempts = list(r.topic.attempts)
    seconds = {(a.function, a.event_id): a.seconds for a in attempts if 200 <= a.status <= 204}
    for function, event in delivered:
        took = seconds.get((function, str(event.get("id"))), 0.0)
        if function not in slowest or took > slowest[function][0]:
            slowest[function] = (took, event)
    jobs_before = set(r.workspace.jobs)
    for function, (_, event) in sorted(slowest.items()):
        with _fresh_app(r, f"cold-{function}") as app:
            deliver = webhook_delivery(app.eventgrid_url)
            sub = Subscription(f"cold-{function}", function, ())
            headers = {"aeg-event-type": "Notification", "aeg-delivery-count": "0"}
            started = time.monotonic()
            loop.cold_status[function] = deliver(sub, [event], headers, r.topic.timeout)
            loop.cold[function] = time.monotonic() - started
    with _fresh_app(r, "cold-http-start") as app:
        started = time.monotonic()
        status, _, _ = call(
            app.api(f"orchestrations/train?idempotencyKey={uuid.uuid4()}"),
            {"segments": SEGMENTS[:1], "score": False}, "POST",
        )  # fmt: skip
        loop.cold["start_orchestration"] = time.monotonic() - started
        loop.cold_status["start_orchestration"] = status
    # A probe's orchestration died with its process; a job it got to submit is cancelled.
    for name in set(r.workspace.jobs) - jobs_before:
        r.workspace.executor.cancel(name)


@contextmanager
def _fresh_app(r: Rehearsal, name: str) -> Iterator[AppProcess]:
    app = AppProcess(r.settings, r.app.platform, r.work / name)
    app.start()
    try:
        yield app
    finally:
        app.stop()


def _telemetry(loop: Loop) -> None:
    r = loop.rehearsal
    # The hourly health gauges and the outbox gauges, now rather than on their schedules.
    for timer in ("on_drift_check_timer", "on_alert_outbox_timer"):
        if r.app.run_function(timer) != 202:
            raise AssertionError(f"the admin API did not run {timer}")
    time.sleep(10)
    r.app.stop()  # a graceful stop flushes what the app recorded
    loop.telemetry = r.ingestion.rows()


def _dead_letter(loop: Loop) -> None:
    r = loop.rehearsal
    container = r.dead_letter_container
    event = {
        "id": str(uuid.uuid4()),
        "subject": f"models/{r.settings['MLOPS_MODEL_NAME_PREFIX']}r01-large-fast:99",
        "eventType": "Microsoft.MachineLearningServices.ModelRegistered",
        "eventTime": datetime.now(UTC).isoformat(),
        "data": {"modelName": f"{r.settings['MLOPS_MODEL_NAME_PREFIX']}r01-large-fast",
                 "modelVersion": "99", "modelTags": {}, "modelProperties": {}},
        "dataVersion": "2",
        "metadataVersion": "1",
    }  # fmt: skip
    loop.dead_letter_event = event["id"]
    r.topic.publish(event)  # the app is down: every attempt fails
    r.topic.wait_idle(120)
    client = r.account_client(r.accounts["appStorage"]).get_container_client(container)
    for blob in client.list_blobs():
        body = client.download_blob(blob.name).readall()
        if event["id"].encode() in body:
            loop.dead_letters.append(blob.name)


def report(loop: Loop) -> list[str]:
    """The figures a person wants from one rehearsal, one line each."""
    r = loop.rehearsal
    lines = [
        f"[{r.environment}] executor mode: {executor_mode(r)}",
        f"[{r.environment}] app process ready in {r.app.started_seconds:.1f}s",
    ]
    for stage, seconds in loop.timings.items():
        mark = "  FAILED" if stage in loop.errors else ""
        lines.append(f"[{r.environment}] stage {stage:<24} {seconds:7.1f}s{mark}")
    jobs = _job_spans(loop)
    for name, (pipeline, started, ended, status) in sorted(jobs.items(), key=lambda j: j[1][1]):
        lines.append(
            f"[{r.environment}]   job {pipeline:<11} {name:<28} {status:<9} "
            f"t+{started:6.1f}s .. t+{ended:6.1f}s"
        )
    for function, seconds in sorted(loop.cold.items()):
        lines.append(f"[{r.environment}] cold first answer {function:<24} {seconds:6.2f}s")
    warm = _warm_deliveries(loop)
    for function, values in sorted(warm.items()):
        lines.append(
            f"[{r.environment}] Event Grid deliveries {function:<22} n={len(values):<3} "
            f"max {max(values):6.2f}s"
        )
    if loop.http_starts:
        lines.append(f"[{r.environment}] ADF Start orchestration max {max(loop.http_starts):.2f}s")
    refused = sorted(set(r.proxy.refused_tunnels))
    if refused:
        lines.append(f"[{r.environment}] hosts no stand-in plays, refused: {', '.join(refused)}")
    return lines


def executor_mode(r: Rehearsal) -> str:
    """How the workspace's jobs ran: in their declared environments under Azure ML's job
    contract, or in the project's virtualenv with a sqlite MLflow store."""
    mode = getattr(r.workspace.executor, "env_mode", None)
    if mode == "declared":
        return "steps in their components' declared environments, azureml:// MLflow tracking URI"
    return "steps in the project's virtualenv, MLflow on a sqlite tracking URI"


def _job_spans(loop: Loop) -> dict[str, tuple[str, float, float, str]]:
    r = loop.rehearsal
    out: dict[str, tuple[str, float, float, str]] = {}
    for name, job in list(r.workspace.jobs.items()):
        if not r.workspace.executor.store.exists(name):
            continue  # a job refused at submission has no record
        record = r.workspace.executor.status(name)
        started = loop.since(job.created) or 0.0
        ended = loop.since(record.ended_at) or started
        pipeline = str((job.properties.get("tags") or {}).get("pipeline", "?"))
        out[name] = (pipeline, started, ended, record.status)
    return out


def _warm_deliveries(loop: Loop) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for attempt in loop.rehearsal.topic.attempts:
        if 200 <= attempt.status <= 204:
            out.setdefault(attempt.function, []).append(attempt.seconds)
    return out


def deliveries(loop: Loop) -> dict[str, list[float]]:
    """Seconds each successful Event Grid delivery took, by function."""
    return _warm_deliveries(loop)
