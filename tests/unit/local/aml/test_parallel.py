"""``type: parallel`` steps and pipeline components on small pipelines of our own (real worker
processes, no servers)."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from adapters.errors import BadInputError
from adapters.events import AzureMLEventType, RecordingEventPublisher
from local.aml import LocalExecutor, mltable
from local.aml.parallel import mini_batches

ENTRY = """\
import argparse
import os
from pathlib import Path

import pandas as pd


def init():
    global args
    parser = argparse.ArgumentParser()
    parser.add_argument("--label")
    parser.add_argument("--fail_on", default="")
    parser.add_argument("--flaky_on", default="")
    parser.add_argument("--slow_on", default="")
    parser.add_argument("--marks")
    args, _ = parser.parse_known_args()
    Path(args.marks, f"init-{os.getpid()}").write_text("")
    if args.label == "broken":
        raise RuntimeError("cannot load the model")


def run(mini_batch, mini_batch_context):
    key = mini_batch_context.partition_key_value
    name = f"{key['store']}-{key['product']}"
    assert isinstance(mini_batch, pd.DataFrame)
    if name == args.fail_on:
        raise ValueError(f"bad partition {name}")
    mark = Path(args.marks) / name
    if name == args.flaky_on and not mark.exists():
        mark.write_text("failed once")
        raise ConnectionError("transient")
    if name == args.slow_on:
        import time

        time.sleep(30)
    return [f"{name},{len(mini_batch)},{mini_batch['qty'].sum()},{args.label},{os.getpid()}"]
"""

PARTITIONED = """\
type: pipeline
inputs:
  table:
    type: mltable
    path: ./table
  label: a b
outputs:
  rows:
    type: uri_file
jobs:
  fan:
    type: parallel
    inputs:
      data: ${{{{parent.inputs.table}}}}
      label: ${{{{parent.inputs.label}}}}
    outputs:
      rows: ${{{{parent.outputs.rows}}}}
      marks:
        type: uri_folder
    input_data: ${{{{inputs.data}}}}
    partition_keys: [store, product]
    max_concurrency_per_instance: 2
    mini_batch_error_threshold: {threshold}
    retry_settings:
      max_retries: {tries}
      timeout: {timeout}
    resources:
      instance_count: 2
    task:
      type: run_function
      code: ./src
      entry_script: entry.py
      environment:
        image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest
        conda_file: ./conda.yml
      program_arguments: >-
        --label ${{{{inputs.label}}}} --marks ${{{{outputs.marks}}}} {extra}
      append_row_to: ${{{{outputs.rows}}}}
"""

MLTABLE = """\
paths:
  - pattern: ./**/*.csv
transformations:
  - read_delimited:
      delimiter: ","
      header: all_files_same_headers
      include_path_column: true
  - extract_columns_from_partition_format:
      partition_format: "{store}/{file_name}.{extension}"
  - drop_columns: [Path, file_name, extension]
"""


# What the partitioned step's environment holds: Azure ML's parallel runner reads an mltable
# input with mltable, and the entry script uses pandas.
CONDA = """\
name: parallel-fixture
dependencies:
  - python=3.11
  - pip:
      - mltable==1.7.0
      - pandas==2.3.3
      - pyarrow==25.0.1
"""


def write_table(folder: Path, stores: int = 3, products: int = 2) -> None:
    """One CSV per store (``<store>/part.csv``), products as rows: stores x products partitions."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "MLTable").write_text(MLTABLE)
    for s in range(stores):
        rows = [
            {"product": f"p{p}", "week": w, "qty": s * 10 + p + w}
            for p in range(products)
            for w in range(3)
        ]
        (folder / f"s{s}").mkdir(exist_ok=True)
        pd.DataFrame(rows).to_csv(folder / f"s{s}" / "part.csv", index=False)


