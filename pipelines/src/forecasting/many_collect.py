"""Collect step of train_many: per-segment models and metrics from the partition results.

Reads the parallel step's result lines (one per partition) and the partition forecasters it
saved; writes, per segment, one MLflow pyfunc (``ManyModelsForecast``) whose artefacts are the
partition forecasters, ``index.json`` in the train step's shape (so the register component
registers them unchanged), and ``metrics.json`` in the evaluate step's shape plus a
``partitions`` gate summary. A partition listed by prep with no result (its ``run()`` failed
for good) counts as a failed partition.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import many
from .schema import model_name
from .step_common import read_json, slug, write_json


def collect(args: argparse.Namespace) -> dict[str, Any]:
    features = Path(args.features)
    meta = read_json(features / "meta.json")
    rows = many.read_rows(Path(args.results))
    seen = {str(r["partition"]) for r in rows}
    for folder in sorted(p for p in features.iterdir() if (p / "part.csv").is_file()):
        if folder.name not in seen:
            region, fmt, velocity = folder.name.split("__")[:3]
            rows.append(
                {
                    "partition": folder.name,
                    "segment": f"{region}/{fmt}/{velocity}",
                    "gate": {"passed": False, "reasons": ["training failed (see the step logs)"]},
                }
            )
    result = many.summarise(rows, args.max_mape)
    trained_at = args.trained_at or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    out = Path(args.output_models)
    out.mkdir(parents=True, exist_ok=True)
    index: list[dict[str, object]] = []
    for segment, seg in result["segments"].items():
        partitions = Path(args.models) / slug(segment) / "partitions"
        if seg["ensemble"] is None or not partitions.is_dir():
            continue
        metadata = {
            "segment": segment,
            "trained_at": trained_at,
            "origin": str(meta["origin"]),
            "kind": "many_models",
            "partition_by": ",".join(meta["partition_by"]),
            "partitions": str(seg["partitions"]["total"]),
        }
        many.save_segment_model(out / slug(segment), partitions, meta["partition_by"], metadata)
        index.append(
            {
                **metadata,
                "path": slug(segment),
                "model_name": model_name(segment, args.model_prefix),
            }
        )
        counts = seg["partitions"]
        print(
            f"collect: {segment}: {counts['passed']}/{counts['total']} partition(s) pass, "
            f"pooled MAPE {seg['ensemble']['mape']:.3f} (baseline {seg['baseline']['mape']:.3f})"
        )
    write_json(out / "index.json", {"models": index, "dataset_versions": meta["dataset_versions"]})
    write_json(Path(args.output_metrics) / "metrics.json", result)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--features", required=True)
    parser.add_argument("--models", required=True, help="the parallel step's models folder")
    parser.add_argument("--results", required=True, help="the parallel step's result lines")
    parser.add_argument("--max_mape", type=float, default=0.45)
    parser.add_argument("--model_prefix", default="forecast")
    parser.add_argument("--trained_at", default="", help="ISO timestamp; default now")
    parser.add_argument("--output_models", required=True)
    parser.add_argument("--output_metrics", required=True)
    collect(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
