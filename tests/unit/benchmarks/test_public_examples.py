"""The public-examples runner on a miniature checkout laid out like Azure/azureml-examples
(the real checkout is not in CI): it finds the pipeline jobs, replays the bootstrap set-up
with the local create commands, and classifies what each run did."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from benchmarks import public_examples as examples

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "aml"
EXAMPLE = "cli/jobs/pipelines-with-components/basics/registered"


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    root = tmp_path / "azureml-examples"
    shutil.copytree(FIXTURES / "assets", root / EXAMPLE)
    refused = root / "cli/jobs/pipelines/registry-only"
    refused.mkdir(parents=True)
    shutil.copy2(FIXTURES / "bad" / "registry_component.yml", refused / "pipeline.yml")
    # A pipeline component is not an example of its own.
    (refused / "inner.yml").write_text(
        "$schema: https://azuremlschemas.azureedge.net/latest/pipelineComponent.schema.json\n"
        "type: pipeline\njobs: {}\n"
    )
    boot = root / "infra" / "bootstrapping"
    boot.mkdir(parents=True)
    (boot / "create-components.sh").write_text(
        '#!/bin/bash\npushd "$ROOT_DIR" > /dev/null\n'
        f'az ml component create --file "./{EXAMPLE}/components/hello/component.yml" '
        "> /dev/null 2>&1\n"
    )
    (boot / "create-datasets.sh").write_text(
        f'az ml data create -f "./{EXAMPLE}/data/data.yml" > /dev/null 2>&1\n'
        'az ml data create --name remote --version 1 --path "wasbs://c@acct.blob.core.windows.net/"\n'
    )
    return root


def test_examples_and_set_up_are_found_as_the_workflows_run_them(checkout: Path) -> None:
    found = examples.find_examples(checkout)
    assert [p.relative_to(checkout).as_posix() for p in found] == [
        "cli/jobs/pipelines/registry-only/pipeline.yml",
        f"{EXAMPLE}/pipeline.yml",
    ]
    assert examples.setup_commands(checkout) == [
        ["component", "create", "--file", f"./{EXAMPLE}/components/hello/component.yml"],
        ["data", "create", "-f", f"./{EXAMPLE}/data/data.yml"],
        ["data", "create", "--name", "remote", "--version", "1", "--path",
         "wasbs://c@acct.blob.core.windows.net/"],
    ]  # fmt: skip


def test_a_run_over_the_checkout_completes_refuses_and_reports(
    checkout: Path, tmp_path: Path
) -> None:
    report, outcomes = examples.run_all(checkout, tmp_path / "aml", timeout=600)
    assert [line.split(" -> ")[1] for line in report] == [
        "ok: fixture_hello:1",
        "ok: fixture_rows:1",
        "ok: remote:1",
    ]
    by_name = {o.example: o for o in outcomes}
    done = by_name["pipelines-with-components/basics/registered/pipeline.yml"]
    assert done.outcome == "completed", done.reason
    refused = by_name["pipelines/registry-only/pipeline.yml"]
    assert refused.outcome == "refused"
    assert refused.reason.startswith("node 'train' uses component 'azureml://registries/")
    text = examples.table(outcomes)
    assert "2 examples: completed 1, refused 1" in text


def test_outcomes_are_told_apart_by_who_raised_what() -> None:
    step_tail = (
        "job j_1 Failed: step 'prep' failed with exit code 1; log tail:\n"
        "Traceback (most recent call last):\n  File \"prep.py\"\nKeyError: 'x'\nfailed step: prep"
    )
    assert not examples._executor_traceback(step_tail)
    assert examples._executor_traceback("Traceback (most recent call last):\n  ...\nValueError")
    record = {
        "failed_step": "prep",
        "steps": {
            "prep": {
                "error": "step 'prep' failed with exit code 1; log tail:\n...",
                "log_tail": "Traceback\nAttributeError: 'DataFrame' object has no attribute "
                "'append'\nsome cleanup line",
            }
        },
    }
    assert examples._failure_reason(record) == (
        "step prep: failed with exit code 1: AttributeError: 'DataFrame' object has no "
        "attribute 'append'"
    )
    record["steps"]["prep"]["error"] = "step 'prep' init() failed: ModuleNotFoundError: x"
    assert examples._failure_reason(record) == "step prep: init() failed: ModuleNotFoundError: x"


def test_an_absent_checkout_is_skipped_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert examples.main([str(tmp_path / "nowhere")]) == 0
    assert "skipped:" in capsys.readouterr().out
