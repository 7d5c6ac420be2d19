"""The worker's handlers never hold its event loop: the app on the local host in asyncio debug mode.

The Python worker runs every async function of an app on one event loop, so a handler that
blocks it (pandas over every earlier dataset version, registry reads, a slow mail server) stalls
every other invocation in that worker. Here the real app runs on the local host with its loop in
asyncio debug mode and a slow-callback threshold; each handler gets a data set big enough that a
blocking version holds the loop for seconds, and any "Executing <Handle ...> took X seconds"
warning from asyncio fails the test.

The threshold (``SLOW_SECONDS``) is generous so that scheduling noise on a loaded machine does not
trip it; the blocking versions of these handlers stalled the loop for several times as long.
The SMTP server is a real aiosmtpd server on loopback that answers DATA only after
``SMTP_DELAY_SECONDS``, as a slow relay does.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from local.hosting.azurite import Azurite
from local.hosting.host import HostConfig, LocalFunctionsHost
from local.processes import free_port
from tests.support import wait_until

pytestmark = pytest.mark.integration

SLOW_SECONDS = 0.5
SMTP_DELAY_SECONDS = 2.0
DRIFT_VERSIONS = 4
DRIFT_ROWS = 200_000  # the drift check's sample per version
REGISTRY_VERSIONS = 120  # per source: a couple of years of weekly drops
REGIONS = ",".join(f"r{i:02d}" for i in range(1, 15))  # the case study's 14 regions


class _SlowRelay:
    """aiosmtpd handler: accepts each message after a delay."""

    def __init__(self) -> None:
        self.received: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(SMTP_DELAY_SECONDS)
        self.received.append(bytes(envelope.original_content or b""))
        return "250 Message accepted for delivery"


@dataclass
class Worker:
    host: LocalFunctionsHost
    relay: _SlowRelay
    services: Any


def _shipments_csv(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    quantity = rng.poisson(10 + 5 * seed, DRIFT_ROWS)
    out = io.StringIO()
    out.write("week_start,store_id,product_id,quantity\n")
    for i, q in enumerate(quantity):
        out.write(f"2024-01-01,S{i % 1400:04d},P{i % 160:06d},{q}\n")
    return out.getvalue().encode()


def _seed(services: Any) -> None:
    """Conditioned versions as conditioning would leave them, through the real ports."""
    from adapters.datasets import DatasetVersion

    lake, container = services.data_lake, services.settings.conditioned_container
    lake.ensure_container(container)

    def register(source: str, version: str, files: tuple[str, ...], stamp: int) -> None:
        services.datasets.register(
            DatasetVersion(
                source=source, dataset_version=version, status="conditioned",
                input_name=f"{source}/{version}.csv", input_etag=None, input_sha256="x",
                manifest=f"{container}/{source}/{version}/manifest.json", files=files,
                rows_in=1, rows_out=1, registered_at=f"2025-01-01T00:00:{stamp:02d}+00:00",
            )
        )  # fmt: skip

    for v in range(DRIFT_VERSIONS):
        blob = f"shipments/d{v}/part-00000.csv"
        lake.write(container, blob, _shipments_csv(v))
        register("shipments", f"d{v}", (f"{container}/{blob}",), v)
    for source in ("stores", "events"):
        for v in range(REGISTRY_VERSIONS):
            register(source, f"v{v:03d}", (), v % 60)


@pytest.fixture(scope="module")
def worker(azurite: Azurite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    from aiosmtpd.controller import Controller

    from adapters.settings import load_settings
    from composition import build_services, use_services
    from function_app import make_app
    from local.hosting.runtime import isolated_environment

    state = tmp_path_factory.mktemp("loop")
    relay = _SlowRelay()
    smtp = Controller(relay, hostname="127.0.0.1", port=free_port(), ready_timeout=10.0)
    smtp.start()
    run = uuid.uuid4().hex[:8]
    env = isolated_environment(
        state,
        azurite.connection_string,
        {
            "MLOPS_TASK_HUB": "loophub",
            "MLOPS_RAW_CONTAINER": f"raw{run}",
            "MLOPS_CONDITIONED_CONTAINER": f"cond{run}",
            "MLOPS_QUARANTINE_CONTAINER": f"quar{run}",
            "MLOPS_ALERTS_CONTAINER": f"ops{run}",
            "MLOPS_TRAIN_ON_ARRIVAL": "true",
            "MLOPS_TRAINING_SOURCES": "shipments,stores,events",
            "MLOPS_REGIONS": REGIONS,
            "MLOPS_SMTP_HOST": "127.0.0.1",
            "MLOPS_SMTP_PORT": str(smtp.port),
            "MLOPS_SMTP_TIMEOUT_SECONDS": "30",
            # Only the runs the tests ask for.
            **{
                f"MLOPS_{name}_SCHEDULE": "0 0 0 1 1 *"
                for name in ("DRIFT", "STALENESS", "WEEKLY_RETRAIN", "ALERT_FLUSH")
            },
        },
    )
    saved = dict(os.environ)
    os.environ.update(env)
    services = build_services(load_settings())
    use_services(services)
    config = HostConfig(
        state_dir=state,
        environ=os.environ,
        task_hub="loophub",
        host_id=f"loop-{run}",
        blob_poll_interval=0.3,
        slow_callback_seconds=SLOW_SECONDS,
    )
    host = LocalFunctionsHost(make_app().get_functions(), config)
    try:
        _seed(services)
        services.data_lake.ensure_container(env["MLOPS_RAW_CONTAINER"])
        host.start()
        yield Worker(host, relay, services)
    finally:
        host.stop()
        smtp.stop()
        use_services(None)
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(autouse=True)
def _capture(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    with caplog.at_level(logging.INFO):
        yield


def stalls(caplog: pytest.LogCaptureFixture) -> list[str]:
    """asyncio's slow-callback warnings logged so far in this test (from the host's thread)."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "asyncio" and r.getMessage().startswith("Executing ")
    ]


