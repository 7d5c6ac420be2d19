"""The local ``az ml component|data|environment create|list|show`` and pipelines that use
what they registered (``azureml:NAME@latest``, ``azureml:NAME:VERSION``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from adapters.errors import BadInputError, NotFoundError
from local.aml import LocalExecutor, assets
from local.aml.__main__ import main as cli

FIXTURE = Path(__file__).resolve().parents[3] / "fixtures" / "aml" / "assets"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A copy of the fixture (the tests edit sources) with the work folder beside it."""
    shutil.copytree(FIXTURE, tmp_path / "src")
    return tmp_path


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any, str]:
    code = cli(list(args))
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 and out.strip() else None), err


def create(capsys: pytest.CaptureFixture[str], root: Path, kind: str, *args: str) -> Any:
    code, out, err = run_cli(capsys, kind, "create", *args, "--workdir", str(root))
    assert code == 0, err
    return out


def test_pipelines_run_on_components_and_data_registered_by_the_create_commands(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = workspace / "aml"
    src = workspace / "src"
    component = src / "components" / "hello" / "component.yml"
    first = create(capsys, root, "component", "--file", str(component))
    assert (first["name"], first["version"], first["type"]) == ("fixture_hello", "1", "command")
    data = create(capsys, root, "data", "-f", str(src / "data" / "data.yml"))
    assert (data["name"], data["version"]) == ("fixture_rows", "1")
    assert data["description"] == "three rows, uploaded by data create"

    # Edits after create do not reach the registered version: its code and data are copies.
    (src / "components" / "hello" / "src" / "hello.py").write_text("raise SystemExit(9)\n")
    (src / "data" / "rows" / "part-0.csv").write_text("a,b\n")
    second = create(capsys, root, "component", "--file", str(component))
    assert second["version"] == "2"  # no version in the YAML: the next one, as Azure ML does

    executor = LocalExecutor(root, step_timeout=300)
    record = executor.run(executor.submit(src / "pipeline.yml").name)
    assert record.status == "Failed"  # @latest is version 2, whose code now exits 9
    assert record.failed_step == "latest"
    assert record.steps["pinned"].status == "Completed"  # :1 still runs the code as created
    pinned = Path(record.steps["pinned"].outputs["report"]) / "report.json"
    assert json.loads(pinned.read_text()) == {"greeting": "hello", "rows": 3}

    # Re-register version 3 from the original sources: @latest runs again.
    shutil.copy2(FIXTURE / "components" / "hello" / "src" / "hello.py", component.parent / "src")
    assert create(capsys, root, "component", "--file", str(component))["version"] == "3"
    record = executor.run(executor.submit(src / "pipeline.yml").name)
    assert record.status == "Completed", record.error
    latest = Path(record.outputs["latest_report"]) / "report.json"
    assert json.loads(latest.read_text()) == {"greeting": "latest", "rows": 3}


def test_a_version_is_immutable_and_recreating_the_same_content_is_a_no_op(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = workspace / "aml"
    component = workspace / "src" / "components" / "hello" / "component.yml"
    pinned = create(capsys, root, "component", "--file", str(component), "--set", "version=7")
    again = create(capsys, root, "component", "-f", str(component), "--version", "7")
    assert again == pinned
    (component.parent / "src" / "hello.py").write_text("print('changed')\n")
    code, _, err = run_cli(
        capsys, "component", "create", "-f", str(component), "--set", "version=7",
        "--workdir", str(root),
    )  # fmt: skip
    assert code == 2
    assert err.startswith("error: component fixture_hello:7 is registered already with other")
    assert len(err.strip().splitlines()) == 1
    # Without a version the changed component gets the next one.
    assert create(capsys, root, "component", "-f", str(component))["version"] == "8"


def test_list_and_show_mirror_az_ml(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = workspace / "aml"
    rows = workspace / "src" / "data" / "rows"
    for _ in range(2):
        create(capsys, root, "data", "--name", "plain", "--path", str(rows), "--type", "uri_folder")
    create(capsys, root, "data", "-n", "remote", "-v", "1", "-p", "wasbs://c@acct.blob/x/")
    code, listed, _ = run_cli(capsys, "data", "list", "--workdir", str(root))
    assert code == 0
    assert [(d["name"], d["version"]) for d in listed] == [
        ("plain", "1"),
        ("plain", "2"),
        ("remote", "1"),
    ]
    _, latest, _ = run_cli(capsys, "data", "show", "-n", "plain", "--label", "latest",
                           "--workdir", str(root))  # fmt: skip
    assert latest["version"] == "2"
    _, one, _ = run_cli(capsys, "data", "show", "-n", "plain", "-v", "1", "--workdir", str(root))
    assert one["version"] == "1" and Path(one["path"]).name == "rows"
    code, _, err = run_cli(capsys, "data", "show", "-n", "plain", "-v", "9", "--workdir", str(root))
    assert code == 2 and err.strip() == "error: data asset plain:9 is not registered locally"
    code, _, err = run_cli(capsys, "component", "show", "-n", "none", "--workdir", str(root))
    assert code == 2 and "component none has no version registered locally" in err


def test_a_data_asset_over_a_url_is_refused_when_a_job_reads_it(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = workspace / "aml"
    url = "wasbs://datasets@azuremlexamples.blob.core.windows.net/"
    create(capsys, root, "data", "--name", "remote", "--version", "1", "--path", url)
    create(capsys, root, "component", "-f", str(workspace / "src/components/hello/component.yml"))
    executor = LocalExecutor(root)
    with pytest.raises(BadInputError) as err:
        executor.submit(workspace / "src" / "pipeline.yml")
    assert str(err.value).startswith(
        "node 'pinned' input 'rows' refers to data asset fixture_rows:1 (azureml:fixture_rows:1), "
        "which is not registered in the local workspace (python -m local.aml data create"
    )
    create(capsys, root, "data", "-f", str(workspace / "src" / "data" / "data.yml"))
    with pytest.raises(BadInputError) as err:
        executor.submit(workspace / "src" / "pipeline.yml", {"rows": "azureml:remote:1"})
    assert str(err.value).startswith(
        f"pipeline input 'rows' refers to data asset remote:1 (azureml:remote:1), registered over "
        f"{url}, a wasbs:// location the local executor does not download"
    )


def test_a_data_asset_over_a_datastore_path_reads_the_local_datastore(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = workspace / "aml"
    uri = "azureml://datastores/workspaceblobstore/paths/rows/"
    create(capsys, root, "data", "--name", "stored", "--path", uri)
    create(capsys, root, "data", "-f", str(workspace / "src" / "data" / "data.yml"))
    create(capsys, root, "component", "-f", str(workspace / "src/components/hello/component.yml"))
    shutil.copytree(workspace / "src" / "data" / "rows", root / "datastores" / "workspaceblobstore"
                    / "rows")  # fmt: skip
    executor = LocalExecutor(root, step_timeout=300)
    spec, _ = executor.load(workspace / "src" / "pipeline.yml", {"rows": "azureml:stored@latest"})
    assert spec.inputs["rows"].path == (root / "datastores" / "workspaceblobstore" / "rows")


def test_environments_are_stored_with_their_conda_file_inlined(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = workspace / "aml"
    env_dir = workspace / "src" / "environment"
    created = create(capsys, root, "environment", "--file", str(env_dir / "env.yml"))
    assert created["version"] == "1"
    definition = assets.environment_definition(root, "fixture_env")
    assert definition == {
        "name": "fixture_env",
        "version": "1",
        "image": "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest",
        "conda_file": {
            "name": "fixture",
            "channels": ["conda-forge"],
            "dependencies": ["python=3.11", "numpy=1.26", "pip", {"pip": ["mlflow-skinny"]}],
        },
        "description": "an environment with a conda file",
    }
    assert assets.environment_definition(root, "fixture_env", version="1") == definition
    assert assets.environment_definition(root, "fixture_env", label="latest") == definition

    # Without a version: the latest one when nothing changed, else the next one.
    flags = ["--name", "cli_env", "--image", "python:3.11-slim"]
    assert create(capsys, root, "environment", *flags)["version"] == "1"
    assert create(capsys, root, "environment", *flags)["version"] == "1"
    conda = str(env_dir / "conda.yml")
    assert create(capsys, root, "environment", *flags, "--conda-file", conda)["version"] == "2"
    latest = assets.environment_definition(root, "cli_env")
    assert latest["version"] == "2" and latest["conda_file"]["name"] == "fixture"
    assert assets.environment_definition(root, "cli_env", "1")["conda_file"] is None

    # A build context is uploaded like data.
    context = workspace / "src" / "environment"
    built = create(capsys, root, "environment", "-n", "built", "-b", str(context))
    assert Path(built["build"]["path"]).is_dir()
    assert built["build"]["dockerfile_path"] == "Dockerfile"

    with pytest.raises(NotFoundError, match="environment nowhere has no version registered"):
        assets.environment_definition(root, "nowhere")
    with pytest.raises(NotFoundError, match=r"environment fixture_env:9 is not registered"):
        assets.environment_definition(root, "fixture_env", "9")
    with pytest.raises(BadInputError, match="label 'prod' does not exist"):
        assets.environment_definition(root, "fixture_env", label="prod")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["component", "create"], "component create needs --file"),
        (["component", "create", "-f", "nowhere.yml"], "component file"),
        (["data", "create", "--name", "x"], "a data asset needs a path"),
        (["data", "create", "--name", "x", "--path", "./nope"], "does not exist"),
        (["data", "create", "-n", "x", "-p", "s3://b/k", "-t", "table"], "data type 'table'"),
        (["data", "create", "-n", "../x", "-p", "s3://b/k"], "data asset name '../x'"),
        (["environment", "create", "--name", "e"], "needs an image or a build context"),
        (["environment", "create", "--image", "i"], "an environment needs a name"),
        (["data", "create", "-n", "x", "-p", "s3://b", "--set", "novalue"], "KEY=VALUE"),
    ],
)
def test_bad_creates_are_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, _, err = run_cli(capsys, *args, "--workdir", str(tmp_path / "aml"))
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_a_component_that_azure_ml_would_refuse_is_refused(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    component = workspace / "src" / "components" / "hello" / "component.yml"
    text = component.read_text().replace("type: uri_folder\n", "type: no_such_type\n", 1)
    component.write_text(text)
    code, _, err = run_cli(capsys, "component", "create", "-f", str(component),
                           "--workdir", str(workspace / "aml"))  # fmt: skip
    assert code == 2
    assert err.startswith("error: component.yml: ")
    assert assets.list_versions(workspace / "aml", "components") == []


@pytest.mark.parametrize(
    ("reference", "wanted"),
    [
        ("azureml:train:2", ("train", "2")),
        ("azureml:train@latest", ("train", "latest")),
        ("azureml:train", ("train", "latest")),
        (
            "azureml://subscriptions/s/resourceGroups/r/workspaces/w/components/train/versions/2",
            ("train", "2"),
        ),
        (
            "azureml://locations/eastus/workspaces/0a1b/components/train/labels/latest",
            ("train", "latest"),
        ),
    ],
)
def test_component_references_are_read_in_every_form_azure_ml_takes(
    reference: str, wanted: tuple[str, str]
) -> None:
    from local.aml.locations import resolve_component

    asked: list[tuple[str, str]] = []

    def resolver(name: str, version: str) -> Path:
        asked.append((name, version))
        return Path("/x.yml")

    assert resolve_component(reference, what="node 'n'", resolver=resolver) == Path("/x.yml")
    assert asked == [wanted]


def test_registry_components_are_refused_naming_the_registry() -> None:
    from local.aml.locations import resolve_component

    with pytest.raises(BadInputError, match="from registry 'azureml', which the local executor"):
        resolve_component(
            "azureml://registries/azureml/components/train/labels/latest",
            what="node 'n'",
            resolver=lambda name, version: Path("/x.yml"),
        )


def test_prepare_builds_the_environments_of_registered_components(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = workspace / "aml"
    create(capsys, root, "component", "-f", str(workspace / "src/components/hello/component.yml"))
    create(capsys, root, "data", "-f", str(workspace / "src" / "data" / "data.yml"))
    environments = LocalExecutor(root).declared_environments(workspace / "src" / "pipeline.yml")
    assert set(environments) == {"latest", "pinned"}
    assert environments["latest"].key == environments["pinned"].key
