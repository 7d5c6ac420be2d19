"""Train step: one forecaster (LASSO + embedding network + baseline) per segment.

Writes ``<output>/<segment slug>/`` as an MLflow pyfunc model per segment and
``<output>/index.json`` listing them with their training metadata.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from . import mlflow_model
from .models import SegmentForecaster, TrainConfig
from .schema import SEGMENT, model_name, segment_name
from .step_common import mlflow_run, read_json, slug, write_json


def run(args: argparse.Namespace) -> list[dict[str, object]]:
    features = Path(args.features)
    meta = read_json(features / "meta.json")
    frame = pd.read_csv(
        features / "train.csv",
        parse_dates=["week_start"],
        dtype={"store_id": str, "product_id": str},
    )
    config = TrainConfig(seed=args.seed, epochs=args.epochs or None)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    trained_at = args.trained_at or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    index: list[dict[str, object]] = []
    with mlflow_run() as run_ctx:
        for key, group in frame.groupby(list(SEGMENT), sort=True):
            segment = segment_name(*(str(k) for k in key))
            forecaster = SegmentForecaster(meta["exog"], config).fit(group)
            metadata = {
                "segment": segment,
                "trained_at": trained_at,
                "origin": str(meta["origin"]),
                "rows": str(len(group)),
            }
            mlflow_model.save(out / slug(segment), forecaster, metadata)
            index.append(
                {
                    **metadata,
                    "path": slug(segment),
                    "model_name": model_name(segment, args.model_prefix),
                }
            )
            print(f"train: {segment}: {len(group)} rows")
        if run_ctx is not None:
            import mlflow

            mlflow.log_params(
                {"seed": args.seed, "segments": len(index), "lasso_alpha": config.lasso_alpha}
            )
    write_json(out / "index.json", {"models": index, "dataset_versions": meta["dataset_versions"]})
    return index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--features", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=0, help="0: chosen from the data size")
    parser.add_argument("--model_prefix", default="forecast")
    parser.add_argument("--trained_at", default="", help="ISO timestamp; default now")
    run(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