def _logged(caplog: pytest.LogCaptureFixture, logger: str, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger and text in r.getMessage()]


def _barrier(worker: Worker) -> None:
    """A request the host's loop serves: by its answer, a step that held the loop was logged."""
    host = worker.host
    url = f"{host.base_url}/admin/host/status?code={host.keys.master}"
    with urllib.request.urlopen(url, timeout=30) as resp:
        assert resp.status == 200


def _run_timer(worker: Worker, name: str) -> None:
    host = worker.host
    req = urllib.request.Request(
        f"{host.base_url}/admin/functions/{name}?code={host.keys.master}", data=b"{}", method="POST"
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 202


def test_the_drift_timer_reads_every_version_off_the_loop(
    worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    _run_timer(worker, "on_drift_check_timer")

    def checked() -> list[str]:
        lines = _logged(caplog, "triggers.timers", "drift check shipments/")
        return lines if len(lines) == DRIFT_VERSIONS else []

    lines = wait_until(checked, timeout=240)
    assert sum("worst PSI quantity" in line for line in lines) == DRIFT_VERSIONS - 1
    _barrier(worker)
    assert stalls(caplog) == []


def test_the_staleness_timer_reads_the_registry_off_the_loop(
    worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    _run_timer(worker, "on_daily_staleness_timer")
    wait_until(lambda: _logged(caplog, "triggers.timers", "staleness check"), timeout=240)
    _barrier(worker)
    assert stalls(caplog) == []


def test_a_failed_run_alert_is_recorded_and_sent_off_the_loop(
    worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    import json

    from adapters.events import AzureMLEventType
    from local.aml.events import run_event

    run_id = f"loop_job_{uuid.uuid4().hex[:8]}"
    # Shaped as the local Azure ML executor publishes it.
    event = run_event(
        AzureMLEventType.RUN_STATUS_CHANGED,
        experiment_name="forecast-train",
        run_id=run_id,
        run_type="azureml.PipelineRun",
        status="Failed",
        tags={"segment": "r01-large-fast", "pipeline": "train"},
        properties={},
    )
    req = urllib.request.Request(
        worker.host.url_for("on_run_status_changed"),
        data=json.dumps([event]).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "aeg-event-type": "Notification"},
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        assert resp.status == 200
    assert _logged(caplog, "triggers.aml_events", f"alert for run {run_id}")
    # The delivery only recorded it; the outbox timer reads the job and sends the email.
    assert not any(run_id.encode() in m for m in worker.relay.received)
    _run_timer(worker, "on_alert_outbox_timer")
    wait_until(lambda: any(run_id.encode() in m for m in worker.relay.received), timeout=60)
    _barrier(worker)
    assert stalls(caplog) == []


def test_the_training_check_after_a_drop_reads_the_registry_off_the_loop(
    worker: Worker, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    from conditioning.synthetic import SyntheticSpec, write_stores

    path = tmp_path / "stores.csv"
    write_stores(path, SyntheticSpec(regions=2))
    settings = worker.services.settings
    worker.services.data_lake.write(
        settings.raw_container, "stores/2025-06-30/stores.csv", path.read_bytes()
    )
    # Shipments carry no period in this data set: the check reads every version, then stops.
    wait_until(
        lambda: _logged(caplog, "mlops.automation", "training not started"),
        timeout=240,
    )
    assert _logged(caplog, "mlops.automation", "names no period")
    _barrier(worker)
    assert stalls(caplog) == []


def test_a_blocked_loop_is_caught(worker: Worker, caplog: pytest.LogCaptureFixture) -> None:
    """Without this the checks above could pass with debug mode off: block the loop on purpose."""
    loop = worker.host._loop
    assert loop is not None and loop.get_debug()
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        asyncio.run_coroutine_threadsafe(_block(SLOW_SECONDS * 3), loop).result(timeout=30)
        wait_until(lambda: stalls(caplog), timeout=10)


async def _block(seconds: float) -> None:
    time.sleep(seconds)  # what a blocking handler does
