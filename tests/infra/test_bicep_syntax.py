"""Every Bicep file parses with the tree-sitter Bicep grammar, and the files fit together."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.infra.bicep import INFRA, bicep_files, load, syntax_problems


def test_there_is_infrastructure_to_check() -> None:
    names = {p.relative_to(INFRA).as_posix() for p in bicep_files()}
    assert {"main.bicep", "event-subscriptions.bicep", "modules/rbac.bicep"} <= names


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: p.relative_to(INFRA).as_posix())
def test_bicep_file_parses_without_errors(path: Path) -> None:
    assert syntax_problems(path) == []


def test_syntax_check_reports_a_broken_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.bicep"
    broken.write_text("resource sa 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n  name: \n")
    assert syntax_problems(broken)


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: p.relative_to(INFRA).as_posix())
def test_module_calls_match_module_parameters(path: Path) -> None:
    """Without a Bicep compiler here, this is what `bicep build` would catch first."""
    problems: list[str] = []
    for module in load(path).declarations:
        if module.kind != "module":
            continue
        target = (path.parent / module.target).resolve()
        if not target.is_file():
            problems.append(f"{module.symbol}: {module.target} does not exist")
            continue
        declared = load(target).params
        passed = set(module.body.get("params", {}))
        unknown = passed - set(declared)
        required = {name for name, has_default in declared.items() if not has_default}
        if unknown:
            problems.append(f"{module.symbol}: unknown params {sorted(unknown)}")
        if required - passed:
            problems.append(f"{module.symbol}: missing params {sorted(required - passed)}")
    assert problems == []


@pytest.mark.parametrize("path", sorted(INFRA.glob("main.*.parameters.json")), ids=lambda p: p.name)
def test_parameter_file_sets_every_required_parameter(path: Path) -> None:
    main = load(INFRA / "main.bicep")
    values = json.loads(path.read_text())["parameters"]
    required = {name for name, has_default in main.params.items() if not has_default}
    assert set(values) <= set(main.params), "parameters main.bicep does not declare"
    assert required <= set(values)


def test_dev_and_prod_parameter_files_exist() -> None:
    assert (INFRA / "main.dev.parameters.json").is_file()
    assert (INFRA / "main.prod.parameters.json").is_file()