def parallel_pipeline(
    folder: Path,
    *,
    threshold: int = -1,
    tries: int = 2,
    timeout: int = 60,
    extra: str = "",
    stores: int = 3,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "src").mkdir(exist_ok=True)
    (folder / "src" / "entry.py").write_text(ENTRY)
    (folder / "conda.yml").write_text(CONDA)
    write_table(folder / "table", stores=stores)
    path = folder / "pipeline.yml"
    path.write_text(
        PARTITIONED.format(threshold=threshold, tries=tries, timeout=timeout, extra=extra)
    )
    return path


def run(
    tmp_path: Path, path: Path, **sets: str
) -> tuple[LocalExecutor, RecordingEventPublisher, str]:
    events = RecordingEventPublisher()
    runner = LocalExecutor(tmp_path / "aml", publisher=events, step_timeout=900)
    record = runner.submit(path, sets)
    runner.run(record.name)
    return runner, events, record.name


def test_the_mltable_reader_applies_partition_format_and_column_drops(tmp_path: Path) -> None:
    write_table(tmp_path / "t", stores=2)
    frame = mltable.to_frame(mltable.read(tmp_path / "t"))
    assert sorted(frame.columns) == ["product", "qty", "store", "week"]
    assert len(frame) == 2 * 2 * 3
    assert sorted(frame["store"].unique()) == ["s0", "s1"]


def test_partitions_become_one_dataframe_mini_batch_each(tmp_path: Path) -> None:
    write_table(tmp_path / "t", stores=2, products=3)
    batches = list(mini_batches("mltable", tmp_path / "t", None, ("store", "product"), "s"))
    assert [b.partition for b in batches] == [
        {"store": f"s{s}", "product": f"p{p}"} for s in range(2) for p in range(3)
    ]
    assert all(isinstance(b.payload, pd.DataFrame) and len(b.payload) == 3 for b in batches)


def test_keys_from_the_paths_split_the_table_by_file_into_the_same_partitions(
    tmp_path: Path,
) -> None:
    write_table(tmp_path / "t", stores=3, products=2)
    (tmp_path / "t" / "s1" / "more.csv").write_text("product,week,qty\np9,7,70\n")
    whole = mltable.to_frame(mltable.read(tmp_path / "t"))
    by_file = list(mini_batches("mltable", tmp_path / "t", None, ("store",), "s"))
    assert [b.partition for b in by_file] == [{"store": f"s{s}"} for s in range(3)]
    for batch in by_file:
        rows = whole[whole["store"] == batch.partition["store"]]  # what a split by row gives
        assert batch.items == len(rows)
        pd.testing.assert_frame_equal(
            batch.payload.sort_values(["product", "week"]).reset_index(drop=True),
            rows.sort_values(["product", "week"]).reset_index(drop=True),
        )
    assert batch.payload.columns.tolist() == whole.columns.tolist()


def test_partitions_are_read_when_they_are_taken_not_all_at_once(tmp_path: Path) -> None:
    write_table(tmp_path / "t", stores=3, products=1)
    batches = mini_batches("mltable", tmp_path / "t", None, ("store",), "s")
    assert len(batches) == 3
    first = batches.take()
    assert first is not None and first.partition == {"store": "s0"}
    # Rows written after the step began are in a partition not yet taken: nothing else was read.
    (tmp_path / "t" / "s2" / "part.csv").write_text("product,week,qty\np0,0,1\np0,1,2\n")
    rest = list(batches)
    assert [(b.partition, b.items) for b in rest] == [({"store": "s1"}, 3), ({"store": "s2"}, 2)]


def test_a_partition_whose_files_hold_no_rows_is_not_a_mini_batch(tmp_path: Path) -> None:
    write_table(tmp_path / "t", stores=3, products=1)
    (tmp_path / "t" / "s1" / "part.csv").write_text("product,week,qty\n")
    batches = mini_batches("mltable", tmp_path / "t", None, ("store",), "s")
    assert len(batches) == 3  # known only once its files are read
    taken = list(batches)
    assert [(b.index, b.partition) for b in taken] == [(0, {"store": "s0"}), (1, {"store": "s2"})]
    assert len(batches) == 2


