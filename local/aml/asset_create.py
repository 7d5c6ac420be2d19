"""Creating workspace assets from YAML, as ``az ml component|data|environment create`` does.

- **Components** (``create_component``): the YAML is validated with ``azure.ai.ml``'s
  ``load_component`` (offline), and what Azure ML uploads with it — the ``code`` folder
  (honouring ``.amlignore``/``.gitignore`` and Azure ML's snapshot limits), a conda file or
  build context of an inline environment, the child components of a pipeline component — is
  copied with the YAML into a content-addressed snapshot (``assets/code/<sha256>/``), so
  later edits to the sources do not change the registered version. No version: the next
  whole number (Azure ML auto-increments component versions).
- **Data** (``create_data``): a local ``path`` is uploaded — copied into
  ``assets/uploads/<sha256>/<name>``, as Azure ML uploads it to the default datastore — and the
  asset points at the copy; a URI (``azureml://datastores/...``, ``https://``, ``wasbs://``) is
  recorded as written and resolved, or refused, when a job reads it. No version: the next
  whole number.
- **Environments** (``create_environment``): image, conda file (inlined as a dict),
  description and build context (uploaded like data) are stored; no version: the latest one
  when its definition is the same, else the next whole number (Azure ML's rule).

``--set KEY=VALUE`` overrides (dotted keys) and the command line's ``--name``/``--version``
apply before validation. Every refusal is one ``BadInputError`` line naming the file and what
is wrong; an existing version with other content is a ``ConflictError``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from adapters.errors import BadInputError
from local.aml import assets
from local.aml.snapshot import take_snapshot

CODE = Path("assets") / "code"
UPLOADS = Path("assets") / "uploads"
DATA_TYPES = ("uri_folder", "uri_file", "mltable")
_MAX_DEPTH = 8


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:400] or type(exc).__name__


def _yaml_file(path: Path, what: str) -> dict[str, Any]:
    import yaml

    if not path.is_file():
        raise BadInputError(f"{what} file {path} not found", code="not_found")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{path.name}: invalid YAML: {_one_line(exc)}") from exc
    if not isinstance(doc, dict):
        raise BadInputError(f"{path.name}: a {what} YAML is a mapping")
    return doc


def parse_value(text: str) -> Any:
    """A ``--set`` value as az ml reads it: YAML scalars and flow collections, else text."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(doc: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``doc`` with each dotted ``KEY`` set to its value (``inputs.x.default=3``)."""
    result = json.loads(json.dumps(doc, default=str))
    for key, value in overrides.items():
        parts = [p for p in str(key).split(".") if p]
        if not parts:
            raise BadInputError(f"--set needs KEY=VALUE, got {key!r}")
        here = result
        for part in parts[:-1]:
            nxt = here.get(part)
            if not isinstance(nxt, dict):
                nxt = {}
                here[part] = nxt
            here = nxt
        here[parts[-1]] = value
    return dict(result)


def tree_sha256(root: Path) -> str:
    """A hash of a file or folder: every file's relative path and bytes, in sorted order."""
    digest = hashlib.sha256()
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    for path in files:
        relative = path.name if path == root else path.relative_to(root).as_posix()
        digest.update(relative.encode() + b"\0")
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


def _is_local(value: Any) -> bool:
    if not isinstance(value, str) or not value.strip():
        return False
    text = value.strip()
    return not text.startswith("azureml:") and "://" not in text


def _local(base: Path, value: str) -> Path:
    return (base / value.strip().removeprefix("file:")).resolve()


def _environment_refs(env: Any, base: Path) -> Iterator[Path]:
    if not isinstance(env, dict):
        return
    if _is_local(env.get("conda_file")):
        yield _local(base, env["conda_file"])
    build = env.get("build")
    if isinstance(build, dict) and _is_local(build.get("path")):
        yield _local(base, build["path"])


def _references(doc: Mapping[str, Any], base: Path, depth: int = 0) -> Iterator[Path]:
    """Every local file or folder a component YAML makes Azure ML upload with it."""
    if depth > _MAX_DEPTH:
        raise BadInputError("pipeline components nest too deeply")
    if _is_local(doc.get("code")):
        yield _local(base, doc["code"])
    task = doc.get("task")
    if isinstance(task, dict):
        if _is_local(task.get("code")):
            yield _local(base, task["code"])
        yield from _environment_refs(task.get("environment"), base)
    yield from _environment_refs(doc.get("environment"), base)
    jobs = doc.get("jobs")
    for node in (jobs or {}).values() if isinstance(jobs, dict) else ():
        if not isinstance(node, dict):
            continue
        for key in ("component", "trial"):
            child = node.get(key)
            if isinstance(child, str) and _is_local(child):
                path = _local(base, child)
                yield path
                if path.is_file():
                    yield from _references(_yaml_file(path, "component"), path.parent, depth + 1)
            elif isinstance(child, dict):
                yield from _references(child, base, depth + 1)
        yield from _references({k: node.get(k) for k in ("code", "environment", "task")}, base)


