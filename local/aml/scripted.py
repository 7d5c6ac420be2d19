"""A scripted stand-in for the Azure ML control plane, for reliability tests and benchmarks.

``ScriptedPipelineJobs`` implements the ``PipelineJobs`` port and passes the jobs contract
suite where a script can (``tests/integration/test_jobs_contract.py``: Azure ML status
strings, cancellation, unknown jobs and inputs), but its jobs follow a script instead of
running code: they finish after ``duration`` seconds, fail for the segments the caller names,
and can refuse submissions transiently. Like the real services it publishes Azure ML–shaped
Event Grid events (RunStatusChanged, RunCompleted, ModelRegistered) to a publisher, and a
finished train job registers a model version through ``register`` (the real MLflow registry
in the tests and the loop benchmark). It lives here, not under tests/, because
``make bench-loop`` drives the real runtime with it and benchmarks do not import tests.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from adapters.errors import BadInputError, NotFoundError, TransientError
from adapters.events import AzureMLEventType, EventPublisher
from adapters.jobs import InputValue, JobInfo, read_output
from local.aml.events import model_registered_event, run_event


@functools.cache
def _declared_inputs(pipeline: str) -> frozenset[str]:
    from adapters.jobs import resolve_pipeline
    from local.aml.spec import load_pipeline

    return frozenset(load_pipeline(resolve_pipeline(pipeline)).inputs)


@dataclass
class ScriptedJob:
    name: str
    pipeline: str
    inputs: dict[str, str]
    tags: dict[str, str]
    experiment: str
    submitted: float
    fails: bool
    status: str = "NotStarted"
    canceled: bool = False
    error: str = ""
    events_sent: set[str] = field(default_factory=set)


@dataclass
class Script:
    duration: float = 1.0
    failing_segments: set[str] = field(default_factory=set)
    transient_submit_failures: int = 0
    mape: Callable[[str], float] = lambda segment: 0.3
    baseline_mape: float = 0.6
    seasonal_naive_mape: float = 0.4


class ScriptedPipelineJobs:
    """``PipelineJobs`` whose jobs follow ``script``; each job runs on its own daemon thread."""

    def __init__(
        self,
        publisher: EventPublisher,
        register: Callable[[str, str, Mapping[str, str]], str],
        output_root: Path,
        script: Script | None = None,
    ) -> None:
        self.script = script or Script()
        self._output_root = output_root
        self._publisher = publisher
        self._register = register
        self._jobs: dict[str, ScriptedJob] = {}
        self._lock = threading.Lock()
        self._counter = itertools.count(1)
        self.submissions: list[ScriptedJob] = []
        self.refused = 0

    # -- the port -------------------------------------------------------------------

    def submit(
        self,
        pipeline: str,
        inputs: Mapping[str, InputValue],
        *,
        experiment_name: str,
        tags: Mapping[str, str] | None = None,
        display_name: str | None = None,
    ) -> str:
        # Like the real adapters, refuse inputs the pipeline YAML does not declare.
        declared = _declared_inputs(pipeline)
        unknown = sorted(set(inputs) - declared)
        if unknown:
            raise BadInputError(f"pipeline {pipeline} declares no input named {', '.join(unknown)}")
        with self._lock:
            if self.script.transient_submit_failures > 0:
                self.script.transient_submit_failures -= 1
                self.refused += 1
                raise TransientError("the workspace answered 503 (scripted)")
            kind = pipeline.rsplit("/", 1)[-1].removesuffix(".yml")
            name = f"{kind}_{next(self._counter):04d}"
            segment = (tags or {}).get("segment", "")
            job = ScriptedJob(
                name=name,
                pipeline=kind,
                inputs={k: str(v) for k, v in inputs.items()},
                tags=dict(tags or {}),
                experiment=experiment_name,
                submitted=time.monotonic(),
                fails=segment in self.script.failing_segments,
            )
            self._jobs[name] = job
            self.submissions.append(job)
        threading.Thread(target=self._run, args=(job,), daemon=True).start()
        return name

    def status(self, name: str) -> JobInfo:
        job = self._job(name)
        scripted = "Traceback (most recent call last):\nValueError: scripted failure"
        error = (job.error or scripted) if job.status == "Failed" else ""
        return JobInfo(name=name, status=job.status, experiment_name=job.experiment,
                       tags=job.tags, error=error,
                       failed_step="train" if job.status == "Failed" else "")  # fmt: skip

    def cancel(self, name: str) -> None:
        self._job(name).canceled = True

    def metrics(self, name: str) -> dict[str, Any]:
        job = self._job(name)
        if job.status != "Completed":
            raise NotFoundError(f"job {name} has no metrics yet")
        segment = job.tags.get("segment", "")
        if job.pipeline == "model_test":
            return {"passed": True, "reasons": ["scripted"], "model": {"mape": 0.3}}
        key = segment.replace("-", "/")
        seg: dict[str, Any] = {
            "ensemble": {"mape": self.script.mape(segment), "rmse_zero": 1.0, "rmse_all": 2.0},
            "baseline": {"mape": self.script.baseline_mape, "rmse_zero": 2.0, "rmse_all": 3.0},
            "seasonal_naive": {"mape": self.script.seasonal_naive_mape, "rmse_zero": 1.5,
                               "rmse_all": 2.5},
        }  # fmt: skip
        if job.pipeline == "train_many":
            # The shape forecasting/many_collect.py writes (checked against a real run in
            # tests/integration/test_aml_pipelines.py).
            seg["partitions"] = {
                "total": 3, "passed": 2, "failed": 1,
                "worst": [{"partition": f"{segment}__S9", "mape": 0.9,
                           "reasons": ["MAPE 0.900 above the 0.45 bar"]}],
            }  # fmt: skip
        return {"segments": {key: seg}}

    def read_output_file(self, name: str, output: str, relative_path: str) -> bytes:
        job = self._job(name)
        folder = self._output_root / job.name / output
        if not folder.is_dir():
            raise NotFoundError(f"job {name} has no output {output}")
        return read_output(folder, relative_path, f"output {output} of job {name}")

    # -- the script ---------------------------------------------------------------------

    def _job(self, name: str) -> ScriptedJob:
        with self._lock:
            job = self._jobs.get(name)
        if job is None:
            raise NotFoundError(f"no job {name}")
        return job

    def _publish_status(self, job: ScriptedJob, status: str) -> None:
        events = [run_event(AzureMLEventType.RUN_STATUS_CHANGED, experiment_name=job.experiment,
                            run_id=job.name, run_type="azureml.PipelineRun", status=status,
                            tags=job.tags, properties={})]  # fmt: skip
        if status == "Completed":
            events.append(run_event(AzureMLEventType.RUN_COMPLETED, experiment_name=job.experiment,
                                    run_id=job.name, run_type="azureml.PipelineRun", status=None,
                                    tags=job.tags, properties={}))  # fmt: skip
        self._send(events)

    def _send(self, events: list[dict[str, Any]]) -> None:
        # Like Azure ML, an event may get lost; the orchestrator polls anyway.
        with contextlib.suppress(TransientError):
            self._publisher.publish(events)

    def _run(self, job: ScriptedJob) -> None:
        try:
            self._play(job)
        except Exception as exc:  # noqa: BLE001 - a job whose script broke fails, as in Azure ML
            job.error = f"{type(exc).__name__}: {exc}"
            job.status = "Failed"
            self._publish_status(job, "Failed")

    def _play(self, job: ScriptedJob) -> None:
        job.status = "Queued"
        time.sleep(self.script.duration / 3)
        job.status = "Running"
        self._publish_status(job, "Running")
        deadline = time.monotonic() + self.script.duration * 2 / 3
        while time.monotonic() < deadline:
            if job.canceled:
                job.status = "Canceled"
                self._publish_status(job, "Canceled")
                return
            time.sleep(0.05)
        if job.fails:
            job.status = "Failed"
            self._publish_status(job, "Failed")
            return
        if job.pipeline in ("train", "train_many"):
            segment = job.tags.get("segment", "")
            tags = {
                "segment": segment.replace("-", "/"),
                "trained_at": datetime.now(UTC).isoformat(),
                "ensemble_mape": str(self.script.mape(segment)),
                "baseline_mape": str(self.script.baseline_mape),
            }
            model = f"forecast-{segment}"
            version = self._register(model, job.name, tags)
            registered = self._output_root / job.name / "registered"
            registered.mkdir(parents=True, exist_ok=True)
            (registered / "registered.json").write_text(
                json.dumps({"models": [{"name": model, "version": version, "segment": segment}]}),
                encoding="utf-8",
            )
            self._send([model_registered_event(model, version, tags, {})])
        if job.pipeline == "score":
            self._write_forecasts(job)
        job.status = "Completed"
        self._publish_status(job, "Completed")

    def _write_forecasts(self, job: ScriptedJob) -> None:
        folder = self._output_root / job.name / "forecasts"
        folder.mkdir(parents=True, exist_ok=True)
        segments = job.tags.get("segments", "").split(",")
        rows = ["segment,store_id,product_id,week_start,forecast"]
        rows += [f"{s.replace('-', '/')},1,1,{job.inputs.get('scoring_date', '')},10.0"
                 for s in segments if s]  # fmt: skip
        (folder / "forecasts.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
