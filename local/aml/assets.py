"""The local executor's data assets: what ``azureml:<name>:<version>`` means on this machine.

Azure ML resolves a data asset reference in a job input to the data it was registered over;
the local executor does the same through a small index under its state folder::

    <aml root>/assets/data/<name>/<version>.json   {"name", "version", "type", "path",
                                                    "tags", "created"}

``register`` adds a version (idempotent; a version is immutable, as in Azure ML: the same
name and version over another path raises ``ConflictError``); ``resolve`` finds one by
version or ``latest`` (the most recently created, as Azure ML defines it); ``resolver`` is
the executor's ``AssetResolver`` over the index (``local/aml/locations.py`` parses the
references and refuses, with one line naming the input, an asset that is not registered).
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

ASSETS_DIR = Path("assets") / "data"
LATEST = "latest"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")


@dataclass(frozen=True)
class LocalDataAsset:
    name: str
    version: str
    path: str
    type: str = "uri_folder"
    tags: dict[str, str] = field(default_factory=dict)
    created: str = ""


def _check(kind: str, value: str) -> str:
    if not _NAME.match(value) or (kind == "version" and value == LATEST):
        raise BadInputError(f"data asset {kind} {value!r} is not a valid name", code="bad_asset")
    return value


def _file(root: Path, name: str, version: str) -> Path:
    return Path(root) / ASSETS_DIR / _check("name", name) / f"{_check('version', version)}.json"


def _load(path: Path) -> LocalDataAsset:
    raw: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    raw["tags"] = {str(k): str(v) for k, v in (raw.get("tags") or {}).items()}
    return LocalDataAsset(**raw)


def register(
    root: str | Path,
    name: str,
    version: str,
    path: str | Path,
    *,
    type: str = "uri_folder",
    tags: Mapping[str, str] | None = None,
) -> LocalDataAsset:
    """Record ``name:version`` over ``path`` (an existing folder or file); see the module."""
    target = _file(Path(root), name, version)
    location = Path(path).resolve()
    if not location.exists():
        raise BadInputError(f"data asset {name}:{version}: {location} does not exist")
    asset = LocalDataAsset(
        name=name,
        version=version,
        path=str(location),
        type=type,
        tags={str(k): str(v) for k, v in (tags or {}).items()},
        created=datetime.now(UTC).isoformat(),
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}-", dir=target.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(asdict(asset), out, indent=2, sort_keys=True)
    try:
        # A hard link fails when the version exists: first writer wins, atomically.
        os.link(tmp, target)
    except FileExistsError:
        existing = _load(target)
        if existing.path != asset.path:
            raise ConflictError(
                f"data asset {name}:{version} exists over {existing.path}, not {asset.path}"
            ) from None
        return existing
    finally:
        Path(tmp).unlink(missing_ok=True)
    return asset


def resolve(root: str | Path, name: str, version: str = LATEST) -> LocalDataAsset:
    """``name:version`` (or the newest version of ``name``); ``NotFoundError`` if unknown."""
    if version != LATEST:
        target = _file(Path(root), name, version)
        if not target.is_file():
            raise NotFoundError(f"data asset {name}:{version} is not registered locally")
        return _load(target)
    folder = Path(root) / ASSETS_DIR / _check("name", name)
    versions = [_load(p) for p in folder.glob("*.json")] if folder.is_dir() else []
    if not versions:
        raise NotFoundError(f"data asset {name} has no version registered locally")
    return max(versions, key=lambda a: (a.created, a.version))


def resolver(root: str | Path) -> Callable[[str, str], Path | None]:
    """The executor's ``AssetResolver`` over the index under ``root``: the folder (or file)
    registered as ``name:version`` (``latest``: the newest), ``None`` when there is none."""

    def find(name: str, version: str) -> Path | None:
        try:
            return Path(resolve(root, name, version).path)
        except (NotFoundError, BadInputError):
            return None

    return find
