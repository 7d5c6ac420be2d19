"""One contract for every ``PipelineJobs``: the local executor and the Azure ML adapter must
behave the same to the orchestrators.

The Azure adapter runs through azure-ai-ml's real ``MLClient`` against the loopback stand-in of
the Azure ML REST surface (``azure_standin/azureml.py``, its bodies taken from recorded service
traffic in ``../shared/data/azureml-rest``); the stand-in plays the contract pipeline's one step
by writing its ``value`` input as ``metrics.json``, as ``tests/fixtures/aml/contract/report.py``
does locally. The scripted control plane of the reliability tests and the loop benchmark runs
the part of the contract a script can keep (it runs no code, so it reports its scripted
metrics, not the pipeline's).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.errors import BadInputError, NotFoundError
from adapters.events import NullEventPublisher
from adapters.jobs import AzureMLPipelineJobs, JobInfo, PipelineJobs
from local.aml.jobs import LocalPipelineJobs
from local.aml.scripted import Script, ScriptedPipelineJobs
from local.aml.status import JobStatus
from tests.integration.azure_standin.azureml import JobView

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "aml"
CONTRACT = str(FIXTURES / "contract" / "pipeline.yml")
SLOW = str(FIXTURES / "bad" / "slow.yml")
KNOWN = {s.value for s in JobStatus}


def contract_step(job: JobView) -> dict[str, dict[str, bytes]]:
    """What the contract pipeline's ``report`` step writes: its ``value`` input as JSON."""
    return {"metrics": {"metrics.json": json.dumps({"value": float(job.inputs["value"])}).encode()}}


AZURE = pytest.param("azure", marks=pytest.mark.azure_http)


def _local_or_azure(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PipelineJobs]:
    if request.param == "local":
        # Generous limits: they only stop a hung job, and a shared machine can be slow.
        local = LocalPipelineJobs(tmp_path / "aml", tracking_uri=None, step_timeout=240)
        yield local
        local.close(timeout=60)
    else:
        workspace = request.getfixturevalue("azureml")
        workspace.app.output_writer = contract_step
        yield AzureMLPipelineJobs(workspace.client())


@pytest.fixture(params=["local", AZURE])
def jobs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PipelineJobs]:
    yield from _local_or_azure(request, tmp_path)


@pytest.fixture(params=["local", AZURE, "scripted"])
def any_jobs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PipelineJobs]:
    """Every implementation, the scripted one included, for the generic part of the contract."""
    if request.param == "scripted":
        yield ScriptedPipelineJobs(
            NullEventPublisher(), lambda *_: "1", tmp_path / "jobs", Script(duration=30.0)
        )
        return
    yield from _local_or_azure(request, tmp_path)


def wait_terminal(jobs: PipelineJobs, name: str, seen: list[str], timeout: float = 240) -> JobInfo:
    deadline = time.monotonic() + timeout
    while True:
        info = jobs.status(name)
        seen.append(info.status)
        if JobStatus.parse(info.status).is_terminal:
            return info
        assert time.monotonic() < deadline, f"{name} still {info.status}"
        time.sleep(0.2)


def test_submitted_job_completes_and_reports_its_metrics(jobs: PipelineJobs) -> None:
    name = jobs.submit(
        CONTRACT, {"value": 0.25}, experiment_name="contract-exp", tags={"segment": "n/large/fast"}
    )
    seen: list[str] = []
    info = wait_terminal(jobs, name, seen)
    assert info.status == "Completed", info.error
    assert set(seen) <= KNOWN
    assert info.experiment_name == "contract-exp"
    assert info.tags["segment"] == "n/large/fast"
    assert jobs.metrics(name) == {"value": 0.25}
    assert json.loads(jobs.read_output_file(name, "metrics", "metrics.json")) == {"value": 0.25}
    with pytest.raises(NotFoundError):
        jobs.read_output_file(name, "metrics", "missing.json")
    with pytest.raises(NotFoundError):
        jobs.read_output_file(name, "no_such_output", "metrics.json")
    with pytest.raises(BadInputError):
        jobs.read_output_file(name, "metrics", "../../etc/passwd")


def test_a_running_job_can_be_canceled(any_jobs: PipelineJobs) -> None:
    jobs = any_jobs
    name = jobs.submit(SLOW, {"seconds": 30}, experiment_name="contract-exp")
    seen: list[str] = []
    deadline = time.monotonic() + 240
    while jobs.status(name).status != "Running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    jobs.cancel(name)
    info = wait_terminal(jobs, name, seen)
    assert info.status == "Canceled"
    jobs.cancel(name)  # cancelling a finished job changes nothing
    assert jobs.status(name).status == "Canceled"


def test_unknown_job_is_not_found(any_jobs: PipelineJobs) -> None:
    with pytest.raises(NotFoundError):
        any_jobs.status("no_such_job_123")


def test_unknown_input_or_pipeline_is_bad_input(any_jobs: PipelineJobs) -> None:
    jobs = any_jobs
    with pytest.raises(BadInputError, match="nope"):
        jobs.submit(CONTRACT, {"nope": 1}, experiment_name="contract-exp")
    with pytest.raises(BadInputError, match="not found"):
        jobs.submit("pipelines/does_not_exist.yml", {}, experiment_name="contract-exp")
