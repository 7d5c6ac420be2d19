"""Imports point downward only: the layer rules of the architecture, checked on the source.

Every ``import`` counts, including the lazy ones inside functions, because a lazy import is
still a dependency (it only moves the cost). The one sanctioned upward edge is the composition
root choosing the local runtime's adapters, and that import must stay lazy so the deployed app,
which ships without ``local/``, never executes it.

``local/`` has two floors. ``local/aml`` (with ``local/processes.py``) is the local Azure ML
workspace the app uses through its adapters: the executor, jobs, registry, data assets; the
composition root may reach it, and it never reaches the app. ``local/hosting`` runs the app:
the Functions host, the Durable engine, Azurite, SMTP and the demo; it may import the app and
the floor below, and nothing in the app or the floor below imports it.
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
    "composition": {"adapters", "local.aml"},
    "function_app": {"triggers", "orchestrators"},
    # The lower floor of the local runtime: the local Azure ML workspace behind the adapters.
    "local.aml": {"adapters", "local.processes"},
    "local.processes": set(),
    # The upper floor: hosts the app, so it may import all of it and the floor below.
    "local.hosting": {
        "adapters",
        "composition",
        "conditioning",
        "dashboard",
        "function_app",
        "local.aml",
        "local.processes",
        "orchestrators",
        "triggers",
    },
    "local": {"adapters", "local.hosting", "local.aml", "local.processes"},
}
# Command-line entry points run on a developer's machine, never in the app: they may use the
# local runtime (the deployment package leaves them out).
ENTRY_POINTS = {"dashboard/__main__.py": {"local.hosting", "local.aml"}}
PROJECT = {"adapters", "conditioning", "pipelines", "dashboard", "orchestrators", "triggers"}
PROJECT |= {"composition", "function_app", "local", "benchmarks", "tests"}
# (importer, imported) edges allowed only inside a function body, never at module level.
LAZY_ONLY = {("composition", "local.aml")}
# Sub-packages that are layers of their own; everything else is named by its top package.
FLOORS = ("local.aml", "local.hosting", "local.processes")


def _layer(module: str) -> str:
    """The layer a dotted module name belongs to."""
    for floor in FLOORS:
        if module == floor or module.startswith(floor + "."):
            return floor
    return module.split(".", maxsplit=1)[0]


def _package(path: Path) -> str:
    return _layer(".".join(path.relative_to(REPO).with_suffix("").parts))


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
            if name.split(".")[0] in PROJECT:
                found.append((_layer(name), id(node) in top_level))
    return found


def _sources() -> list[Path]:
    files = [REPO / "function_app.py", REPO / "composition.py", REPO / "local" / "processes.py"]
    for package in ALLOWED:
        folder = REPO.joinpath(*package.split("."))
        if folder.is_dir():
            found = sorted(folder.rglob("*.py"))
            if package == "local":  # the floors are checked under their own names
                found = [p for p in folder.glob("*.py") if p.name != "processes.py"]
            files.extend(found)
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
    assert _imports(tree) == [("local.aml", True), ("triggers", False)]


def test_the_floors_are_told_apart() -> None:
    assert _layer("local.hosting.durable.engine") == "local.hosting"
    assert _layer("local.aml.executor") == "local.aml"
    assert _layer("local") == "local"
    assert _package(REPO / "local" / "aml" / "jobs.py") == "local.aml"
    assert "local.hosting" not in ALLOWED["local.aml"]
    assert "local.hosting" not in ALLOWED["composition"]


def test_every_local_module_is_on_a_floor() -> None:
    checked = {p.resolve() for p in _sources()}
    missing = [p for p in (REPO / "local").rglob("*.py") if p.resolve() not in checked]
    assert not missing, f"modules under local/ no layer rule covers: {missing}"
