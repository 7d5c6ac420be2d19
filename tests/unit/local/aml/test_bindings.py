from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from adapters.errors import BadInputError
from local.aml.bindings import (
    UnresolvedBindingError,
    command_argv,
    needs_shell,
    output_paths,
    render_command,
    resolve_step_inputs,
    step_job_name,
    topological_order,
)
from local.aml.locations import Datastores
from local.aml.spec import InputDef, PipelineInput, StepSpec


def step(name: str, inputs: dict[str, object], defs: dict[str, InputDef] | None = None) -> StepSpec:
    return StepSpec(
        name=name,
        command="python x.py",
        code_dir=Path(),
        inputs=dict(inputs),
        outputs={},
        input_defs=defs or {k: InputDef("uri_folder") for k in inputs},
        output_types={"out": "uri_folder", "file": "uri_file"},
    )


def test_parent_inputs_step_outputs_literals_and_defaults_resolve(tmp_path: Path) -> None:
    spec = step(
        "train",
        {"data": "${{parent.jobs.prep.outputs.out}}", "k": "${{parent.inputs.k}}", "lit": 7},
        {
            "data": InputDef("uri_folder"),
            "k": InputDef("integer"),
            "lit": InputDef("integer"),
            "alpha": InputDef("number", default=0.5),
            "maybe": InputDef("string", optional=True),
        },
    )
    values = resolve_step_inputs(
        spec,
        tmp_path,
        {"k": PipelineInput(type="integer", value=3)},
        {"prep": {"out": tmp_path / "prep" / "out"}},
    )
    assert values == {
        "data": tmp_path / "prep" / "out",
        "k": 3,
        "lit": 7,
        "alpha": 0.5,
        "maybe": None,
    }


@pytest.mark.parametrize(
    "binding",
    [
        "${{parent.inputs.nope}}",
        "${{parent.jobs.ghost.outputs.out}}",
        "${{parent.jobs.prep.outputs.x}}",
    ],
)
def test_bindings_to_unknown_things_are_errors(binding: str, tmp_path: Path) -> None:
    spec = step("train", {"data": binding})
    with pytest.raises(UnresolvedBindingError, match="train"):
        resolve_step_inputs(spec, tmp_path, {}, {"prep": {"out": tmp_path}})


def test_required_input_without_value_is_an_error(tmp_path: Path) -> None:
    spec = step("train", {}, {"data": InputDef("uri_folder")})
    with pytest.raises(UnresolvedBindingError, match="required input 'data'"):
        resolve_step_inputs(spec, tmp_path, {}, {})


def test_command_fills_placeholders_and_drops_optional_parts() -> None:
    command = "python a.py --x ${{inputs.x}} $[[--opt ${{inputs.opt}}]] --out ${{outputs.o}}"
    rendered = render_command(command, {"x": True, "opt": None}, {"o": Path("/out")})
    assert rendered.split() == ["python", "a.py", "--x", "True", "--out", "/out"]
    kept = render_command(command, {"x": 1, "opt": "v"}, {"o": Path("/out")})
    assert "--opt v" in kept


def test_command_with_unknown_placeholder_is_an_error() -> None:
    with pytest.raises(UnresolvedBindingError, match=r"inputs\.y"):
        render_command("python a.py ${{inputs.y}}", {}, {})


def test_outputs_with_no_path_go_where_azure_ml_puts_them(tmp_path: Path) -> None:
    # azureml://datastores/<default datastore>/paths/azureml/<step job>/<output>/; a uri_file
    # output is a file inside that folder.
    stores = Datastores(tmp_path / "datastores")
    paths = output_paths(step("s", {}), datastores=stores, job_name="j", step_job="j_s")
    base = tmp_path / "datastores" / "workspaceblobstore" / "azureml" / "j_s"
    assert paths["out"] == base / "out"
    assert paths["file"] == base / "file" / "file"
    elsewhere = output_paths(
        step("s", {}), datastores=stores, job_name="j", step_job="j_s", default_datastore="other"
    )
    assert elsewhere["out"] == tmp_path / "datastores" / "other" / "azureml" / "j_s" / "out"


def test_bound_outputs_keep_their_own_location(tmp_path: Path) -> None:
    stores = Datastores(tmp_path / "datastores")
    spec = replace(
        step("s", {}),
        outputs={
            "out": {"path": "azureml://datastores/store/paths/runs/${{name}}/${{output_name}}"},
            "file": "${{parent.outputs.p}}",
        },
    )
    locations = {"p": "azureml://datastores/workspaceblobstore/paths/fixed/f.csv"}
    paths = output_paths(
        spec, datastores=stores, job_name="j", step_job="j_s", pipeline_locations=locations
    )
    assert paths["out"] == tmp_path / "datastores" / "store" / "runs" / "j" / "out"
    assert paths["file"] == tmp_path / "datastores" / "workspaceblobstore" / "fixed" / "f.csv"


def test_a_step_job_name_is_the_pipeline_job_and_the_node_path() -> None:
    assert step_job_name("calm_job_1", "train") == "calm_job_1_train"
    assert step_job_name("calm_job_1", "outer/inner.x") == "calm_job_1_outer_inner_x"


def test_order_follows_dependencies_and_rejects_cycles() -> None:
    steps = {
        "c": step("c", {"a": "${{parent.jobs.b.outputs.out}}"}),
        "b": step("b", {"a": {"type": "uri_folder", "path": "${{parent.jobs.a.outputs.out}}"}}),
        "a": step("a", {}),
    }
    assert topological_order(steps) == ["a", "b", "c"]
    cyclic = {
        "a": step("a", {"x": "${{parent.jobs.b.outputs.out}}"}),
        "b": step("b", {"x": "${{parent.jobs.a.outputs.out}}"}),
    }
    with pytest.raises(BadInputError, match="cycle"):
        topological_order(cyclic)


@pytest.mark.parametrize(
    "value", ["plain", "with space", "$HOME", "a&b", "it's", 'say "hi"', "x; rm -rf /", "`id`", ""]
)
def test_values_are_one_literal_word_bare_and_inside_quotes(value: str) -> None:
    bare = render_command("python a.py ${{inputs.v}}", {"v": value}, {})
    assert not needs_shell(bare)
    assert command_argv(bare) == ["python", "a.py", value]
    for template in ("printf '%s\\n' \"v=${{inputs.v}}\"", "printf '%s\\n' 'v=${{inputs.v}}'"):
        rendered = render_command(template, {"v": value}, {})
        run = subprocess.run(command_argv(rendered), capture_output=True, text=True, check=True)
        assert run.stdout == f"v={value}\n"


@pytest.mark.parametrize(
    ("command", "shell"),
    [
        ("python -m step --x 1", False),
        ("python a.py 'quoted; not a list'", False),
        ("python a.py && echo done", True),
        ("python a.py > out.txt", True),
        ("echo $HOME", True),
        ('echo "$HOME"', True),
        ("ls *.csv", True),
        ("echo 'literal $HOME'", False),
    ],
)
def test_only_shell_syntax_written_by_the_author_needs_bash(command: str, shell: bool) -> None:
    assert needs_shell(command) is shell
    assert (command_argv(command)[:2] == ["/bin/bash", "-c"]) is shell
