"""Every file the function app reads at run time, each with the reason it is read.

The deployment package must hold exactly these (tests/infra/test_package.py). They are found
from the code rather than listed by hand, so a new module, mapping or pipeline component is
covered the day it is added:

- the files the Functions host and the remote build read (``RUNTIME_FILES``);
- every module ``function_app`` imports, directly or not, at module level or lazily inside a
  function (read from the source with ``ast``), with the ``__init__.py`` of its packages;
- the data folders app modules load from beside their code (``DATA_FOLDERS``);
- every pipeline the activities submit (``orchestrators.activities.PIPELINES``), each
  component it names, each component's conda file and its whole ``code`` folder: Azure ML job
  submission reads them from the app's files and uploads them.

``HOST_PACKAGES`` are not followed: the local runtime hosts the app on one machine, as Azure
Functions does in the cloud, and is never part of the app.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

HOST_PACKAGES = frozenset({"local"})
RUNTIME_FILES = {
    "function_app.py": "the Functions host indexes the app from it",
    "host.json": "the Functions host's configuration (extensions, timeout, logging)",
    "requirements.txt": "the remote build (Flex Consumption) installs the app's dependencies",
}
# Folder -> (module that reads it, the name that module finds it by).
DATA_FOLDERS = {
    "conditioning/mappings": ("conditioning/mapping.py", "MAPPINGS_DIR"),
}


def _module_file(root: Path, module: str) -> Path | None:
    base = root.joinpath(*module.split("."))
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def _imports(path: Path, module: str) -> Iterator[str]:
    """Every module name ``path`` imports, anywhere in it (lazy imports included)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            yield base
            for alias in node.names:
                yield f"{base}.{alias.name}"  # may name a submodule


def imported_files(root: Path, entry: str = "function_app") -> dict[str, str]:
    """The source files of the first-party modules ``entry`` imports, transitively."""
    found: dict[str, str] = {}
    pending = [(entry, "the app's entry point")]
    seen: set[str] = set()
    while pending:
        module, why = pending.pop()
        if module in seen or module.split(".")[0] in HOST_PACKAGES:
            continue
        seen.add(module)
        path = _module_file(root, module)
        if path is None:
            continue  # a third-party module, or a name inside a module
        found.setdefault(path.relative_to(root).as_posix(), why)
        parts = module.split(".")
        for i in range(1, len(parts)):
            pending.append((".".join(parts[:i]), f"package of {module}"))
        for name in _imports(path, module):
            pending.append((name, f"imported by {module}"))
    return found


def _folder_files(root: Path, folder: Path) -> Iterator[str]:
    for path in sorted(folder.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            yield path.relative_to(root).as_posix()


def _component(root: Path, path: Path, pipeline: str) -> dict[str, str]:
    found = {path.relative_to(root).as_posix(): f"component of {pipeline}"}
    spec: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    # A command component names its code and environment at the top; a parallel component's
    # run_function task carries them.
    if spec.get("type") == "parallel" and isinstance(spec.get("task"), dict):
        spec = {**spec, **spec["task"]}
    code = spec.get("code")
    if code is not None:
        folder = (path.parent / str(code)).resolve()
        for rel in _folder_files(root, folder):
            found.setdefault(rel, f"code of {path.parent.name}, uploaded with every job")
    environment = spec.get("environment")
    if isinstance(environment, dict):
        conda = environment.get("conda_file")
        if conda is not None:
            conda_path = (path.parent / str(conda)).resolve()
            found[conda_path.relative_to(root).as_posix()] = f"environment of {path.parent.name}"
    elif environment is not None and not str(environment).startswith("azureml:"):
        raise AssertionError(f"{path}: an environment file ({environment}) is not followed yet")
    return found


def pipeline_files(root: Path) -> dict[str, str]:
    """The pipeline YAML the activities submit, with everything Azure ML reads from it."""
    from orchestrators.activities import PIPELINES

    found: dict[str, str] = {}
    for name, relative in sorted(PIPELINES.items()):
        path = root / relative
        found[relative] = f"the {name} pipeline the activities submit"
        spec: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
        for node in (spec.get("jobs") or {}).values():
            component = node.get("component")
            if isinstance(component, str) and not component.startswith("azureml:"):
                found.update(_component(root, (path.parent / component).resolve(), relative))
            elif isinstance(component, dict):
                raise AssertionError(f"{relative}: inline components are not followed yet")
    return found


def files_the_app_reads(root: Path) -> dict[str, str]:
    """Relative path -> why the app reads it."""
    found = dict(RUNTIME_FILES)
    found.update(imported_files(root))
    for folder, (module, name) in DATA_FOLDERS.items():
        source = (root / module).read_text(encoding="utf-8")
        assert name in source and Path(folder).name in source, f"{module} no longer reads {folder}"
        for rel in _folder_files(root, root / folder):
            found.setdefault(rel, f"loaded by {module}")
    found.update(pipeline_files(root))
    return found
