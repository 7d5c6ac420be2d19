"""Imports point downward only: the layer rules of the architecture, checked on the source.

Every ``import`` counts, including the lazy ones inside functions, because a lazy import is
still a dependency (it only moves the cost). The one sanctioned upward edge is the composition
root choosing the local runtime's adapters, and that import must stay lazy so the deployed app,
which ships without ``local/``, never executes it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# package -> the project packages it may import (itself always allowed).
ALLOWED: dict[str, set[str]] = {
    "adapters": set(),
    "conditioning": {"adapters"},
    "pipelines": set(),
    # The dashboard is the app's read model: activities and triggers fold what they see
    # into its summary, and a function renders its pages.
    "dashboard": {"adapters", "composition"},
    "orchestrators": {"adapters", "conditioning", "composition", "dashboard"},
    "triggers": {"adapters", "conditioning", "orchestrators", "composition", "dashboard"},
    "composition": {"adapters", "local"},
    "function_app": {"triggers", "orchestrators"},
}
# Command-line entry points run on a developer's machine, never in the app: they may use the
# local runtime (the deployment package leaves them out).
ENTRY_POINTS = {"dashboard/__main__.py": {"local"}}
PROJECT = {*ALLOWED, "local", "benchmarks", "tests"}
# (importer, imported) edges allowed only inside a function body, never at module level.
LAZY_ONLY = {("composition", "local")}


def _package(path: Path) -> str:
    return path.relative_to(REPO).parts[0].removesuffix(".py")


def _imports(tree: ast.Module) -> list[tuple[str, bool]]:
    """(top-level project package, imported at module level?) for every import in ``tree``."""
    top_level = {id(node) for node in tree.body}
    found: list[tuple[str, bool]] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            top = name.split(".")[0]
            if top in PROJECT:
                found.append((top, id(node) in top_level))
    return found


def _sources() -> list[Path]:
    files = [REPO / "function_app.py", REPO / "composition.py"]
    for package in ALLOWED:
        folder = REPO / package
        if folder.is_dir():
            files.extend(sorted(folder.rglob("*.py")))
    return files


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(REPO)))
def test_imports_point_downward(path: Path) -> None:
    importer = _package(path)
    extra = ENTRY_POINTS.get(path.relative_to(REPO).as_posix(), set())
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    wrong = []
    for imported, at_module_level in _imports(tree):
        if imported == importer:
            continue
        if imported not in ALLOWED[importer] | extra:
            wrong.append(f"{importer} imports {imported}")
        elif at_module_level and (importer, imported) in LAZY_ONLY:
            wrong.append(f"{importer} imports {imported} at module level (must be lazy)")
    assert not wrong, f"{path.relative_to(REPO)}: " + "; ".join(sorted(set(wrong)))


def test_the_rule_catches_an_upward_import(tmp_path: Path) -> None:
    tree = ast.parse("import os\nfrom local.aml import jobs\n\ndef f():\n    import triggers\n")
    assert _imports(tree) == [("local", True), ("triggers", False)]
