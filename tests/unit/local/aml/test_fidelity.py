"""What real pipelines do that the executor must get right: remote and asset inputs refused at
submit, datastore locations mapped locally, values that cannot become shell syntax, ``--set``
typed by declaration, steps in snapshots, ignored settings named, constraints enforced.

Every pipeline here is a small one written for the test (real subprocesses, no servers).
"""

from __future__ import annotations

import json
import re
import sys
import textwrap
from pathlib import Path

import pytest

from adapters.errors import BadInputError
from local.aml import LocalExecutor
from local.aml.__main__ import main as cli
from local.aml.locations import resolve_asset_input

ECHO = """\
import sys
from pathlib import Path

out = Path(sys.argv[-1])
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text("\\n".join(sys.argv[1:-1]))
"""


def pipeline(folder: Path, body: str, scripts: dict[str, str] | None = None) -> Path:
    """Write ``pipeline.yml`` (``body``) and ``src/<name>`` scripts into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    src = folder / "src"
    src.mkdir(exist_ok=True)
    for name, text in {"echo.py": ECHO, **(scripts or {})}.items():
        (src / name).write_text(text)
    path = folder / "pipeline.yml"
    path.write_text(textwrap.dedent(body))
    return path


def executor(tmp_path: Path, **kwargs: object) -> LocalExecutor:
    return LocalExecutor(tmp_path / "aml", step_timeout=900, **kwargs)  # type: ignore[arg-type]


ONE_INPUT = """\
type: pipeline
inputs:
  data:
    type: uri_folder
    path: {location}
jobs:
  use:
    type: command
    code: ./src
    environment: azureml://registries/azureml/environments/sklearn-1.5/labels/latest
    command: python echo.py ${{{{inputs.data}}}} ${{{{outputs.out}}}}/args.txt
    inputs:
      data: ${{{{parent.inputs.data}}}}
    outputs:
      out:
        type: uri_folder
"""

NODE_INPUT = """\
type: pipeline
jobs:
  use:
    type: command
    code: ./src
    environment: azureml://registries/azureml/environments/sklearn-1.5/labels/latest
    command: python echo.py ${{{{inputs.data}}}} ${{{{outputs.out}}}}/args.txt
    inputs:
      data:
        type: uri_file
        path: {location}
    outputs:
      out:
        type: uri_folder
"""


@pytest.mark.parametrize(
    ("body", "location", "expected"),
    [
        (ONE_INPUT, "https://example.org/data/", "pipeline input 'data' reads https://"),
        (ONE_INPUT, "azureml:sales:3", "pipeline input 'data' refers to data asset sales:3"),
        (ONE_INPUT, "wasbs://c@acct.blob.core.windows.net/x", "a wasbs:// location"),
        (NODE_INPUT, "https://example.org/x.csv", "node 'use' input 'data' reads https://"),
        (NODE_INPUT, "azureml:sales@latest", "node 'use' input 'data' refers to data asset"),
        (NODE_INPUT, "azureml:sales:2", "data asset sales:2"),
    ],
)
def test_remote_and_asset_inputs_are_refused_at_submit_with_a_local_way_out(
    tmp_path: Path, body: str, location: str, expected: str
) -> None:
    path = pipeline(tmp_path / "p", body.format(location=location))
    runner = executor(tmp_path)
    with pytest.raises(BadInputError) as caught:
        runner.submit(path)
    message = str(caught.value)
    assert expected in message
    assert "--set inputs." in message
    assert "\n" not in message
    assert runner.store.names() == []
    assert not list((tmp_path / "p").glob("https*")) and not (tmp_path / "p" / "azureml:").exists()


def test_the_cli_prints_the_refusal_as_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = pipeline(tmp_path / "p", ONE_INPUT.format(location="https://example.org/d/"))
    code = cli(["run", str(path), "--workdir", str(tmp_path / "aml"), "--tracking-uri", ""])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0 and "--set inputs.data=LOCAL_PATH" in err


def test_an_overridden_remote_default_runs_with_the_local_path(tmp_path: Path) -> None:
    path = pipeline(tmp_path / "p", ONE_INPUT.format(location="https://example.org/d/"))
    data = tmp_path / "local data"
    data.mkdir()
    runner = executor(tmp_path)
    record = runner.run(runner.submit(path, {"data": str(data)}).name)
    assert record.status == "Completed", record.error
    args = Path(record.steps["use"].outputs["out"]) / "args.txt"
    assert args.read_text() == str(data)


def test_the_asset_resolver_is_the_one_place_azureml_data_can_resolve(tmp_path: Path) -> None:
    folder = tmp_path / "sales-v3"
    folder.mkdir()
    seen: list[tuple[str, str]] = []

    def index(name: str, version: str) -> Path | None:
        seen.append((name, version))
        return folder if name == "sales" else None

    assert resolve_asset_input("azureml:sales:3", what="x", hint="h", resolver=index) == folder
    assert resolve_asset_input("azureml:sales@latest", what="x", hint="h", resolver=index) == folder
    with pytest.raises(BadInputError, match="data asset other:1"):
        resolve_asset_input("azureml:other:1", what="x", hint="h", resolver=index)
    assert seen == [("sales", "3"), ("sales", "latest"), ("other", "1")]

    path = pipeline(tmp_path / "p", ONE_INPUT.format(location="azureml:sales:3"))
    runner = executor(tmp_path, asset_resolver=index)
    record = runner.run(runner.submit(path).name)
    assert record.status == "Completed", record.error
    assert (Path(record.steps["use"].outputs["out"]) / "args.txt").read_text() == str(folder)


DATASTORES = """\
type: pipeline
inputs:
  data:
    type: uri_folder
    path: azureml://datastores/lake/paths/conditioned/sales
