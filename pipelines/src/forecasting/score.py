"""Score step: forecasts per segment with the segment's champion model; flags stale models
(trained more than 60 days before the scoring date). Writes ``forecasts.csv`` and
``summary.json``; a segment without a champion is reported, not scored."""

from __future__ import annotations

import argparse
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from . import gate, mlflow_model
from .schema import SEGMENT, model_name, segment_name
from .step_common import tracking_enabled, write_json


def score(features: Path, scoring_date: date, prefix: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    future = pd.read_csv(
        features / "future.csv",
        parse_dates=["week_start"],
        dtype={"store_id": str, "product_id": str},
    )
    client = mlflow_model.client()
    parts: list[pd.DataFrame] = []
    summary: dict[str, Any] = {"scoring_date": scoring_date.isoformat(), "segments": {}}
    for key, group in future.groupby(list(SEGMENT), sort=True):
        segment = segment_name(*(str(k) for k in key))
        name = model_name(segment, prefix)
        version = mlflow_model.find_champion(client, name)
        if version is None:
            summary["segments"][segment] = {"model_name": name, "status": "no_champion"}
            continue
        trained_raw = str((version.tags or {}).get("trained_at", ""))
        trained = (
            datetime.fromisoformat(trained_raw.replace("Z", "+00:00")).date()
            if trained_raw
            else None
        )
        stale = trained is None or gate.is_stale(trained, scoring_date)
        model = mlflow_model.load(f"models:/{name}/{version.version}")
        forecast = mlflow_model.predict(model, group)["ensemble"].clip(lower=0.0)
        parts.append(
            pd.DataFrame(
                {
                    "store_id": group["store_id"],
                    "product_id": group["product_id"],
                    "week_start": group["week_start"].dt.strftime("%Y-%m-%d"),
                    "segment": segment,
                    "forecast": forecast.round(3),
                    "model_name": name,
                    "model_version": str(version.version),
                    "stale": stale,
                }
            )
        )
        summary["segments"][segment] = {
            "model_name": name,
            "model_version": str(version.version),
            "trained_at": trained_raw,
            "stale": stale,
            "rows": len(group),
            "status": "scored",
        }
    columns = [
        "store_id",
        "product_id",
        "week_start",
        "segment",
        "forecast",
        "model_name",
        "model_version",
        "stale",
    ]
    forecasts = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
    summary["stale_models"] = sorted(s for s, v in summary["segments"].items() if v.get("stale"))
    return forecasts, summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--features", required=True)
    parser.add_argument("--scoring_date", required=True)
    parser.add_argument("--model_prefix", default="forecast")
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    if not tracking_enabled():
        raise RuntimeError("score needs an MLflow tracking server (MLFLOW_TRACKING_URI is not set)")
    forecasts, summary = score(
        Path(args.features), date.fromisoformat(args.scoring_date), args.model_prefix
    )
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    forecasts.to_csv(out / "forecasts.csv", index=False)
    write_json(out / "summary.json", summary)
    print(f"score: {len(forecasts)} forecasts, stale: {summary['stale_models']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
