"""Every Bicep file parses with the tree-sitter Bicep grammar (the compiler's rules on top of
the grammar are in test_bicep_checks.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.infra.bicep import INFRA, bicep_files, syntax_problems


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


def test_dev_and_prod_parameter_files_exist() -> None:
    assert (INFRA / "main.dev.parameters.json").is_file()
    assert (INFRA / "main.prod.parameters.json").is_file()
