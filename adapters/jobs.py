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
- ``status(name)`` of a failed pipeline job names the step that failed (``failed_step``)
  and carries an excerpt of its error (``error``), locally and in Azure alike.
- ``metrics(name)`` → the JSON the pipeline wrote to its ``metrics`` output
  (``metrics.json``); ``NotFoundError`` when there is none (yet).
- ``read_output_file(name, output, relative_path)`` → the bytes of one file inside the named
  output of a finished job. Only that output is fetched (in Azure it is downloaded into a
  temporary folder that is gone when the call returns). ``NotFoundError`` when the job, the
  output or the file does not exist (yet); a path leaving the output raises ``BadInputError``.
- Service failures worth retrying raise ``TransientError``; an identity without the Azure ML
  role raises ``AccessDeniedError``.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

from adapters.azure_calls import AzureService, RetrySettings, call_azure
from adapters.errors import BadInputError, ConflictError, NotFoundError, TransientError

REPO_ROOT = Path(__file__).resolve().parent.parent
logger = logging.getLogger(__name__)
# Segments are submitted from parallel activities, one thread each. azure-ai-ml does not say its
# YAML loader is safe across threads (it resolves files against per-load context and reports a
# failed validation by re-reading the YAML), and a parse takes 0.1–0.2 s: one at a time.
_SDK_LOAD_LOCK = threading.Lock()
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

    def read_output_file(self, name: str, output: str, relative_path: str) -> bytes: ...


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


def output_path(relative_path: str) -> Path:
    """``relative_path`` checked to stay inside an output folder."""
    relative = Path(relative_path)
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise BadInputError(f"{relative_path!r} is not a path inside an output", code="bad_path")
    return relative


def read_output(folder: Path, relative_path: str, what: str) -> bytes:
    """The bytes of ``relative_path`` inside ``folder`` (an output); see the port's contract."""
    path = folder / output_path(relative_path)
    if not path.is_file():
        raise NotFoundError(f"{what} has no file {relative_path}")
    return path.read_bytes()


AZURE_ML = AzureService(
    "the Azure ML workspace",
    role="AzureML Data Scientist",
    grant="infra/modules/aml-access.bicep assigns it to the app's managed identity",
)
ERROR_EXCERPT_CHARS = 2000
"""How much of a failed step's error an alert carries (the end: where a traceback ends)."""


def status_text(value: Any) -> str:
    """A status the SDK gives as a string or as one of its str enums (whose ``str()`` is
    ``JobStatus.COMPLETED``, not the service's ``Completed``)."""
    return str(value.value if isinstance(value, Enum) else value or "")


def step_error(client: Any, run_id: str, step: str, job: str) -> str:
    """An excerpt of the error of step run ``run_id`` (of pipeline job ``job``).

    azure-ai-ml turns child runs into job objects without their error; the run-history record
    has it, read through the SDK's run operations (covered by the ``azure_http`` tests).
    """
    runs = getattr(client.jobs, "_runs_operations", None)
    if runs is None:
        return f"step {step!r} failed (its error is in the job's logs in Azure ML studio)"
    run = call_azure(lambda: runs.get_run(run_id), f"read step {step} of job {job}", AZURE_ML)
    detail = getattr(getattr(run, "error", None), "error", None)
    message = str(getattr(detail, "message", "") or "").strip()
    code = str(getattr(detail, "code", "") or "")
    if not message:
        return f"step {step!r} failed without an error message"
    text = f"{code}: {message}" if code else message
    return "…" + text[-ERROR_EXCERPT_CHARS:] if len(text) > ERROR_EXCERPT_CHARS else text


