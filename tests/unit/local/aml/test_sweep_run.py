"""``type: sweep`` nodes through the executor: trials are real processes logging to the real
MLflow sqlite store, the best trial's outputs become the node's, every trial is a child run."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from adapters.errors import BadInputError
from adapters.events import AzureMLEventType, RecordingEventPublisher
from local.aml import LocalExecutor, sqlite_tracking_uri
from local.aml.tracking import Tracking

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "aml" / "sweep"


def executor(tmp_path: Path, **kwargs: object) -> LocalExecutor:
    return LocalExecutor(
        tmp_path / "aml",
        tracking_uri=sqlite_tracking_uri(tmp_path / "mlflow"),
        step_timeout=600,
        **kwargs,  # type: ignore[arg-type]
    )


def test_a_grid_sweep_keeps_the_best_trial_and_records_every_trial(tmp_path: Path) -> None:
    events = RecordingEventPublisher()
    runner = executor(tmp_path, publisher=events)
    record = runner.run(runner.submit(FIXTURES / "pipeline.yml").name)
    assert record.status == "Completed", record.error

    # The downstream step read the best trial's model (lr closest to 0.1 has the least loss).
    chosen = json.loads(Path(record.outputs["chosen"]).read_text())
    assert chosen == {"lr": 0.12, "layers": 2, "rows": 3, "sweep_lr": "0.12"}

    step = record.steps["tune"]
    assert step.kind == "sweep"
    assert step.progress == {"total": 3, "running": 0, "completed": 3, "failed": 0, "canceled": 0}
    sweep = step.sweep
    assert sweep["best_trial"] == 1 and sweep["best_parameters"] == {"lr": 0.12, "layers": 2}
    assert [t["parameters"]["lr"] for t in sweep["trials"]] == [0.5, 0.12, 0.3]
    assert all(t["status"] == "Completed" and t["intervals"] == 3 for t in sweep["trials"])

    # Every trial is an MLflow child run of the sweep step's run, with its metric history.
    tracking = Tracking(runner.tracking_uri or "")
    client = tracking._client
    for trial in sweep["trials"]:
        run = client.get_run(trial["run_id"])
        assert run.data.tags["mlflow.parentRunId"] == step.run_id
        assert json.loads(run.data.tags["hyperparameters"]) == trial["parameters"]
        assert run.info.status == "FINISHED"
        assert len(tracking.metric_history(trial["run_id"], "loss")) == 3
    assert client.get_run(step.run_id).data.tags["mlflow.parentRunId"] == record.run_id

    # The sweep step reports Azure ML's transitions like any step.
    step_events = [
        e["data"]["runStatus"]
        for e in events.events
        if e["eventType"] == AzureMLEventType.RUN_STATUS_CHANGED
        and e["data"]["runProperties"].get("stepName") == "tune"
    ]
    assert step_events == ["Queued", "Running", "Completed"]


def test_the_bandit_policy_cancels_a_trial_on_its_intermediate_metric(tmp_path: Path) -> None:
    runner = executor(tmp_path)
    record = runner.run(runner.submit(FIXTURES / "early.yml").name)
    assert record.status == "Completed", record.error
    first, second = record.steps["tune"].sweep["trials"]
    assert first["status"] == "Completed" and first["intervals"] == 12
    assert second["status"] == "Canceled"
    assert second["error"].startswith("early termination: bandit policy at interval")
    assert second["intervals"] < 12
    assert record.steps["tune"].sweep["best_trial"] == 0
    log = Path(record.steps["tune"].log_path).read_text()
    assert "trial 1 Canceled: early termination: bandit policy" in log


SWEEP = """\
type: pipeline
jobs:
  tune:
    type: sweep
    trial: ./trial.yml
    sampling_algorithm: {sampling}
    search_space:
      code:
        type: choice
        values: {values}
    objective:
      goal: maximize
      primary_metric: accuracy
    limits:
      max_total_trials: 5
{extra}
"""
TRIAL = """\
type: command
name: trial
inputs:
  code:
    type: integer
outputs:
  out:
    type: uri_folder
environment:
  image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest
