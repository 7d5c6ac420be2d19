"""The Azure ML adapters through azure-ai-ml's real ``MLClient`` and azure-core pipeline.

The service is the loopback stand-in in ``azure_standin/azureml.py``: it answers the REST
operations azure-ai-ml 1.35.2 issues (``../shared/data/azureml-rest/OPERATIONS.md``) with
bodies taken from recorded service traffic and the official REST examples, and keeps its
blobs in Azurite. Every test here fails if the SDK asked for anything the stand-in does not
serve (see the ``azureml`` fixture).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

from adapters.data_assets import AzureMLDataAssets, datastore_path
from adapters.datasets import DatasetVersion
from adapters.errors import (
    AccessDeniedError,
    BadInputError,
    ConflictError,
    NotFoundError,
    TransientError,
)
from adapters.jobs import ERROR_EXCERPT_CHARS, AzureMLPipelineJobs, JobInfo
from adapters.registry import AzureMLModelRegistry
from local.hosting.azurite import ACCOUNT_KEY, Azurite
from tests.integration.azure_standin.azureml import JobView, Plan
from tests.integration.azure_standin.credentials import verify_jwt
from tests.integration.conftest import AzureMLWorkspace

pytestmark = [pytest.mark.integration, pytest.mark.azure_http]

TRAIN = "pipelines/train.yml"
DATA = {
    source: f"azureml://datastores/workspaceblobstore/paths/conditioned/{source}/"
    for source in ("shipments", "stores", "weather", "events")
}
TERMINAL = ("Completed", "Failed", "Canceled", "NotResponding")


def until_terminal(jobs: AzureMLPipelineJobs, name: str) -> JobInfo:
    for _ in range(20):
        info = jobs.status(name)
        if info.status in TERMINAL:
            return info
    raise AssertionError(f"{name} never finished")


def submit_train(jobs: AzureMLPipelineJobs) -> str:
    return jobs.submit(
        TRAIN,
        {**DATA, "region": "r07"},
        experiment_name="forecast-train",
        tags={"segment": "r07-large-fast"},
        display_name="train-r07-large-fast",
    )


def submit_together(azureml: AzureMLWorkspace, count: int) -> list[object]:
    """``count`` train submissions from threads released at once: each one's job name, or the
    exception it raised (what the tests check)."""
    start = threading.Barrier(count, timeout=30)
    outcomes: list[object] = []

    def submit() -> None:
        start.wait()
        try:
            outcomes.append(submit_train(AzureMLPipelineJobs(azureml.client())))
        except Exception as exc:  # the outcome is what the test checks
            outcomes.append(exc)

    threads = [threading.Thread(target=submit) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return outcomes


def test_submitting_the_train_pipeline_uploads_its_code_and_registers_its_steps(
    azureml: AzureMLWorkspace, azurite: Azurite
) -> None:
    app = azureml.app
    jobs = AzureMLPipelineJobs(azureml.client())
    name = submit_train(jobs)

    ops = app.operations()
    # The order azure-ai-ml follows: the step code is uploaded once, then every step becomes
    # an anonymous component that points at it, then the pipeline job is created.
    first = {op: ops.index(op) for op in reversed(ops)}
    assert (
        first["codes.versions.list"]
        < first["codes.versions.startPendingUpload"]
        < first["codes.versions.createOrUpdate"]
        < first["components.versions.createOrUpdate"]
        < first["jobs.createOrUpdate"]
    )
    assert ops.count("codes.versions.startPendingUpload") == 1  # one snapshot of pipelines/src
    assert ops.count("components.versions.createOrUpdate") == 4  # prep, train, evaluate, register
    assert ops[-1] == "jobs.createOrUpdate"
    versions = {s.operation: s.api_version for s in app.served}
    assert versions["codes.versions.createOrUpdate"] == "2023-04-01"
    assert versions["components.versions.createOrUpdate"] == "2024-01-01-preview"
    assert versions["jobs.createOrUpdate"] == "2024-01-01-preview"

    # The code went to (Azurite's) blob storage through the SAS URL the workspace handed out.
    blobs = BlobServiceClient(azurite.blob_endpoint, credential=ACCOUNT_KEY)
    uploaded = {b.name for b in blobs.get_container_client(app.code_container).list_blobs()}
    assert any(n.endswith("forecasting/train.py") for n in uploaded), sorted(uploaded)[:5]
    ((digest, (code_name, code_version, _)),) = app.codes.items()
    code_id = f"/codes/{code_name}/versions/{code_version}"
    for props in app.components.values():
        assert props["componentSpec"]["code"].endswith(code_id)

    job = app.jobs[name]
    props = job.properties
    assert props["jobType"] == "Pipeline"
    assert props["experimentName"] == "forecast-train"
    assert props["displayName"] == "train-r07-large-fast"
    assert props["tags"]["segment"] == "r07-large-fast"
    assert props["inputs"]["shipments"] == {"uri": DATA["shipments"], "jobInputType": "uri_folder"}
    assert props["inputs"]["region"]["value"] == "r07"
    assert set(props["jobs"]) == {"prep", "train", "evaluate", "register"}
    # A pipeline job carries the caller's Azure ML token, issued for Azure ML's audience.
    token = next(v for k, v in job.headers.items() if k.lower() == "x-azureml-token")
    assert (verify_jwt(token) or {}).get("aud") == "https://ml.azure.com"
    assert digest


def test_jobs_run_on_the_compute_the_deployment_created(azureml: AzureMLWorkspace) -> None:
    """``MLOPS_AML_COMPUTE`` replaces the YAML's default_compute (the data scientists' own
    cluster): the Bicep's cluster is the one whose identity may read the conditioned data."""
    default = AzureMLPipelineJobs(azureml.client())
    cluster = AzureMLPipelineJobs(azureml.client(), compute="mlops-abc123")
    yaml_job = azureml.app.jobs[submit_train(default)].properties
    ours = azureml.app.jobs[submit_train(cluster)].properties
    assert yaml_job["settings"]["default_compute"].endswith("/computes/cpu-cluster")
    assert ours["settings"]["default_compute"].endswith("/computes/mlops-abc123")


