"""The executor on small fixture pipelines (real subprocesses, no servers)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from adapters.errors import BadInputError
from adapters.events import AzureMLEventType, RecordingEventPublisher
from local.aml import JobStatus, LocalExecutor
from local.aml.__main__ import main as cli
from local.aml.bindings import step_job_name
from local.aml.spec import load_pipeline

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "aml"
BAD = FIXTURES / "bad"


def run(
    tmp_path: Path, pipeline: Path, **kwargs: object
) -> tuple[LocalExecutor, RecordingEventPublisher, str]:
    events = RecordingEventPublisher()
    # Generous: the machine is shared; only the hang fixture's own 2 s limit is meant to hit.
    executor = LocalExecutor(tmp_path / "aml", publisher=events, step_timeout=900, **kwargs)  # type: ignore[arg-type]
    record = executor.submit(pipeline)
    executor.run(record.name)
    return executor, events, record.name


def statuses(events: RecordingEventPublisher, run_id: str) -> list[str]:
    return [
        e["data"]["runStatus"]
        for e in events.events
        if e["eventType"] == AzureMLEventType.RUN_STATUS_CHANGED and e["data"]["runId"] == run_id
    ]


def test_basic_pipeline_completes_with_outputs_and_azure_ml_transitions(tmp_path: Path) -> None:
    executor, events, name = run(tmp_path, FIXTURES / "basic" / "pipeline.yml")
    record = executor.status(name)
    assert record.status == "Completed", record.error
    metrics = json.loads((Path(record.outputs["metrics"]) / "metrics.json").read_text())
    assert metrics["rows"] == 9  # the row with a missing value was dropped by the default flag
    assert metrics["mae"] < 1.0
    assert Path(record.outputs["summary"]).read_text() == "rows=9\n"
    assert (Path(record.steps["fit"].outputs["model"]) / "MLmodel").is_file()
    assert statuses(events, name) == ["Queued", "Running", "Completed"]
    completed = [e for e in events.events if e["eventType"] == AzureMLEventType.RUN_COMPLETED]
    assert {e["data"]["runId"] for e in completed} >= {name}
    first = events.events[0]
    assert first["subject"] == f"experiments/{first['data']['experimentId']}/runs/{name}"
    assert first["data"]["experimentName"] == "fixture-basic"


def test_record_survives_a_new_executor_instance(tmp_path: Path) -> None:
    _, _, name = run(tmp_path, FIXTURES / "basic" / "pipeline.yml")
    again = LocalExecutor(tmp_path / "aml")
    record = again.status(name)
    assert record.status == "Completed"
    assert set(record.steps) == {"clean", "fit", "report"}
    assert all(s.status == "Completed" for s in record.steps.values())


def test_crashing_step_fails_the_job_with_exit_code_and_log_tail(tmp_path: Path) -> None:
    executor, events, name = run(tmp_path, BAD / "crash.yml")
    record = executor.status(name)
    assert record.status == "Failed"
    assert record.failed_step == "boom"
    assert record.steps["boom"].exit_code == 3
    assert "something went badly wrong" in record.error
    assert record.steps["first"].status == "Completed"
    assert record.steps["after"].status == "NotStarted"
    assert statuses(events, name)[-1] == "Failed"


def test_hanging_step_is_killed_at_its_timeout(tmp_path: Path) -> None:
    started = time.monotonic()
    executor, _, name = run(tmp_path, BAD / "hang.yml")
    record = executor.status(name)
    assert time.monotonic() - started < 30
    assert record.status == "Failed"
    assert "timed out after 2s" in record.error
    assert record.steps["stuck"].exit_code not in (None, 0)


@pytest.mark.parametrize(
    ("pipeline", "message"),
    [
        ("sweep.yml", "node 'tune': trial file './trial.yml' not found"),
        ("registry_component.yml", "node 'train' uses component 'azureml://registries"),
        (
            "unregistered_component.yml",
            "node 'train' uses component never_registered:latest "
            "(azureml:never_registered@latest), which is not registered in the local workspace; "
            "register it first with python -m local.aml component create",
        ),
        ("unknown_component.yml", "component file './components/does_not_exist.yml' not found"),
        ("unresolved.yml", "parent.inputs.nowhere"),
        ("missing_input.yml", "no_such_folder does not exist"),
        ("invalid.yml", "invalid YAML"),
    ],
)
def test_bad_pipelines_are_refused_at_submit_with_one_clear_line(
    tmp_path: Path, pipeline: str, message: str
) -> None:
    executor = LocalExecutor(tmp_path / "aml")
    with pytest.raises(BadInputError) as caught:
        executor.submit(BAD / pipeline)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    assert executor.store.names() == []  # nothing was queued


def test_a_pipeline_that_breaks_after_submit_ends_failed_with_the_reason(tmp_path: Path) -> None:
    executor = LocalExecutor(tmp_path / "aml")
    pipeline = tmp_path / "pipeline.yml"
    pipeline.write_text(
        (BAD / "slow.yml").read_text().replace("code: ./src", f"code: {BAD / 'src'}")
    )
    record = executor.submit(pipeline, {"seconds": "0"})
    pipeline.write_text("type: pipeline\njobs: [")  # edited between submit and run
    final = executor.run(record.name)
    assert final.status == "Failed"
    assert "invalid YAML" in final.error


def test_cancel_kills_the_running_step(tmp_path: Path) -> None:
    executor = LocalExecutor(tmp_path / "aml")
    record = executor.submit(BAD / "slow.yml")
    thread = threading.Thread(target=executor.run, args=(record.name,))
    thread.start()
    # The step's output has no path, so it lives where Azure ML puts it.
    job = step_job_name(record.name, "slow")
    started = executor.datastores.path_of("workspaceblobstore", f"azureml/{job}/out/started")
    deadline = time.monotonic() + 30
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert started.exists()
    executor.cancel(record.name)
    thread.join(timeout=30)
    assert not thread.is_alive()
    final = executor.status(record.name)
    assert final.status == "Canceled"
    assert final.steps["slow"].status == "Canceled"


def test_status_of_a_job_whose_executor_died_is_failed(tmp_path: Path) -> None:
    executor = LocalExecutor(tmp_path / "aml")
    record = executor.submit(BAD / "slow.yml")
    record.status = JobStatus.RUNNING.value
    record.runner_pid = 2**22 + 12345  # beyond the default pid range: never alive
    executor.store.save(record)
    assert executor.status(record.name).status == "Failed"


def test_set_overrides_inputs_and_cli_exit_codes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workdir = str(tmp_path / "aml")
    code = cli(
        [
            "run",
            str(BAD / "slow.yml"),
            "--set",
            "inputs.seconds=0",
            "--workdir",
            workdir,
            "--tracking-uri",
            "",
        ]
    )
    assert code == 0
    assert "step slow: Completed" in capsys.readouterr().out
    assert cli(["run", str(BAD / "crash.yml"), "--workdir", workdir, "--tracking-uri", ""]) == 1


def test_load_pipeline_reads_defaults_types_and_paths() -> None:
    spec = load_pipeline(FIXTURES / "basic" / "pipeline.yml").bind()
    assert spec.experiment_name == "fixture-basic"
    assert spec.inputs["raw"].path == (FIXTURES / "basic" / "data" / "raw.csv").resolve()
    assert spec.inputs["alpha"].value == 0.05
    assert spec.steps["fit"].output_types == {"model": "mlflow_model"}
    assert spec.steps["clean"].input_defs["drop_missing"].default is True
    assert spec.steps["report"].dependencies() == {"clean", "fit"}


def test_an_unreachable_event_webhook_never_fails_a_job(tmp_path: Path) -> None:
    from adapters.events import EventGridWebhookPublisher
    from local.processes import free_port

    url = f"http://127.0.0.1:{free_port()}/runtime/webhooks/eventgrid?functionName=x"
    executor = LocalExecutor(tmp_path / "aml", publisher=EventGridWebhookPublisher(url, timeout=2))
    record = executor.submit(BAD / "slow.yml", {"seconds": "0"})
    assert executor.run(record.name).status == "Completed"
