"""One contract for every ``PipelineJobs``: the local executor and the Azure ML adapter (over
a recording fake of ``MLClient``) must behave the same to the orchestrators. The scripted
control plane of the reliability tests and the loop benchmark runs the part of the contract a
script can keep (it runs no code, so it reports its scripted metrics, not the pipeline's)."""

from __future__ import annotations

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
from tests.integration.azure_fakes import RecordingMLClient

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "aml"
CONTRACT = str(FIXTURES / "contract" / "pipeline.yml")
SLOW = str(FIXTURES / "bad" / "slow.yml")
KNOWN = {s.value for s in JobStatus}


@pytest.fixture(params=["local", "azure-fake"])
def jobs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PipelineJobs]:
    if request.param == "local":
        local = LocalPipelineJobs(tmp_path / "aml", tracking_uri=None, step_timeout=120)
        yield local
        local.close(timeout=60)
    else:
        yield AzureMLPipelineJobs(RecordingMLClient())


@pytest.fixture(params=["local", "azure-fake", "scripted"])
def any_jobs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PipelineJobs]:
    """Every implementation, the scripted one included, for the generic part of the contract."""
    if request.param == "scripted":
        yield ScriptedPipelineJobs(
            NullEventPublisher(), lambda *_: "1", tmp_path / "jobs", Script(duration=30.0)
        )
        return
    if request.param == "local":
        local = LocalPipelineJobs(tmp_path / "aml", tracking_uri=None, step_timeout=120)
        yield local
        local.close(timeout=60)
    else:
        yield AzureMLPipelineJobs(RecordingMLClient())


def wait_terminal(jobs: PipelineJobs, name: str, seen: list[str], timeout: float = 60) -> JobInfo:
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
    assert info.status == "Completed"
    assert set(seen) <= KNOWN
    assert info.experiment_name == "contract-exp"
    assert info.tags["segment"] == "n/large/fast"
    assert jobs.metrics(name) == {"value": 0.25}
    assert "metrics" in jobs.outputs(name)


def test_a_running_job_can_be_canceled(any_jobs: PipelineJobs) -> None:
    jobs = any_jobs
    name = jobs.submit(SLOW, {"seconds": 30}, experiment_name="contract-exp")
    seen: list[str] = []
    deadline = time.monotonic() + 60
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


def test_azure_adapter_sends_inputs_experiment_and_tags() -> None:
    client = RecordingMLClient()
    jobs = AzureMLPipelineJobs(client)
    jobs.submit(CONTRACT, {"value": 0.75}, experiment_name="exp-1", tags={"k": "v"})
    kind, args = client.jobs.calls[0]
    assert kind == "create_or_update"
    sent = args["job"]
    assert sent.experiment_name == "exp-1"
    assert sent.tags["k"] == "v"
    value = sent.inputs["value"]
    assert getattr(value, "_data", value) == 0.75