outputs:
  report:
    type: uri_file
    path: azureml://datastores/${{default_datastore}}/paths/reports/${{name}}/report.txt
jobs:
  use:
    type: command
    code: ./src
    environment: azureml://registries/azureml/environments/sklearn-1.5/labels/latest
    command: python echo.py ${{inputs.data}} ${{outputs.copy}}/args.txt
    inputs:
      data: ${{parent.inputs.data}}
    outputs:
      copy:
        type: uri_folder
        path: azureml://datastores/lake/paths/copies/${{name}}
  report:
    type: command
    code: ./src
    environment: azureml://registries/azureml/environments/sklearn-1.5/labels/latest
    command: python echo.py done ${{outputs.report}}
    outputs:
      report: ${{parent.outputs.report}}
"""


def test_datastore_inputs_and_outputs_live_under_the_datastore_root(tmp_path: Path) -> None:
    path = pipeline(tmp_path / "p", DATASTORES)
    root = tmp_path / "stores"
    runner = executor(tmp_path, datastore_root=root)
    with pytest.raises(BadInputError, match="--datastore lake=LOCAL_DIR"):
        runner.submit(path)  # no local data in the datastore yet
    (root / "lake" / "conditioned" / "sales").mkdir(parents=True)
    record = runner.run(runner.submit(path).name)
    assert record.status == "Completed", record.error
    copy = root / "lake" / "copies" / record.name / "args.txt"
    assert copy.read_text() == str(root / "lake" / "conditioned" / "sales")
    report = root / "workspaceblobstore" / "reports" / record.name / "report.txt"
    assert report.read_text() == "done"
    assert record.outputs["report"] == str(report)
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["pipeline.yml", "src"]


def test_a_datastore_can_be_mapped_to_any_local_folder(tmp_path: Path) -> None:
    path = pipeline(tmp_path / "p", DATASTORES)
    lake = tmp_path / "my lake"
    (lake / "conditioned" / "sales").mkdir(parents=True)
    runner = executor(tmp_path, datastores={"lake": lake})
    record = runner.run(runner.submit(path).name)
    assert record.status == "Completed", record.error
    assert (lake / "copies" / record.name / "args.txt").is_file()


WRITES_THEN_READS = """\
type: pipeline
outputs:
  shared:
    type: uri_folder
    path: azureml://datastores/workspaceblobstore/paths/azureml/shared
jobs:
  write:
    type: command
    code: ./src
    environment: azureml://registries/azureml/environments/sklearn-1.5/labels/latest
    command: python echo.py hello ${{outputs.out}}/note.txt
    outputs:
      out: ${{parent.outputs.shared}}
  read:
    type: command
    code: ./src
    environment: azureml://registries/azureml/environments/sklearn-1.5/labels/latest
    command: >-
      python echo.py ${{inputs.note}} ${{inputs.after}} ${{inputs.runs}} ${{outputs.seen}}/args.txt
    inputs:
      note:
        type: uri_file
        path: azureml://datastores/workspaceblobstore/paths/azureml/shared/note.txt
      after: ${{parent.jobs.write.outputs.out}}
      runs:
        type: uri_folder
        path: azureml://datastores/workspaceblobstore/paths/azureml
    outputs:
      seen:
        type: uri_folder
