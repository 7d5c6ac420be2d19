"""The local workspace's assets: what ``azureml:<name>:<version>`` means on this machine.

Azure ML resolves a reference to a data asset, a component or an environment to the version
registered under that name; the local executor does the same through a small index under its
state folder, one JSON file per version::

    <aml root>/assets/data/<name>/<version>.json          {"name", "version", "type", "path",
                                                           "tags", "description", "created"}
    <aml root>/assets/components/<name>/<version>.json    {"name", "version", "type", "path"
                                                           (its stored YAML), "sha256", ...}
    <aml root>/assets/environments/<name>/<version>.json  {"name", "version", "image",
                                                           "conda_file", "build", "sha256", ...}

Versions are immutable, as in Azure ML: registering the same name and version again with the
same content returns what is there, with other content raises ``ConflictError``. ``latest``
is the most recently created version. Creating from YAML files (snapshots of component code,
uploads of local data) is ``local/aml/asset_create.py``; this module only stores and finds.

- data: ``register`` / ``resolve`` / ``resolver`` (the executor's ``AssetResolver``: the
  registered folder, or the URI a version was registered over);
- components: ``register_component`` / ``resolve_component`` / ``component_resolver``;
- environments: ``register_environment`` / ``environment_definition`` (what the environment
  builder needs to build one);
- any kind: ``list_versions``, ``show``, ``next_version``.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from adapters.errors import BadInputError, ConflictError, NotFoundError

ASSETS = Path("assets")
ASSETS_DIR = ASSETS / "data"
KINDS = {"data": "data asset", "components": "component", "environments": "environment"}
LATEST = "latest"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


@dataclass(frozen=True)
class LocalDataAsset:
    name: str
    version: str
    path: str
    type: str = "uri_folder"
    tags: dict[str, str] = field(default_factory=dict)
    created: str = ""
    description: str = ""

    @property
    def is_local(self) -> bool:
        """False when registered over a URI (a datastore path, a web URL) instead of a folder."""
        return not _URI.match(self.path)


@dataclass(frozen=True)
class LocalComponent:
    name: str
    version: str
    type: str
    path: str  # the component's YAML inside its stored snapshot
    sha256: str
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    created: str = ""


def _now() -> str:
    return datetime.now(UTC).isoformat()


def check_name(kind: str, what: str, value: str) -> str:
    valid = isinstance(value, str) and _NAME.match(value) is not None
    if not valid or (what == "version" and value == LATEST):
        raise BadInputError(f"{KINDS[kind]} {what} {value!r} is not a valid name", code="bad_asset")
    return value


def _folder(root: Path, kind: str, name: str) -> Path:
    return Path(root) / ASSETS / kind / check_name(kind, "name", name)


def _file(root: Path, kind: str, name: str, version: str) -> Path:
    return _folder(root, kind, name) / f"{check_name(kind, 'version', version)}.json"


def _read(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def _write_once(target: Path, payload: Mapping[str, Any]) -> dict[str, Any] | None:
    """Write ``payload`` at ``target`` unless a version is there; return that one if so.

    A hard link fails when the file exists: the first writer wins, atomically, across
    processes.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}-", dir=target.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(dict(payload), out, indent=2, sort_keys=True)
    try:
        os.link(tmp, target)
    except FileExistsError:
        return _read(target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return None


def list_versions(root: str | Path, kind: str, name: str | None = None) -> list[dict[str, Any]]:
    """Every registered version of ``kind`` (of ``name`` only, if given), oldest first."""
    base = Path(root) / ASSETS / kind
    if name is not None:
        folders = [_folder(Path(root), kind, name)]
    else:
        folders = sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
    found = [_read(p) for folder in folders if folder.is_dir() for p in folder.glob("*.json")]
    return sorted(found, key=lambda r: (str(r["name"]), str(r.get("created")), str(r["version"])))


def show(
    root: str | Path, kind: str, name: str, version: str | None = None, label: str | None = None
) -> dict[str, Any]:
    """One version's record: ``version``, else ``label`` (only ``latest`` exists locally),
    else the latest. Raises ``NotFoundError`` naming the asset when there is none."""
    what = KINDS[kind]
    if version is not None and label is not None:
        raise BadInputError(f"{what} {name}: give a version or a label, not both")
    if label is not None and label != LATEST:
        raise BadInputError(f"{what} {name}: label {label!r} does not exist (only {LATEST!r})")
    if version is not None and version != LATEST:
        target = _file(Path(root), kind, name, version)
        if not target.is_file():
            raise NotFoundError(f"{what} {name}:{version} is not registered locally")
        return _read(target)
    versions = list_versions(root, kind, name)
    if not versions:
        raise NotFoundError(f"{what} {name} has no version registered locally")
    return max(versions, key=lambda r: (str(r.get("created")), str(r["version"])))


def next_version(root: str | Path, kind: str, name: str) -> str:
    """The version Azure ML gives a new one when none is asked for: one more than the highest
    whole-number version (``"1"`` for a new name)."""
    versions = [str(r["version"]) for r in list_versions(root, kind, name)]
    numbers = [int(v) for v in versions if v.isdigit()]
    return str(max(numbers, default=0) + 1)


# -- data -------------------------------------------------------------------------------------


def _data(raw: Mapping[str, Any]) -> LocalDataAsset:
    fields = {k: raw[k] for k in ("name", "version", "path", "type", "created") if k in raw}
    return LocalDataAsset(
        **fields,
        tags={str(k): str(v) for k, v in (raw.get("tags") or {}).items()},
        description=str(raw.get("description") or ""),
    )


def register(
    root: str | Path,
    name: str,
    version: str,
    path: str | Path,
    *,
    type: str = "uri_folder",
    tags: Mapping[str, str] | None = None,
    description: str = "",
) -> LocalDataAsset:
    """Record ``name:version`` over ``path``: an existing local folder or file, or a URI
    (``azureml://datastores/...``, ``https://...``) kept as written. Idempotent; the same
    version over another path raises ``ConflictError``."""
    target = _file(Path(root), "data", name, version)
    if isinstance(path, str) and _URI.match(path.strip()):
        location = path.strip()
    else:
        resolved = Path(path).resolve()
        if not resolved.exists():
            raise BadInputError(f"data asset {name}:{version}: {resolved} does not exist")
        location = str(resolved)
    asset = LocalDataAsset(
        name=name,
        version=version,
        path=location,
        type=type,
        tags={str(k): str(v) for k, v in (tags or {}).items()},
        created=_now(),
        description=description,
    )
    existing = _write_once(target, asdict(asset))
    if existing is None:
        return asset
    if existing["path"] != asset.path:
        raise ConflictError(
            f"data asset {name}:{version} exists over {existing['path']}, not {asset.path}"
        )
    return _data(existing)


def resolve(root: str | Path, name: str, version: str = LATEST) -> LocalDataAsset:
    """``name:version`` (or the newest version of ``name``); ``NotFoundError`` if unknown."""
    return _data(show(root, "data", name, version))


def resolver(root: str | Path) -> Callable[[str, str], Path | str | None]:
    """The executor's ``AssetResolver`` over the index under ``root``: the folder (or file)
    registered as ``name:version`` (``latest``: the newest), the URI it was registered over
    when that is not local, ``None`` when there is none."""

    def find(name: str, version: str) -> Path | str | None:
        try:
            asset = resolve(root, name, version)
        except (NotFoundError, BadInputError):
            return None
        return Path(asset.path) if asset.is_local else asset.path

    return find


# -- components -------------------------------------------------------------------------------


def _component(raw: Mapping[str, Any]) -> LocalComponent:
    return LocalComponent(
        name=str(raw["name"]),
        version=str(raw["version"]),
        type=str(raw.get("type", "command")),
        path=str(raw["path"]),
        sha256=str(raw.get("sha256", "")),
        description=str(raw.get("description") or ""),
        tags={str(k): str(v) for k, v in (raw.get("tags") or {}).items()},
        created=str(raw.get("created", "")),
    )


def register_component(
    root: str | Path,
    name: str,
    version: str,
    *,
    type: str,
    yaml_path: str | Path,
    sha256: str,
    description: str = "",
    tags: Mapping[str, str] | None = None,
) -> LocalComponent:
    """Record component ``name:version`` whose stored YAML is ``yaml_path`` and whose content
    (YAML and code) hashes to ``sha256``. The same version with the same content returns the
    registered one; with other content raises ``ConflictError``."""
    target = _file(Path(root), "components", name, version)
    component = LocalComponent(
        name=name,
        version=version,
        type=type,
        path=str(Path(yaml_path).resolve()),
        sha256=sha256,
        description=description,
        tags={str(k): str(v) for k, v in (tags or {}).items()},
        created=_now(),
    )
    existing = _write_once(target, asdict(component))
    if existing is None:
        return component
    if existing.get("sha256") != sha256:
        raise ConflictError(
            f"component {name}:{version} is registered already with other content (its YAML "
            "or code changed); versions are immutable: create it with another version "
            "(--set version=N), or leave the version out to get the next one"
        )
    return _component(existing)


def resolve_component(root: str | Path, name: str, version: str = LATEST) -> LocalComponent:
    return _component(show(root, "components", name, version))


def component_resolver(root: str | Path) -> Callable[[str, str], Path | None]:
    """The executor's ``ComponentResolver``: the stored YAML of ``name:version`` (``latest``:
    the newest), ``None`` when none is registered."""

    def find(name: str, version: str) -> Path | None:
        try:
            return Path(resolve_component(root, name, version).path)
        except (NotFoundError, BadInputError):
            return None

    return find


# -- environments -----------------------------------------------------------------------------

ENVIRONMENT_KEYS = ("name", "version", "image", "conda_file", "description")


def register_environment(root: str | Path, definition: Mapping[str, Any]) -> dict[str, Any]:
    """Record an environment version: ``definition`` holds ``name``, ``version``, ``image``,
    ``conda_file`` (the conda YAML as a dict, or None), ``description``, ``build`` (the stored
    build context, or None), ``tags`` and ``sha256`` (of everything but the version). Same
    version, same content: the registered one; other content: ``ConflictError``."""
    name = str(definition["name"])
    version = str(definition["version"])
    target = _file(Path(root), "environments", name, version)
    record = {**dict(definition), "name": name, "version": version, "created": _now()}
    existing = _write_once(target, record)
    if existing is None:
        return record
    if existing.get("sha256") != record.get("sha256"):
        raise ConflictError(
            f"environment {name}:{version} is registered already with another definition; "
            "versions are immutable: create it with another version (--set version=N)"
        )
    return existing


def environment_definition(
    root: Path, name: str, version: str | None = None, label: str | None = None
) -> dict[str, Any]:
    """What an environment registered in the local workspace is made of.

    ``version`` picks one version; else ``label`` (``latest``: the most recently created, the
    only label that exists locally); else the latest. Returns ``{"name", "version", "image",
    "conda_file", "description"}`` with ``conda_file`` the conda specification as a dict
    (``None`` for an image-only environment). Raises ``NotFoundError`` naming the environment
    when it is not registered, ``BadInputError`` for an invalid name or an unknown label.
    """
    record = show(root, "environments", name, version, label)
    conda = record.get("conda_file")
    return {
        "name": str(record["name"]),
        "version": str(record["version"]),
        "image": record.get("image") or None,
        "conda_file": dict(conda) if isinstance(conda, Mapping) else None,
        "description": str(record.get("description") or ""),
    }
