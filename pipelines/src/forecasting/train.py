"""Train step: one validated ensemble forecaster per segment (see ``models``).

Writes ``<output>/<segment slug>/`` as an MLflow pyfunc model per segment and
``<output>/index.json`` listing them with their training metadata: ensemble weights, the
members that diverged and why, and each member's validation metrics.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from . import mlflow_model
from .models import SegmentForecaster, TrainConfig, single_threaded
from .schema import SEGMENT, model_name, segment_name
from .step_common import mlflow_run, read_json, slug, write_json


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, parse_dates=["week_start"], dtype={"store_id": str, "product_id": str})


def _segment_rows(frame: pd.DataFrame | None, key: tuple[object, ...]) -> pd.DataFrame | None:
    if frame is None:
        return None
    mask = pd.Series(True, index=frame.index)
    for column, value in zip(SEGMENT, key, strict=True):
        mask &= frame[column].astype(str) == str(value)
    return frame.loc[mask]


def run(args: argparse.Namespace) -> list[dict[str, object]]:
    features = Path(args.features)
    meta = read_json(features / "meta.json")
    frame = _read(features / "train.csv")
    validated = (features / "validation.csv").exists() and (features / "fit.csv").exists()
    fit_all = _read(features / "fit.csv") if validated else None
    check_all = _read(features / "validation.csv") if validated else None
    config = TrainConfig(seed=args.seed, epochs=args.epochs or None, min_actual=args.min_actual)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    trained_at = args.trained_at or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    index: list[dict[str, object]] = []
    with mlflow_run() as run_ctx:
        for key, group in frame.groupby(list(SEGMENT), sort=True):
            segment = segment_name(*(str(k) for k in key))
            fit, check = _segment_rows(fit_all, key), _segment_rows(check_all, key)
            split = (fit, check) if fit is not None and check is not None else None
            forecaster = SegmentForecaster(meta["exog"], config).fit(group, split)
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
                    "training": forecaster.describe(),
                }
            )
            weights = ", ".join(f"{n} {w:.2f}" for n, w in forecaster.weights.items())
            diverged = ", ".join(forecaster.diverged) or "none"
            print(f"train: {segment}: {len(group)} rows; weights {weights}; diverged {diverged}")
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
    parser.add_argument(
        "--min_actual", type=float, default=1.0, help="MAPE threshold the ensemble is fitted to"
    )
    parser.add_argument("--trained_at", default="", help="ISO timestamp; default now")
    args = parser.parse_args(argv)
    single_threaded()
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
