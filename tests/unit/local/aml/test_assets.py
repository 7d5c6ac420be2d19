"""The local data asset index and the executor resolving ``azureml:<name>:<version>`` inputs
through it by default."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adapters.errors import BadInputError, ConflictError, NotFoundError
from local.aml import LocalExecutor, assets

PIPELINE = """\
$schema: https://azuremlschemas.azureedge.net/latest/pipelineJob.schema.json
type: pipeline
settings:
  default_compute: azureml:cpu-cluster
inputs:
  data:
    type: uri_folder
outputs:
  listing:
    type: uri_folder
jobs:
  list_files:
    type: command
    code: ./src
    environment: azureml://registries/azureml/environments/sklearn-1.5/labels/latest
    command: python list_files.py ${{inputs.data}} ${{outputs.listing}}
    inputs:
      data: ${{parent.inputs.data}}
    outputs:
      listing: ${{parent.outputs.listing}}
"""
LIST_FILES = """\
import json, sys
from pathlib import Path
found = sorted(p.relative_to(sys.argv[1]).as_posix() for p in Path(sys.argv[1]).rglob("*.csv"))
Path(sys.argv[2]).mkdir(parents=True, exist_ok=True)
Path(sys.argv[2], "files.json").write_text(json.dumps(found))
"""


def folder(tmp_path: Path, name: str, files: tuple[str, ...] = ("part-00000.csv",)) -> Path:
    out = tmp_path / "data" / name
    out.mkdir(parents=True)
    for f in files:
        (out / f).write_text("a,b\n1,2\n")
    return out


def test_a_version_is_registered_once_and_resolved_by_version_or_latest(tmp_path: Path) -> None:
    root = tmp_path / "aml"
    first = folder(tmp_path, "v1")
    second = folder(tmp_path, "v2")
    one = assets.register(root, "shipments", "v1", first, tags={"rows_out": "9"})
    assert assets.register(root, "shipments", "v1", first).tags == {"rows_out": "9"}  # as it was
    assets.register(root, "shipments", "v2", second)
    assert assets.resolve(root, "shipments", "v1") == one
    assert assets.resolve(root, "shipments").version == "v2"
    stored = json.loads((root / "assets" / "data" / "shipments" / "v1.json").read_text())
    assert stored["path"] == str(first) and stored["type"] == "uri_folder"


def test_versions_are_immutable_and_unknown_ones_not_found(tmp_path: Path) -> None:
    root = tmp_path / "aml"
    assets.register(root, "weather", "v1", folder(tmp_path, "a"))
    with pytest.raises(ConflictError, match="exists over"):
        assets.register(root, "weather", "v1", folder(tmp_path, "b"))
    with pytest.raises(NotFoundError):
        assets.resolve(root, "weather", "v9")
    with pytest.raises(NotFoundError):
        assets.resolve(root, "stores")


@pytest.mark.parametrize(
    ("name", "version"), [("../x", "v1"), ("a/b", "v1"), ("ok", "latest"), ("", "v1")]
)
def test_names_that_could_leave_the_index_are_refused(
    tmp_path: Path, name: str, version: str
) -> None:
    with pytest.raises(BadInputError):
        assets.register(tmp_path / "aml", name, version, folder(tmp_path, "x"))


def test_a_path_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="does not exist"):
        assets.register(tmp_path / "aml", "events", "v1", tmp_path / "nowhere")


def test_the_resolver_finds_registered_folders_and_nothing_else(tmp_path: Path) -> None:
    root = tmp_path / "aml"
    path = folder(tmp_path, "v1")
    assets.register(root, "shipments", "v1", path)
    find = assets.resolver(root)
    assert find("shipments", "v1") == path
    assert find("shipments", "latest") == path
    assert find("shipments", "v2") is None
    assert find("weather", "latest") is None
    assert find("../escape", "v1") is None


def test_the_executor_runs_a_job_on_the_registered_folder(tmp_path: Path) -> None:
    pipeline = tmp_path / "pipe" / "pipeline.yml"
    (pipeline.parent / "src").mkdir(parents=True)
    pipeline.write_text(PIPELINE)
    (pipeline.parent / "src" / "list_files.py").write_text(LIST_FILES)
    root = tmp_path / "aml"
    data = folder(tmp_path, "v7", ("part-00000.csv", "part-00001.csv"))
    assets.register(root, "shipments", "v7", data)
    executor = LocalExecutor(root, step_timeout=120)

    ok = executor.submit(pipeline, {"data": "azureml:shipments:v7"})
    record = executor.run(ok.name)
    assert record.status == "Completed", record.error
    listing = Path(record.outputs["listing"]) / "files.json"
    assert json.loads(listing.read_text()) == ["part-00000.csv", "part-00001.csv"]

    # An asset nothing is registered under is refused at submit, naming the input.
    with pytest.raises(BadInputError, match=r"'data' refers to data asset shipments:v8"):
        executor.submit(pipeline, {"data": "azureml:shipments:v8"})
