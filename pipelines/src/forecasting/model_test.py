"""Model test step: offline test of one registered model version on a holdout.

Passes when the version's MAPE is at most the threshold (0.45) and below the historical
average's on the same rows; whether it also beats seasonal naive is recorded, not required.
MAPE counts the rows of at least ``--min_actual`` units (``metrics``' one definition).
Records the verdict (and that threshold, ``test_min_actual``) as tags on the version and in
``verdict.json``.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from . import gate, metrics, mlflow_model
from .step_common import tracking_enabled, write_json


def test_model(
    features: Path, name: str, version: str, max_mape: float,
    min_actual: float = metrics.MIN_ACTUAL,
) -> dict[str, Any]:  # fmt: skip
    min_actual = metrics.check_min_actual(min_actual)
    holdout = pd.read_csv(
        features / "holdout.csv",
        parse_dates=["week_start"],
        dtype={"store_id": str, "product_id": str},
    )
    client = mlflow_model.client()
    info = client.get_model_version(name, version)
    segment = str((info.tags or {}).get("segment", ""))
    if segment:
        region, fmt, velocity = segment.split("/")
        holdout = holdout[
            (holdout["region"].astype(str) == region)
            & (holdout["format"] == fmt)
            & (holdout["velocity"] == velocity)
        ]
    if holdout.empty:
        raise ValueError(f"no holdout rows for segment {segment!r} of {name}:{version}")
    forecast = mlflow_model.predict(mlflow_model.load(f"models:/{name}/{version}"), holdout)
    holiday = holdout.get("holiday")
    model_metrics = metrics.summarize(
        holdout["quantity"], forecast["ensemble"], holiday, min_actual
    )
    baseline = metrics.summarize(holdout["quantity"], forecast["baseline"], holiday, min_actual)
    # Models saved before seasonal naive was a member forecast it from the same features.
    naive_forecast = forecast.get("seasonal_naive", holdout.get("lag52"))
    naive = (
        metrics.summarize(holdout["quantity"], naive_forecast, holiday, min_actual)
        if naive_forecast is not None
        else None
    )
    verdict = gate.gate(
        model_metrics["mape"], baseline["mape"], None, max_mape, naive["mape"] if naive else None
    )
    tested_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    tags = {
        "test_passed": str(verdict.passed).lower(),
        "test_mape": f"{model_metrics['mape']:.6g}",
        "test_baseline_mape": f"{baseline['mape']:.6g}",
        "test_wape": f"{model_metrics['wape']:.6g}",
        "test_wmae": f"{model_metrics['wmae']:.6g}",
        "test_rmse_zero": f"{model_metrics['rmse_zero']:.6g}",
        "test_rmse_all": f"{model_metrics['rmse_all']:.6g}",
        "tested_at": tested_at,
        "test_reasons": "; ".join(verdict.reasons),
        "test_min_actual": f"{min_actual:g}",
    }
    if naive is not None:
        tags["test_seasonal_naive_mape"] = f"{naive['mape']:.6g}"
    if verdict.beats_seasonal_naive is not None:
        tags["test_beats_seasonal_naive"] = str(verdict.beats_seasonal_naive).lower()
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    return {
        "model_name": name,
        "model_version": version,
        "segment": segment,
        "passed": verdict.passed,
        "reasons": verdict.reasons,
        "metrics": model_metrics,
        "model": model_metrics,
        "baseline": baseline,
        "seasonal_naive": naive,
        "beats_seasonal_naive": verdict.beats_seasonal_naive,
        "min_actual": min_actual,
        "tested_at": tested_at,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--features", required=True)
    parser.add_argument("--model_name", required=True)
    parser.add_argument("--model_version", required=True)
    parser.add_argument("--max_mape", type=float, default=gate.MAX_MAPE)
    parser.add_argument(
        "--min_actual", type=float, default=metrics.MIN_ACTUAL,
        help="MAPE counts the rows whose actual is at least this, in the data's unit",
    )  # fmt: skip
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    if not tracking_enabled():
        raise RuntimeError(
            "model_test needs an MLflow tracking server (MLFLOW_TRACKING_URI is not set)"
        )
    result = test_model(
        Path(args.features), args.model_name, args.model_version, args.max_mape, args.min_actual
    )
    write_json(Path(args.output) / "metrics.json", result)
    outcome = "passed" if result["passed"] else "failed"
    print(f"model_test: {args.model_name}:{args.model_version} {outcome}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
