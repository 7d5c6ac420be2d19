"""Evaluate step: metrics per segment for the historical-average baseline, the seasonal naive
forecast, each ensemble member, the ensemble and the current champion on the same holdout,
plus the gate verdict (with whether the candidate also beats seasonal naive), the ensemble's
weights, and the members that diverged in training. Every measure is ``metrics``' (one
definition for the gate, the model test, the dashboard and the benchmark), MAPE over the rows
of at least ``--min_actual`` units, which ``metrics.json`` records (as ``min_actual``) for the
register step to tag and the dashboard to apply. Writes ``metrics.json``."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from . import gate, metrics, mlflow_model
from .models import COMPONENTS
from .schema import SEGMENT, segment_name
from .step_common import mlflow_run, read_json, tracking_enabled, write_json


def _champion_forecast(name: str, frame: pd.DataFrame) -> tuple[str | None, pd.Series | None]:
    if not tracking_enabled():
        return None, None
    client = mlflow_model.client()
    version = mlflow_model.find_champion(client, name)
    if version is None:
        return None, None
    model = mlflow_model.load(f"models:/{name}/{version.version}")
    return str(version.version), mlflow_model.predict(model, frame)["ensemble"]


def evaluate(
    features: Path, models: Path, max_mape: float, min_actual: float = metrics.MIN_ACTUAL
) -> dict[str, Any]:
    min_actual = metrics.check_min_actual(min_actual)
    holdout = pd.read_csv(
        features / "holdout.csv",
        parse_dates=["week_start"],
        dtype={"store_id": str, "product_id": str},
    )
    index = read_json(models / "index.json")
    by_segment = {m["segment"]: m for m in index["models"]}
    result: dict[str, Any] = {"segments": {}, "max_mape": max_mape, "min_actual": min_actual}
    pooled: dict[str, list[pd.Series]] = {c: [] for c in COMPONENTS}
    actuals: list[pd.Series] = []
    holidays: list[pd.Series] = []
    for key, group in holdout.groupby(list(SEGMENT), sort=True):
        segment = segment_name(*(str(k) for k in key))
        entry = by_segment.get(segment)
        if entry is None:
            continue
        model = mlflow_model.load(models / str(entry["path"]))
        forecast = mlflow_model.predict(model, group)
        holiday = group.get("holiday")
        seg: dict[str, Any] = {
            c: metrics.summarize(group["quantity"], forecast[c], holiday, min_actual)
            for c in COMPONENTS
            if c in forecast
        }
        champion_version, champion = _champion_forecast(str(entry["model_name"]), group)
        seg["champion"] = (
            metrics.summarize(group["quantity"], champion, holiday, min_actual)
            if champion is not None
            else None
        )
        seg["champion_version"] = champion_version
        naive = seg.get("seasonal_naive")
        verdict = gate.gate(
            seg["ensemble"]["mape"],
            seg["baseline"]["mape"],
            seg["champion"]["mape"] if seg["champion"] else None,
            max_mape,
            naive["mape"] if naive else None,
        )
        seg["gate"] = {
            "passed": verdict.passed,
            "verdict": verdict.label,
            "reasons": verdict.reasons,
            "beats_seasonal_naive": verdict.beats_seasonal_naive,
        }
        training = entry.get("training") or {}
        seg["diverged"] = {
            name: member.get("reason", "")
            for name, member in (training.get("members") or {}).items()
            if member.get("diverged")
        }
        seg["weights"] = training.get("weights") or {}
        seg["validation"] = {
            "ensemble": training.get("ensemble_validation") or {},
            **{
                name: member.get("validation") or {}
                for name, member in (training.get("members") or {}).items()
            },
        }
        seg["model_name"] = entry["model_name"]
        result["segments"][segment] = seg
        actuals.append(group["quantity"])
        holidays.append(holiday if holiday is not None else group["quantity"] * 0)
        for c in COMPONENTS:
            if c in forecast:
                pooled[c].append(forecast[c])
    if actuals:
        actual = pd.concat(actuals)
        flags = pd.concat(holidays)
        result["overall"] = {
            c: metrics.summarize(actual, pd.concat(pooled[c]), flags, min_actual)
            for c in COMPONENTS
            if len(pooled[c]) == len(actuals)
        }
    return result


def _log(result: dict[str, Any]) -> None:
    import mlflow

    values: dict[str, float] = {}
    for segment, seg in result["segments"].items():
        key = segment.replace("/", ".")
        for component in (*COMPONENTS, "champion"):
            if seg.get(component):
                for metric, value in seg[component].items():
                    if metric != "rows" and value is not None and not math.isnan(value):
                        values[f"{key}.{component}.{metric}"] = value
        values[f"{key}.diverged_members"] = float(len(seg.get("diverged") or {}))
        for member, weight in (seg.get("weights") or {}).items():
            values[f"{key}.weight.{member}"] = float(weight)
    mlflow.log_metrics(values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--features", required=True)
    parser.add_argument("--models", required=True)
    parser.add_argument("--max_mape", type=float, default=gate.MAX_MAPE)
    parser.add_argument(
        "--min_actual", type=float, default=metrics.MIN_ACTUAL,
        help="MAPE counts the rows whose actual is at least this, in the data's unit",
    )  # fmt: skip
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    result = evaluate(Path(args.features), Path(args.models), args.max_mape, args.min_actual)
    with mlflow_run() as run_ctx:
        if run_ctx is not None:
            _log(result)
    write_json(Path(args.output) / "metrics.json", result)
    for segment, seg in result["segments"].items():
        ens, base = seg["ensemble"]["mape"], seg["baseline"]["mape"]
        naive = (seg.get("seasonal_naive") or {}).get("mape", math.nan)
        verdict = seg["gate"]["verdict"]
        diverged = ", ".join(seg["diverged"]) or "none"
        print(
            f"evaluate: {segment}: MAPE {ens:.3f} (baseline {base:.3f}, seasonal naive "
            f"{naive:.3f}), gate {verdict}, diverged members: {diverged}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
