"""The pipeline jobs port: submit Azure ML pipeline jobs, follow them, cancel them, read results.

``PipelineJobs`` is what orchestrator activities depend on. ``AzureMLPipelineJobs`` talks to an
Azure ML workspace with ``azure-ai-ml`` (imported lazily, ``DefaultAzureCredential``);
the local runtime's ``LocalPipelineJobs`` (``local/aml/jobs.py``) runs the same YAML with the
local executor. Both pass the contract suite in tests/integration/test_jobs_contract.py.

Contract:
- ``submit(pipeline, inputs, experiment_name=…, tags=…)`` → the job name. ``pipeline`` is a
  pipeline YAML path (relative paths are relative to the repo root). Unknown input names or
  an invalid pipeline raise ``BadInputError`` before anything runs.
- ``status(name)`` → ``JobInfo`` with an Azure ML status string (``JobStatus`` values).
  Unknown names raise ``NotFoundError``.
- ``cancel(name)`` asks the job to stop; a finished job is left as it is.
- ``metrics(name)`` → the JSON the pipeline wrote to its ``metrics`` output
  (``metrics.json``); ``NotFoundError`` when there is none (yet).
- ``outputs(name)`` → pipeline output name → a local folder or file holding it (the job's
  own output locally; a download in Azure).
- Service failures worth retrying raise ``TransientError``.
"""

from __future__ import annotations

import json
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from adapters.errors import BadInputError, NotFoundError, TransientError

REPO_ROOT = Path(__file__).resolve().parent.parent
InputValue = str | int | float | bool


@dataclass(frozen=True)
class JobInfo:
    name: str
    status: str
    experiment_name: str = ""
    display_name: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    error: str = ""
    failed_step: str = ""


class PipelineJobs(Protocol):
    def submit(
        self,
        pipeline: str,
        inputs: Mapping[str, InputValue],
        *,
        experiment_name: str,
        tags: Mapping[str, str] | None = None,
        display_name: str | None = None,
    ) -> str: ...

    def status(self, name: str) -> JobInfo: ...

    def cancel(self, name: str) -> None: ...

    def metrics(self, name: str) -> dict[str, Any]: ...

    def outputs(self, name: str) -> dict[str, str]: ...


def resolve_pipeline(pipeline: str | Path) -> Path:
    path = Path(pipeline)
    if not path.is_absolute():
        path = REPO_ROOT / path
    if not path.is_file():
        raise BadInputError(f"pipeline {pipeline} not found", code="not_found")
    return path


