"""Every pipeline component's environment holds what its code imports.

Azure ML builds exactly the environment a component declares, so a package its code imports
and its conda file does not list fails every run in Azure. MLflow is the sharpest case: Azure
ML hands jobs an ``azureml://`` tracking URI, which mlflow resolves only with the
``azureml-mlflow`` plugin. The imports are read from the source with ``ast`` — module-level and
lazy ones alike, following the component's own modules — starting from the module or script
its command (or parallel ``entry_script``) runs.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
COMPONENTS = sorted((REPO / "pipelines" / "components").glob("*/component.yml"))
# Import names whose distribution is called differently on PyPI.
DISTRIBUTION = {"sklearn": "scikit-learn", "yaml": "PyYAML", "mltable": "mltable"}


def _requirements(conda: Path) -> set[str]:
    doc = yaml.safe_load(conda.read_text(encoding="utf-8"))
    names: set[str] = set()
    for dep in doc["dependencies"]:
        lines = dep["pip"] if isinstance(dep, dict) else [dep]
        for line in lines:
            if line.startswith("-"):
                continue
            names.add(re.split(r"[=<>!~ \[]", line, maxsplit=1)[0].lower())
    return names


def _entry(component: dict[str, object], code: Path) -> Path:
    task = component.get("task")
    if isinstance(task, dict) and task.get("entry_script"):
        return code / str(task["entry_script"])
    command = str(component["command"])
    module = re.search(r"python -m ([\w.]+)", command)
    if module:
        return code.joinpath(*module.group(1).split(".")).with_suffix(".py")
    script = re.search(r"python ([\w./]+\.py)", command)
    assert script, f"cannot tell what {command!r} runs"
    return code / script.group(1)


def _imports(entry: Path, code: Path) -> set[str]:
    """Top-level names of third-party modules the code reachable from ``entry`` imports."""
    local = {p.stem for p in code.glob("*.py")} | {p.name for p in code.iterdir() if p.is_dir()}
    seen: set[Path] = set()
    found: set[str] = set()
    queue = [entry]
    while queue:
        path = queue.pop()
        if path in seen or not path.is_file():
            continue
        seen.add(path)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            modules: list[str] = []
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: a sibling module of the same package
                    base = path.parent
                    for _ in range(node.level - 1):
                        base = base.parent
                    target = base.joinpath(*(node.module or "").split(".")) if node.module else base
                    queue += [target.with_suffix(".py"), target / "__init__.py"]
                    queue += [base / f"{alias.name}.py" for alias in node.names]
                    continue
                modules = [node.module or ""]
            for module in modules:
                top = module.split(".")[0]
                if top in local:
                    target = code.joinpath(*module.split("."))
                    queue += [target.with_suffix(".py"), target / "__init__.py"]
                    queue += [p / "__init__.py" for p in target.parents if p != code]
                elif top and top not in sys.stdlib_module_names and top != "__future__":
                    found.add(top)
    return found


@pytest.mark.parametrize("spec", COMPONENTS, ids=lambda p: p.parent.name)
def test_the_environment_holds_every_package_the_code_imports(spec: Path) -> None:
    component = yaml.safe_load(spec.read_text(encoding="utf-8"))
    task = component.get("task") if isinstance(component.get("task"), dict) else {}
    environment = component.get("environment") or task.get("environment")
    code = (spec.parent / str(component.get("code") or task.get("code"))).resolve()
    conda = spec.parent / environment["conda_file"]
    have = _requirements(conda)
    needed = {DISTRIBUTION.get(m, m).lower() for m in _imports(_entry(component, code), code)}
    assert needed, f"{spec}: found no imports at all; the scan is broken"
    missing = sorted(needed - have)
    assert not missing, f"{conda.relative_to(REPO)} lacks {missing}, which the code imports"
    if "mlflow" in needed:
        assert "azureml-mlflow" in have, (
            f"{conda.relative_to(REPO)}: the code uses MLflow, and Azure ML's azureml:// "
            "tracking URI needs azureml-mlflow"
        )
    if component.get("type") == "parallel" and "mltable" in str(component.get("inputs")):
        assert "mltable" in have, "Azure ML's parallel runner reads mltable inputs with mltable"


def test_the_scan_sees_a_missing_package(tmp_path: Path) -> None:
    code = tmp_path / "src"
    (code / "pkg").mkdir(parents=True)
    (code / "pkg" / "__init__.py").write_text("")
    (code / "pkg" / "step.py").write_text("from .helpers import go\n")
    (code / "pkg" / "helpers.py").write_text("import json\n\ndef go():\n    import torch\n")
    assert _imports(code / "pkg" / "step.py", code) == {"torch"}


@pytest.mark.parametrize(
    "pipeline", sorted((REPO / "pipelines").glob("*.yml")), ids=lambda p: p.name
)
def test_every_pipeline_names_its_environments_without_any_data(
    pipeline: Path, tmp_path: Path
) -> None:
    """``make envs`` builds them on a fresh clone, before any input data exists."""
    from local.aml import LocalExecutor

    declared = LocalExecutor(tmp_path / "aml").declared_environments(pipeline)
    assert declared
    for step, env in declared.items():
        assert any(r.startswith("azureml-mlflow==") for r in env.requirements), step
        assert env.source.endswith("conda.yml"), (step, env.source)