def test_rows_without_a_key_value_are_a_partition_of_their_own(tmp_path: Path) -> None:
    write_table(tmp_path / "t", stores=1, products=2)
    rows = "product,week,qty\np1,0,1\n,1,2\np0,2,3\n,3,4\n"
    (tmp_path / "t" / "s0" / "part.csv").write_text(rows)
    batches = list(mini_batches("mltable", tmp_path / "t", None, ("product",), "s"))
    assert [b.partition["product"] for b in batches[:2]] == ["p0", "p1"]
    assert pd.isna(batches[2].partition["product"]) and batches[2].items == 2
    assert batches[2].payload["week"].tolist() == [1, 3]


def test_partition_keys_run_on_worker_processes_and_append_rows(tmp_path: Path) -> None:
    path = parallel_pipeline(tmp_path / "p")
    runner, events, name = run(tmp_path, path)
    record = runner.status(name)
    assert record.status == "Completed", record.error
    lines = Path(record.outputs["rows"]).read_text().splitlines()
    keys = [line.split(",")[0] for line in lines]
    assert keys == [f"s{s}-p{p}" for s in range(3) for p in range(2)]  # mini-batch order
    assert all(line.split(",")[1] == "3" for line in lines)  # each partition's own rows
    assert {line.split(",")[3] for line in lines} == {"a b"}  # program_arguments, one word
    marks = Path(record.steps["fan"].outputs["marks"])
    assert len(list(marks.glob("init-*"))) == 2  # two worker processes, init() once each
    assert {line.split(",")[4] for line in lines} <= {p.name[5:] for p in marks.glob("init-*")}
    step = record.steps["fan"]
    assert step.kind == "parallel"
    assert step.progress["total"] == 6 and step.progress["succeeded"] == 6
    journal = runner.store.job_dir(name) / "steps" / "fan" / "logs" / "mini_batches.jsonl"
    entries = [json.loads(line) for line in journal.read_text().splitlines()]
    assert sorted(e["index"] for e in entries) == list(range(6))
    assert entries[0]["partition"] in [
        {"store": f"s{s}", "product": f"p{p}"} for s in range(3) for p in range(2)
    ]
    assert any("instance_count" in w for w in record.warnings)
    step_events = [
        e["data"]["runStatus"]
        for e in events.events
        if e["eventType"] == AzureMLEventType.RUN_STATUS_CHANGED
        and e["data"]["runProperties"].get("stepName") == "fan"
    ]
    assert step_events == ["Queued", "Running", "Completed"]


def test_a_failing_mini_batch_is_retried_then_counted(tmp_path: Path) -> None:
    path = parallel_pipeline(tmp_path / "p", threshold=1, extra="--flaky_on s1-p0 --fail_on s2-p1")
    runner, _, name = run(tmp_path, path)
    record = runner.status(name)
    assert record.status == "Completed", record.error  # one failure allowed
    progress = record.steps["fan"].progress
    assert progress["failed"] == 1 and progress["succeeded"] == 5
    assert progress["retried"] == 2  # the flaky one once, the broken one once
    keys = [x.split(",")[0] for x in Path(record.outputs["rows"]).read_text().splitlines()]
    assert "s1-p0" in keys and "s2-p1" not in keys
    logs = runner.store.job_dir(name) / "steps" / "fan" / "logs"
    assert "bad partition s2-p1" in (logs / "errors.txt").read_text()
    journal = [json.loads(line) for line in (logs / "mini_batches.jsonl").read_text().splitlines()]
    outcome = {(e["partition"]["store"], e["partition"]["product"]): e for e in journal}
    assert outcome[("s1", "p0")]["status"] == "succeeded"  # its second try did
    assert outcome[("s1", "p0")]["attempts"] == 2 and "error" not in outcome[("s1", "p0")]
    assert outcome[("s2", "p1")]["status"] == "failed"
    assert "bad partition s2-p1" in outcome[("s2", "p1")]["error"]
    assert [e["status"] for e in journal].count("succeeded") == 5


