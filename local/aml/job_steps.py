"""``JobSteps`` over the local Azure ML executor's job records (``<root>/jobs/<name>/job.json``)."""

from __future__ import annotations

from pathlib import Path

from adapters.job_steps import JobStep, ordered
from adapters.times import parse_utc
from local.aml.store import JobStore


class LocalJobSteps:
    """Reads the record the executor keeps for each job; unknown jobs raise ``NotFoundError``."""

    def __init__(self, root: str | Path) -> None:
        self._store = JobStore(root)

    def steps(self, job_name: str) -> list[JobStep]:
        record = self._store.load(job_name)
        return ordered(
            [
                JobStep(
                    name=step.name or key,
                    status=step.status,
                    started_at=parse_utc(step.started_at),
                    ended_at=parse_utc(step.ended_at),
                    error=step.error,
                )
                for key, step in record.steps.items()
            ]
        )