def _common_root(paths: list[Path]) -> Path:
    return Path(os.path.commonpath([str(p if p.is_dir() else p.parent) for p in paths]))


def _store_tree(root: Path, folder: Path, staged: Path) -> Path:
    """Move ``staged`` to ``root/folder/<its sha256>`` (kept if already there) and return it."""
    sha = tree_sha256(staged)
    final = root / folder / sha
    if final.exists():
        shutil.rmtree(staged, ignore_errors=True)
    else:
        try:
            staged.rename(final)
        except OSError:
            # Another process stored the same content first.
            shutil.rmtree(staged, ignore_errors=True)
    return final


@contextlib.contextmanager
def _staging(root: Path, folder: Path) -> Iterator[Path]:
    (root / folder).mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=".staging-", dir=root / folder))
    try:
        yield staged
    finally:
        if staged.exists():
            shutil.rmtree(staged, ignore_errors=True)


def _copy(source: Path, target: Path) -> None:
    if source.is_dir():
        take_snapshot(source, target)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


# -- components -----------------------------------------------------------------------------


def _validate_component(path: Path, shown: str) -> Any:
    from azure.ai.ml import load_component

    logging.getLogger("azure.ai.ml._utils._experimental").setLevel(logging.ERROR)
    try:
        return load_component(str(path))
    except Exception as exc:
        raise BadInputError(f"{shown}: {_one_line(exc)}", code="invalid_component") from exc


def create_component(
    root: str | Path, file: str | Path, overrides: Mapping[str, Any] | None = None
) -> assets.LocalComponent:
    """Register the component ``file`` describes in the local workspace (see the module)."""
    import yaml

    root = Path(root).resolve()
    source = Path(file).resolve()
    doc = apply_overrides(_yaml_file(source, "component"), overrides or {})
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        raise BadInputError(f"{source.name}: a component needs a name (or --name)")
    assets.check_name("components", "name", name)
    version = str(doc["version"]) if doc.get("version") not in (None, "") else None
    version = version or assets.next_version(root, "components", name)
    doc["version"] = version
    references = [p for p in _references(doc, source.parent) if p != source]
    missing = [p for p in references if not p.exists()]
    if missing:
        raise BadInputError(f"{source.name}: {missing[0]} not found", code="not_found")
    base = _common_root([source, *references])
    with _staging(root, CODE) as staged:
        for path in references:
            _copy(path, staged / path.relative_to(base))
        stored_yaml = staged / source.relative_to(base)
        stored_yaml.parent.mkdir(parents=True, exist_ok=True)
        stored_yaml.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        component = _validate_component(stored_yaml, source.name)
        final = _store_tree(root, CODE, staged)
    return assets.register_component(
        root,
        name,
        version,
        type=str(getattr(component, "type", doc.get("type", "command"))),
        yaml_path=final / source.relative_to(base),
        sha256=final.name,
        description=str(doc.get("description") or ""),
        tags={str(k): str(v) for k, v in (doc.get("tags") or {}).items()},
    )


# -- data -----------------------------------------------------------------------------------


def _upload(root: Path, source: Path) -> Path:
    """A content-addressed copy of ``source`` (file or folder) under ``assets/uploads``."""
    with _staging(root, UPLOADS) as staged:
        _copy(source, staged / source.name)
        final = _store_tree(root, UPLOADS, staged)
    return final / source.name