command: {command}
"""


def write(tmp_path: Path, command: str, values: str = "[3, 4]", sampling: str = "grid",
          extra: str = "") -> Path:  # fmt: skip
    folder = tmp_path / "pipe"
    folder.mkdir(exist_ok=True)
    (folder / "trial.yml").write_text(TRIAL.format(command=command))
    pipeline = folder / "pipeline.yml"
    pipeline.write_text(SWEEP.format(values=values, sampling=sampling, extra=extra))
    return pipeline


def test_a_sweep_whose_trials_all_fail_fails_naming_the_first_error(tmp_path: Path) -> None:
    pipeline = write(tmp_path, "python -c 'import sys; sys.exit(${{inputs.code}})'")
    runner = executor(tmp_path)
    record = runner.run(runner.submit(pipeline).name)
    assert record.status == "Failed"
    assert record.failed_step == "tune"
    assert "sweep 'tune': no trial completed (2 trials: 0 completed, 2 failed, 0 canceled)" in (
        record.error
    )
    assert "trial 0: exit code 3" in record.error
    assert [t["exit_code"] for t in record.steps["tune"].sweep["trials"]] == [3, 4]


def test_trials_that_complete_without_the_metric_do_not_make_a_best(tmp_path: Path) -> None:
    pipeline = write(tmp_path, "python -c pass", values="[1]")
    runner = executor(tmp_path)
    record = runner.run(runner.submit(pipeline).name)
    assert record.status == "Failed"
    assert "no completed trial logged the primary metric 'accuracy' to MLflow" in record.error


def test_a_trial_past_its_trial_timeout_is_canceled(tmp_path: Path) -> None:
    pipeline = write(
        tmp_path,
        "python -c 'import time; time.sleep(60 + ${{inputs.code}})'",
        values="[1]",
        extra="      trial_timeout: 1",
    )
    runner = executor(tmp_path)
    record = runner.run(runner.submit(pipeline).name)
    assert record.status == "Failed"
    (trial,) = record.steps["tune"].sweep["trials"]
    assert trial["status"] == "Canceled"
    assert trial["error"] == "reached limits.trial_timeout of 1s"


def test_a_sampled_value_the_trial_input_refuses_fails_that_trial_only(tmp_path: Path) -> None:
    pipeline = write(tmp_path, "python -c pass", values="['x', 2]")
    runner = executor(tmp_path)
    record = runner.run(runner.submit(pipeline).name)
    first, second = record.steps["tune"].sweep["trials"]
    assert first["status"] == "Failed" and "input 'code' is 'x', not an integer" in first["error"]
    assert second["status"] == "Completed"


@pytest.mark.parametrize(
    ("values", "sampling", "extra", "message"),
    [
        (
            "[1]",
            "grid",
            "      max_total_trials: 0",
            "node 'tune': max_total_trials must be a whole number >= 1",
        ),
        (
            "[1]",
            "random\n    early_termination:\n      type: bandit",
            "",
            "node 'tune': a bandit policy needs exactly one of slack_factor and slack_amount",
        ),
    ],
)
def test_bad_sweeps_are_refused_at_submit(
    tmp_path: Path, values: str, sampling: str, extra: str, message: str
) -> None:
    pipeline = write(tmp_path, "python -c pass", values=values, sampling=sampling, extra=extra)
    with pytest.raises(BadInputError, match=message):
        executor(tmp_path).submit(pipeline)


def test_a_search_parameter_the_trial_does_not_declare_is_refused(tmp_path: Path) -> None:
    pipeline = write(tmp_path, "python -c pass")
    text = pipeline.read_text().replace("      code:\n", "      depth:\n")
    pipeline.write_text(text)
    with pytest.raises(BadInputError, match="search_space parameter 'depth' is not an input"):
        executor(tmp_path).submit(pipeline)


def test_grid_sampling_over_a_continuous_parameter_is_refused(tmp_path: Path) -> None:
    pipeline = write(tmp_path, "python -c pass")
    text = pipeline.read_text().replace(
        "        type: choice\n        values: [3, 4]",
        "        type: uniform\n        min_value: 1\n        max_value: 3",
    )
    pipeline.write_text(text)
    with pytest.raises(BadInputError, match="grid sampling takes only choice parameters; 'code'"):
        executor(tmp_path).submit(pipeline)


def test_a_sweep_without_mlflow_tracking_fails_saying_why(tmp_path: Path) -> None:
    # Steps in declared environments always get a tracking server; the project's own
    # virtualenv without a tracking URI has none to read trial metrics from.
    pipeline = write(tmp_path, "python -c pass")
    runner = LocalExecutor(tmp_path / "aml", step_timeout=60, env_mode="project")
    record = runner.run(runner.submit(pipeline).name)
    assert record.status == "Failed"
    assert "reads its trials' 'accuracy' from MLflow" in record.error


def test_bayesian_sampling_runs_as_random_with_a_warning_in_the_job_log(tmp_path: Path) -> None:
    pipeline = write(tmp_path, "python -c 'import sys; sys.exit(1)'", values="[1]",
                     sampling="bayesian")  # fmt: skip
    runner = executor(tmp_path)
    record = runner.run(runner.submit(pipeline).name)
    assert any("bayesian sampling is run as random sampling" in w for w in record.warnings)
    job_log = runner.store.job_dir(record.name) / "logs" / "job_log.txt"
    assert "bayesian sampling is run as random sampling" in job_log.read_text()


def test_cancelling_the_job_cancels_the_running_trials(tmp_path: Path) -> None:
    pipeline = write(
        tmp_path,
        "python -c 'import sys, time; open(sys.argv[1], \"w\").close(); time.sleep(60)' "
        "${{outputs.out}}/started${{inputs.code}}",
        values="[1, 2]",
    )
    runner = executor(tmp_path)
    record = runner.submit(pipeline)
    thread = threading.Thread(target=runner.run, args=(record.name,))
    thread.start()
    trials = runner.store.job_dir(record.name) / "steps" / "tune" / "trials"
    deadline = time.monotonic() + 60
    while len(list(trials.glob("*/outputs/out/started*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    runner.cancel(record.name)
    thread.join(timeout=60)
    assert not thread.is_alive()
    final = runner.status(record.name)
    assert final.status == "Canceled"
    assert final.steps["tune"].status == "Canceled"
    assert [t["status"] for t in final.steps["tune"].sweep["trials"]] == ["Canceled", "Canceled"]
    assert final.steps["tune"].progress["canceled"] == 2