"""


def test_outputs_with_no_path_land_where_azure_ml_puts_them(tmp_path: Path) -> None:
    # Azure ML writes an unbound output to azureml/<step job>/<output>/ on the default
    # datastore (settings.default_datastore when the pipeline sets one), so a workspace that
    # has run a job has that folder and later jobs can read it.
    body = NODE_INPUT.format(location="./src/echo.py")
    first = pipeline(tmp_path / "first", body)
    runner = executor(tmp_path)
    with pytest.raises(BadInputError, match="workspaceblobstore/azureml does not exist"):
        runner.submit(pipeline(tmp_path / "second", WRITES_THEN_READS))
    record = runner.run(runner.submit(first).name)
    assert record.status == "Completed", record.error
    stores = tmp_path / "aml" / "datastores"
    out = stores / "workspaceblobstore" / "azureml" / f"{record.name}_use" / "out"
    assert record.steps["use"].outputs["out"] == str(out)
    assert (out / "args.txt").read_text() == str(tmp_path / "first" / "src" / "echo.py")
    assert not (runner.store.job_dir(record.name) / "steps" / "use" / "outputs").exists()

    elsewhere = pipeline(
        tmp_path / "third", "settings:\n  default_datastore: azureml:lake\n" + body
    )
    moved = runner.run(runner.submit(elsewhere).name)
    assert moved.status == "Completed", moved.error
    assert (stores / "lake" / "azureml" / f"{moved.name}_use" / "out" / "args.txt").is_file()


def test_a_datastore_input_the_pipeline_writes_first_is_read_when_its_step_starts(
    tmp_path: Path,
) -> None:
    # note.txt does not exist at submit: the step that reads it follows the step that writes
    # it, and Azure ML reads a node's inputs when the node starts.
    runner = executor(tmp_path)
    (tmp_path / "aml" / "datastores" / "workspaceblobstore" / "azureml").mkdir(parents=True)
    record = runner.run(runner.submit(pipeline(tmp_path / "p", WRITES_THEN_READS)).name)
    assert record.status == "Completed", record.error
    azureml = tmp_path / "aml" / "datastores" / "workspaceblobstore" / "azureml"
    args = (Path(record.steps["read"].outputs["seen"]) / "args.txt").read_text().split("\n")
    assert args == [str(azureml / "shared" / "note.txt"), str(azureml / "shared"), str(azureml)]
    assert (azureml / "shared" / "note.txt").read_text() == "hello"


SAVES_A_MODEL = """\
type: pipeline
jobs:
  train:
    type: command
    code: ./src
    environment: azureml://registries/azureml/environments/sklearn-1.5/labels/latest
    command: python save.py ${{outputs.model}}
    outputs:
      model:
        type: mlflow_model
"""
SAVE = """\
import sys

import mlflow.sklearn
from sklearn.linear_model import LinearRegression

model = LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0])
mlflow.sklearn.save_model(model, sys.argv[1])
"""


def test_a_curated_scikit_learn_step_saves_models_as_its_image_does(tmp_path: Path) -> None:
    # The image holds no skops; its MLflow saves scikit-learn models with cloudpickle.
    runner = executor(tmp_path)
    path = pipeline(tmp_path / "p", SAVES_A_MODEL, {"save.py": SAVE})
    record = runner.run(runner.submit(path).name)
    assert record.status == "Completed", record.error
    mlmodel = (Path(record.steps["train"].outputs["model"]) / "MLmodel").read_text()
    assert "serialization_format: cloudpickle" in mlmodel


def test_an_output_path_outside_a_datastore_is_refused(tmp_path: Path) -> None:
    body = NODE_INPUT.format(location="./src/echo.py").replace(
        "        type: uri_folder\n", "        type: uri_folder\n        path: ./results\n"
    )
    path = pipeline(tmp_path / "p", body)
    with pytest.raises(
        BadInputError, match=re.escape("output 'out' path './results' is not a datastore")
    ):
        executor(tmp_path).submit(path)


HOSTILE = """\
type: pipeline
inputs:
  data:
    type: uri_folder
    path: ./data
  model_name: forecast-north