class AzureMLPipelineJobs:
    """``PipelineJobs`` over an Azure ML workspace (``azure-ai-ml``'s ``MLClient``).

    ``client`` is an ``MLClient``, usually a ``LazyMLClient`` shared with the registry.
    Pipelines are parsed with ``load_job`` here, so a bad YAML fails before anything is sent.
    The failed step of a failed pipeline job is read from its child runs (run history) and its
    error from that run's record, the part of Azure ML the SDK's job objects leave out.
    Downloads go to temporary folders under ``scratch_dir`` (default: the system's). With
    ``compute`` (``MLOPS_AML_COMPUTE``) every job runs on that compute cluster instead of the
    YAML's ``default_compute``: the cluster whose identity may read the conditioned data.
    """

    def __init__(
        self, client: Any, *, scratch_dir: str | Path | None = None, compute: str = ""
    ) -> None:
        self._client = client
        self._scratch = str(scratch_dir) if scratch_dir is not None else None
        self._compute = compute

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
        from azure.ai.ml.exceptions import MlException

        path = resolve_pipeline(pipeline)
        try:
            with _SDK_LOAD_LOCK:
                job: Any = load_job(str(path))
        except Exception as exc:
            if not isinstance(exc, MlException):  # not a verdict on the YAML: keep the trace
                logger.exception("load_job(%s) raised %s", path.name, type(exc).__name__)
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
            # Assigning through the attribute keeps the SDK's input wrapper (item assignment
            # would replace it, and the job would fail the SDK's own validation).
            if kind in ("uri_file", "uri_folder", "mlflow_model", "custom_model", "mltable"):
                setattr(job.inputs, key, Input(type=kind, path=str(value)))
            else:
                setattr(job.inputs, key, value)
        job.experiment_name = experiment_name
        if self._compute:
            job.settings.default_compute = self._compute
        job.tags = {**(job.tags or {}), **dict(tags or {})}
        if display_name:
            job.display_name = display_name
        try:
            created = call_azure(
                lambda: self._client.jobs.create_or_update(job), f"submit {path.name}", AZURE_ML
            )
        except ConflictError as exc:
            # Two submissions of the same step code at the same moment (segments are submitted
            # in parallel, on one instance or several): azure-ai-ml finds no snapshot, both
            # upload it, and the second upload meets the first's blobs (azure-sdk-for-python
            # #30155). Nothing was created; submitting again finds the snapshot and reuses it.
            raise TransientError(
                f"submit {path.name}: its step code was being uploaded by another submission "
                f"at the same time ({exc}); submitting again reuses it"
            ) from exc
        except MlException as exc:  # the SDK's own validation of the job, before sending it
            detail = " ".join(str(exc).split())[:600]
            raise BadInputError(
                f"Azure ML refused pipeline {path.name}: {detail}", code="invalid_pipeline"
            ) from exc
        return str(created.name)

    def status(self, name: str) -> JobInfo:
        job = call_azure(lambda: self._client.jobs.get(name), f"read job {name}", AZURE_ML)
        status = status_text(job.status) or "NotStarted"
        failed_step = error = ""
        if status == "Failed":
            failed_step, error = self._failure(name)
        return JobInfo(
            name=str(job.name),
            status=status,
            experiment_name=str(job.experiment_name or ""),
            display_name=str(job.display_name or ""),
            tags={str(k): str(v) for k, v in (job.tags or {}).items()},
            error=error,
            failed_step=failed_step,
        )

    def _failure(self, name: str) -> tuple[str, str]:
        """The failed step of pipeline job ``name`` and an excerpt of its error."""
        children = call_azure(
            lambda: list(self._client.jobs.list(parent_job_name=name)),
            f"read the steps of job {name}",
            AZURE_ML,
        )
        failed = [c for c in children if c is not None and status_text(c.status) == "Failed"]
        if not failed:
            return "", f"job {name} failed before any step failed (see it in Azure ML studio)"
        child = failed[0]
        step = str(child.display_name or child.name)
        return step, step_error(self._client, str(child.name), step, name)

    def cancel(self, name: str) -> None:
        job = call_azure(lambda: self._client.jobs.get(name), f"read job {name}", AZURE_ML)
        if status_text(job.status) in ("Completed", "Failed", "Canceled", "NotResponding"):
            return
        # The cancel is accepted when the call returns; its poller finishes on its own.
        call_azure(lambda: self._client.jobs.begin_cancel(name), f"cancel job {name}", AZURE_ML)

    def metrics(self, name: str) -> dict[str, Any]:
        data = json.loads(self.read_output_file(name, "metrics", "metrics.json"))
        if not isinstance(data, dict):
            raise NotFoundError(f"metrics.json of job {name} is not a JSON object")
        return data

    def read_output_file(self, name: str, output: str, relative_path: str) -> bytes:
        from azure.ai.ml.exceptions import JobException, MlException

        what = f"output {output} of job {name}"
        output_path(relative_path)  # a bad path fails before anything is downloaded
        with tempfile.TemporaryDirectory(prefix="aml-output-", dir=self._scratch) as tmp:

            def download() -> None:
                try:
                    self._client.jobs.download(name, download_path=tmp, output_name=output)
                except JobException as exc:
                    raise NotFoundError(f"{what} is not available: {exc.message}") from exc

            try:
                call_azure(download, f"download {what}", AZURE_ML)
            except MlException as exc:  # a transfer the SDK gave up on
                raise TransientError(f"download of {what} failed: {exc.message}") from exc
            # The SDK downloads nothing (and says nothing) for an output the job does not have.
            folder = Path(tmp) / "named-outputs" / output
            if not folder.is_dir():
                raise NotFoundError(f"job {name} has no output {output}")
            return read_output(folder, relative_path, what)


class LazyMLClient:
    """An ``MLClient`` for one workspace, built on first attribute access (importing
    azure.ai.ml costs seconds). The jobs and registry adapters share one.

    The credential is ``DefaultAzureCredential`` (``client_id`` for a user-assigned managed
    identity) unless ``credential`` is given. Every REST client of the SDK gets the adapters'
    retry policy (``retry``). ``client_options`` go to ``MLClient`` as they are (e.g. ``cloud``
    with ``cloud_metadata`` for another Azure cloud, ``connection_verify``); the SDK's own
    usage telemetry is off unless asked for.

    Upload progress stays on (``show_progress``): it only prints when a new step-code
    snapshot is uploaded, and without it azure-ai-ml 1.35.2 never looks at its upload
    threads' results, so a file that fails to upload (another process uploading the same
    snapshot at the same moment) leaves it waiting for the count forever instead of raising.
    """

    def __init__(
        self,
        subscription_id: str,
        resource_group: str,
        workspace: str,
        client_id: str | None,
        *,
        credential: Any = None,
        retry: RetrySettings | None = None,
        **client_options: Any,
    ) -> None:
        self._args = (subscription_id, resource_group, workspace, client_id)
        self._credential = credential
        self._retry = retry or RetrySettings()
        self._options = {"enable_telemetry": False, "show_progress": True, **client_options}
        self._client: Any = None
        self._lock = threading.Lock()

    def __getattr__(self, item: str) -> Any:
        if item.startswith("__"):
            raise AttributeError(item)
        with self._lock:
            if self._client is None:
                from azure.ai.ml import MLClient

                subscription_id, resource_group, workspace, client_id = self._args
                credential = self._credential
                if credential is None:
                    from azure.identity import DefaultAzureCredential

                    credential = DefaultAzureCredential(managed_identity_client_id=client_id)
                self._client = MLClient(
                    credential,
                    subscription_id=subscription_id,
                    resource_group_name=resource_group,
                    workspace_name=workspace,
                    retry_policy=self._retry.policy(),
                    **self._options,
                )
        return getattr(self._client, item)