def test_more_failures_than_the_threshold_fail_the_step(tmp_path: Path) -> None:
    path = parallel_pipeline(tmp_path / "p", threshold=0, tries=1, extra="--fail_on s0-p1")
    runner, _, name = run(tmp_path, path)
    record = runner.status(name)
    assert record.status == "Failed"
    assert record.failed_step == "fan"
    assert "more than mini_batch_error_threshold 0" in record.error


def test_a_run_past_its_timeout_is_stopped_and_its_worker_replaced(tmp_path: Path) -> None:
    path = parallel_pipeline(tmp_path / "p", tries=1, timeout=2, extra="--slow_on s0-p0")
    runner, _, name = run(tmp_path, path)
    record = runner.status(name)
    assert record.status == "Completed", record.error
    assert record.steps["fan"].progress["failed"] == 1
    assert record.steps["fan"].progress["succeeded"] == 5
    errors = (runner.store.job_dir(name) / "steps" / "fan" / "logs" / "errors.txt").read_text()
    assert "exceeded retry_settings.timeout 2s" in errors


def test_an_init_that_raises_fails_the_step_with_its_message(tmp_path: Path) -> None:
    path = parallel_pipeline(tmp_path / "p")
    runner, _, name = run(tmp_path, path, label="broken")
    record = runner.status(name)
    assert record.status == "Failed"
    assert "init() failed: RuntimeError: cannot load the model" in record.error


FILES = """\
type: pipeline
inputs:
  images:
    type: uri_folder
    path: ./images
jobs:
  score:
    type: parallel
    inputs:
      images: ${{parent.inputs.images}}
    outputs:
      scores:
        type: uri_folder
    input_data: ${{inputs.images}}
    mini_batch_size: "2"
    task:
      type: run_function
      code: ./src
      entry_script: files.py
      environment: azureml://registries/azureml/environments/sklearn-1.5/labels/latest
      append_row_to: ${{outputs.scores}}
"""

FILES_ENTRY = """\
from pathlib import Path


def init():
    pass


def run(mini_batch):
    assert isinstance(mini_batch, list)
    return [f"{Path(p).name} {len(mini_batch)}" for p in mini_batch]
"""


