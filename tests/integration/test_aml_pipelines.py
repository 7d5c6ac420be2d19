"""The forecasting pipelines end to end through the local executor: train → model_test → score,
with MLflow (sqlite) as tracking server and registry, and Azure ML–shaped events delivered
over HTTP to a webhook receiver on loopback."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from aiohttp import web

from adapters.events import AzureMLEventType, EventGridWebhookPublisher
from local.aml import LocalExecutor, sqlite_tracking_uri
from local.aml.registry import MLflowModelRegistry
from local.processes import free_port

REPO = Path(__file__).resolve().parents[2]
PIPELINES = REPO / "pipelines"

pytestmark = pytest.mark.integration


class Receiver:
    """An Event Grid webhook on 127.0.0.1 that keeps every delivered body."""

    def __init__(self) -> None:
        self.port = free_port()
        self.bodies: list[Any] = []
        self.queries: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/runtime/webhooks/eventgrid?functionName=on_aml_event"

    async def _handle(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.json())
        self.queries.append(request.query_string)
        return web.Response(status=200)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/runtime/webhooks/eventgrid", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def __enter__(self) -> Receiver:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def events(self) -> list[dict[str, Any]]:
        return [e for body in self.bodies for e in body]


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import sys

    sys.path.insert(0, str(PIPELINES / "src"))
    from forecasting import synthetic

    folder = tmp_path_factory.mktemp("demo")
    synthetic.write(folder, synthetic.SyntheticSpec(regions=("north",), products=4, weeks=110))
    return folder


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as server:
        yield server


def data_inputs(folder: Path) -> dict[str, str]:
    return {name: str(folder / name) for name in ("shipments", "stores", "weather", "events")}


# Whole pipelines on a shared 2-core machine: a safety net, not a speed goal.
@pytest.mark.timeout(1200)
def test_train_test_and_score_pipelines(
    tmp_path: Path, demo_data: Path, receiver: Receiver
) -> None:
    tracking = sqlite_tracking_uri(tmp_path / "mlflow")
    executor = LocalExecutor(
        tmp_path / "aml", publisher=EventGridWebhookPublisher(receiver.url), tracking_uri=tracking
    )
    record = executor.submit(
        PIPELINES / "train.yml", {**data_inputs(demo_data), "code_version": "abc123", "epochs": "8"}
    )
    train = executor.run(record.name)
    assert train.status == "Completed", train.error

    metrics = json.loads((Path(train.outputs["metrics"]) / "metrics.json").read_text())
    assert set(metrics["segments"]) == {
        "north/large/fast", "north/large/slow", "north/small/fast", "north/small/slow"
    }  # fmt: skip
    seg = metrics["segments"]["north/large/fast"]
    for component in ("baseline", "seasonal_naive", "seasonal_growth", "direct", "ensemble"):
        assert set(seg[component]) >= {"mape", "wape", "wmae", "rmse_zero", "rmse_all"}
    assert seg["champion"] is None  # first training: no champion yet
    assert seg["ensemble"]["mape"] < seg["baseline"]["mape"]
    # the second baseline is measured and the gate records whether the candidate beats it
    assert seg["gate"]["beats_seasonal_naive"] == (
        seg["ensemble"]["mape"] < seg["seasonal_naive"]["mape"]
    )
    # the ensemble was fitted on validation origins inside the training data
    for key, segment in metrics["segments"].items():
        assert segment["diverged"] == {}, key
        assert sum(segment["weights"].values()) == pytest.approx(1.0)
        members = [v["mape"] for k, v in segment["validation"].items() if k != "ensemble"]
        assert segment["validation"]["ensemble"]["mape"] <= min(members)

    registry = MLflowModelRegistry(tracking)
    version = registry.get("forecast-north-large-fast", "1")
    assert version.tags["segment"] == "north/large/fast"
    assert version.tags["code_version"] == "abc123"
    assert set(json.loads(version.tags["dataset_versions"])) == {
        "shipments", "stores", "weather", "events"
    }  # fmt: skip
    assert version.tags["gate"] in ("pass", "fail")
    assert version.trained_at is not None
    assert version.metrics["ensemble_mape"] == pytest.approx(seg["ensemble"]["mape"], rel=1e-5)
    assert float(version.tags["ensemble_wmae"]) == pytest.approx(seg["ensemble"]["wmae"], rel=1e-5)
    assert version.metrics["seasonal_naive_mape"] == pytest.approx(
        seg["seasonal_naive"]["mape"], rel=1e-5
    )
    assert version.tags["beats_seasonal_naive"] == str(seg["gate"]["beats_seasonal_naive"]).lower()
    assert json.loads(version.tags["ensemble_weights"]) == pytest.approx(seg["weights"])
    assert version.tags["diverged_members"] == ""
    assert metrics["min_actual"] == 1.0 and version.tags["min_actual"] == "1"  # the default

    events = receiver.events()
    assert all("functionName=on_aml_event" in q for q in receiver.queries)
    registered = [e for e in events if e["eventType"] == AzureMLEventType.MODEL_REGISTERED]
    assert sorted(e["subject"] for e in registered) == [
        f"models/forecast-north-{s}:1"
        for s in ("large-fast", "large-slow", "small-fast", "small-slow")
    ]
    assert registered[0]["data"]["modelTags"]["segment"].startswith("north/")
    job_statuses = [
        e["data"]["runStatus"]
        for e in events
        if e["eventType"] == AzureMLEventType.RUN_STATUS_CHANGED
        and e["data"]["runId"] == train.name
    ]
    assert job_statuses == ["Queued", "Running", "Completed"]
    assert any(
        e["eventType"] == AzureMLEventType.RUN_COMPLETED and e["data"]["runId"] == train.name
        for e in events
    )

    # offline test of one version: verdict recorded as tags
    test_job = executor.submit(
        PIPELINES / "model_test.yml",
        {**data_inputs(demo_data), "model_name": "forecast-north-large-fast", "model_version": "1",
         "min_actual": "2"},
    )  # fmt: skip
    tested = executor.run(test_job.name)
    assert tested.status == "Completed", tested.error
    verdict = json.loads((Path(tested.outputs["metrics"]) / "metrics.json").read_text())
    tags = registry.get("forecast-north-large-fast", "1").tags
    assert tags["test_passed"] == str(verdict["passed"]).lower()
    assert float(tags["test_mape"]) == pytest.approx(verdict["metrics"]["mape"], rel=1e-5)
    assert float(tags["test_seasonal_naive_mape"]) == pytest.approx(
        verdict["seasonal_naive"]["mape"], rel=1e-5
    )
    assert tags["test_beats_seasonal_naive"] == str(verdict["beats_seasonal_naive"]).lower()
    assert verdict["min_actual"] == 2.0 and tags["test_min_actual"] == "2"  # the input, threaded

    # scoring uses champions only and flags stale ones
    registry.set_alias("forecast-north-large-fast", "champion", "1")
    registry.set_alias("forecast-north-small-fast", "champion", "1")
    registry.set_tags("forecast-north-small-fast", "1", {"trained_at": "2023-01-01T00:00:00Z"})
    score_job = executor.submit(
        PIPELINES / "score.yml", {**data_inputs(demo_data), "scoring_date": "2024-02-19"}
    )
    scored = executor.run(score_job.name)
    assert scored.status == "Completed", scored.error
    forecasts = pd.read_csv(Path(scored.outputs["forecasts"]) / "forecasts.csv")
    summary = json.loads((Path(scored.outputs["forecasts"]) / "summary.json").read_text())
    assert set(forecasts["segment"]) == {"north/large/fast", "north/small/fast"}
    assert summary["segments"]["north/large/slow"]["status"] == "no_champion"
    assert summary["stale_models"] == ["north/small/fast"]
    assert (forecasts["forecast"] >= 0).all()
    assert forecasts["week_start"].min() == "2024-02-19"
    assert forecasts.groupby("segment")["week_start"].nunique().eq(13).all()


# Whole pipelines on a shared 2-core machine: a safety net, not a speed goal.
@pytest.mark.timeout(1200)
def test_train_many_is_valid_azure_ml_yaml_and_its_models_score(
    tmp_path: Path, demo_data: Path
) -> None:
    import logging

    from azure.ai.ml import load_job

    logging.getLogger("azure.ai.ml._utils._experimental").setLevel(logging.ERROR)
    job = load_job(str(PIPELINES / "train_many.yml"))  # what `az ml job create` parses
    assert job.jobs["train"].type == "parallel"
    assert job.jobs["train"].partition_keys == ["partition"]

    tracking = sqlite_tracking_uri(tmp_path / "mlflow")
    executor = LocalExecutor(tmp_path / "aml", tracking_uri=tracking)
    inputs = {**data_inputs(demo_data), "store_format": "large", "epochs": "4", "min_actual": "2",
              "members": "baseline,seasonal_naive,direct"}  # fmt: skip
    record = executor.run(executor.submit(PIPELINES / "train_many.yml", inputs).name)
    assert record.status == "Completed", record.error

    progress = record.steps["train"].progress
    assert progress["total"] == 8 and progress["succeeded"] == 8  # 2 stores x 4 products
    assert progress["retried"] == 0  # no partition needed a second try
    metrics = json.loads((Path(record.outputs["metrics"]) / "metrics.json").read_text())
    assert set(metrics["segments"]) == {"north/large/fast", "north/large/slow"}
    assert sum(s["partitions"]["total"] for s in metrics["segments"].values()) == 8
    seg = metrics["segments"]["north/large/fast"]
    assert set(seg["ensemble"]) >= {"mape", "rmse_zero", "rmse_all"}
    assert seg["gate"]["verdict"] in ("pass", "fail")
    assert metrics["min_actual"] == 2.0  # every partition measured with the pipeline's input
    assert seg["seasonal_growth"] is None and seg["direct"] is not None  # the members asked for

    registered = json.loads((Path(record.outputs["registered"]) / "registered.json").read_text())
    names = sorted(m["name"] for m in registered["models"])
    assert names == ["forecast-north-large-fast", "forecast-north-large-slow"]  # one per segment
    registry = MLflowModelRegistry(tracking)
    version = registry.get("forecast-north-large-fast", "1")
    assert version.metrics["ensemble_mape"] == pytest.approx(seg["ensemble"]["mape"], rel=1e-5)
    assert float(version.tags["ensemble_wmae"]) == pytest.approx(seg["ensemble"]["wmae"], rel=1e-5)
    assert version.tags["min_actual"] == "2"

    # The many-models version is an ordinary champion to the score pipeline.
    registry.set_alias("forecast-north-large-fast", "champion", "1")
    score_inputs = {
        **data_inputs(demo_data), "scoring_date": "2024-02-19", "store_format": "large",
        "velocity": "fast",
    }  # fmt: skip
    scored = executor.run(executor.submit(PIPELINES / "score.yml", score_inputs).name)
    assert scored.status == "Completed", scored.error
    forecasts = pd.read_csv(Path(scored.outputs["forecasts"]) / "forecasts.csv")
    assert set(forecasts["segment"]) == {"north/large/fast"}
    assert (forecasts["forecast"] >= 0).all() and forecasts["forecast"].nunique() > 1

    # The next training of the segment judges every partition against that champion too.
    again = executor.run(
        executor.submit(PIPELINES / "train_many.yml", {**inputs, "velocity": "fast"}).name
    )
    assert again.status == "Completed", again.error
    assert again.steps["train"].progress["retried"] == 0
    metrics = json.loads((Path(again.outputs["metrics"]) / "metrics.json").read_text())
    assert set(metrics["segments"]) == {"north/large/fast"}
    assert metrics["segments"]["north/large/fast"]["champion"] is not None
