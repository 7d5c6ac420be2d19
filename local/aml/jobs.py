"""``PipelineJobs`` over the local Azure ML executor (the local runtime's jobs adapter).

Runs the same pipeline YAML as ``AzureMLPipelineJobs`` with ``local.aml``; both pass the
contract suite in tests/integration/test_jobs_contract.py. The composition root picks this
adapter when ``MLOPS_ENVIRONMENT`` is ``local``.
"""

from __future__ import annotations

import subprocess
import threading
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from adapters.errors import NotFoundError
from adapters.jobs import InputValue, JobInfo, find_metrics, read_output, resolve_pipeline
from local.aml.executor import ENV_DECLARED, LocalExecutor
from local.aml.launcher import LaunchedJob, Launcher
from local.aml.store import REPO_ROOT
from local.processes import stop_process


class LocalPipelineJobs:
    """``PipelineJobs`` over the local executor; each job runs in its own process, so a job
    keeps running (and its record stays readable) when the caller restarts.

    At most ``max_jobs`` jobs run at once — the local stand-in for a compute cluster's size;
    later submissions wait, ``NotStarted``, in submission order (a background thread starts
    them as slots free up). ``max_parallel`` is the step parallelism inside one job.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        tracking_uri: str | None = None,
        events_url: str | None = None,
        max_parallel: int = 2,
        step_timeout: float = 3600.0,
        max_jobs: int = 2,
        env_mode: str = ENV_DECLARED,
    ) -> None:
        self._executor = LocalExecutor(
            root,
            tracking_uri=tracking_uri,
            max_parallel=max_parallel,
            step_timeout=step_timeout,
            env_mode=env_mode,
        )
        self._events_url = events_url
        self._children: dict[str, subprocess.Popen[bytes] | LaunchedJob] = {}
        self._launcher = Launcher(
            self._executor.execute_options(events_url),
            self._executor.store.root / "launcher.log",
            REPO_ROOT,
        )
        self._pending: deque[str] = deque()
        self._max_jobs = max(1, max_jobs)
        self._lock = threading.Lock()
        self._pump: threading.Thread | None = None
        self._closed = threading.Event()

    def submit(
        self,
        pipeline: str,
        inputs: Mapping[str, InputValue],
        *,
        experiment_name: str,
        tags: Mapping[str, str] | None = None,
        display_name: str | None = None,
    ) -> str:
        path = resolve_pipeline(pipeline)
        values = {k: _literal(v) for k, v in inputs.items()}
        # The executor validates before it records anything: an input it cannot serve, a
        # value of the wrong type or an undeclared input is a BadInputError here, at submit.
        record = self._executor.submit(
            path, values, experiment_name=experiment_name, tags=tags, display_name=display_name
        )
        with self._lock:
            self._pending.append(record.name)
            if self._pump is None:
                self._pump = threading.Thread(target=self._run_pump, name="local-jobs", daemon=True)
                self._pump.start()
        self._dispatch()
        return record.name

    def _dispatch(self) -> None:
        """Start waiting jobs while fewer than ``max_jobs`` run."""
        with self._lock:
            for name, proc in list(self._children.items()):
                if proc.poll() is not None:
                    del self._children[name]
            while self._pending and len(self._children) < self._max_jobs:
                name = self._pending.popleft()
                # Forked from a warm launcher when it can, else started cold: either way a
                # process of the job's own.
                self._children[name] = self._launcher.start_job(
                    name
                ) or self._executor.start_detached(name, events_url=self._events_url)

    def _run_pump(self) -> None:
        while not self._closed.wait(0.5):
            self._dispatch()

    def status(self, name: str) -> JobInfo:
        self._dispatch()
        record = self._executor.status(name)
        return JobInfo(
            name=record.name,
            status=record.status,
            experiment_name=record.experiment_name,
            display_name=record.display_name,
            tags=dict(record.tags),
            error=record.error,
            failed_step=record.failed_step,
        )

    def cancel(self, name: str) -> None:
        self._executor.cancel(name)

    def metrics(self, name: str) -> dict[str, Any]:
        record = self._executor.status(name)
        output = record.outputs.get("metrics")
        if not output or not Path(output).exists():
            raise NotFoundError(f"job {name} has no metrics output")
        return find_metrics(Path(output))

    def read_output_file(self, name: str, output: str, relative_path: str) -> bytes:
        folder = self._executor.status(name).outputs.get(output)
        if not folder:
            raise NotFoundError(f"job {name} has no output {output}")
        return read_output(Path(folder), relative_path, f"output {output} of job {name}")

    def close(self, timeout: float = 30.0) -> None:
        """Wait for the job processes this object started (stopping them after ``timeout``)."""
        self._closed.set()
        with self._lock:
            children = list(self._children.values())
            self._children.clear()
            self._pending.clear()
        self._launcher.close()
        for proc in children:
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                stop_process(proc)


def _literal(value: InputValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