jobs:
  plain:
    type: command
    code: ./src
    environment: azureml://registries/azureml/environments/sklearn-1.5/labels/latest
    command: python echo.py ${{inputs.data}} ${{inputs.model_name}} ${{outputs.out}}/args.txt
    inputs:
      data: ${{parent.inputs.data}}
      model_name: ${{parent.inputs.model_name}}
    outputs:
      out:
        type: uri_folder
  shell:
    type: command
    code: ./src
    environment: azureml://registries/azureml/environments/sklearn-1.5/labels/latest
    command: >-
      echo "name=${{inputs.model_name}}" > ${{outputs.out}}/said.txt &&
      echo '${{inputs.model_name}}' >> ${{outputs.out}}/said.txt &&
      ls ${{inputs.data}} >> ${{outputs.out}}/said.txt
    inputs:
      data: ${{parent.inputs.data}}
      model_name: ${{parent.inputs.model_name}}
    outputs:
      out:
        type: uri_folder
"""


@pytest.mark.parametrize(
    "model_name",
    [
        "x; touch PWNED",
        "$(touch PWNED)",
        "`touch PWNED`",
        "a' ; touch PWNED ; '",
        'q" && touch PWNED "',
    ],
)
def test_substituted_values_never_become_shell_syntax(tmp_path: Path, model_name: str) -> None:
    folder = tmp_path / "we$ird & 'odd' dir"
    path = pipeline(folder, HOSTILE)
    data = folder / "data"
    data.mkdir()
    (data / "a file.csv").write_text("x\n")
    runner = LocalExecutor(folder / "aml root", step_timeout=900)
    record = runner.run(runner.submit(path, {"model_name": model_name}).name)
    assert record.status == "Completed", record.error
    args = (Path(record.steps["plain"].outputs["out"]) / "args.txt").read_text().split("\n")
    assert args == [str(data), model_name]
    said = (Path(record.steps["shell"].outputs["out"]) / "said.txt").read_text().splitlines()
    assert said == [f"name={model_name}", model_name, "a file.csv"]
    assert not list(tmp_path.rglob("PWNED"))


TYPED = """\
type: pipeline
inputs:
  code_version: local
  start: "09:00"
  answer: "no"
  count: 3
  ratio: 0.5
  flag: false
jobs:
  use:
    type: command
    code: ./src
    environment: azureml://registries/azureml/environments/sklearn-1.5/labels/latest
    command: >-
      python echo.py ${{inputs.code_version}} ${{inputs.start}} ${{inputs.answer}}
      ${{inputs.count}} ${{inputs.ratio}} ${{inputs.flag}} ${{outputs.out}}/args.txt
    inputs:
      code_version: ${{parent.inputs.code_version}}
      start: ${{parent.inputs.start}}
      answer: ${{parent.inputs.answer}}
      count: ${{parent.inputs.count}}
      ratio: ${{parent.inputs.ratio}}
      flag: ${{parent.inputs.flag}}
    outputs:
      out:
        type: uri_folder
"""


def test_set_values_are_converted_by_the_declared_type_not_yaml(tmp_path: Path) -> None:
    path = pipeline(tmp_path / "p", TYPED)
    runner = executor(tmp_path)
    sets = {
        "code_version": "010",
        "start": "12:30",
        "answer": "yes",
        "count": "08",
        "ratio": "1e-3",
        "flag": "TRUE",
    }
    record = runner.run(runner.submit(path, sets).name)
    assert record.status == "Completed", record.error
    args = (Path(record.steps["use"].outputs["out"]) / "args.txt").read_text().split("\n")
    assert args == ["010", "12:30", "yes", "8", "0.001", "True"]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("count", "many", "--set inputs.count: 'many' is not an integer"),
        ("count", "2.5", "not an integer"),
        ("ratio", "half", "not a number"),
        ("flag", "yes", "--set inputs.flag: 'yes' is not true or false"),
        ("nope", "1", "declares no input named nope"),
    ],
)
def test_set_values_of_the_wrong_type_are_refused(
    tmp_path: Path, name: str, value: str, message: str
) -> None:
    path = pipeline(tmp_path / "p", TYPED)
    with pytest.raises(BadInputError, match=re.escape(message)):
        executor(tmp_path).submit(path, {name: value})


CONSTRAINED = """\
type: pipeline
inputs:
  mode: train
  weeks: 13
jobs:
  use:
    type: command
    component: ./component.yml
    inputs:
      mode: ${{parent.inputs.mode}}
      weeks: ${{parent.inputs.weeks}}
"""

COMPONENT = """\
type: command
name: constrained
inputs:
  mode:
    type: string
    enum: [train, score]
  weeks:
    type: integer
    min: 1
    max: 52
outputs:
  out:
    type: uri_folder
