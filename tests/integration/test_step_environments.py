"""Steps run in the environments their components declare, under Azure ML's job contract.

The real parts: virtualenvs built by uv from the package registries, the ``azureml-mlflow``
plugin inside the step (its store, artifact repository and blob client), and the workspace
endpoint (``local/aml/mlflow_front.py``) over the local MLflow sqlite store. The endpoint's
routes and payloads are the ones that plugin release (1.62.0.post6) calls, so the plugin
itself is the artefact the stand-in is checked against.
"""

from __future__ import annotations

import json
import ssl
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from adapters.errors import BadInputError
from adapters.events import AzureMLEventType, RecordingEventPublisher
from local.aml import LocalExecutor, sqlite_tracking_uri
from local.aml.mlflow_front import WorkspaceEndpoint
from local.aml.registry import MLflowModelRegistry

pytestmark = pytest.mark.integration

PLUGIN = ["mlflow-skinny==3.15.0", "azureml-mlflow==1.62.0.post6"]

STEP = """\
import pathlib
import sys

import mlflow

out = pathlib.Path(sys.argv[1])
with mlflow.start_run() as run:
    mlflow.log_param("alpha", 0.5)
    mlflow.log_metric("mape", 0.25)
    model = pathlib.Path("model")
    (model / "nested").mkdir(parents=True)
    (model / "weights.txt").write_text("1 2 3")
    (model / "nested" / "meta.json").write_text('{"kind": "demo"}')
    mlflow.log_artifacts(str(model), artifact_path="model")
    client = mlflow.tracking.MlflowClient()
    client.create_registered_model("demo-model")
    version = client.create_model_version(
        "demo-model", f"{run.info.artifact_uri}/model", run_id=run.info.run_id
    )
    uri = f"models:/demo-model/{version.version}"
    fetched = pathlib.Path(mlflow.artifacts.download_artifacts(uri))
    meta = (fetched / "nested" / "meta.json").read_text()
    (out / "seen.txt").write_text("\\n".join([run.info.artifact_uri, version.source, meta]))
"""


def _pipeline(folder: Path, pip: list[str], script: str = STEP) -> Path:
    (folder / "src").mkdir(parents=True, exist_ok=True)
    (folder / "src" / "step.py").write_text(script)
    conda = {"name": "step-env", "dependencies": ["python=3.11", "pip", {"pip": pip}]}
    (folder / "conda.yml").write_text(json.dumps(conda))
    (folder / "pipeline.yml").write_text(
        textwrap.dedent(
            """\
            type: pipeline
            experiment_name: contract
            jobs:
              step:
                type: command
                code: ./src
                environment:
                  image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest
                  conda_file: ./conda.yml
                command: python step.py ${{outputs.out}}
                outputs:
                  out:
                    type: uri_folder
            """
        )
    )
    return folder / "pipeline.yml"


def _executor(tmp_path: Path, **kwargs: object) -> tuple[LocalExecutor, RecordingEventPublisher]:
    events = RecordingEventPublisher()
    executor = LocalExecutor(
        tmp_path / "aml",
        tracking_uri=sqlite_tracking_uri(tmp_path / "mlflow"),
        publisher=events,
        step_timeout=600,
        **kwargs,  # type: ignore[arg-type]
    )
    return executor, events


def test_a_step_with_the_plugin_logs_registers_and_loads_through_the_workspace(
    tmp_path: Path,
) -> None:
    executor, events = _executor(tmp_path)
    record = executor.run(executor.submit(_pipeline(tmp_path / "p", PLUGIN)).name)
    assert record.status == "Completed", record.error
    step = record.steps["step"]
    assert step.python.startswith(str(executor.environments.root))
    # Installed with its bytecode, as pip installs Azure ML's images: a step process does
    # not compile its imports from source.
    site = next(Path(step.python).parent.parent.glob("lib/python3*/site-packages"))
    assert list((site / "mlflow" / "__pycache__").glob("__init__.*.pyc"))
    seen = (Path(step.outputs["out"]) / "seen.txt").read_text().splitlines()
    # The step saw Azure ML's URIs, never this machine's paths ...
    assert seen[0].startswith("azureml://127.0.0.1:") and seen[0].endswith("/artifacts")
    assert "/experiments/" in seen[0] and "/workspaces/local/" in seen[0]
    assert seen[1] == seen[0] + "/model"
    assert json.loads(seen[2]) == {"kind": "demo"}  # downloaded through the blob endpoint
    # ... while the store keeps local file URIs every reader on this machine can use.
    registry = MLflowModelRegistry(executor.tracking_uri or "")
    version = registry.get("demo-model", "1")
    assert version.name == "demo-model"
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=executor.tracking_uri)
    stored = client.get_model_version("demo-model", "1")
    assert stored.source.startswith("file://")
    assert Path(stored.source.removeprefix("file://"), "weights.txt").read_text() == "1 2 3"
    run = client.get_run(step.run_id)
    assert run.data.metrics == {"mape": 0.25} and run.data.params == {"alpha": "0.5"}
    registered = [
        e for e in events.events if e["eventType"] == AzureMLEventType.MODEL_REGISTERED.value
    ]
    assert [(e["data"]["modelName"], e["data"]["modelVersion"]) for e in registered] == [
        ("demo-model", "1")
    ]