def create_data(
    root: str | Path,
    *,
    file: str | Path | None = None,
    fields: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    cwd: str | Path = ".",
) -> assets.LocalDataAsset:
    """Register a data asset from ``file`` and/or ``fields`` (``name``, ``version``, ``path``,
    ``type``, ``description``, ``tags`` — the command line's flags, which win over the file).
    A relative ``path`` is relative to the YAML's folder, or to ``cwd`` without a file."""
    root = Path(root).resolve()
    source = Path(file).resolve() if file is not None else None
    doc = _yaml_file(source, "data") if source is not None else {}
    doc = apply_overrides(doc, {k: v for k, v in (fields or {}).items() if v is not None})
    doc = apply_overrides(doc, overrides or {})
    shown = source.name if source is not None else "data create"
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        raise BadInputError(f"{shown}: a data asset needs a name (or --name)")
    assets.check_name("data", "name", name)
    kind = str(doc.get("type") or "uri_folder")
    if kind not in DATA_TYPES:
        raise BadInputError(f"{shown}: data type {kind!r} is not one of {', '.join(DATA_TYPES)}")
    raw_path = doc.get("path")
    if not isinstance(raw_path, str) or not raw_path.strip():
        raise BadInputError(f"{shown}: a data asset needs a path (or --path)")
    version = str(doc["version"]) if doc.get("version") not in (None, "") else None
    version = version or assets.next_version(root, "data", name)
    location: str | Path
    if _is_local(raw_path):
        base = source.parent if source is not None else Path(cwd).resolve()
        local = _local(base, raw_path)
        if not local.exists():
            raise BadInputError(f"{shown}: path {local} does not exist", code="not_found")
        if kind == "uri_file" and not local.is_file():
            raise BadInputError(f"{shown}: a uri_file asset's path must be a file: {local}")
        if kind != "uri_file" and not local.is_dir():
            raise BadInputError(f"{shown}: a {kind} asset's path must be a folder: {local}")
        if kind == "mltable" and not (local / "MLTable").is_file():
            raise BadInputError(f"{shown}: an mltable asset's folder has no MLTable file: {local}")
        location = _upload(root, local)
    else:
        location = raw_path.strip()
    return assets.register(
        root,
        name,
        version,
        location,
        type=kind,
        tags={str(k): str(v) for k, v in (doc.get("tags") or {}).items()},
        description=str(doc.get("description") or ""),
    )


# -- environments ---------------------------------------------------------------------------


def create_environment(
    root: str | Path,
    *,
    file: str | Path | None = None,
    fields: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    cwd: str | Path = ".",
) -> dict[str, Any]:
    """Register an environment from ``file`` and/or ``fields`` (``name``, ``version``,
    ``image``, ``conda_file``, ``build`` {``path``, ``dockerfile_path``}, ``description``)."""
    root = Path(root).resolve()
    source = Path(file).resolve() if file is not None else None
    doc = _yaml_file(source, "environment") if source is not None else {}
    doc = apply_overrides(doc, {k: v for k, v in (fields or {}).items() if v is not None})
    doc = apply_overrides(doc, overrides or {})
    shown = source.name if source is not None else "environment create"
    base = source.parent if source is not None else Path(cwd).resolve()
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        raise BadInputError(f"{shown}: an environment needs a name (or --name)")
    assets.check_name("environments", "name", name)
    image = doc.get("image")
    build = doc.get("build") if isinstance(doc.get("build"), dict) else None
    if not image and build is None:
        raise BadInputError(f"{shown}: an environment needs an image or a build context")
    conda = _conda(doc.get("conda_file"), base, shown)
    if conda is not None and not image:
        raise BadInputError(f"{shown}: a conda_file needs an image to install into")
    stored_build = None
    if build is not None:
        path = build.get("path")
        if not isinstance(path, str) or not path.strip():
            raise BadInputError(f"{shown}: build needs a path (the Docker build context)")
        context: str = path.strip()
        if _is_local(context):
            local = _local(base, context)
            if not local.is_dir():
                raise BadInputError(f"{shown}: build context {local} is not a folder")
            context = str(_upload(root, local))
        stored_build = {
            "path": context,
            "dockerfile_path": str(build.get("dockerfile_path") or "Dockerfile"),
        }
    content = {
        "image": str(image) if image else None,
        "conda_file": conda,
        "build": stored_build,
        "os_type": str(doc.get("os_type") or "linux"),
    }
    sha = hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()
    version = str(doc["version"]) if doc.get("version") not in (None, "") else None
    if version is None:
        # Azure ML updates the latest version when its definition is the same, else adds one.
        with contextlib.suppress(Exception):
            latest = assets.show(root, "environments", name)
            if latest.get("sha256") == sha:
                return latest
        version = assets.next_version(root, "environments", name)
    return assets.register_environment(
        root,
        {
            **content,
            "name": name,
            "version": version,
            "description": str(doc.get("description") or ""),
            "tags": {str(k): str(v) for k, v in (doc.get("tags") or {}).items()},
            "sha256": sha,
        },
    )


def _conda(raw: Any, base: Path, shown: str) -> dict[str, Any] | None:
    if raw in (None, ""):
        return None
    if isinstance(raw, dict):
        return dict(raw)
    if not _is_local(raw):
        raise BadInputError(f"{shown}: conda_file {raw!r} is not a local file")
    path = _local(base, str(raw))
    return _yaml_file(path, "conda")
