"""The job steps port: what the steps of one finished pipeline job did, and for how long.

``JobSteps`` is read once per job, when its monitor sees it finish, to keep the dashboard's
job summary; it never lists jobs. ``AzureMLJobSteps`` reads a pipeline job's child jobs
through ``azure-ai-ml`` (``jobs.list(parent_job_name=...)``); ``local.aml.job_steps.LocalJobSteps``
reads the local executor's job record. Both pass tests/integration/test_job_steps_contract.py.

Contract:
- ``steps(job_name)`` → the job's steps in the order they started (steps that never started
  last, by name), each with an Azure ML status string and UTC start/end times when known.
- A failed step carries an excerpt of its error (in Azure, from its run-history record).
- Unknown jobs raise ``NotFoundError``; failures worth retrying raise ``TransientError``.
- Azure ML does not expose a child job's start and end through the public SDK: there the
  step's creation and last-modification times stand in for them (for a finished step the
  last modification is its end).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from adapters.times import parse_utc

TERMINAL = ("Completed", "Failed", "Canceled", "NotResponding")


@dataclass(frozen=True)
class JobStep:
    name: str
    status: str
    started_at: datetime | None = None
    ended_at: datetime | None = None
    error: str = ""


class JobSteps(Protocol):
    def steps(self, job_name: str) -> list[JobStep]: ...


def ordered(steps: list[JobStep]) -> list[JobStep]:
    """Steps in the order they started; those that never started last, by name."""
    return sorted(steps, key=lambda s: (s.started_at is None, s.started_at or 0, s.name))


def _when(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return parse_utc(value.isoformat())
    return parse_utc(str(value))


class AzureMLJobSteps:
    """``JobSteps`` over an Azure ML workspace; ``client`` is an ``MLClient`` (or the
    ``LazyMLClient`` shared with the other Azure ML adapters)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def steps(self, job_name: str) -> list[JobStep]:
        from adapters.azure_calls import call_azure
        from adapters.jobs import AZURE_ML, status_text, step_error

        children = call_azure(
            lambda: list(self._client.jobs.list(parent_job_name=job_name)),
            f"read the steps of job {job_name}",
            AZURE_ML,
        )
        out: list[JobStep] = []
        for child in children:
            if child is None:  # the SDK yields None for a child it cannot parse
                continue
            context = getattr(child, "creation_context", None)
            status = status_text(getattr(child, "status", None)) or "NotStarted"
            ended = getattr(context, "last_modified_at", None) if status in TERMINAL else None
            # A pipeline's child job is displayed under its node name in the YAML.
            name = str(getattr(child, "display_name", None) or child.name)
            failed = status == "Failed"
            out.append(
                JobStep(
                    name=name,
                    status=status,
                    started_at=_when(getattr(context, "created_at", None)),
                    ended_at=_when(ended),
                    error=step_error(self._client, str(child.name), name, job_name)
                    if failed
                    else "",
                )
            )
        return ordered(out)
