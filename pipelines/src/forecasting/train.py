"""Train step: one validated ensemble forecaster per segment (see ``models``).

The learned members are trained once on every series of the prep step's ``history.csv``
(the context), from many past origins; each segment gets its own validated weights. Writes
``<output>/<segment slug>/`` as an MLflow pyfunc model per segment and
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
from .models import TrainConfig, single_threaded, train_segments
from .schema import model_name, segment_name
from .step_common import mlflow_run, read_json, slug, write_json


def read_history(path: Path) -> pd.DataFrame:
    return pd.read_csv(
        path, parse_dates=["week_start"], dtype={"store_id": str, "product_id": str, "zip": str}
    )


def run(args: argparse.Namespace) -> list[dict[str, object]]:
    features = Path(args.features)
    meta = read_json(features / "meta.json")
    history = read_history(features / "history.csv")
    config = TrainConfig(
        seed=args.seed, epochs=args.epochs or None, horizon=int(meta.get("horizon", 13))
    )
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    trained_at = args.trained_at or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    keys = [tuple(str(s).split("/")) for s in meta["segments"]]
    index: list[dict[str, object]] = []
    with mlflow_run() as run_ctx:
        forecasters = train_segments(
            history, meta["exog"], config, meta.get("known_ahead") or [], keys
        )
        for key, forecaster in forecasters.items():
            segment = segment_name(*key)
            metadata = {
                "segment": segment,
                "trained_at": trained_at,
                "origin": str(meta["origin"]),
                "rows": str(forecaster.trained_rows),
                "horizon": str(config.horizon),
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
            print(
                f"train: {segment}: {forecaster.trained_rows} examples from "
                f"{len(history)} context rows; weights {weights}; diverged {diverged}"
            )
        if run_ctx is not None:
            import mlflow

            mlflow.log_params(
                {"seed": args.seed, "segments": len(index), "horizon": config.horizon,
                 "members": ",".join(config.members)}
            )  # fmt: skip
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
    args = parser.parse_args(argv)
    single_threaded()
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
