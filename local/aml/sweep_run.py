"""Running a ``type: sweep`` node locally: trials as child runs, the best one's outputs kept.

``SweepRun`` looks like a process to the executor's run loop (``poll``, ``stop``, plus
``progress``/``details`` for the job record and ``error`` when it fails). Each ``poll``:

1. reaps finished trials (a trial past ``limits.trial_timeout`` is stopped and ``Canceled``,
   as Azure ML cancels it);
2. reads, at most every ``metric_every`` seconds, each trial's values of the primary metric
   from MLflow (every logged value is one interval) and applies the early termination
   policy at each new interval (``local/aml/sweep.py``); a stopped trial is ``Canceled``;
3. starts trials from the sampling plan while fewer than the concurrency limit run;
4. when no trial runs and none is left to start, picks the best ``Completed`` trial and
   copies its outputs to the node's outputs, or fails naming what the trials did.

Every trial is an MLflow child run of the sweep step's run (tag ``hyperparameters``), gets
its parameters in its inputs and as ``AZUREML_SWEEP_<name>`` variables, runs in its own
snapshot of the trial's code (``trials/<i>/snapshot``) with its own log
(``trials/<i>/user_logs/std_log.txt``) and outputs (``trials/<i>/outputs``), in its own
process group. The sweep's own log says what was started, stopped and chosen, and why.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from adapters.errors import BadInputError, MlopsError
from local.aml.bindings import command_argv, render_command
from local.aml.executor import _kill_group as kill_group
from local.aml.snapshot import collect_artifacts, take_snapshot
from local.aml.status import JobStatus
from local.aml.store import utc_now
from local.aml.sweep import SweepSpec, best_trial, plan, should_stop

METRIC_EVERY = 1.0  # seconds between reads of the trials' metrics
LAST_LINES = 3


class TrialRuns(Protocol):
    """Where trials are recorded and their metrics read (MLflow: ``MlflowTrialRuns``)."""

    def start(self, index: int, tags: Mapping[str, str]) -> str: ...

    def finish(self, run_id: str, status: str) -> None: ...

    def history(self, run_id: str, metric: str) -> list[float]: ...


class MlflowTrialRuns:
    """Trials as child runs of the sweep step's MLflow run, through the executor's tracking."""

    def __init__(
        self, tracking: Any, experiment: str, parent_run_id: str, node: str, tags: Mapping[str, str]
    ) -> None:
        self._tracking = tracking
        self._experiment = experiment
        self._parent = parent_run_id
        self._node = node
        self._tags = dict(tags)

    def start(self, index: int, tags: Mapping[str, str]) -> str:
        run_tags = {**self._tags, **tags}
        name = f"{self._node}_{index}"
        return str(self._tracking.start_run(self._experiment, name, run_tags, self._parent))

    def finish(self, run_id: str, status: str) -> None:
        self._tracking.finish(run_id, status)

    def history(self, run_id: str, metric: str) -> list[float]:
        return list(self._tracking.metric_history(run_id, metric))


def launch_command(
    command: str, cwd: Path, log: IO[bytes], env: Mapping[str, str]
) -> subprocess.Popen[bytes]:
    """Start a trial's command as a command step starts (own process group, no stdin)."""
    return subprocess.Popen(
        command_argv(command),
        cwd=cwd,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=dict(env),
        start_new_session=True,
    )


Launcher = Callable[[str, Path, IO[bytes], Mapping[str, str]], subprocess.Popen[bytes]]


def _last_line(path: Path) -> str:
    try:
        text = path.read_bytes()[-8192:].decode("utf-8", errors="replace")
    except OSError:
        return ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


@dataclass(frozen=True)
class TrialTemplate:
    """What every trial of one sweep node shares: the trial component's command, code and
    outputs, how sampled parameters become its input values (``values_for``, raising
    ``MlopsError`` for a value the component refuses), its process environment for a run id,
    input values and output paths (``env_for``) and how its command starts (``launch``)."""

    node: str
    command: str
    code_dir: Path | None
    output_types: Mapping[str, str]
    values_for: Callable[[Mapping[str, Any]], dict[str, Any]]
    env_for: Callable[[str, Mapping[str, Any], Mapping[str, Path]], dict[str, str]]
    launch: Launcher = launch_command


