"""The local Azure ML executor: runs a CLI v2 pipeline's command steps as subprocesses.

Contract:
- ``submit`` records a job (``NotStarted``) and returns it; ``run`` executes a recorded job to
  a terminal status in the calling thread; ``start_detached`` runs it in a separate process
  (``python -m local.aml execute``) so the caller can return at once.
- Status strings and transitions are Azure ML's: NotStarted → Queued → Running →
  Completed | Failed | Canceled (CancelRequested in between when cancelled).
- Bad input (invalid YAML, unknown component, unresolved binding, missing input path), a
  crashing step and a step past its timeout all end as ``Failed`` with the failing step, its
  exit code and the tail of its log in the record; a step never outlives its job (each runs
  in its own process group, killed on failure, cancel, timeout or executor exit).
- Every transition is published as an Azure ML–shaped ``RunStatusChanged`` event,
  ``RunCompleted`` on success, and ``ModelRegistered`` for each model version a step
  registered in MLflow. Publishing is best effort: a lost event never fails a job.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any, Protocol

from adapters.errors import BadInputError, MlopsError, NotFoundError
from adapters.events import AzureMLEventType, EventPublisher, NullEventPublisher
from local.aml import assets
from local.aml import events as ev
from local.aml.bindings import (
    check_constraints,
    check_input_paths,
    command_argv,
    output_paths,
    pipeline_output_sources,
    render_arguments,
    render_command,
    resolve_step_inputs,
    step_job_name,
    topological_order,
)
from local.aml.environments import (
    BuiltEnvironment,
    EnvironmentCache,
    EnvironmentSpec,
    project_environment,
    resolve_environment,
)
from local.aml.locations import AssetResolver, ComponentResolver, Datastores
from local.aml.snapshot import collect_artifacts, take_snapshot
from local.aml.spark import (
    dropped_conf,
    java_missing_reason,
    local_master,
    spark_environment,
    spark_process_env,
    submit_argv,
)
from local.aml.spec import PipelineSpec, StepSpec, load_pipeline
from local.aml.status import JobStatus
from local.aml.store import DEFAULT_ROOT, REPO_ROOT, JobRecord, JobStore, StepRecord, utc_now
from local.aml.tracking import Tracking, sqlite_tracking_uri
from local.aml.workspace import WorkspaceIdentity

log = logging.getLogger(__name__)

LOG_TAIL_LINES = 20
_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]+")

StatusCallback = Callable[[JobRecord, str | None], None]
ENV_DECLARED = "declared"
ENV_PROJECT = "project"
ENV_MODES = (ENV_DECLARED, ENV_PROJECT)


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a log file ('' when there is none)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 16384))
            text = handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def new_job_name(display_name: str) -> str:
    stem = _NAME_CHARS.sub("_", display_name).strip("_")[:40] or "job"
    return f"{stem}_{uuid.uuid4().hex[:10]}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_group(proc: subprocess.Popen[bytes], grace: float = 3.0) -> None:
    """Stop a step and everything it spawned (its own process group)."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def _make_output_locations(spec: StepSpec, outputs: Mapping[str, Path]) -> None:
    for oname, path in outputs.items():
        if spec.output_types.get(oname) == "uri_file" or spec.spark is not None:
            # A spark step is handed its outputs' locations (mode direct) and creates them
            # itself, as it does in a datastore: Spark's writers refuse a path that exists
            # unless told to overwrite it.
            path.parent.mkdir(parents=True, exist_ok=True)
        else:
            # An empty folder, as Azure ML mounts it (MLflow saves into empty folders).
            path.mkdir(parents=True, exist_ok=True)


class StepProcess(Protocol):
    """What the run loop needs of a running step: a command's process group, or a parallel
    step's driver (``local.aml.parallel.ParallelRun``)."""

    def poll(self) -> int | None: ...

    def stop(self) -> None: ...