def test_file_inputs_are_split_by_mini_batch_size(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    (folder / "src").mkdir(parents=True)
    (folder / "src" / "files.py").write_text(FILES_ENTRY)
    (folder / "images" / "sub").mkdir(parents=True)
    for i in range(5):
        target = folder / "images" / ("sub" if i > 2 else "") / f"img{i}.png"
        target.write_bytes(b"x")
    (folder / "pipeline.yml").write_text(FILES)
    runner, _, name = run(tmp_path, folder / "pipeline.yml")
    record = runner.status(name)
    assert record.status == "Completed", record.error
    out = Path(record.steps["score"].outputs["scores"]) / "parallel_run_step.txt"
    assert out.read_text().splitlines() == [
        "img0.png 2", "img1.png 2", "img2.png 2", "img3.png 2", "img4.png 1"
    ]  # fmt: skip
    assert record.steps["score"].progress["total"] == 3


def test_partition_keys_on_a_folder_are_refused(tmp_path: Path) -> None:
    (tmp_path / "f").mkdir()
    with pytest.raises(BadInputError, match="partition_keys need an mltable input"):
        list(mini_batches("uri_folder", tmp_path / "f", None, ("store",), "s"))


COMPONENT_PIPELINE = """\
type: pipeline
inputs:
  greeting: hello
outputs:
  final:
    type: uri_folder
jobs:
  stage:
    type: pipeline
    component: ./stage.yml
    inputs:
      text: ${{parent.inputs.greeting}}
  after:
    type: command
    code: ./src
    environment: azureml://registries/azureml/environments/sklearn-1.5/labels/latest
    command: python copy.py ${{inputs.staged}} ${{outputs.final}}
    inputs:
      staged: ${{parent.jobs.stage.outputs.result}}
    outputs:
      final: ${{parent.outputs.final}}
"""

STAGE = """\
$schema: https://azuremlschemas.azureedge.net/latest/pipelineComponent.schema.json
type: pipeline
name: stage
inputs:
  text:
    type: string
  suffix:
    type: string
    default: world
outputs:
  result:
    type: uri_folder
jobs:
  first:
    type: command
    code: ./src
    environment: azureml://registries/azureml/environments/sklearn-1.5/labels/latest
    command: python say.py ${{inputs.text}} ${{inputs.suffix}} ${{outputs.out}}
    inputs:
      text: ${{parent.inputs.text}}
      suffix: ${{parent.inputs.suffix}}
    outputs:
      out:
        type: uri_folder
  second:
    type: command
    code: ./src
    environment: azureml://registries/azureml/environments/sklearn-1.5/labels/latest
    command: python copy.py ${{inputs.previous}} ${{outputs.out}}
    inputs:
      previous: ${{parent.jobs.first.outputs.out}}
    outputs:
      out: ${{parent.outputs.result}}
"""

SAY = """\
import sys
from pathlib import Path

Path(sys.argv[-1], "said.txt").write_text(" ".join(sys.argv[1:-1]))
"""

COPY = """\
import shutil
import sys

shutil.copytree(sys.argv[1], sys.argv[2], dirs_exist_ok=True)
"""


def test_a_pipeline_component_runs_with_its_outputs_bound_through(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    (folder / "src").mkdir(parents=True)
    (folder / "src" / "say.py").write_text(SAY)
    (folder / "src" / "copy.py").write_text(COPY)
    (folder / "stage.yml").write_text(STAGE)
    (folder / "pipeline.yml").write_text(COMPONENT_PIPELINE)
    runner, _, name = run(tmp_path, folder / "pipeline.yml", greeting="good day")
    record = runner.status(name)
    assert record.status == "Completed", record.error
    assert set(record.steps) == {"stage/first", "stage/second", "after"}
    steps = record.steps
    assert steps["stage/first"].ended_at <= steps["stage/second"].started_at  # type: ignore[operator]
    assert steps["stage/second"].ended_at <= steps["after"].started_at  # type: ignore[operator]
    assert (Path(record.outputs["final"]) / "said.txt").read_text() == "good day world"
    assert (runner.store.job_dir(name) / "steps" / "stage" / "first" / "user_logs").is_dir()


def test_a_pipeline_node_without_a_component_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "pipeline.yml").write_text(
        textwrap.dedent(
            """\
            type: pipeline
            jobs:
              inner:
                type: pipeline
                component: azureml:shared_pipeline:1
            """
        )
    )
    with pytest.raises(BadInputError, match=r"shared_pipeline:1 .* not registered in the local"):
        LocalExecutor(tmp_path / "aml").submit(tmp_path / "pipeline.yml")


@pytest.mark.parametrize(
    ("paths", "message"),
    [
        ("  - folder: ./missing\n", "lists folder ./missing, which does not exist"),
        ("  - pattern: ./*.parquet\n", "pattern ./*.parquet matches no file"),
        ("  - file: https://example.org/t.csv\n", "does not download"),
    ],
)
def test_an_mltable_that_points_at_nothing_is_an_error_not_an_empty_job(
    tmp_path: Path, paths: str, message: str
) -> None:
    (tmp_path / "MLTable").write_text("paths:\n" + paths)
    with pytest.raises(BadInputError, match=re.escape(message)):
        list(mini_batches("mltable", tmp_path, None, (), "s"))


def test_an_mltable_input_needs_mltable_in_the_environment(tmp_path: Path) -> None:
    """Azure ML's parallel runner reads an mltable input with mltable: without it in the step's
    environment the step fails before init(), naming the module."""
    path = parallel_pipeline(tmp_path / "p")
    (tmp_path / "p" / "conda.yml").write_text(CONDA.replace("      - mltable==1.7.0\n", ""))
    runner, _, name = run(tmp_path, path)
    record = runner.status(name)
    assert record.status == "Failed"
    assert "No module named 'mltable'" in record.error
