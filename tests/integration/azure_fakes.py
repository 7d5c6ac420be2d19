"""Recording fakes of the ``MLClient`` operations the Azure adapters use.

They answer like the service (status strings, ``ResourceNotFoundError``, download layout
``named-outputs/<output>/``) and record every call, so the Azure adapters run the same
contract suites as the local ones without a workspace.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from azure.core.exceptions import ResourceNotFoundError

PROGRESS = ("NotStarted", "Queued", "Running", "Completed")


@dataclass
class _FakeJob:
    entity: Any
    polls: int = 0
    run_polls: int = 2
    canceled: bool = False
    status: str = "NotStarted"


@dataclass
class FakeJobs:
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    jobs: dict[str, _FakeJob] = field(default_factory=dict)

    def _input(self, job: _FakeJob, name: str) -> Any:
        value = job.entity.inputs.get(name)
        return getattr(value, "_data", value)

    def create_or_update(self, job: Any, **kwargs: Any) -> Any:
        name = f"fake_job_{len(self.jobs) + 1}"
        self.calls.append(("create_or_update", {"job": job, **kwargs}))
        fake = _FakeJob(job)
        seconds = self._input(fake, "seconds") if "seconds" in (job.inputs or {}) else None
        fake.run_polls = 2 + int(float(seconds or 0))  # a longer job stays Running longer
        self.jobs[name] = fake
        return SimpleNamespace(name=name, status="NotStarted")

    def _get(self, name: str) -> _FakeJob:
        if name not in self.jobs:
            raise ResourceNotFoundError(f"job {name} not found")
        return self.jobs[name]

    def get(self, name: str) -> Any:
        self.calls.append(("get", {"name": name}))
        job = self._get(name)
        if job.status in ("Completed", "Canceled"):
            pass
        elif job.canceled:
            job.status = "Canceled" if job.status == "CancelRequested" else "CancelRequested"
        else:
            job.polls += 1
            step = min(job.polls, 2) if job.polls <= job.run_polls else 3
            job.status = PROGRESS[step]
        entity = job.entity
        return SimpleNamespace(
            name=name,
            status=job.status,
            experiment_name=entity.experiment_name,
            display_name=entity.display_name,
            tags=dict(entity.tags or {}),
            outputs=dict(entity.outputs or {}),
        )

    def list(self, parent_job_name: str | None = None, **kwargs: Any) -> list[Any]:
        """Child jobs of a pipeline job, one per node of its YAML, built the way the SDK
        builds them: ``_BaseJob`` from a run-history ``Run`` (what ``jobs.list`` returns for
        ``parent_job_name``). Like the service, an unknown parent is not found."""
        from datetime import UTC, datetime, timedelta

        from azure.ai.ml._restclient.runhistory.models import Run
        from azure.ai.ml.entities._job.base_job import _BaseJob

        self.calls.append(("list", {"parent_job_name": parent_job_name}))
        assert parent_job_name is not None, "the adapters only list a pipeline's children"
        job = self._get(parent_job_name)
        created = datetime(2024, 6, 3, 9, 0, tzinfo=UTC)
        children = []
        for i, node in enumerate(sorted(getattr(job.entity, "jobs", None) or {})):
            start = created + timedelta(minutes=5 * i)
            status = job.status if job.status != "NotStarted" else "NotStarted"
            run = Run(
                run_id=f"{parent_job_name}_{node}",
                display_name=node,
                status=status,
                created_utc=start,
                last_modified_utc=start + timedelta(minutes=3),
                experiment_id="exp-1",
                tags={},
                properties={},
            )
            children.append(_BaseJob._load_from_rest(run))
        return children

    def begin_cancel(self, name: str) -> Any:
        self.calls.append(("begin_cancel", {"name": name}))
        self._get(name).canceled = True
        return SimpleNamespace(result=lambda: None)

    def download(self, name: str, download_path: str, output_name: str | None = None) -> None:
        self.calls.append(("download", {"name": name, "output_name": output_name}))
        job = self._get(name)
        if job.status != "Completed" or output_name not in (job.entity.outputs or {}):
            raise ResourceNotFoundError(f"job {name} has no output {output_name}")
        folder = Path(download_path) / "named-outputs" / str(output_name)
        folder.mkdir(parents=True, exist_ok=True)
        # What the contract pipeline's step writes: its ``value`` input as JSON.
        value = float(self._input(job, "value"))
        (folder / "metrics.json").write_text(json.dumps({"value": value}))


@dataclass
class FakeModels:
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    models: dict[tuple[str, str], Any] = field(default_factory=dict)

    def get(self, name: str, version: str) -> Any:
        self.calls.append(("get", {"name": name, "version": version}))
        try:
            return self.models[(name, str(version))]
        except KeyError:
            raise ResourceNotFoundError(f"model {name}:{version} not found") from None

    def list(self, name: str) -> list[Any]:
        self.calls.append(("list", {"name": name}))
        found = [m for (n, _), m in self.models.items() if n == name]
        if not found:
            raise ResourceNotFoundError(f"model {name} not found")
        return found

    def create_or_update(self, model: Any) -> Any:
        self.calls.append(("create_or_update", {"model": model}))
        if model.version is None:
            existing = [int(v) for (n, v) in self.models if n == model.name]
            model.version = str(max(existing, default=0) + 1)
        self.models[(model.name, str(model.version))] = model
        return model


@dataclass
class RecordingMLClient:
    jobs: FakeJobs = field(default_factory=FakeJobs)
    models: FakeModels = field(default_factory=FakeModels)