def test_a_step_without_azureml_mlflow_fails_with_mlflows_own_error(tmp_path: Path) -> None:
    executor, _ = _executor(tmp_path)
    record = executor.run(executor.submit(_pipeline(tmp_path / "p", PLUGIN[:1])).name)
    assert record.status == "Failed"
    tail = record.steps["step"].log_tail
    # What a component without the plugin prints in Azure ML too: mlflow knows no azureml://.
    assert "UnsupportedModelRegistryStoreURIException" in tail, tail
    assert "unsupported URI 'azureml://" in tail, tail


def test_a_package_the_environment_lacks_fails_the_step_unless_run_in_the_project(
    tmp_path: Path,
) -> None:
    script = "import sys\nimport yaml\nprint(yaml.safe_dump({'ok': True}))\n"
    path = _pipeline(tmp_path / "p", ["six==1.17.0"], script)
    executor, _ = _executor(tmp_path)
    record = executor.run(executor.submit(path).name)
    assert record.status == "Failed"
    assert "No module named 'yaml'" in record.steps["step"].log_tail
    quick, _ = _executor(tmp_path / "quick", env_mode="project")
    again = quick.run(quick.submit(path).name)
    assert again.status == "Completed", again.error
    assert again.environment_mode == "project"
    assert again.steps["step"].environment == "project"
    log = (quick.store.job_dir(again.name) / "logs" / "job_log.txt").read_text()
    assert "--env project" in log


def test_a_package_that_cannot_be_installed_fails_at_submit_naming_it(tmp_path: Path) -> None:
    path = _pipeline(tmp_path / "p", ["no-such-package-mlops-zz==1.0"])
    executor, _ = _executor(tmp_path)
    with pytest.raises(BadInputError) as caught:
        executor.submit(path)
    message = str(caught.value)
    assert "no-such-package-mlops-zz" in message
    assert str(tmp_path / "p" / "conda.yml") in message or "step-env" in message
    assert not list((tmp_path / "aml").glob("jobs/*/job.json"))


def test_the_endpoint_needs_a_run_token_and_lets_steps_reach_no_other_host(
    tmp_path: Path,
) -> None:
    uri = sqlite_tracking_uri(tmp_path / "mlflow")
    from local.aml.tracking import initialize_store

    initialize_store(uri)
    with WorkspaceEndpoint(uri, tmp_path / "ws") as endpoint:
        context = ssl.create_default_context(cafile=str(endpoint.tls.ca_bundle))
        base = f"https://{endpoint.netloc}/mlflow/v2.0{endpoint.identity.scope}"
        url = f"{base}/api/2.0/mlflow/experiments/search?max_results=1"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, context=context, timeout=10)
        assert refused.value.code == 401
        token = endpoint.tokens.mint("run", "exp")
        forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
        for bearer, expected in ((forged, 401), (token, 200)):
            request = urllib.request.Request(url, headers={"Authorization": f"Bearer {bearer}"})
            try:
                with urllib.request.urlopen(request, context=context, timeout=10) as answer:
                    status = answer.status
            except urllib.error.HTTPError as exc:
                status = exc.code
            assert status == expected
        # The proxy opens tunnels to the blob host only.
        import socket

        host, port = endpoint.proxy_url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(b"CONNECT pypi.org:443 HTTP/1.1\r\nHost: pypi.org:443\r\n\r\n")
            assert sock.recv(100).startswith(b"HTTP/1.1 403")