@dataclass
class Trial:
    index: int
    parameters: dict[str, Any]
    folder: Path
    outputs: dict[str, Path]
    status: str = JobStatus.NOT_STARTED.value
    run_id: str = ""
    command: str = ""
    proc: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None
    started: float = 0.0
    started_at: str | None = None
    ended_at: str | None = None
    exit_code: int | None = None
    error: str = ""
    values: list[float] = field(default_factory=list)
    evaluated: int = 0  # intervals the early termination policy has looked at

    @property
    def key(self) -> str:
        return str(self.index)

    @property
    def log_path(self) -> Path:
        return self.folder / "user_logs" / "std_log.txt"

    def to_json(self, objective_best: Callable[[list[float]], float]) -> dict[str, Any]:
        return {
            "index": self.index,
            "run_id": self.run_id,
            "status": self.status,
            "parameters": self.parameters,
            "value": objective_best(self.values) if self.values else None,
            "intervals": len(self.values),
            "exit_code": self.exit_code,
            "error": self.error,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "log_path": str(self.log_path),
        }


class SweepRun:
    """One sweep node's trials, driven by the executor's polling (see the module)."""

    def __init__(
        self,
        trial: TrialTemplate,
        sweep: SweepSpec,
        *,
        node_outputs: Mapping[str, Path],
        folder: Path,
        log: IO[bytes],
        runs: TrialRuns,
        seed: int,
        concurrency: int,
        trial_timeout: float | None,
        metric_every: float = METRIC_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.template = trial
        self.node = trial.node
        self.output_types = dict(trial.output_types)
        self.sweep = sweep
        self.node_outputs = dict(node_outputs)
        self.folder = folder
        self.log = log
        self.runs = runs
        self.concurrency = max(1, concurrency)
        self.trial_timeout = trial_timeout
        self.metric_every = metric_every
        self.clock = clock
        self.error = ""
        self.trials: list[Trial] = []
        self.best: Trial | None = None
        self._plan: Iterator[dict[str, Any]] = plan(sweep, random.Random(seed))  # noqa: S311 - sampling, not secrets
        self._exhausted = False
        self._code: int | None = None
        self._last_read = float("-inf")
        self._stopped = False

    # -- the StepProcess interface --------------------------------------------------------------

    def poll(self) -> int | None:
        if self._code is not None or self._stopped:
            return self._code if self._code is not None else -signal.SIGTERM
        now = self.clock()
        ended = self._reap(now)
        if ended or now - self._last_read >= self.metric_every:
            self._last_read = now
            self._read_metrics(ended)
            self._apply_policy()
        self._start_ready()
        if not self._running() and self._exhausted:
            self._code = self._finish()
        return self._code

    def stop(self) -> None:
        """Stop every running trial (``Canceled``); the sweep then ends where it is."""
        if self._code is None:
            self._stopped = True
        for trial in self._running():
            self._end(trial, JobStatus.CANCELED, "the sweep was stopped")

    def progress(self) -> dict[str, int]:
        counts = {"total": len(self.trials), "running": 0, "completed": 0, "failed": 0}
        counts["canceled"] = 0
        for trial in self.trials:
            key = {
                JobStatus.RUNNING.value: "running",
                JobStatus.COMPLETED.value: "completed",
                JobStatus.FAILED.value: "failed",
                JobStatus.CANCELED.value: "canceled",
            }.get(trial.status)
            if key:
                counts[key] += 1
        return counts

    def details(self) -> dict[str, Any]:
        """What the job record shows of the sweep: settings, every trial, the best one."""
        metric = self.sweep.objective.primary_metric
        best_of = self.sweep.objective.best
        best = self.best
        return {
            "sampling_algorithm": self.sweep.requested_sampling,
            "primary_metric": metric,
            "goal": self.sweep.objective.goal,
            "max_total_trials": self.sweep.limits.max_total_trials,
            "concurrency": self.concurrency,
            "best_trial": best.index if best is not None else None,
            "best_run_id": best.run_id if best is not None else "",
            "best_value": best_of(best.values) if best is not None and best.values else None,
            "best_parameters": best.parameters if best is not None else {},
            "trials": [t.to_json(best_of) for t in self.trials],
        }

    # -- trials -----------------------------------------------------------------------------

    def say(self, line: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.log.write(f"{utc_now()} {line}\n".encode())
            self.log.flush()

    def _running(self) -> list[Trial]:
        return [t for t in self.trials if t.status == JobStatus.RUNNING.value]

    def _start_ready(self) -> None:
        while not self._exhausted and len(self._running()) < self.concurrency:
            try:
                params = next(self._plan)
            except StopIteration:
                self._exhausted = True
                return
            self._start(params)

    def _trial_outputs(self, folder: Path) -> dict[str, Path]:
        paths = {}
        for name, kind in self.output_types.items():
            base = folder / "outputs" / name
            paths[name] = base / name if kind == "uri_file" else base
        return paths

    def _start(self, params: dict[str, Any]) -> None:
        index = len(self.trials)
        folder = self.folder / "trials" / str(index)
        trial = Trial(index, params, folder, self._trial_outputs(folder))
        self.trials.append(trial)
        trial.started_at = utc_now()
        shown = ", ".join(f"{k}={v!r}" for k, v in params.items())
        try:
            values = self.template.values_for(params)
            trial.command = render_command(
                self.template.command, values, trial.outputs, step=f"{self.node} trial {index}"
            )
            snapshot = take_snapshot(self.template.code_dir, folder / "snapshot").folder
        except MlopsError as exc:
            trial.status = JobStatus.FAILED.value
            trial.error = str(exc)
            trial.ended_at = utc_now()
            self.say(f"trial {index} ({shown}) Failed before it started: {exc}")
            return
        for name, path in trial.outputs.items():
            target = path.parent if self.output_types.get(name) == "uri_file" else path
            target.mkdir(parents=True, exist_ok=True)
        trial.log_path.parent.mkdir(parents=True, exist_ok=True)
        tags = {
            "azureml.sweep.trial": str(index),
            "hyperparameters": json.dumps(params, sort_keys=True, default=str),
        }
        trial.run_id = self.runs.start(index, tags)
        env = dict(self.template.env_for(trial.run_id, values, trial.outputs))
        for name, value in params.items():
            env[f"AZUREML_SWEEP_{name}"] = str(value)
        trial.log = trial.log_path.open("ab")
        try:
            trial.proc = self.template.launch(trial.command, snapshot, trial.log, env)
        except OSError as exc:
            trial.log.close()
            trial.error = f"trial {index} could not start: {exc}"
            self._finish_trial(trial, JobStatus.FAILED)
            self.say(f"trial {index} ({shown}) Failed: {trial.error}")
            return
        trial.started = self.clock()
        trial.status = JobStatus.RUNNING.value
        self.say(f"trial {index} Running ({shown}), run id {trial.run_id}")

    def _finish_trial(self, trial: Trial, status: JobStatus) -> None:
        trial.status = status.value
        trial.ended_at = utc_now()
        if trial.run_id:
            try:
                self.runs.finish(trial.run_id, status.value)
            except Exception as exc:  # noqa: BLE001 - bookkeeping must not end the sweep
                self.say(f"could not close the run of trial {trial.index}: {exc}")

    def _end(self, trial: Trial, status: JobStatus, reason: str) -> None:
        """Stop a running trial (if it still runs) and record why."""
        if trial.proc is not None:
            kill_group(trial.proc)
            trial.exit_code = trial.proc.poll()
        if trial.log is not None:
            trial.log.close()
        with contextlib.suppress(OSError):
            collect_artifacts(trial.folder / "snapshot", trial.folder / "artifacts")
        trial.error = reason
        self._finish_trial(trial, status)
        self.say(f"trial {trial.index} {status.value}: {reason}")

    def _reap(self, now: float) -> list[Trial]:
        ended = []
        for trial in self._running():
            assert trial.proc is not None
            code = trial.proc.poll()
            if code is None:
                if self.trial_timeout is not None and now - trial.started > self.trial_timeout:
                    self._end(
                        trial,
                        JobStatus.CANCELED,
                        f"reached limits.trial_timeout of {self.trial_timeout:g}s",
                    )
                    ended.append(trial)
                continue
            if trial.log is not None:
                trial.log.close()
            with contextlib.suppress(OSError):
                collect_artifacts(trial.folder / "snapshot", trial.folder / "artifacts")
            trial.exit_code = code
            if code == 0:
                self._finish_trial(trial, JobStatus.COMPLETED)
                self.say(f"trial {trial.index} Completed")
            else:
                last = _last_line(trial.log_path)
                trial.error = f"exit code {code}" + (f": {last}" if last else "")
                self._finish_trial(trial, JobStatus.FAILED)
                self.say(f"trial {trial.index} Failed ({trial.error})")
            ended.append(trial)
        return ended

    def _read_metrics(self, ended: list[Trial]) -> None:
        metric = self.sweep.objective.primary_metric
        for trial in [*self._running(), *ended]:
            if not trial.run_id:
                continue
            try:
                trial.values = self.runs.history(trial.run_id, metric)
            except Exception as exc:  # noqa: BLE001 - a failed read is retried next time
                self.say(f"could not read {metric} of trial {trial.index}: {exc}")

    def _apply_policy(self) -> None:
        policy = self.sweep.early_termination
        if policy is None:
            return
        histories = {t.key: t.values for t in self.trials if t.values}
        finished = {t.key for t in self.trials if t.status != JobStatus.RUNNING.value}
        for trial in self._running():
            reason = ""
            for interval in range(trial.evaluated + 1, len(trial.values) + 1):
                reason = should_stop(
                    policy, self.sweep.objective, trial.key, interval, histories, finished
                )
                if reason:
                    break
            trial.evaluated = len(trial.values)
            if reason:
                self._end(trial, JobStatus.CANCELED, f"early termination: {reason}")
                finished.add(trial.key)

    # -- the end --------------------------------------------------------------------------------

    def _finish(self) -> int:
        objective = self.sweep.objective
        completed = [t for t in self.trials if t.status == JobStatus.COMPLETED.value]
        chosen = best_trial(objective, {t.key: t.values for t in completed})
        if chosen is None:
            self.error = self._no_best(completed)
            self.say(self.error)
            return 1
        self.best = self.trials[int(chosen[0])]
        try:
            self._copy_outputs(self.best)
        except OSError as exc:
            self.error = f"could not copy the outputs of trial {self.best.index}: {exc}"
            self.say(self.error)
            return 1
        self.say(
            f"best trial {self.best.index}: {objective.primary_metric} {chosen[1]:g} "
            f"({objective.goal}), parameters {self.best.parameters}; its outputs are the node's"
        )
        return 0

    def _no_best(self, completed: list[Trial]) -> str:
        metric = self.sweep.objective.primary_metric
        counts = self.progress()
        summary = (
            f"{counts['total']} trials: {counts['completed']} completed, {counts['failed']} "
            f"failed, {counts['canceled']} canceled"
        )
        if completed:
            return (
                f"sweep {self.node!r}: no completed trial logged the primary metric {metric!r} "
                f"to MLflow ({summary})"
            )
        failed = next((t for t in self.trials if t.status == JobStatus.FAILED.value), None)
        first = f"; trial {failed.index}: {failed.error}" if failed is not None else ""
        return f"sweep {self.node!r}: no trial completed ({summary}){first}"

    def _copy_outputs(self, trial: Trial) -> None:
        for name, target in self.node_outputs.items():
            source = trial.outputs.get(name)
            if source is None:
                continue
            if self.output_types.get(name) == "uri_file":
                target.parent.mkdir(parents=True, exist_ok=True)
                if source.is_file():
                    shutil.copy2(source, target)
            else:
                target.mkdir(parents=True, exist_ok=True)
                if source.is_dir():
                    shutil.copytree(source, target, dirs_exist_ok=True)


def default_seed(job: str, node: str) -> int:
    """A seed stable for one job's node: re-running the job draws the same trials."""
    return int(hashlib.sha256(f"{job}/{node}".encode()).hexdigest()[:12], 16)


def start_sweep(
    trial: TrialTemplate,
    sweep: SweepSpec | None,
    *,
    job: str,
    node_outputs: Mapping[str, Path],
    step_dir: Path,
    log: IO[bytes],
    tracking: Any,
    experiment: str,
    parent_run_id: str,
    tags: Mapping[str, str],
    max_parallel: int,
    step_timeout: float | None,
) -> SweepRun:
    """A started ``SweepRun`` for one node (its first trials are launched by the first poll).

    Raises ``BadInputError`` when there is no MLflow tracking to read the trials' metric
    from. Trials run ``min(max_concurrent_trials, max_parallel)`` at a time; a trial's
    timeout is ``limits.trial_timeout``, else the executor's ``step_timeout``.
    """
    node = trial.node
    if sweep is None:
        raise BadInputError(f"node {node!r} is not a sweep", code="invalid_pipeline")
    if tracking is None:
        raise BadInputError(
            f"sweep {node!r} reads its trials' {sweep.objective.primary_metric!r} from MLflow; "
            "run it with a tracking URI (the default sqlite store), not --tracking-uri ''",
            code="unsupported_node",
        )
    wanted = sweep.limits.max_concurrent_trials or sweep.limits.max_total_trials
    concurrency = max(1, min(wanted, max_parallel))
    run = SweepRun(
        trial,
        sweep,
        node_outputs=node_outputs,
        folder=step_dir,
        log=log,
        runs=MlflowTrialRuns(tracking, experiment, parent_run_id, node, tags),
        seed=sweep.seed if sweep.seed is not None else default_seed(job, node),
        concurrency=concurrency,
        trial_timeout=sweep.limits.trial_timeout or step_timeout,
    )
    space = ", ".join(f"{k}: {d.type}" for k, d in sweep.search_space.items())
    run.say(
        f"sweep {node!r}: {sweep.requested_sampling} sampling over {{{space}}}, "
        f"{sweep.objective.goal} {sweep.objective.primary_metric}, at most "
        f"{sweep.limits.max_total_trials} trials, {concurrency} at a time"
    )
    if concurrency < wanted and sweep.limits.max_concurrent_trials:
        run.say(
            f"max_concurrent_trials {sweep.limits.max_concurrent_trials} is capped at "
            f"{concurrency} (the executor's --max-parallel)"
        )
    for note in sweep.notes():
        run.say(f"WARNING {note}")
    return run
