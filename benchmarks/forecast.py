"""Forecast quality on real data: the Walmart store-sales dataset in ../shared/data/walmart.

Stores map to formats by Type (A → large, B/C → small); departments split slow/fast by median
sales per format; the last 26 weeks are the holdout. Prints, per segment and overall, MAPE
(rows with |actual| >= 100), RMSE on zero actuals, RMSE over all rows and WMAE (holiday weeks
weighted 5) for the historical average, seasonal naive (same week last year), LASSO, the
embedding network and their ensemble, plus wall times. Run with ``make bench-forecast``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA = REPO_ROOT.parent / "shared" / "data" / "walmart"
HOLDOUT_WEEKS = 26
MIN_ACTUAL = 100.0
METHODS = ("historical_avg", "seasonal_naive", "lasso", "nn", "ensemble")


def load_walmart(folder: Path) -> tuple[Any, list[str]]:
    """The Walmart files as one standard frame (keys, quantity, segment columns, exogenous)."""
    import pandas as pd

    train = pd.read_csv(folder / "train.csv", na_values=["NA"])
    stores = pd.read_csv(folder / "stores.csv")
    feats = pd.read_csv(folder / "features.csv", na_values=["NA"]).drop(columns=["IsHoliday"])
    frame = train.merge(stores, on="Store").merge(feats, on=["Store", "Date"], how="left")
    markdowns = [f"MarkDown{i}" for i in range(1, 6)]
    frame[markdowns] = frame[markdowns].fillna(0.0)
    exog = ["Temperature", "Fuel_Price", "CPI", "Unemployment", *markdowns]
    frame = frame.rename(
        columns={"Store": "store_id", "Dept": "product_id", "Weekly_Sales": "quantity"}
    )
    frame["store_id"] = frame["store_id"].astype(str)
    frame["product_id"] = frame["product_id"].astype(str)
    frame["week_start"] = pd.to_datetime(frame["Date"])
    frame["region"] = "walmart"
    frame["format"] = frame["Type"].map({"A": "large", "B": "small", "C": "small"})
    frame["zip"] = frame["store_id"]
    holiday = frame["IsHoliday"]
    if holiday.dtype != bool:
        holiday = holiday.astype(str).str.upper() == "TRUE"
    frame["holiday"] = holiday.astype(float)
    frame["event_count"] = frame["holiday"]
    return frame, exog


def main() -> int:
    if not DATA.is_dir():
        print(f"skipped: Walmart data not found at {DATA} (read from ../shared/data)")
        return 0
    import pandas as pd
    import torch

    from pipelines.src.forecasting import features as F
    from pipelines.src.forecasting import metrics as M
    from pipelines.src.forecasting.models import SegmentForecaster

    torch.set_num_threads(2)
    t0 = time.perf_counter()
    frame, exog = load_walmart(DATA)
    history, holdout = F.split_holdout(frame, HOLDOUT_WEEKS)
    frame["velocity"] = F.assign_velocity(frame, history)
    history, holdout = F.split_holdout(frame, HOLDOUT_WEEKS)
    train = F.build_features(history, history, exog)
    test = F.build_features(history, holdout, exog)
    prep_s = time.perf_counter() - t0
    print(
        f"data: {len(frame):,} rows, {frame.groupby(['store_id', 'product_id']).ngroups:,} series"
    )
    origin = history["week_start"].max().date()
    print(f"train {len(train):,} rows to {origin}, holdout {len(test):,} rows")

    rows: list[dict[str, Any]] = []
    pooled: list[pd.DataFrame] = []
    fit_s = 0.0
    for key, group in train.groupby(["format", "velocity"], sort=True):
        segment = "walmart/" + "/".join(str(k) for k in key)
        target = test[(test["format"] == key[0]) & (test["velocity"] == key[1])]
        started = time.perf_counter()
        model = SegmentForecaster(exog).fit(group)
        fit_s += time.perf_counter() - started
        parts = model.predict_components(target)
        preds = pd.DataFrame(
            {
                "actual": target["quantity"],
                "holiday": target["holiday"] > 0,
                "historical_avg": parts["baseline"],
                "seasonal_naive": target["lag52"],
                "lasso": parts["lasso"],
                "nn": parts["nn"],
                "ensemble": parts["ensemble"],
            }
        )
        pooled.append(preds)
        rows.extend(_rows(segment, preds, M))
    rows.extend(_rows("overall", pd.concat(pooled), M))
    _print(rows)
    total = time.perf_counter() - t0
    print(f"\nwall time: total {total:.1f}s (prep {prep_s:.1f}s, fitting {fit_s:.1f}s)")
    overall = {r["method"]: r for r in rows if r["segment"] == "overall"}
    reduction = 1 - overall["ensemble"]["mape"] / overall["historical_avg"]["mape"]
    beats_naive = overall["ensemble"]["mape"] < overall["seasonal_naive"]["mape"]
    print(f"ensemble MAPE reduction vs historical average: {reduction:.1%} (goal >= 40%)")
    print(f"ensemble beats seasonal naive on MAPE: {'yes' if beats_naive else 'no'}")
    return 0


def _rows(segment: str, preds: Any, M: Any) -> list[dict[str, Any]]:
    out = []
    for method in METHODS:
        out.append(
            {
                "segment": segment,
                "method": method,
                "mape": M.mape(preds["actual"], preds[method], MIN_ACTUAL),
                "rmse_zero": M.rmse_zero(preds["actual"], preds[method]),
                "rmse_all": M.rmse_all(preds["actual"], preds[method]),
                "wmae": M.wmae(preds["actual"], preds[method], preds["holiday"]),
                "rows": len(preds),
            }
        )
    return out


def _print(rows: list[dict[str, Any]]) -> None:
    header = f"{'segment':<22} {'method':<15} {'MAPE':>7} {'RMSE0':>9} {'RMSE all':>10} {'WMAE':>9}"
    print("\n" + header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['segment']:<22} {r['method']:<15} {r['mape']:>7.3f} {r['rmse_zero']:>9.1f} "
            f"{r['rmse_all']:>10.1f} {r['wmae']:>9.1f}"
        )


if __name__ == "__main__":
    sys.exit(main())