def test_a_second_submission_reuses_the_uploaded_code(azureml: AzureMLWorkspace) -> None:
    jobs = AzureMLPipelineJobs(azureml.client())
    submit_train(jobs)
    submit_train(jobs)
    ops = azureml.app.operations()
    assert ops.count("codes.versions.startPendingUpload") == 1
    assert ops.count("codes.versions.get") >= 1  # found by its content hash
    assert ops.count("jobs.createOrUpdate") == 2


def test_two_submissions_racing_to_upload_the_code_are_transient_then_reuse_it(
    azureml: AzureMLWorkspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """azure-sdk-for-python#30155: two submissions at the same moment both find no snapshot
    and both upload it; the loser meets the winner's blobs (Azurite's 409, through the real
    SDK). That must be a transient failure, so the orchestrator submits again, and the second
    attempt reuses the snapshot instead of failing the segment.

    Within one process azure-ai-ml 1.35.2 serialises this step with a lock per workspace
    (``_cache_utils._node_resolution_lock``); the race is between processes (a scaled-out
    function app, or several workers on one instance). Each thread here gets a lock of its
    own, as a process would."""
    from collections import defaultdict

    from azure.ai.ml._artifacts._blob_storage_helper import BlobStorageClient
    from azure.ai.ml._utils import _cache_utils

    class LockPerCaller(defaultdict):  # type: ignore[type-arg]
        def __missing__(self, key: object) -> threading.Lock:
            return threading.Lock()  # not kept: every resolver gets its own, as in a process

    monkeypatch.setattr(_cache_utils, "_node_resolution_lock", LockPerCaller())

    checked = threading.Barrier(2, timeout=30)
    original = BlobStorageClient.check_blob_exists

    def check_then_wait(self: BlobStorageClient) -> None:
        original(self)
        checked.wait()  # both have seen no snapshot before either uploads

    monkeypatch.setattr(BlobStorageClient, "check_blob_exists", check_then_wait)
    outcomes = submit_together(azureml, 2)
    failures = [o for o in outcomes if isinstance(o, Exception)]
    assert len(outcomes) == 2 and failures, outcomes  # the race happened
    for failure in failures:
        assert isinstance(failure, TransientError), repr(failure)
        assert "uploaded by another submission" in str(failure)

    monkeypatch.setattr(BlobStorageClient, "check_blob_exists", original)
    retried = submit_train(AzureMLPipelineJobs(azureml.client()))
    assert azureml.app.jobs[retried].properties["jobType"] == "Pipeline"
    assert len(azureml.app.codes) == 1  # one snapshot, reused


def test_parallel_submissions_parse_their_pipeline_one_at_a_time(
    azureml: AzureMLWorkspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Segments are submitted from parallel activity threads; azure-ai-ml's YAML loader is not
    documented as thread-safe, and one parse in a CI run of two parallel submissions failed
    in the SDK's own error reporting. The adapter parses one pipeline at a time; the rest of
    a submission still runs in parallel."""
    import time

    import azure.ai.ml

    original = azure.ai.ml.load_job
    state = {"inside": 0, "most": 0}
    guard = threading.Lock()

    def counting_load(*args: object, **kwargs: object) -> object:
        with guard:
            state["inside"] += 1
            state["most"] = max(state["most"], state["inside"])
        try:
            time.sleep(0.05)  # widen the window two unguarded parses would share
            return original(*args, **kwargs)  # type: ignore[arg-type]
        finally:
            with guard:
                state["inside"] -= 1

    monkeypatch.setattr(azure.ai.ml, "load_job", counting_load)
    submit_train(AzureMLPipelineJobs(azureml.client()))  # the code snapshot, uploaded once
    names = submit_together(azureml, 4)
    assert len(names) == 4 and all(isinstance(n, str) for n in names), names
    assert state["most"] == 1


def test_status_follows_the_job_and_reads_only_the_named_output(
    azureml: AzureMLWorkspace, tmp_path: Path
) -> None:
    app = azureml.app

    def outputs(job: JobView) -> dict[str, dict[str, bytes]]:
        return {
            "metrics": {"metrics.json": json.dumps({"segments": {}}).encode()},
            "registered": {"registered.json": b'{"models": [{"name": "forecast-r07"}]}'},
            "models": {"forecast-r07/model.pkl": b"\0" * 200_000},
        }

    app.output_writer = outputs
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    jobs = AzureMLPipelineJobs(azureml.client(), scratch_dir=scratch)
    name = submit_train(jobs)
    seen = [jobs.status(name).status for _ in range(5)]
    assert seen == ["Queued", "Running", "Completed", "Completed", "Completed"]

    data = jobs.read_output_file(name, "registered", "registered.json")
    assert json.loads(data)["models"][0]["name"] == "forecast-r07"
    # Only the ``registered`` output was listed and fetched; the model files never moved.
    assert app.blob_requests, "the download did not go through the blob endpoint"
    assert all("registered" in r for r in app.blob_requests), app.blob_requests
    assert list(scratch.iterdir()) == []  # the temporary folder is gone
    assert jobs.metrics(name) == {"segments": {}}
    versions = {s.operation: s.api_version for s in app.served}
    assert versions["runs.data"] == "v1.0"
    assert versions["dataversions.batchGetResolvedUris"] == "1.5.0"
    assert versions["datastores.listSecrets"] == "2024-10-01-preview"


def test_outputs_that_are_not_there_are_not_found(azureml: AzureMLWorkspace) -> None:
    azureml.app.output_writer = lambda job: {"metrics": {"metrics.json": b"{}"}}
    jobs = AzureMLPipelineJobs(azureml.client())
    name = submit_train(jobs)
    with pytest.raises(NotFoundError, match="not available"):
        jobs.read_output_file(name, "metrics", "metrics.json")  # still running
    until_terminal(jobs, name)
    with pytest.raises(NotFoundError, match="no file"):
        jobs.read_output_file(name, "metrics", "other.json")
    with pytest.raises(NotFoundError):
        jobs.read_output_file(name, "registered", "registered.json")  # declared, never written
    with pytest.raises(NotFoundError, match="no output"):
        jobs.read_output_file(name, "nonexistent", "x.json")
    before = len(azureml.app.served)
    with pytest.raises(BadInputError):
        jobs.read_output_file(name, "metrics", "../escape.json")
    assert len(azureml.app.served) == before  # refused before anything was asked


def test_a_failed_pipeline_names_its_failed_step_and_error(azureml: AzureMLWorkspace) -> None:
    traceback = "\n".join(f'  File "forecasting/train.py", line {i}, in fit' for i in range(400))
    message = (
        "Execution failed. User process 'python' exited with status code 1. Please check log "
        f"file 'user_logs/std_log.txt' for error details. Error: Traceback:\n{traceback}\n"
        "ValueError: segment r07/large/fast has no rows"
    )
    azureml.app.plan_next_job(Plan(outcome="Failed", failed_step="train", error=message))
    jobs = AzureMLPipelineJobs(azureml.client())
    info = until_terminal(jobs, submit_train(jobs))
    assert info.status == "Failed"
    assert info.failed_step == "train"
    assert info.error.endswith("ValueError: segment r07/large/fast has no rows")
    assert len(info.error) <= ERROR_EXCERPT_CHARS + 1
    served = {s.operation: s for s in azureml.app.served}
    assert served["runs.children"].api_version == "v1.0"
    assert served["runs.get"].api_version == "v1.0"
    assert served["discovery"].status == 200


def test_a_running_job_is_canceled_and_a_finished_one_left_alone(
    azureml: AzureMLWorkspace,
) -> None:
    azureml.app.plan_next_job(Plan(running_polls=50))
    jobs = AzureMLPipelineJobs(azureml.client())
    name = submit_train(jobs)
    assert jobs.status(name).status == "Queued"
    jobs.cancel(name)
    assert until_terminal(jobs, name).status == "Canceled"
    cancel = [s for s in azureml.app.served if s.operation == "jobs.cancel"]
    assert [(s.api_version, s.status) for s in cancel] == [("2023-04-01-preview", 202)]
    jobs.cancel(name)
    assert azureml.app.count("jobs.cancel") == 1


def test_model_versions_are_read_page_by_page_and_tags_rewritten(
    azureml: AzureMLWorkspace,
) -> None:
    app = azureml.app
    for i in range(5):
        app.add_model("forecast-r07", {"segment": "r07/large/fast", "ensemble_mape": f"0.{i}"})
    registry = AzureMLModelRegistry(azureml.client())
    assert [v.version for v in registry.list_versions("forecast-r07")] == ["1", "2", "3", "4", "5"]
    assert app.count("models.versions.list") == 3  # pages of two
    assert registry.get("forecast-r07", "4").metrics == {"ensemble_mape": 0.3}

    registry.set_tags("forecast-r07", "4", {"gate": "champion"})
    stored = app.models["forecast-r07"]["4"].properties
    assert stored["tags"] == {
        "segment": "r07/large/fast",
        "ensemble_mape": "0.3",
        "gate": "champion",
    }
    assert stored["modelUri"].endswith("azureml/models/forecast-r07/4/")
    assert registry.list_versions("forecast-unknown") == []
    with pytest.raises(NotFoundError):
        registry.get("forecast-r07", "9")
    versions = {s.operation: s.api_version for s in app.served}
    assert versions["models.versions.createOrUpdate"] == "2023-08-01-preview"


def test_a_failing_second_page_is_transient_and_a_throttled_one_retried(
    azureml: AzureMLWorkspace,
) -> None:
    app = azureml.app
    for _ in range(3):
        app.add_model("forecast-r08", {})
    registry = AzureMLModelRegistry(azureml.client())

    def second_page(request: object) -> bool:
        return "$skipToken" in getattr(request, "query", {})

    app.fail("models.versions.list", 503, times=3, when=second_page)
    with pytest.raises(TransientError, match="503"):
        registry.list_versions("forecast-r08")
    app.fail("models.versions.list", 429, headers={"Retry-After": "60"}, when=second_page)
    assert [v.version for v in registry.list_versions("forecast-r08")] == ["1", "2", "3"]


@pytest.mark.parametrize("status", [429, 503])
def test_throttling_and_outages_are_retried_then_transient(
    azureml: AzureMLWorkspace, status: int
) -> None:
    jobs = AzureMLPipelineJobs(azureml.client())
    name = submit_train(jobs)
    before = azureml.app.count("jobs.get")
    # Retry-After of a minute: the policy honours it only up to its (test-sized) ceiling.
    azureml.app.fail("jobs.get", status, times=3, headers={"Retry-After": "60"})
    with pytest.raises(TransientError, match=str(status)):
        jobs.status(name)
    assert azureml.app.count("jobs.get") - before == 3  # the first try and two retries
    azureml.app.fail("jobs.get", status, times=1, headers={"Retry-After": "60"})
    assert jobs.status(name).status == "Queued"  # a single hiccup is absorbed


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_identity_is_a_configuration_error_naming_the_role(
    azureml: AzureMLWorkspace, status: int
) -> None:
    azureml.app.fail("jobs.createOrUpdate", status)
    jobs = AzureMLPipelineJobs(azureml.client())
    with pytest.raises(AccessDeniedError, match="AzureML Data Scientist") as caught:
        submit_train(jobs)
    assert caught.value.role == "AzureML Data Scientist"
    if status == 403:
        assert "workspaces/jobs/write" in str(caught.value)
    assert azureml.app.count("jobs.createOrUpdate") == 1  # never retried


def test_unknown_jobs_and_models_are_not_found(azureml: AzureMLWorkspace) -> None:
    client = azureml.client()
    with pytest.raises(NotFoundError):
        AzureMLPipelineJobs(client).status("no_such_job_123")
    with pytest.raises(NotFoundError):
        AzureMLPipelineJobs(client).cancel("no_such_job_123")
    with pytest.raises(NotFoundError):
        AzureMLModelRegistry(client).get("forecast-none", "1")


def test_a_pipeline_azure_ml_would_refuse_is_bad_input(
    azureml: AzureMLWorkspace, tmp_path: Path
) -> None:
    # No compute anywhere: the SDK's own validation refuses it before sending anything.
    pipeline = tmp_path / "no_compute.yml"
    source = Path("tests/fixtures/aml/contract/pipeline.yml").read_text(encoding="utf-8")
    pipeline.write_text(source.replace("settings:\n  default_compute: azureml:cpu-cluster\n", ""))
    jobs = AzureMLPipelineJobs(azureml.client())
    with pytest.raises(BadInputError, match="Compute not set"):
        jobs.submit(str(pipeline), {"value": 1}, experiment_name="e")
    assert azureml.app.count("jobs.createOrUpdate") == 0


def conditioned(version: str = "20240601-ab12cd34", status: str = "conditioned") -> DatasetVersion:
    return DatasetVersion(
        source="shipments",
        dataset_version=version,
        status=status,
        input_name="shipments/2024-06-01/drop.csv.gz",
        input_etag='"0x8DC1234567890AB"',
        input_sha256="a" * 64,
        manifest=f"conditioned/shipments/{version}/manifest.json",
        rows_in=1000,
        rows_out=990,
        rows_rejected=10,
        period_start="2024-05-27",
        period_end="2024-06-02",
    )


def test_a_conditioned_version_becomes_a_data_asset_once(azureml: AzureMLWorkspace) -> None:
    app = azureml.app
    assets = AzureMLDataAssets(azureml.client(), "conditioned")
    asset = assets.register(conditioned(), manifest_sha256="b" * 64)
    assert asset.reference == "azureml:shipments:20240601-ab12cd34"
    stored = app.data["shipments"]["20240601-ab12cd34"].properties
    assert stored["dataType"] == "uri_folder"
    assert datastore_path(stored["dataUri"]) == ("conditioned/paths/shipments/20240601-ab12cd34")
    assert stored["tags"] == {
        "rows_in": "1000",
        "rows_out": "990",
        "rows_rejected": "10",
        "input_blob": "shipments/2024-06-01/drop.csv.gz",
        "input_etag": '"0x8DC1234567890AB"',
        "input_sha256": "a" * 64,
        "manifest": "conditioned/shipments/20240601-ab12cd34/manifest.json",
        "manifest_sha256": "b" * 64,
        "period_start": "2024-05-27",
        "period_end": "2024-06-02",
    }
    assert assets.register(conditioned(), manifest_sha256="b" * 64) == asset  # idempotent
    assert app.count("data.versions.createOrUpdate") == 1
    assert assets.get("shipments", "20240601-ab12cd34") == asset
    assets.register(conditioned("20240608-cd34ef56"), manifest_sha256="c" * 64)
    assert assets.get("shipments").version == "20240608-cd34ef56"  # latest
    versions = {s.operation: s.api_version for s in app.served}
    assert versions["data.versions.createOrUpdate"] == "2023-04-01-preview"
    assert versions["data.versions.get"] == "2023-04-01-preview"
    assert versions["data.containers.get"] == "2023-04-01-preview"


def test_data_assets_refuse_what_is_not_the_same_data(azureml: AzureMLWorkspace) -> None:
    assets = AzureMLDataAssets(azureml.client(), "conditioned")
    with pytest.raises(BadInputError, match="not conditioned"):
        assets.register(conditioned(status="quarantined"), manifest_sha256="b" * 64)
    with pytest.raises(NotFoundError):
        assets.get("shipments", "19990101-00000000")
    with pytest.raises(NotFoundError):
        assets.get("weather")
    # The same name and version over other data (registered elsewhere): versions are immutable.
    other = AzureMLDataAssets(azureml.client(), "another_datastore")
    other.register(conditioned(), manifest_sha256="b" * 64)
    with pytest.raises(ConflictError, match="exists over"):
        assets.register(conditioned(), manifest_sha256="b" * 64)


def test_a_training_job_names_its_data_by_asset(azureml: AzureMLWorkspace) -> None:
    client = azureml.client()
    asset = AzureMLDataAssets(client, "conditioned").register(
        conditioned(), manifest_sha256="b" * 64
    )
    jobs = AzureMLPipelineJobs(client)
    name = jobs.submit(
        TRAIN, {**DATA, "shipments": asset.reference}, experiment_name="forecast-train"
    )
    sent = azureml.app.jobs[name].properties["inputs"]["shipments"]
    assert sent["jobInputType"] == "uri_folder"
    # The SDK sends the asset's resource id: the job's lineage names this very version.
    assert sent["uri"] == f"{azureml.app.ws_path}/data/shipments/versions/20240601-ab12cd34"


def test_the_stand_in_cloud_does_not_outlive_the_test() -> None:
    # Runs after the tests above (file order): MLClient set the variable to their stand-in
    # cloud, which a later local job (a subprocess parsing YAML with azure-ai-ml) would inherit.
    import os

    assert os.environ.get("AZUREML_CURRENT_CLOUD", "AzureCloud") == "AzureCloud"