class _CommandProcess:
    """A command step: one process group, stopped as a whole."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc

    def poll(self) -> int | None:
        return self.proc.poll()

    def stop(self) -> None:
        _kill_group(self.proc)


@dataclass
class _Running:
    spec: StepSpec
    proc: StepProcess
    log_handle: IO[bytes]
    started: float
    timeout: float | None
    snapshot: Path
    artifacts: Path
    progress_saved: float = 0.0

    def close(self) -> None:
        """Stop the step if it still runs, close its log, keep what it wrote in ./outputs."""
        self.proc.stop()
        self.log_handle.close()
        with contextlib.suppress(OSError):
            collect_artifacts(self.snapshot, self.artifacts)


class LocalExecutor:
    """Runs pipeline jobs recorded under ``root``.

    ``max_parallel`` bounds concurrently running steps; ``step_timeout`` (seconds) applies to
    steps whose node sets no ``limits.timeout``. ``tracking_uri`` (an MLflow URI, usually the
    sqlite store) enables MLflow runs per job/step and ModelRegistered events.
    ``azureml://datastores/NAME/paths/P`` locations live under ``datastore_root/NAME/P``
    (default ``root/datastores``) unless ``datastores`` maps ``NAME`` to another folder;
    ``asset_resolver`` is the local data-asset index ``azureml:`` inputs may resolve through
    and ``component_resolver`` the registered components ``azureml:`` components resolve
    through (default: the local workspace under ``root``, ``local/aml/assets.py``).

    ``env_mode`` ``"declared"`` (the default) runs each step in the environment its component
    declares (``local/aml/environments.py``, built once into ``environments``) under Azure
    ML's job contract: the ``azureml://`` tracking URI of the workspace endpoint
    (``local/aml/mlflow_front.py``) that serves the job while it runs. ``"project"`` runs
    every step in the project's own virtualenv against the sqlite store directly — quicker
    to iterate, and said so in the job record. ``progress`` receives environment build lines.
    """

    def __init__(
        self,
        root: str | Path = DEFAULT_ROOT,
        *,
        publisher: EventPublisher | None = None,
        tracking_uri: str | None = None,
        max_parallel: int = 2,
        step_timeout: float | None = 3600.0,
        poll_interval: float = 0.1,
        on_status: StatusCallback | None = None,
        topic: str = ev.LOCAL_TOPIC,
        datastore_root: str | Path | None = None,
        datastores: Mapping[str, str | Path] | None = None,
        asset_resolver: AssetResolver | None = None,
        component_resolver: ComponentResolver | None = None,
        environments: EnvironmentCache | None = None,
        env_mode: str = ENV_DECLARED,
        workspace: WorkspaceIdentity | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        if env_mode not in ENV_MODES:
            raise BadInputError(
                f"environment mode {env_mode!r} is not one of {', '.join(ENV_MODES)}",
                code="bad_setting",
            )
        self.store = JobStore(root)
        self.environments = environments or EnvironmentCache()
        self.env_mode = env_mode
        self.workspace = workspace or WorkspaceIdentity()
        self.progress = progress or (lambda line: log.info("%s", line))
        self.datastores = Datastores(
            Path(datastore_root).resolve() if datastore_root else self.store.root / "datastores",
            {k: Path(v).resolve() for k, v in (datastores or {}).items()},
        )
        # Without another index, azureml:<name>:<version> inputs resolve through the data
        # assets registered under this root (local/aml/assets.py), as the local runtime's are.
        self.asset_resolver = asset_resolver or assets.resolver(self.store.root)
        self.component_resolver = component_resolver or assets.component_resolver(self.store.root)
        self.publisher: EventPublisher = publisher or NullEventPublisher()
        self.tracking_uri = tracking_uri
        self.max_parallel = max(1, max_parallel)
        self.step_timeout = step_timeout
        self.poll_interval = poll_interval
        self.on_status = on_status
        self.topic = topic
        self._tracking: Tracking | None = None
        self._endpoint: Any = None
        self._stop_signal = False
        # Seconds spent per phase (load, snapshot, record writes, events, tracking), summed
        # over every job this executor ran: where the time goes (benchmarks/executor.py).
        self.phase_seconds: dict[str, float] = {}

    # -- public API -------------------------------------------------------------------------

    def submit(
        self,
        pipeline_path: str | Path,
        inputs: Mapping[str, str] | None = None,
        *,
        experiment_name: str | None = None,
        display_name: str | None = None,
        tags: Mapping[str, str] | None = None,
        name: str | None = None,
    ) -> JobRecord:
        """Validate ``pipeline_path`` with ``inputs`` and record a new ``NotStarted`` job.

        Raises ``BadInputError`` (one line) at once for what cannot run: invalid YAML, an
        unsupported node, an input it cannot serve locally (web URLs, workspace assets,
        missing paths), a value of the wrong type or outside its declared constraints.
        """
        path = Path(pipeline_path).resolve()
        spec, order = self.load(path, {k: str(v) for k, v in (inputs or {}).items()})
        # A package that cannot be installed fails here, at submit, as Azure ML's image build
        # fails the job before any step runs.
        self.prepare_environments(spec, order)
        shown = display_name or path.stem
        record = JobRecord(
            name=name or new_job_name(shown),
            display_name=shown,
            experiment_name=experiment_name or "",
            pipeline_path=str(path),
            inputs={k: str(v) for k, v in (inputs or {}).items()},
            tags={k: str(v) for k, v in (tags or {}).items()},
        )
        if self.store.exists(record.name):
            raise BadInputError(f"job {record.name!r} exists already", code="conflict")
        record.environment_mode = self.env_mode
        self._save(record)
        return record

    def step_environment(self, step: StepSpec) -> EnvironmentSpec:
        """What ``step``'s declared environment means here; ``BadInputError`` if unrunnable.

        A spark step's is its Spark runtime's ``pyspark`` with the packages it declares.
        """
        if step.spark is not None and step.environment_decl is None:
            return spark_environment(None, step.spark)
        declared = resolve_environment(
            step.environment_decl,
            base_dir=step.code_dir or Path(step.environment_source or ".").parent,
            source=step.environment_source,
            lookup=self._registered_environment,
            where=f"node {step.name!r}",
        )
        return declared if step.spark is None else spark_environment(declared, step.spark)

    def _registered_environment(
        self, name: str, version: str | None, label: str | None
    ) -> Mapping[str, Any]:
        return assets.environment_definition(self.store.root, name, version, label)

    def declared_environments(self, pipeline_path: str | Path) -> dict[str, EnvironmentSpec]:
        """Step name → the environment it declares, without binding any input (no data needed)."""
        spec = load_pipeline(
            Path(pipeline_path).resolve(),
            datastores=self.datastores,
            asset_resolver=self.asset_resolver,
            component_resolver=self.component_resolver,
        )
        return {name: self.step_environment(step) for name, step in spec.steps.items()}

    def prepare_environments(
        self, spec: PipelineSpec, order: list[str] | None = None
    ) -> dict[str, BuiltEnvironment]:
        """Build (or find built) the environment of every step; step name → environment."""
        return {name: self._built_environment(spec.steps[name]) for name in order or spec.steps}

    def load(self, path: str | Path, inputs: Mapping[str, str]) -> tuple[PipelineSpec, list[str]]:
        """The pipeline bound to ``inputs`` and its step order; ``BadInputError`` if unrunnable."""
        with self._phase("load and validate"):
            spec = load_pipeline(
                path,
                datastores=self.datastores,
                asset_resolver=self.asset_resolver,
                component_resolver=self.component_resolver,
            ).bind(inputs)
            order = topological_order(spec.steps)
            check_constraints(spec.steps, spec.inputs)
            spark = [name for name in order if spec.steps[name].spark is not None]
            missing = java_missing_reason() if spark else None
            if missing:
                raise BadInputError(f"node {spark[0]!r}: {missing}", code="unsupported_node")
        return spec, order

    @contextlib.contextmanager
    def _phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            spent = time.perf_counter() - started
            self.phase_seconds[name] = self.phase_seconds.get(name, 0.0) + spent

    def _save(self, record: JobRecord) -> None:
        with self._phase("record writes"):
            self.store.save(record)

    def status(self, name: str) -> JobRecord:
        """The job's record; a job whose executor process died is reported ``Failed``."""
        record = self.store.load(name)
        status = JobStatus.parse(record.status)
        if status.is_terminal:
            return record
        if record.runner_pid is not None and not _pid_alive(record.runner_pid):
            # Reload: the runner may have finished between the two reads.
            record = self.store.load(name)
            if not JobStatus.parse(record.status).is_terminal:
                record.status = JobStatus.FAILED.value
                record.error = "the executor process running this job exited before it finished"
                record.ended_at = utc_now()
                self._save(record)
            return record
        if self.store.cancel_requested(name):
            record.status = JobStatus.CANCEL_REQUESTED.value
        return record

    def cancel(self, name: str) -> JobRecord:
        """Ask the job to stop; running steps are killed and the job ends ``Canceled``.

        Cancelling a terminal job changes nothing. Raises ``NotFoundError`` for unknown jobs.
        """
        record = self.store.load(name)
        if JobStatus.parse(record.status).is_terminal:
            return record
        self.store.request_cancel(name)
        if record.runner_pid is None and record.status == JobStatus.NOT_STARTED.value:
            # Nobody is running it yet: cancel right here.
            self._finish(record, JobStatus.CANCELED, "canceled before it started")
            return record
        return self.status(name)

    def execute_options(self, events_url: str | None = None) -> list[str]:
        """The options of ``python -m local.aml execute`` (and ``launch``) that make a job
        process run jobs the way this executor would."""
        argv = ["--root", str(self.store.root), "--max-parallel", str(self.max_parallel)]
        argv += ["--datastore-root", str(self.datastores.root)]
        for store, folder in self.datastores.mapping.items():
            argv += ["--datastore", f"{store}={folder}"]
        if self.tracking_uri:
            argv += ["--tracking-uri", self.tracking_uri]
        if events_url:
            argv += ["--events-url", events_url]
        if self.step_timeout:
            argv += ["--step-timeout", str(self.step_timeout)]
        argv += ["--env", self.env_mode, "--env-cache", str(self.environments.root)]
        return argv

    def start_detached(
        self, name: str, *, events_url: str | None = None
    ) -> subprocess.Popen[bytes]:
        """Run job ``name`` in a new ``python -m local.aml execute`` process and return it."""
        record = self.store.load(name)
        argv = [sys.executable, "-m", "local.aml", "execute", name]
        argv += self.execute_options(events_url)
        folder = self.store.job_dir(record.name)
        with (folder / "executor.log").open("ab") as out:
            proc = subprocess.Popen(
                argv,
                cwd=REPO_ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        record.runner_pid = proc.pid
        self._save(record)
        return proc

    def run(self, name: str) -> JobRecord:
        """Execute recorded job ``name`` to a terminal status in this thread and return it."""
        record = self.store.load(name)
        if JobStatus.parse(record.status).is_terminal:
            return record
        record.runner_pid = os.getpid()
        self._save(record)
        running: dict[str, _Running] = {}
        previous = self._install_sigterm()
        try:
            with self._workspace_endpoint(record):
                return self._run(record, running)
        except KeyboardInterrupt:
            self._kill_all(record, running, JobStatus.CANCELED)
            self._finish(record, JobStatus.CANCELED, "interrupted")
            raise
        except Exception as exc:
            log.exception("executor failed while running %s", name)
            self._kill_all(record, running, JobStatus.CANCELED)
            self._finish(record, JobStatus.FAILED, f"executor error: {exc}")
            return record
        finally:
            for item in running.values():
                item.close()
            self._restore_sigterm(previous)

    @contextlib.contextmanager
    def _workspace_endpoint(self, record: JobRecord) -> Iterator[None]:
        """The workspace MLflow endpoint steps of a declared-environment job talk to."""
        if self.env_mode == ENV_PROJECT:
            yield
            return
        from local.aml.mlflow_front import WorkspaceEndpoint

        if not self.tracking_uri:
            # Steps still get a tracking server, as in Azure ML; this job's own.
            self.tracking_uri = sqlite_tracking_uri(self.store.job_dir(record.name) / "mlflow")
        with self._phase("workspace endpoint start-up (once per job process)"):
            self._get_tracking()
            endpoint = WorkspaceEndpoint(
                self.tracking_uri, self.store.root / "workspace", self.workspace
            ).start()
        self._endpoint = endpoint
        try:
            yield
        finally:
            self._endpoint = None
            endpoint.stop()

    # -- the run loop -----------------------------------------------------------------------

    def _run(self, record: JobRecord, running: dict[str, _Running]) -> JobRecord:
        if self.store.cancel_requested(record.name):
            self._finish(record, JobStatus.CANCELED, "canceled before it started")
            return record
        try:
            spec, order = self.load(record.pipeline_path, dict(record.inputs))
        except MlopsError as exc:
            self._finish(record, JobStatus.FAILED, str(exc))
            return record
        step_paths = self._prepare(record, spec, order)
        self._transition(record, JobStatus.QUEUED)
        self._transition(record, JobStatus.RUNNING)
        failure = self._loop(record, spec, order, step_paths, running)
        if record.status == JobStatus.CANCELED.value:
            return record
        if failure is not None:
            name, error = failure
            record.failed_step = name
            self._finish(record, JobStatus.FAILED, error)
        else:
            self._finish(record, JobStatus.COMPLETED, "")
        return record

    def _prepare(
        self, record: JobRecord, spec: PipelineSpec, order: list[str]
    ) -> dict[str, dict[str, Path]]:
        """Fill the record from the spec and decide every output path up front."""
        if not record.experiment_name:
            record.experiment_name = spec.experiment_name
        if record.display_name == Path(record.pipeline_path).stem:
            record.display_name = spec.display_name
        record.tags = {**spec.tags, **record.tags}
        record.warnings = list(spec.warnings)
        notes: list[str] = []
        if self.env_mode == ENV_PROJECT:
            notes.append(
                "steps run in the project's virtualenv (--env project), not in the "
                "environments their components declare"
            )
        else:
            seen: set[str] = set()
            for name in order:
                env_spec = self.step_environment(spec.steps[name])
                if env_spec.key in seen:
                    continue
                seen.add(env_spec.key)
                warning = env_spec.python_warning()
                if warning and warning not in record.warnings:
                    record.warnings.append(warning)
                notes.extend(f"environment {env_spec.name}: {n}" for n in env_spec.notes)
        notes.extend(self._spark_notes(spec, order))
        step_paths = {
            name: output_paths(
                spec.steps[name],
                datastores=spec.datastores,
                job_name=record.name,
                step_job=step_job_name(record.name, name),
                pipeline_locations=spec.output_locations,
                default_datastore=spec.default_datastore,
            )
            for name in order
        }
        record.steps = {name: StepRecord(name=name, kind=spec.steps[name].kind) for name in order}
        self._job_log(record, [f"WARNING {line}" for line in record.warnings] + notes)
        for pname, (sname, oname) in pipeline_output_sources(spec.steps).items():
            record.outputs[pname] = str(step_paths[sname][oname])
        for name in order:
            record.steps[name].outputs = {k: str(v) for k, v in step_paths[name].items()}
        record.run_id = self._start_tracking_run(record, "")
        return step_paths

    def _spark_notes(self, spec: PipelineSpec, order: list[str]) -> list[str]:
        """What a spark step's submission changes here, once per node for the job log."""
        notes: list[str] = []
        for name in order:
            spark = spec.steps[name].spark
            if spark is None:
                continue
            master = local_master(spark.conf, os.cpu_count() or 1)
            where = f"node {name!r}: Spark runs in local mode ({master}) on this machine"
            if spark.instance_type:
                where += f"; instance_type {spark.instance_type} is ignored"
            notes.append(where)
            dropped = dropped_conf(spark.conf)
            if dropped:
                shown = ", ".join(f"{k}={spark.conf[k]}" for k in dropped)
                notes.append(f"node {name!r}: conf that only sizes a cluster is left out: {shown}")
            if self.env_mode == ENV_PROJECT:
                notes.append(
                    f"node {name!r}: a spark step runs in its Spark runtime's environment even "
                    "with --env project (the project's virtualenv has no Spark)"
                )
        return notes

    def _loop(
        self,
        record: JobRecord,
        spec: PipelineSpec,
        order: list[str],
        step_paths: dict[str, dict[str, Path]],
        running: dict[str, _Running],
    ) -> tuple[str, str] | None:
        """Start ready steps, reap finished ones; return the first failure (step, error)."""
        produced = {p for paths in step_paths.values() for p in paths.values()}
        pending = list(order)
        failure: tuple[str, str] | None = None
        while pending or running:
            if self._stop_signal or self.store.cancel_requested(record.name):
                self._transition(record, JobStatus.CANCEL_REQUESTED)
                self._kill_all(record, running, JobStatus.CANCELED)
                self._finish(record, JobStatus.CANCELED, "canceled on request")
                return None
            for name, item in list(running.items()):
                if self._reap(record, name, item):
                    del running[name]
                    step = record.steps[name]
                    if step.status == JobStatus.FAILED.value and failure is None:
                        failure = (name, step.error)
            if failure is not None and not spec.continue_on_step_failure:
                self._kill_all(record, running, JobStatus.CANCELED)
                running.clear()
                break
            completed = {
                n for n, s in record.steps.items() if s.status == JobStatus.COMPLETED.value
            }
            blocked = {
                n
                for n in pending
                if spec.steps[n].dependencies() - completed - set(pending) - set(running)
            }
            pending = [n for n in pending if n not in blocked]
            for name in list(pending):
                if len(running) >= self.max_parallel:
                    break
                if not spec.steps[name].dependencies() <= completed:
                    continue
                pending.remove(name)
                started = self._start_step(record, spec, name, step_paths, produced)
                if started is None:
                    failure = failure or (name, record.steps[name].error)
                    if not spec.continue_on_step_failure:
                        break
                else:
                    running[name] = started
            if failure is not None and not spec.continue_on_step_failure:
                self._kill_all(record, running, JobStatus.CANCELED)
                running.clear()
                break
            if running:
                time.sleep(self.poll_interval)

        return failure

    def _start_step(
        self,
        record: JobRecord,
        spec: PipelineSpec,
        name: str,
        step_paths: dict[str, dict[str, Path]],
        produced: set[Path],
    ) -> _Running | None:
        step_spec = spec.steps[name]
        step = record.steps[name]
        step_dir = self.store.job_dir(record.name) / "steps" / name
        log_path = step_dir / "user_logs" / "std_log.txt"
        step.log_path = str(log_path)
        self._step_transition(record, name, JobStatus.QUEUED)
        if step_spec.sweep is not None:
            return self._start_sweep(record, spec, name, step_paths, produced)
        try:
            values = resolve_step_inputs(step_spec, spec.path.parent, spec.inputs, step_paths)
            check_input_paths(step_spec, values, produced)
            outputs = step_paths[name]
            spark_args: list[str] = []
            if step_spec.spark is not None:
                spark_args = render_arguments(step_spec.spark.args, values, outputs, step=name)
                command = f"spark-submit {step_spec.spark.entry}"
            elif step_spec.parallel is None:
                command = render_command(step_spec.command, values, outputs, step=name)
            else:
                command = f"parallel run_function {step_spec.parallel.entry_script}"
            with self._phase("snapshot"):
                snapshot = take_snapshot(step_spec.code_dir, step_dir / "snapshot").folder
        except MlopsError as exc:
            step.error = str(exc)
            self._step_transition(record, name, JobStatus.FAILED)
            return None
        _make_output_locations(step_spec, outputs)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        step.command = command
        built = self._step_environment(record, name, step, step_spec)
        if built is None:
            return None
        argv = command_argv(command)
        if step_spec.spark is not None:
            argv = submit_argv(
                step_spec.spark,
                spark_submit=built.bin_dir / "spark-submit",
                snapshot=snapshot,
                args=spark_args,
                name=step_job_name(record.name, name),
            )
            step.command = shlex.join(argv)
        step.run_id = self._start_tracking_run(record, name)
        env = self._step_env(record, step_spec, step.run_id, built, values, outputs)
        handle = log_path.open("ab")
        try:
            proc: StepProcess
            if step_spec.parallel is not None:
                proc = self._start_parallel(
                    record, step_spec, values, outputs, snapshot, env, built.python
                )
            else:
                proc = _CommandProcess(
                    subprocess.Popen(
                        argv,
                        cwd=snapshot,
                        stdout=handle,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        env=env,
                        start_new_session=True,
                    )
                )
        except (OSError, MlopsError) as exc:
            handle.close()
            step.error = f"step {name!r} could not start: {exc}"
            self._step_transition(record, name, JobStatus.FAILED)
            return None
        self._step_transition(record, name, JobStatus.RUNNING)
        timeout = step_spec.timeout_seconds or self.step_timeout
        return _Running(
            step_spec, proc, handle, time.monotonic(), timeout, snapshot, step_dir / "artifacts"
        )

    def _step_environment(
        self, record: JobRecord, name: str, step: StepRecord, spec: StepSpec
    ) -> BuiltEnvironment | None:
        """The step's built environment, recorded on the step; ``None`` when it cannot be had,
        with the step failed and the reason as its error."""
        try:
            built = self._built_environment(spec)
        except MlopsError as exc:
            step.error = str(exc)
            self._step_transition(record, name, JobStatus.FAILED)
            return None
        step.environment = built.name if built.key == "project" else f"{built.name}-{built.key}"
        step.python = str(built.python)
        return built

    def _built_environment(self, step: StepSpec) -> BuiltEnvironment:
        if self.env_mode == ENV_PROJECT and step.spark is None:
            return project_environment()
        with self._phase("environments"):
            return self.environments.ensure(self.step_environment(step), self.progress)

    def _start_parallel(
        self,
        record: JobRecord,
        spec: StepSpec,
        values: Mapping[str, Any],
        outputs: Mapping[str, Path],
        snapshot: Path,
        env: dict[str, str],
        python: Path,
    ) -> StepProcess:
        from local.aml.parallel import ParallelRun

        step_dir = self.store.job_dir(record.name) / "steps" / spec.name
        run = ParallelRun(
            spec,
            values,
            outputs,
            snapshot=snapshot,
            logs=step_dir / "logs",
            log_path=step_dir / "user_logs" / "std_log.txt",
            env=env,
            python=python,
        )
        run.start()
        return run

    def _start_sweep(
        self,
        record: JobRecord,
        spec: PipelineSpec,
        name: str,
        step_paths: dict[str, dict[str, Path]],
        produced: set[Path],
    ) -> _Running | None:
        """A sweep node: its trials run as child runs (``local/aml/sweep_run.py``)."""
        from local.aml.sweep_run import TrialTemplate, start_sweep

        step_spec = spec.steps[name]
        step = record.steps[name]
        step_dir = self.store.job_dir(record.name) / "steps" / name

        def values_for(params: Mapping[str, Any]) -> dict[str, Any]:
            trial = replace(step_spec, inputs={**step_spec.inputs, **params})
            values = resolve_step_inputs(trial, spec.path.parent, spec.inputs, step_paths)
            check_input_paths(trial, values, produced)
            return values

        built = self._step_environment(record, name, step, step_spec)
        if built is None:
            return None
        log_path = Path(step.log_path)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        step.run_id = self._start_tracking_run(record, name)
        handle = log_path.open("ab")
        template = TrialTemplate(
            node=name,
            command=step_spec.command,
            code_dir=step_spec.code_dir,
            output_types=step_spec.output_types,
            values_for=values_for,
            env_for=lambda run_id, values, outputs: self._step_env(
                record, step_spec, run_id, built, values, outputs
            ),
        )
        try:
            run = start_sweep(
                template,
                step_spec.sweep,
                job=record.name,
                node_outputs=step_paths[name],
                step_dir=step_dir,
                log=handle,
                tracking=self._get_tracking(),
                experiment=record.experiment_name or "Default",
                parent_run_id=step.run_id,
                tags={"azureml.pipeline": record.name, "azureml.nodeid": name, **record.tags},
                max_parallel=self.max_parallel,
                step_timeout=self.step_timeout,
            )
        except MlopsError as exc:
            handle.close()
            step.error = str(exc)
            self._step_transition(record, name, JobStatus.FAILED)
            return None
        step.command = f"sweep of {step_spec.command}"
        self._step_transition(record, name, JobStatus.RUNNING)
        return _Running(
            step_spec,
            run,
            handle,
            time.monotonic(),
            step_spec.timeout_seconds,
            step_dir / "snapshot",
            step_dir / "artifacts",
        )

    def _reap(self, record: JobRecord, name: str, item: _Running) -> bool:
        """True once the step ended (and its record is final)."""
        step = record.steps[name]
        code = item.proc.poll()
        self._record_progress(record, step, item, final=code is not None)
        if code is None:
            if item.timeout is None or time.monotonic() - item.started < item.timeout:
                return False
            item.close()
            step.exit_code = item.proc.poll()
            step.log_tail = tail(Path(step.log_path))
            self._record_progress(record, step, item, final=True)
            step.error = (
                f"step {name!r} timed out after {item.timeout:g}s and was killed "
                f"(exit code {step.exit_code}); log tail:\n{step.log_tail}"
            )
            self._step_transition(record, name, JobStatus.FAILED)
            return True
        item.close()
        step.exit_code = code
        step.log_tail = tail(Path(step.log_path))
        if code == 0:
            self._step_transition(record, name, JobStatus.COMPLETED)
            self._announce_models(step)
        else:
            reason = getattr(item.proc, "error", "") or f"failed with exit code {code}"
            step.error = f"step {name!r} {reason}; log tail:\n{step.log_tail}"
            self._step_transition(record, name, JobStatus.FAILED)
        return True

    def _record_progress(
        self, record: JobRecord, step: StepRecord, item: _Running, *, final: bool
    ) -> None:
        """Copy a parallel step's mini-batch counts into the record (at most twice a second)."""
        progress = getattr(item.proc, "progress", None)
        if not callable(progress):
            return
        counts = progress()
        now = time.monotonic()
        details = getattr(item.proc, "details", None)
        if callable(details) and (final or counts != step.progress):
            step.sweep = details()  # a sweep: its trials and the best one
        if counts != step.progress and (final or now - item.progress_saved >= 0.5):
            step.progress = counts
            item.progress_saved = now
            if not final:  # a final transition saves the record anyway
                self._save(record)

    def _kill_all(self, record: JobRecord, running: dict[str, _Running], status: JobStatus) -> None:
        for name, item in running.items():
            item.close()
            step = record.steps[name]
            step.exit_code = item.proc.poll()
            step.log_tail = tail(Path(step.log_path))
            self._record_progress(record, step, item, final=True)
            self._step_transition(record, name, status)

    def _job_log(self, record: JobRecord, lines: list[str]) -> None:
        """Append ``lines`` to the job's own log (``logs/job_log.txt`` in its folder)."""
        if not lines:
            return
        folder = self.store.job_dir(record.name) / "logs"
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / "job_log.txt").open("a", encoding="utf-8") as handle:
            for line in lines:
                handle.write(f"{utc_now()} {line}\n")

    # -- state changes, tracking and events -------------------------------------------------

    def _transition(self, record: JobRecord, status: JobStatus) -> None:
        if record.status == status.value:
            return
        record.status = status.value
        with contextlib.suppress(OSError, NotFoundError):
            self._job_log(record, [f"job {status.value}"])
        if status == JobStatus.RUNNING:
            record.started_at = utc_now()
        self._save(record)
        self._notify(record, None)
        self._publish(
            ev.run_event(
                AzureMLEventType.RUN_STATUS_CHANGED,
                experiment_name=record.experiment_name or "Default",
                run_id=record.name,
                run_type="azureml.PipelineRun",
                status=status.value,
                tags=record.tags,
                properties=self._job_properties(record),
                topic=self.topic,
            )
        )

    def _finish(self, record: JobRecord, status: JobStatus, error: str) -> None:
        record.error = error
        record.ended_at = utc_now()
        self._transition(record, status)
        if record.run_id:
            self._finish_tracking_run(record.run_id, status)
        if status == JobStatus.COMPLETED:
            self._publish(
                ev.run_event(
                    AzureMLEventType.RUN_COMPLETED,
                    experiment_name=record.experiment_name or "Default",
                    run_id=record.name,
                    run_type="azureml.PipelineRun",
                    status=None,
                    tags=record.tags,
                    properties=self._job_properties(record),
                    topic=self.topic,
                )
            )

    def _step_transition(self, record: JobRecord, name: str, status: JobStatus) -> None:
        step = record.steps[name]
        step.status = status.value
        if status == JobStatus.RUNNING:
            step.started_at = utc_now()
        if status.is_terminal:
            step.ended_at = utc_now()
            if step.run_id:
                self._finish_tracking_run(step.run_id, status)
        self._save(record)
        self._notify(record, name)
        run_id = step.run_id or step_job_name(record.name, name)
        props = {"azureml.pipelinerunid": record.name, "stepName": name}
        if step.exit_code is not None:
            props["exitCode"] = str(step.exit_code)
        kinds = [AzureMLEventType.RUN_STATUS_CHANGED]
        if status == JobStatus.COMPLETED:
            kinds.append(AzureMLEventType.RUN_COMPLETED)
        for kind in kinds:
            self._publish(
                ev.run_event(
                    kind,
                    experiment_name=record.experiment_name or "Default",
                    run_id=run_id,
                    run_type="azureml.StepRun",
                    status=status.value if kind == AzureMLEventType.RUN_STATUS_CHANGED else None,
                    tags=record.tags,
                    properties=props,
                    topic=self.topic,
                )
            )

    @staticmethod
    def _job_properties(record: JobRecord) -> dict[str, str]:
        props = {"azureml.runsource": "azureml.PipelineRun", "displayName": record.display_name}
        if record.failed_step:
            props["failedStep"] = record.failed_step
        return props

    def _notify(self, record: JobRecord, step: str | None) -> None:
        if self.on_status is not None:
            self.on_status(record, step)

    def _publish(self, event: dict[str, Any]) -> None:
        try:
            with self._phase("events"):
                self.publisher.publish([event])
        except MlopsError as exc:
            log.warning("event %s not delivered: %s", event.get("eventType"), exc)

    def _get_tracking(self) -> Tracking | None:
        if self.tracking_uri and self._tracking is None:
            with self._phase("MLflow start-up (once per job process)"):
                self._tracking = Tracking(self.tracking_uri)
        return self._tracking

    def _start_tracking_run(self, record: JobRecord, step: str) -> str:
        tracking = self._get_tracking()
        if tracking is None:
            return ""
        tags = {"azureml.pipeline": record.name, **record.tags}
        if step:
            tags["azureml.nodeid"] = step
        with self._phase("tracking (MLflow runs)"):
            return tracking.start_run(
                record.experiment_name or "Default", step or record.name, tags, record.run_id
            )

    def _finish_tracking_run(self, run_id: str, status: JobStatus) -> None:
        tracking = self._get_tracking()
        if tracking is not None:
            try:
                with self._phase("tracking (MLflow runs)"):
                    tracking.finish(run_id, status.value)
            except Exception as exc:  # noqa: BLE001 - bookkeeping must not fail a job
                log.warning("could not close MLflow run %s: %s", run_id, exc)

    def _announce_models(self, step: StepRecord) -> None:
        tracking = self._get_tracking()
        if tracking is None or not step.run_id:
            return
        try:
            versions = tracking.registered_by(step.run_id)
        except Exception as exc:  # noqa: BLE001 - bookkeeping must not fail a job
            log.warning("could not list models registered by %s: %s", step.name, exc)
            return
        for version in versions:
            self._publish(
                ev.model_registered_event(
                    version.name, version.version, version.tags, {"runId": step.run_id}, self.topic
                )
            )

    def _step_env(
        self,
        record: JobRecord,
        spec: StepSpec,
        run_id: str,
        built: BuiltEnvironment,
        values: Mapping[str, Any],
        outputs: Mapping[str, Path],
    ) -> dict[str, str]:
        """The step process's environment: Azure ML's job contract, in its own interpreter.

        In declared mode nothing of the project leaks in: the project virtualenv's ``bin``
        leaves ``PATH``, ``PYTHONPATH``/``PYTHONHOME``/``VIRTUAL_ENV`` are replaced, and
        MLflow is reached only through the workspace endpoint's ``azureml://`` URI, so a
        step whose environment lacks ``azureml-mlflow`` fails here as it would in Azure ML.
        """
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("MLFLOW_", "AZUREML_", "AZURE_ML_", "_MLFLOW_"))
            and k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")
        }
        project_bin = str(Path(sys.prefix) / "bin")
        path = [p for p in env.get("PATH", "").split(os.pathsep) if p and p != project_bin]
        env["PATH"] = os.pathsep.join([str(built.bin_dir), *path])
        if built.key != "project":
            env["VIRTUAL_ENV"] = str(built.folder)
        env["PYTHONUNBUFFERED"] = "1"
        step_run = run_id or f"{record.name}_{spec.name}"
        env["AZUREML_RUN_ID"] = step_run
        env["AZUREML_ROOT_RUN_ID"] = record.name
        env["AZUREML_EXPERIMENT_NAME"] = record.experiment_name
        for iname, value in values.items():
            env[f"AZURE_ML_INPUT_{iname}"] = str(value)
        for oname, opath in outputs.items():
            env[f"AZURE_ML_OUTPUT_{oname}"] = str(opath)
        experiment = record.experiment_name or "Default"
        if self._endpoint is not None and run_id:
            tracking = self._get_tracking()
            exp_id = tracking.experiment_of(run_id) if tracking is not None else "0"
            env.update(self._endpoint.step_environment(run_id, exp_id, experiment))
        elif self.tracking_uri:
            env["MLFLOW_TRACKING_URI"] = self.tracking_uri
            env["MLFLOW_REGISTRY_URI"] = self.tracking_uri
            env["MLFLOW_EXPERIMENT_NAME"] = experiment
            if run_id:
                env["MLFLOW_RUN_ID"] = run_id
        else:
            # Steps run in their code folder; without this, MLflow's default store would
            # create mlflow.db there, inside the source tree. Keep it with the job instead.
            private = self.store.job_dir(record.name) / "mlflow.db"
            env["MLFLOW_TRACKING_URI"] = f"sqlite:///{private}"
        if spec.spark is not None:
            scratch = self.store.job_dir(record.name) / "steps" / spec.name / "spark-local"
            env.update(spark_process_env(built.python, scratch))
        env.update(spec.environment_variables)
        return env

    # -- signals --------------------------------------------------------------------------

    def _install_sigterm(self) -> Any:
        import threading

        if threading.current_thread() is not threading.main_thread():
            return None

        def stop(signum: int, frame: Any) -> None:
            self._stop_signal = True

        return signal.signal(signal.SIGTERM, stop)

    @staticmethod
    def _restore_sigterm(previous: Any) -> None:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def wait_for(executor: LocalExecutor, name: str, timeout: float, poll: float = 0.2) -> JobRecord:
    """Poll ``executor.status`` until the job is terminal; ``TimeoutError`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        record = executor.status(name)
        if JobStatus.parse(record.status).is_terminal:
            return record
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {name} still {record.status} after {timeout:g}s")
        time.sleep(poll)


__all__ = ["DEFAULT_ROOT", "LocalExecutor", "NotFoundError", "tail", "wait_for"]
