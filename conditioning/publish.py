"""Where a result's files go, and publishing them to a directory (the CLI) atomically.

Layout (the same in a directory and in the data lake; ``conditioned`` and ``quarantine`` are
containers in the lake and sub-directories locally)::

    conditioned/{source}/{dataset_version}/part-00000.csv …   the standard CSV
    conditioned/{source}/{dataset_version}/manifest.json       written last: the commit marker
    quarantine/{source}/{dataset_version}/rejects.csv          rejected rows with reasons
    quarantine/{source}/{dataset_version}/{file}, manifest.json  a file quarantined whole

A version whose manifest exists is complete; consumers ignore a version without one.
"""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from conditioning.engine import ConditionResult, manifest_bytes

CONDITIONED = "conditioned"
QUARANTINE = "quarantine"


@dataclass(frozen=True)
class Placement:
    """One output: its area (conditioned/quarantine), its name inside it, and its content."""

    area: str
    name: str
    path: Path | None = None
    data: bytes | None = None


def placements(result: ConditionResult) -> list[Placement]:
    """Every file of ``result`` in publishing order; the manifest comes last."""
    prefix = f"{result.source}/{result.dataset_version}"
    out: list[Placement] = []
    manifest_area = CONDITIONED if result.usable else QUARANTINE
    for f in result.files:
        area = CONDITIONED if f.kind == "part" else QUARANTINE
        out.append(Placement(area, f"{prefix}/{f.name}", path=f.path))
    out.append(
        Placement(manifest_area, f"{prefix}/manifest.json", data=manifest_bytes(result.manifest))
    )
    return out


def manifest_name(source: str, version: str, usable: bool) -> tuple[str, str]:
    """(area, name) of the manifest that marks ``version`` of ``source`` complete."""
    return (CONDITIONED if usable else QUARANTINE, f"{source}/{version}/manifest.json")


def published_version_exists(out_dir: Path, source: str, version: str) -> bool:
    return any(
        (out_dir / area / source / version / "manifest.json").exists()
        for area in (CONDITIONED, QUARANTINE)
    )


def publish_to_directory(result: ConditionResult, out_dir: Path) -> list[Path]:
    """Move ``result``'s files under ``out_dir``; each version directory appears whole.

    Files are assembled in a hidden sibling directory and renamed into place, quarantine first,
    so the directory holding the manifest is the last thing to appear.
    """
    assembly = out_dir / f".incoming-{uuid.uuid4().hex}"
    written: list[Path] = []
    try:
        for p in placements(result):
            target = assembly / p.area / p.name
            target.parent.mkdir(parents=True, exist_ok=True)
            if p.path is not None:
                shutil.copyfile(p.path, target)
            else:
                assert p.data is not None
                target.write_bytes(p.data)
        manifest_area = CONDITIONED if result.usable else QUARANTINE
        areas = [QUARANTINE, CONDITIONED] if result.usable else [QUARANTINE]
        for area in areas:
            src = assembly / area / result.source / result.dataset_version
            if not src.exists():
                continue
            dst = out_dir / area / result.source / result.dataset_version
            dst.parent.mkdir(parents=True, exist_ok=True)
            if dst.exists():
                if area == manifest_area:
                    continue
                shutil.rmtree(dst)
            src.replace(dst)
            written.extend(sorted(dst.iterdir()))
    finally:
        shutil.rmtree(assembly, ignore_errors=True)
    return written
