"""Register step: each segment's model as a new version in the MLflow registry, tagged with
segment, dataset versions, code version, trained_at, metrics of every component (the
historical-average ``baseline`` and ``seasonal_naive`` included), the ensemble's weights,
the members that diverged, the gate verdict with whether it beats seasonal naive, and
``min_actual``: the MAPE row filter (in the data's unit) those metrics and the gate used, so
whatever reads the metrics later (the dashboard) applies the same one.

Registration needs a tracking server (Azure ML's, or the local sqlite store); without one the
step fails rather than pretend. Writes ``registered.json`` (name, version, segment, verdict).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from . import metrics as M
from . import mlflow_model
from .models import COMPONENTS
from .step_common import read_json, tracking_enabled, write_json


def _tags(
    entry: dict[str, Any], seg: dict[str, Any], versions: dict[str, str], code_version: str,
    min_actual: float = M.MIN_ACTUAL,
) -> dict[str, str]:  # fmt: skip
    tags = {
        "segment": str(entry["segment"]),
        "trained_at": str(entry["trained_at"]),
        "dataset_versions": json.dumps(versions, sort_keys=True),
        "code_version": code_version,
        "gate": str(seg["gate"]["verdict"]),
        "gate_reasons": "; ".join(seg["gate"]["reasons"]),
        "ensemble_weights": json.dumps(seg.get("weights") or {}, sort_keys=True),
        "diverged_members": ", ".join(sorted(seg.get("diverged") or {})),
        "min_actual": f"{min_actual:g}",
    }
    beats_naive = seg["gate"].get("beats_seasonal_naive")
    if beats_naive is not None:
        tags["beats_seasonal_naive"] = str(bool(beats_naive)).lower()
    for component in (*COMPONENTS, "champion"):
        if seg.get(component):
            for metric in M.MEASURES:
                value = seg[component].get(metric)
                if value is not None:  # undefined metrics (e.g. no zero actuals) stay untagged
                    tags[f"{component}_{metric}"] = f"{value:.6g}"
    return tags


def register(models: Path, metrics_path: Path, code_version: str) -> list[dict[str, str]]:
    if not tracking_enabled():
        raise RuntimeError(
            "register needs an MLflow tracking server (MLFLOW_TRACKING_URI is not set)"
        )
    import mlflow

    index = read_json(models / "index.json")
    metrics = read_json(metrics_path)
    client = mlflow_model.client()
    registered: list[dict[str, str]] = []
    with mlflow.start_run() as run:
        for entry in index["models"]:
            seg = metrics["segments"].get(entry["segment"])
            if seg is None:
                continue
            name = str(entry["model_name"])
            artifact_path = f"models/{entry['path']}"
            mlflow.log_artifacts(str(models / str(entry["path"])), artifact_path=artifact_path)
            if not client.search_registered_models(f"name = '{name}'"):
                client.create_registered_model(name)
            tags = _tags(entry, seg, index.get("dataset_versions", {}), code_version,
                         float(metrics.get("min_actual", M.MIN_ACTUAL)))  # fmt: skip
            version = client.create_model_version(
                name, f"{run.info.artifact_uri}/{artifact_path}", run_id=run.info.run_id, tags=tags
            )
            registered.append(
                {
                    "name": name,
                    "version": str(version.version),
                    "segment": str(entry["segment"]),
                    "gate": tags["gate"],
                }
            )
            print(f"register: {name} version {version.version} (gate {tags['gate']})")
    return registered


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", required=True)
    parser.add_argument("--metrics", required=True, help="the evaluate step's output folder")
    parser.add_argument("--code_version", default="unknown")
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    metrics_path = Path(args.metrics)
    if metrics_path.is_dir():
        metrics_path = metrics_path / "metrics.json"
    registered = register(Path(args.models), metrics_path, args.code_version)
    write_json(Path(args.output) / "registered.json", {"models": registered})
    return 0


if __name__ == "__main__":
    sys.exit(main())
