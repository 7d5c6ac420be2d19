"""What a component's ``environment`` means locally: conda files, curated and registered
environments, refusals, and the machine's pip settings. Pure: nothing is built here."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from adapters.errors import BadInputError, NotFoundError
from local.aml import environments
from local.aml.environments import (
    EnvironmentSpec,
    StepEnvironmentError,
    conda_requirements,
    machine_index_settings,
    resolve_environment,
)

CONDA: dict[str, Any] = {
    "name": "demo",
    "channels": ["conda-forge"],
    "dependencies": [
        "python=3.8.13",
        "pip",
        "pytorch=2.1",
        "numpy=1.26.4",
        "scipy",
        "cudatoolkit=11.8",
        "conda-forge::pandas>=2,<3",
        {"pip": ["--extra-index-url https://example.invalid/simple", "pyjokes==0.6.0"]},
    ],
}


def test_a_conda_file_becomes_pip_requirements() -> None:
    spec = conda_requirements("demo", "conda.yml", CONDA)
    assert spec.requirements == (
        "torch==2.1.*",
        "numpy==1.26.4",
        "scipy",
        "pandas>=2,<3",
        "pyjokes==0.6.0",
    )
    assert spec.extra_index_urls == ("https://example.invalid/simple",)
    assert spec.python == "3.8.13"
    notes = " ".join(spec.notes)
    assert "'pytorch' installed as 'torch'" in notes
    assert "'cudatoolkit' has no PyPI equivalent" in notes
    assert "conda channels (conda-forge)" in notes


def test_the_declared_python_is_a_warning_not_a_refusal() -> None:
    old = conda_requirements("demo", "conda.yml", CONDA)
    assert old.python_warning() is not None and "asks for Python 3.8.13" in old.python_warning()
    same = conda_requirements("x", "c.yml", {"dependencies": ["python=3.11", "pip"]})
    assert same.python_warning() is None
    ranged = conda_requirements("x", "c.yml", {"dependencies": ["python>=3.9"]})
    assert ranged.python_warning() is None


def test_equal_declarations_share_one_build_whatever_they_are_called() -> None:
    one = conda_requirements("a", "a/conda.yml", {"dependencies": [{"pip": ["pandas==2.3.3"]}]})
    two = conda_requirements("b", "b/conda.yml", {"dependencies": [{"pip": ["pandas==2.3.3"]}]})
    other = conda_requirements("a", "a/conda.yml", {"dependencies": [{"pip": ["pandas==2.3.2"]}]})
    assert one.key == two.key
    assert one.key != other.key


@pytest.mark.parametrize(
    ("conda", "message"),
    [
        ({"dependencies": [{"pip": ["-e ./local/package"]}]}, "pip option '-e' is not supported"),
        ({"dependencies": "numpy"}, "'dependencies' must be a list"),
        ({"dependencies": [{"pip": "numpy"}]}, "the 'pip' entry must be a list"),
        (["numpy"], "a conda file must be a mapping"),
    ],
)
def test_conda_files_that_cannot_be_built_are_refused_in_one_line(conda: Any, message: str) -> None:
    with pytest.raises(StepEnvironmentError, match=message) as caught:
        conda_requirements("x", "conda.yml", conda)
    assert isinstance(caught.value, BadInputError)
    assert "\n" not in str(caught.value)


def _entity(**fields: Any) -> Any:
    return SimpleNamespace(name=fields.pop("name", "CliV2AnonymousEnvironment"), **fields)


def test_an_inline_environment_takes_the_conda_file_name(tmp_path: Path) -> None:
    (tmp_path / "conda.yml").write_text("name: forecast\ndependencies:\n  - pip:\n    - six\n")
    spec = resolve_environment(
        _entity(image="mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04", conda_file="conda.yml"),
        base_dir=tmp_path,
        where="node 'train'",
    )
    assert spec.name == "forecast"
    assert spec.requirements == ("six",)
    assert spec.source == str(tmp_path / "conda.yml")


def test_an_image_without_a_conda_file_is_a_bare_environment() -> None:
    spec = resolve_environment(
        _entity(image="mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest"),
        base_dir=Path(),
    )
    assert spec.requirements == ()
    assert "bare Python" in spec.notes[0]


@pytest.mark.parametrize(
    "reference",
    [
        "azureml://registries/azureml/environments/sklearn-1.5/labels/latest",
        "azureml://registries/azureml/environments/sklearn-1.5/versions/38",
        "azureml:AzureML-sklearn-1.5@latest",
    ],
)
def test_curated_environments_come_from_their_public_package_sets(reference: str) -> None:
    spec = resolve_environment(reference, base_dir=Path())
    assert spec.name == "sklearn-1.5"
    assert "scikit-learn~=1.5.0" in spec.requirements
    assert any(r.startswith("azureml-mlflow") for r in spec.requirements)
    # Every pin moved for this machine's Python is said, never silent.
    assert any("numpy ~=1.22.0 → ~=1.23.5" in note for note in spec.notes)
    assert spec.python == "3.10"
    # The MLflow the image resolved when its definition last changed, said in the notes.
    assert {"mlflow-skinny==3.13.0", "azureml-mlflow==1.62.0.post5"} <= set(spec.requirements)
    assert any("mlflow-skinny (azureml-mlflow's) → ==3.13.0" in note for note in spec.notes)


def test_a_curated_image_resolves_like_its_registry_name() -> None:
    spec = resolve_environment(
        _entity(image="mcr.microsoft.com/azureml/curated/lightgbm-3.3:latest"), base_dir=Path()
    )
    assert spec.name == "lightgbm-3.3"


@pytest.mark.parametrize(
    ("declared", "message"),
    [
        (
            "azureml://registries/azureml/environments/acpt-pytorch-2.8-cuda12.6/labels/latest",
            "GPU environment",
        ),
        ("azureml://registries/azureml/environments/unheard-of/labels/latest", "not one the"),
        ("azureml:my-env:3", "not registered in the local workspace"),
        ("https://example.org/env", "not understood"),
        (
            _entity(name="gpu", image="mcr.microsoft.com/azureml/openmpi4.1.0-cuda11.8-cudnn8"),
            "needs CUDA",
        ),
        (_entity(name="docker", build=SimpleNamespace(path="./context")), "Docker context"),
    ],
)
def test_what_cannot_run_here_is_refused_naming_the_node(declared: Any, message: str) -> None:
    with pytest.raises(StepEnvironmentError, match=message) as caught:
        resolve_environment(declared, base_dir=Path(), where="node 'fit'")
    assert str(caught.value).startswith("node 'fit': ")


def test_registered_environments_come_from_the_local_workspace() -> None:
    asked: list[tuple[str, str | None, str | None]] = []

    def lookup(name: str, version: str | None, label: str | None) -> dict[str, Any]:
        asked.append((name, version, label))
        if name != "team-env":
            raise NotFoundError(name)
        return {"name": "team-env", "version": "2", "conda_file": {"dependencies": ["numpy"]}}

    spec = resolve_environment("azureml:team-env@latest", base_dir=Path(), lookup=lookup)
    assert spec.requirements == ("numpy",)
    assert resolve_environment("azureml:team-env:2", base_dir=Path(), lookup=lookup).key == (
        spec.key
    )
    assert asked == [("team-env", None, "latest"), ("team-env", "2", None)]
    with pytest.raises(StepEnvironmentError, match="environment create"):
        resolve_environment("azureml:other@latest", base_dir=Path(), lookup=lookup)


def test_the_machines_pip_settings_are_honoured_and_missing_places_dropped(
    tmp_path: Path,
) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    settings = machine_index_settings(
        {
            "PIP_INDEX_URL": "https://mirror.example/simple",
            "PIP_EXTRA_INDEX_URL": f"file://{tmp_path}/missing {wheels.as_uri()}",
            "PIP_FIND_LINKS": f"{wheels} {tmp_path / 'gone'}",
            "PIP_CONSTRAINT": str(tmp_path / "none.txt"),
        }
    )
    assert settings.index_url == "https://mirror.example/simple"
    assert settings.extra_index_urls == (wheels.as_uri(),)
    assert settings.find_links == (str(wheels),)
    assert settings.constraints == ()


def test_a_spec_with_nothing_declared_is_empty() -> None:
    spec = resolve_environment(None, base_dir=Path(), where="node 'x'")
    assert spec == EnvironmentSpec(name="(none)", source="node 'x' declares no environment")


def test_a_failed_build_names_the_package_the_file_asked_for() -> None:
    # uv 0.9's words when an old sdist needs a build dependency with no build for this Python
    # (the iris-batch-prediction example of Azure/azureml-examples asks for scikit-learn 0.23.2).
    lines = [
        "building environment prs-env (10 requirement(s), uv)",
        "error: Failed to download and build `scikit-learn==0.23.2`",
        "  cause: Failed to install requirements from `build-system.requires`",
        "  cause: Failed to build `numpy==1.17.3`",
        "NameError: name 'CCompiler' is not defined. Did you mean: 'ccompiler'?",
    ]
    spec = EnvironmentSpec(name="prs-env", source="conda.yml")
    message = environments._failure(spec, lines)
    assert message.startswith(
        "environment prs-env (conda.yml): cannot install 'scikit-learn==0.23.2' (no wheel for "
        f"Python {sys.version_info.major}.{sys.version_info.minor}; building it from source failed)"
    )
    assert "numpy==1.17.3" in message
    # A package that is simply not there is not said to have been built.
    missing = ["error: Because nothing-here was not found in the package registry"]
    assert "from source" not in environments._failure(spec, missing)
