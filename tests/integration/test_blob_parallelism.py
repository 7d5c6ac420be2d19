"""The local host runs blob-triggered functions as host.json's blobs extension settings say.

``extensions.blobs.maxDegreeOfParallelism`` bounds the blob invocations running at once across
the app (its default is 8 x the cores). A small app on the real local host against Azurite: a
blob function that waits until the expected number of invocations are inside it at once (so
nothing depends on how fast this machine is), and records the most it saw.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from pathlib import Path

import azure.functions as func
import pytest
from azure.storage.blob import BlobServiceClient

from local.hosting.azurite import Azurite
from local.hosting.host import HostConfig, LocalFunctionsHost, read_blob_parallelism

pytestmark = pytest.mark.integration

REPO_HOST_JSON = Path(__file__).resolve().parents[2] / "host.json"


class Gauge:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active = 0
        self.most = 0
        self.done = 0

    def hold(self, until: int, seconds: float) -> None:
        """Stay inside until ``until`` invocations are inside at once, or ``seconds`` pass."""
        with self.lock:
            self.active += 1
            self.most = max(self.most, self.active)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with self.lock:
                if self.active >= until:
                    break
            time.sleep(0.02)
        with self.lock:
            self.active -= 1
            self.done += 1


def _app(container: str, gauge: Gauge, until: int, seconds: float) -> func.FunctionApp:
    app = func.FunctionApp()

    @app.blob_trigger(
        arg_name="blob", path=f"{container}/{{name}}", connection="AzureWebJobsStorage"
    )
    def on_drop(blob: func.InputStream) -> None:
        gauge.hold(until, seconds)

    return app


def _run(azurite: Azurite, tmp_path: Path, host_json: dict[str, object], blobs: int) -> Gauge:
    path = tmp_path / "host.json"
    path.write_text(json.dumps(host_json), encoding="utf-8")
    parallelism = read_blob_parallelism(path)
    container = f"par{uuid.uuid4().hex[:8]}"
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    service.create_container(container)
    for i in range(blobs):
        service.get_blob_client(container, f"drop-{i}.csv").upload_blob(b"a,b\n1,2\n")
    gauge = Gauge()
    # Invocations wait for as many companions as the setting allows: with too few slots they
    # time out alone (and the most seen stays low); with too many they overlap beyond it.
    app = _app(container, gauge, until=parallelism, seconds=5.0 if parallelism > 1 else 0.3)
    config = HostConfig(
        state_dir=tmp_path / "state",
        environ={"AzureWebJobsStorage": azurite.connection_string},
        host_id=f"par-{uuid.uuid4().hex[:8]}",
        blob_poll_interval=3600,  # scans run when the test says
        blob_parallelism=parallelism,
    )
    host = LocalFunctionsHost(app.get_functions(), config)
    try:
        host.scan_now("on_drop")
    finally:
        host.stop()
    assert gauge.done == blobs
    return gauge


def test_the_blobs_run_as_many_at_once_as_host_json_allows(
    azurite: Azurite, tmp_path: Path
) -> None:
    gauge = _run(azurite, tmp_path, {"extensions": {"blobs": {"maxDegreeOfParallelism": 3}}}, 5)
    assert gauge.most == 3


def test_one_at_a_time_when_host_json_says_one(azurite: Azurite, tmp_path: Path) -> None:
    gauge = _run(azurite, tmp_path, {"extensions": {"blobs": {"maxDegreeOfParallelism": 1}}}, 3)
    assert gauge.most == 1


def test_the_setting_is_read_from_host_json_with_the_extension_s_default(tmp_path: Path) -> None:
    path = tmp_path / "host.json"
    path.write_text('{"version": "2.0"}', encoding="utf-8")
    assert read_blob_parallelism(path) == 8 * (os.cpu_count() or 1)
    for bad in (0, "2", 1.5, True):
        path.write_text(json.dumps({"extensions": {"blobs": {"maxDegreeOfParallelism": bad}}}))
        with pytest.raises(ValueError, match="maxDegreeOfParallelism"):
            read_blob_parallelism(path)


def test_the_repository_host_json_bounds_blob_parallelism_and_the_host_applies_it(
    tmp_path: Path,
) -> None:
    config = json.loads(REPO_HOST_JSON.read_text(encoding="utf-8"))
    configured = config["extensions"]["blobs"]["maxDegreeOfParallelism"]
    assert isinstance(configured, int) and 1 <= configured <= 2
    assert HostConfig(state_dir=tmp_path, environ={}).blob_parallelism == configured
