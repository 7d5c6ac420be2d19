"""Each step runs in its own snapshot of its code folder, as on Azure ML.

Azure ML uploads a component's ``code`` folder as a snapshot (honouring ``.amlignore``, else
``.gitignore``; at most 2,000 files and 300 MB) and starts the step in it; what the step writes
to ``./outputs`` and ``./logs`` is collected as the run's artefacts. Locally the snapshot is a
copy under the step's folder, so relative writes never land in the user's source tree.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from adapters.errors import BadInputError

MAX_FILES = 2000
MAX_BYTES = 300 * 1024 * 1024
ALWAYS_IGNORED = ("__pycache__", ".git", "*.pyc", ".ipynb_checkpoints", ".pytest_cache")
ARTIFACT_FOLDERS = ("outputs", "logs")


@dataclass(frozen=True)
class Snapshot:
    folder: Path
    files: int
    bytes: int


def _patterns(code_dir: Path) -> list[str]:
    for name in (".amlignore", ".gitignore"):
        ignore = code_dir / name
        if ignore.is_file():
            lines = ignore.read_text(encoding="utf-8", errors="replace").splitlines()
            return [
                line.strip().rstrip("/")
                for line in lines
                if line.strip() and not line.startswith(("#", "!"))
            ]
    return []


def _ignored(relative: str, name: str, patterns: list[str]) -> bool:
    for pattern in (*ALWAYS_IGNORED, *patterns):
        anchored = pattern.lstrip("/")
        if fnmatch.fnmatch(name, anchored) or fnmatch.fnmatch(relative, anchored):
            return True
    return False


def take_snapshot(code_dir: Path | None, target: Path) -> Snapshot:
    """Copy ``code_dir`` (minus ignored files) to ``target``; an empty folder without code.

    Raises ``BadInputError`` when the code folder exceeds Azure ML's snapshot limits, so a
    step that would not upload there does not quietly run here.
    """
    target.mkdir(parents=True, exist_ok=True)
    if code_dir is None:
        return Snapshot(target, 0, 0)
    patterns = _patterns(code_dir)
    files = 0
    size = 0
    for folder, dirs, names in os.walk(code_dir):
        here = Path(folder)
        rel_dir = here.relative_to(code_dir)
        dirs[:] = [d for d in dirs if not _ignored(str(rel_dir / d), d, patterns)]
        out_dir = target / rel_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        for name in names:
            if _ignored(str(rel_dir / name), name, patterns):
                continue
            source = here / name
            files += 1
            size += source.stat().st_size
            if files > MAX_FILES or size > MAX_BYTES:
                raise BadInputError(
                    f"code folder {code_dir} is larger than Azure ML's snapshot limit "
                    f"({MAX_FILES} files, {MAX_BYTES // (1024 * 1024)} MB); list what the step "
                    "does not need in .amlignore",
                    code="snapshot_too_large",
                )
            shutil.copy2(source, out_dir / name)
    return Snapshot(target, files, size)


def collect_artifacts(snapshot: Path, artifacts: Path) -> list[str]:
    """Move ``outputs/`` and ``logs/`` the step wrote in its snapshot to ``artifacts``."""
    moved = []
    for name in ARTIFACT_FOLDERS:
        source = snapshot / name
        if source.is_dir() and any(source.iterdir()):
            artifacts.mkdir(parents=True, exist_ok=True)
            destination = artifacts / name
            if destination.exists():
                shutil.rmtree(destination)
            shutil.move(str(source), str(destination))
            moved.append(name)
    return moved
