"""Job records persisted as JSON under the executor's root, so status survives a restart.

Layout (``root`` defaults to ``.local/aml`` at the repo root)::

    root/jobs/<job name>/job.json          the record (rewritten atomically on every change)
    root/jobs/<job name>/cancel            present once a cancel was requested
    root/jobs/<job name>/steps/<step>/     snapshot, artifacts, ``user_logs/std_log.txt``
    root/datastores/NAME/...               the local datastores, outputs included (``locations.py``)
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from adapters.errors import NotFoundError
from local.aml.status import JobStatus

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ROOT = REPO_ROOT / ".local" / "aml"


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass
class StepRecord:
    name: str
    status: str = JobStatus.NOT_STARTED.value
    command: str = ""
    exit_code: int | None = None
    log_path: str = ""
    error: str = ""
    log_tail: str = ""
    started_at: str | None = None
    ended_at: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    run_id: str = ""
    kind: str = "command"
    # The environment the step ran in ("project" with --env project) and its interpreter.
    environment: str = ""
    python: str = ""
    # Parallel steps: mini-batch counts (total, succeeded, failed, retried, running, items_failed);
    # sweeps: trial counts (total, running, completed, failed, canceled).
    progress: dict[str, int] = field(default_factory=dict)
    # Sweeps: the settings, every trial (a child run: parameters, status, metric) and the best.
    sweep: dict[str, Any] = field(default_factory=dict)


@dataclass
class JobRecord:
    """What ``status`` reports for one pipeline job; field names follow Azure ML's job view."""

    name: str
    display_name: str
    experiment_name: str
    pipeline_path: str
    status: str = JobStatus.NOT_STARTED.value
    inputs: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    steps: dict[str, StepRecord] = field(default_factory=dict)
    created_at: str = field(default_factory=utc_now)
    started_at: str | None = None
    ended_at: str | None = None
    error: str = ""
    failed_step: str = ""
    runner_pid: int | None = None
    run_id: str = ""
    # Settings this machine ignored (also written to the job log once).
    warnings: list[str] = field(default_factory=list)
    # "declared": each step in its component's environment, under Azure ML's job contract;
    # "project": every step in the project's own virtualenv (--env project).
    environment_mode: str = "declared"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobRecord:
        steps = {k: StepRecord(**v) for k, v in data.get("steps", {}).items()}
        return cls(**{**data, "steps": steps})


class JobStore:
    """Reads and writes job records; safe across threads of one process and across processes
    for readers (writes are atomic renames)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self._lock = threading.Lock()

    def job_dir(self, name: str) -> Path:
        if not name or "/" in name or name.startswith("."):
            raise NotFoundError(f"job {name!r} does not exist")
        return self.root / "jobs" / name

    def save(self, record: JobRecord) -> None:
        folder = self.job_dir(record.name)
        folder.mkdir(parents=True, exist_ok=True)
        payload = json.dumps(record.to_json(), indent=2, sort_keys=True)
        with self._lock:
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".job.", suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(payload)
            Path(tmp).replace(folder / "job.json")

    def load(self, name: str) -> JobRecord:
        path = self.job_dir(name) / "job.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise NotFoundError(f"job {name!r} does not exist") from None
        return JobRecord.from_json(data)

    def exists(self, name: str) -> bool:
        return (self.job_dir(name) / "job.json").is_file()

    def names(self) -> list[str]:
        jobs = self.root / "jobs"
        if not jobs.is_dir():
            return []
        return sorted(p.parent.name for p in jobs.glob("*/job.json"))

    def request_cancel(self, name: str) -> None:
        if not self.exists(name):
            raise NotFoundError(f"job {name!r} does not exist")
        (self.job_dir(name) / "cancel").touch()

    def cancel_requested(self, name: str) -> bool:
        return (self.job_dir(name) / "cancel").exists()
