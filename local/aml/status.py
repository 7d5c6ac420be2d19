"""Azure ML job status strings and the transitions the local executor uses."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """The status strings Azure ML reports for jobs and pipeline steps (same spelling)."""

    NOT_STARTED = "NotStarted"
    QUEUED = "Queued"
    STARTING = "Starting"
    PREPARING = "Preparing"
    PROVISIONING = "Provisioning"
    RUNNING = "Running"
    FINALIZING = "Finalizing"
    CANCEL_REQUESTED = "CancelRequested"
    PAUSED = "Paused"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELED = "Canceled"
    NOT_RESPONDING = "NotResponding"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL

    @classmethod
    def parse(cls, value: str) -> JobStatus:
        """Case-insensitive parse (Azure ML and Event Grid disagree on case)."""
        for status in cls:
            if status.value.lower() == value.strip().lower():
                return status
        raise ValueError(f"unknown Azure ML job status {value!r}")


TERMINAL = frozenset(
    {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.NOT_RESPONDING}
)
