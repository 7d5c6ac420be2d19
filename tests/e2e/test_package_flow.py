"""The deployment package, unpacked, runs the automation loop: what Azure would run works.

`make package`'s zip is unpacked into a temporary folder and tests/e2e/package_flow.py runs a
week of the loop from it in a child process (ADF-style start, job submission and completion,
model test, scoring, a failure alert), with the app imported from the unpacked copy and only
the local runtime (the host) and the test harness from the repository. A file the app reads
that the package lacks fails here, as it would fail in Azure.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import zipfile

import pytest

from infra.scripts.package_app import build
from tests.infra.bicep import REPO_ROOT

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    work = tmp_path_factory.mktemp("package")
    package = build(REPO_ROOT, work / "api.zip")
    unpacked = work / "wwwroot"
    with zipfile.ZipFile(package.zip_path) as zf:
        zf.extractall(unpacked)
    host = work / "host"
    host.mkdir()
    for name in ("local", "tests"):
        (host / name).symlink_to(REPO_ROOT / name, target_is_directory=True)
    env = {
        **os.environ,
        "PYTHONPATH": str(host),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PACKAGE_FLOW_STATE": str(work / "state"),
    }
    env.pop("PYTHONSTARTUP", None)
    out = work / "report.json"
    # Its own session, so a run that hangs is stopped with everything it started (Azurite).
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.e2e.package_flow", str(out)],
        cwd=unpacked,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _, stderr = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, stderr = proc.communicate()
        pytest.fail(f"the package run did not finish in 600 s:\n{stderr[-6000:]}")
    assert proc.returncode == 0, stderr[-6000:]
    data: dict[str, object] = json.loads(out.read_text(encoding="utf-8"))
    data["package_files"] = len(package.files)
    return data


def test_the_loop_runs_from_the_unpacked_package(report: dict[str, object]) -> None:
    assert report["train"] == {
        "runtimeStatus": "Completed",
        "instance": report["train"]["instance"],  # type: ignore[index]
    }
    assert report["model_test"] == {"model": "forecast-r01-large-fast", "version": "1"}
    assert report["jobs"] == ["model_test", "score", "train"]
    assert report["submitted"] == [
        "pipelines/model_test.yml",
        "pipelines/score.yml",
        "pipelines/train.yml",
    ]
    assert "ended with runtimeStatus Failed" in str(report["failed_run"])
    alerts = report["alerts"]
    assert isinstance(alerts, list) and len(alerts) == 1 and "r09-small-fast" in alerts[0]


def test_the_app_ran_from_the_package_and_only_the_host_from_the_repository(
    report: dict[str, object],
) -> None:
    modules = report["modules"]
    assert isinstance(modules, dict)
    assert modules["app_from_elsewhere"] == []
    assert modules["host_from_package"] == []
    loaded = {line.split(":")[0] for line in modules["app_from_package"]}
    assert {"function_app", "adapters.jobs", "orchestrators.activities"} <= loaded
    assert {"triggers.orchestrations", "triggers.aml_events"} <= loaded


def test_every_file_the_app_read_came_from_the_package(report: dict[str, object]) -> None:
    opened = report["opened"]
    assert isinstance(opened, dict)
    assert opened["in_repo_outside_host"] == []
    # The pipeline YAML, components and environments job submission reads: from the package.
    read = set(opened["in_package"])
    for pipeline in ("train", "score", "model_test"):
        assert f"pipelines/{pipeline}.yml" in read
    assert "pipelines/components/train/component.yml" in read
    assert "pipelines/components/train/conda.yml" in read


def test_what_azure_ml_would_upload_is_in_the_package(report: dict[str, object]) -> None:
    assert report["uploads"] == []
