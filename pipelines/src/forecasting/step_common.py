"""Helpers shared by the step scripts: JSON output, dataset versions, MLflow run handling."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def tracking_enabled() -> bool:
    """True when a tracking server is configured (always in Azure ML; set by the local executor).

    Without one, steps skip MLflow logging rather than writing ``./mlruns`` somewhere random.
    Here rather than in ``mlflow_model`` so a step that logs nothing (prep) never imports
    mlflow or the models: importing those costs seconds in every step process.
    """
    return bool(os.environ.get("MLFLOW_TRACKING_URI"))


def _finite(value: Any) -> Any:
    """NaN and infinities become null: strict JSON readers reject them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def write_json(path: str | Path, payload: Any) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_finite(payload), indent=2, sort_keys=True, default=str, allow_nan=False)
    target.write_text(text, encoding="utf-8")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def dataset_version(folder: str | Path) -> str:
    """``<folder name>@<sha256 prefix of its CSV contents>``: names the version and pins it."""
    root = Path(folder)
    digest = hashlib.sha256()
    files = [root] if root.is_file() else sorted(root.rglob("*.csv"))
    for f in files:
        digest.update(f.name.encode())
        digest.update(f.read_bytes())
    name = root.name if root.is_dir() else root.parent.name
    return f"{name}@{digest.hexdigest()[:12]}"


@contextlib.contextmanager
def mlflow_run() -> Iterator[Any]:
    """The step's MLflow run (resumed from MLFLOW_RUN_ID), or ``None`` without tracking."""
    if not tracking_enabled():
        yield None
        return
    import mlflow

    with mlflow.start_run() as run:
        yield run


def slug(segment: str) -> str:
    return segment.replace("/", "__")