def find_metrics(folder: Path) -> dict[str, Any]:
    candidates = sorted(folder.rglob("metrics.json"))
    if not candidates:
        raise NotFoundError(f"no metrics.json under the metrics output ({folder.name})")
    data = json.loads(candidates[0].read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise NotFoundError("metrics.json is not a JSON object")
    return data


class AzureMLPipelineJobs:
    """``PipelineJobs`` over an Azure ML workspace (``azure-ai-ml``'s ``MLClient``).

    ``client`` is an ``MLClient`` (or anything with the same ``jobs`` operations), usually a
    ``LazyMLClient`` shared with the registry. Pipelines are parsed with
    ``load_job`` here, so a bad YAML fails before anything is sent.
    """

    def __init__(self, client: Any) -> None:
        self._client = client

    def submit(
        self,
        pipeline: str,
        inputs: Mapping[str, InputValue],
        *,
        experiment_name: str,
        tags: Mapping[str, str] | None = None,
        display_name: str | None = None,
    ) -> str:
        from azure.ai.ml import Input, load_job

        path = resolve_pipeline(pipeline)
        try:
            job: Any = load_job(str(path))
        except Exception as exc:
            raise BadInputError(f"{path.name}: {exc}", code="invalid_pipeline") from exc
        unknown = sorted(set(inputs) - set(job.inputs or {}))
        if unknown:
            raise BadInputError(
                f"pipeline {path.name} declares no input named {', '.join(unknown)}",
                code="unknown_input",
            )
        for key, value in inputs.items():
            current = getattr(job.inputs[key], "_data", None)
            kind = getattr(current, "type", None)
            if kind in ("uri_file", "uri_folder", "mlflow_model", "custom_model", "mltable"):
                job.inputs[key] = Input(type=kind, path=str(value))
            else:
                job.inputs[key] = value
        job.experiment_name = experiment_name
        job.tags = {**(job.tags or {}), **dict(tags or {})}
        if display_name:
            job.display_name = display_name
        created = self._call(lambda: self._client.jobs.create_or_update(job), f"submit {path.name}")
        return str(created.name)

    def status(self, name: str) -> JobInfo:
        job = self._call(lambda: self._client.jobs.get(name), f"job {name}")
        return JobInfo(
            name=str(job.name),
            status=str(job.status or "NotStarted"),
            experiment_name=str(job.experiment_name or ""),
            display_name=str(job.display_name or ""),
            tags={str(k): str(v) for k, v in (job.tags or {}).items()},
        )

    def cancel(self, name: str) -> None:
        job = self._call(lambda: self._client.jobs.get(name), f"job {name}")
        if str(job.status) in ("Completed", "Failed", "Canceled", "NotResponding"):
            return
        self._call(lambda: self._client.jobs.begin_cancel(name), f"cancel {name}")

    def metrics(self, name: str) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="aml-metrics-") as tmp:
            self._call(
                lambda: self._client.jobs.download(name, download_path=tmp, output_name="metrics"),
                f"metrics of {name}",
            )
            return find_metrics(Path(tmp))

    def outputs(self, name: str) -> dict[str, str]:
        """Download every pipeline output into a new temporary folder the caller owns."""
        job = self._call(lambda: self._client.jobs.get(name), f"job {name}")
        target = Path(tempfile.mkdtemp(prefix=f"aml-{name}-"))
        paths: dict[str, str] = {}
        for output_name in job.outputs or {}:
            self._call(
                lambda o=output_name: self._client.jobs.download(
                    name, download_path=str(target), output_name=o
                ),
                f"output {output_name} of {name}",
            )
            paths[str(output_name)] = str(target / "named-outputs" / str(output_name))
        return paths

    @staticmethod
    def _call(action: Any, what: str) -> Any:
        from azure.core.exceptions import (
            ClientAuthenticationError,
            HttpResponseError,
            ResourceNotFoundError,
            ServiceRequestError,
            ServiceResponseError,
        )

        try:
            return action()
        except ResourceNotFoundError as exc:
            raise NotFoundError(f"{what} does not exist") from exc
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise TransientError(f"Azure ML unreachable ({what}): {exc}") from exc
        except ClientAuthenticationError:
            raise
        except HttpResponseError as exc:
            status = exc.status_code or 0
            if status == 404:
                raise NotFoundError(f"{what} does not exist") from exc
            if status in (408, 429) or status >= 500:
                raise TransientError(f"Azure ML answered {status} ({what})") from exc
            raise BadInputError(f"Azure ML rejected {what}: {exc.message}") from exc


class LazyMLClient:
    """An ``MLClient`` for one workspace, built on first attribute access (importing
    azure.ai.ml costs seconds), with ``DefaultAzureCredential`` (``client_id`` for a
    user-assigned managed identity). The jobs and registry adapters share one."""

    def __init__(
        self, subscription_id: str, resource_group: str, workspace: str, client_id: str | None
    ) -> None:
        self._args = (subscription_id, resource_group, workspace, client_id)
        self._client: Any = None
        self._lock = threading.Lock()

    def __getattr__(self, item: str) -> Any:
        with self._lock:
            if self._client is None:
                from azure.ai.ml import MLClient
                from azure.identity import DefaultAzureCredential

                subscription_id, resource_group, workspace, client_id = self._args
                self._client = MLClient(
                    DefaultAzureCredential(managed_identity_client_id=client_id),
                    subscription_id=subscription_id,
                    resource_group_name=resource_group,
                    workspace_name=workspace,
                )
        return getattr(self._client, item)