code: ./src
environment: azureml://registries/azureml/environments/sklearn-1.5/labels/latest
command: python echo.py ${{inputs.mode}} ${{inputs.weeks}} ${{outputs.out}}/args.txt
"""


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        ({"mode": "predict"}, "node 'use' input 'mode' is 'predict', not one of 'train', 'score'"),
        ({"weeks": "0"}, "node 'use' input 'weeks' is 0, below its min 1"),
        ({"weeks": "53"}, "node 'use' input 'weeks' is 53, above its max 52"),
    ],
)
def test_declared_constraints_are_enforced_at_submit(
    tmp_path: Path, sets: dict[str, str], message: str
) -> None:
    path = pipeline(tmp_path / "p", CONSTRAINED)
    (tmp_path / "p" / "component.yml").write_text(COMPONENT)
    runner = executor(tmp_path)
    with pytest.raises(BadInputError, match=re.escape(message)):
        runner.submit(path, sets)
    record = runner.run(runner.submit(path, {"weeks": "52"}).name)
    assert record.status == "Completed", record.error


SNAPSHOT = """\
type: pipeline
jobs:
  writer:
    type: command
    code: ./src
    environment: azureml://registries/azureml/environments/sklearn-1.5/labels/latest
    command: python writer.py
  bare:
    type: command
    environment: azureml://registries/azureml/environments/sklearn-1.5/labels/latest
    command: ls -A > ${{outputs.out}}/listing.txt
    outputs:
      out:
        type: uri_folder
"""

WRITER = """\
from pathlib import Path

Path("outputs").mkdir(exist_ok=True)
Path("outputs/model.txt").write_text("weights")
Path("logs").mkdir(exist_ok=True)
Path("logs/train.log").write_text("epoch 1")
Path("writer.py").write_text("# overwritten by the step")
Path("scratch.tmp").write_text("x")
"""


def test_steps_run_in_a_snapshot_and_outputs_and_logs_are_collected(tmp_path: Path) -> None:
    path = pipeline(tmp_path / "p", SNAPSHOT, {"writer.py": WRITER})
    (tmp_path / "p" / "src" / ".amlignore").write_text("big_data/\n")
    (tmp_path / "p" / "src" / "big_data").mkdir()
    (tmp_path / "p" / "src" / "big_data" / "blob.bin").write_bytes(b"0" * 10)
    before = {p: p.read_bytes() for p in (tmp_path / "p").rglob("*") if p.is_file()}
    runner = executor(tmp_path)
    record = runner.run(runner.submit(path).name)
    assert record.status == "Completed", record.error
    after = {p: p.read_bytes() for p in (tmp_path / "p").rglob("*") if p.is_file()}
    assert after == before  # the source tree is untouched
    step_dir = runner.store.job_dir(record.name) / "steps" / "writer"
    assert (step_dir / "artifacts" / "outputs" / "model.txt").read_text() == "weights"
    assert (step_dir / "artifacts" / "logs" / "train.log").read_text() == "epoch 1"
    assert not (step_dir / "snapshot" / "big_data").exists()  # .amlignore honoured
    listing = Path(record.steps["bare"].outputs["out"]) / "listing.txt"
    assert listing.read_text() == ""  # no code: an empty working folder, as on Azure ML


IGNORED = """\
type: pipeline
jobs:
  train:
    type: command
    code: ./src
    environment: azureml://registries/azureml/environments/sklearn-1.5/labels/latest
    command: python echo.py ${{outputs.out}}/args.txt
    outputs:
      out:
        type: uri_folder
    distribution:
      type: pytorch
      process_count_per_instance: 2
    resources:
      instance_count: 2
"""


def test_ignored_settings_are_listed_once_in_the_job_log(tmp_path: Path) -> None:
    path = pipeline(tmp_path / "p", IGNORED)
    runner = executor(tmp_path)
    record = runner.run(runner.submit(path).name)
    assert record.status == "Completed", record.error
    ignored = [w for w in record.warnings if "is ignored" in w]
    assert len(ignored) == 2
    assert any("distribution" in w and "pytorch" in w for w in ignored)
    assert any("resources" in w and "instance_count" in w for w in ignored)
    # The curated environment asks for Python 3.10: said once per job, not per step.
    assert [w for w in record.warnings if "asks for Python" in w] == [
        "environment 'sklearn-1.5' asks for Python 3.10; this machine runs its steps with "
        f"Python {sys.version.split()[0]}"
    ]
    log = (runner.store.job_dir(record.name) / "logs" / "job_log.txt").read_text()
    assert log.count("WARNING") == 3
    saved = json.loads((runner.store.job_dir(record.name) / "job.json").read_text())
    assert saved["warnings"] == record.warnings
