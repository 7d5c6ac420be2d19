"""One contract for every ``JobSteps``: the local executor's records and the Azure ML adapter
(through azure-ai-ml's real ``MLClient`` against the loopback stand-in, which serves the
pipeline's child runs from run history — ``jobs.list(parent_job_name=...)`` — and each run's
record with its error)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.errors import NotFoundError
from adapters.job_steps import AzureMLJobSteps, JobSteps
from adapters.jobs import AzureMLPipelineJobs, PipelineJobs
from local.aml.job_steps import LocalJobSteps
from local.aml.jobs import LocalPipelineJobs
from local.aml.status import JobStatus
from tests.integration.azure_standin.azureml import Plan
from tests.integration.test_jobs_contract import AZURE, CONTRACT, FIXTURES, wait_terminal

pytestmark = pytest.mark.integration


def play_fixture_steps(job: dict[str, Any]) -> Plan:
    """What the fixture pipelines' steps do, as the stand-in plays them: ``boom`` (crash.yml)
    exits 3 after printing the error the local run shows; the rest complete."""
    if "boom" in (job.get("jobs") or {}):
        return Plan(
            "Failed",
            "boom",
            "User process 'python' exited with status code 3: something went badly wrong",
        )
    return Plan()


@pytest.fixture(params=["local", AZURE])
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[PipelineJobs, JobSteps]]:
    if request.param == "local":
        jobs = LocalPipelineJobs(tmp_path / "aml", tracking_uri=None, step_timeout=240)
        yield jobs, LocalJobSteps(tmp_path / "aml")
        jobs.close(timeout=60)
    else:
        workspace = request.getfixturevalue("azureml")
        workspace.app.planner = play_fixture_steps
        client = workspace.client()
        yield AzureMLPipelineJobs(client), AzureMLJobSteps(client)


def test_a_finished_job_lists_its_steps_with_times(pair: tuple[PipelineJobs, JobSteps]) -> None:
    jobs, steps = pair
    name = jobs.submit(CONTRACT, {"value": 0.5}, experiment_name="contract-exp")
    assert wait_terminal(jobs, name, []).status == "Completed"
    found = steps.steps(name)
    assert [s.name for s in found] == ["report"]
    step = found[0]
    assert JobStatus.parse(step.status) is JobStatus.COMPLETED
    assert step.started_at is not None and step.ended_at is not None
    assert step.started_at <= step.ended_at
    assert (
        step.started_at.utcoffset() is not None and step.started_at.utcoffset().total_seconds() == 0
    )


def test_an_unknown_job_is_not_found(pair: tuple[PipelineJobs, JobSteps]) -> None:
    _, steps = pair
    with pytest.raises(NotFoundError):
        steps.steps("no_such_job_123")


def test_a_failed_step_is_reported_with_its_error(pair: tuple[PipelineJobs, JobSteps]) -> None:
    jobs, steps = pair
    name = jobs.submit(str(FIXTURES / "bad" / "crash.yml"), {}, experiment_name="contract")
    assert wait_terminal(jobs, name, []).status == "Failed"
    found = steps.steps(name)
    failed = [s for s in found if s.status == "Failed"]
    assert [s.name for s in failed] == ["boom"]
    assert "something went badly wrong" in failed[0].error
