"""Forecast quality on real data: the Walmart store-sales dataset in ../shared/data/walmart.

Stores map to formats by Type (A → large, B/C → small); departments split slow/fast by median
sales per format, measured on each origin's own history. Every model is trained the way the
train pipeline trains it: per segment, members validated on the last weeks before the origin,
the ensemble fitted there, never on the holdout.

Two modes:

- rolling origins (the default, ``make bench-forecast``): ``--origins`` holdouts of
  ``--holdout-weeks`` weeks, their ends ``--step-weeks`` apart back from the last week of the
  data. Prints, per origin and overall (median and worst origin), MAPE (rows with |actual| ≥
  100), WAPE, RMSE on zero actuals, RMSE over all rows and WMAE (holiday weeks weighted 5) for
  the historical average, seasonal naive (same week last year), LASSO, the network and the
  ensemble; the slow segments with the same measures; the members that diverged; whether the
  goals hold; wall times.
- one window: ``--holdout-end YYYY-MM-DD --holdout-weeks N`` evaluates the N weeks ending
  that week and prints, as its last line,
  ``overall ensemble_mape=X historical_avg_mape=Y seasonal_naive_mape=Z``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA = REPO_ROOT.parent / "shared" / "data" / "walmart"
HOLDOUT_WEEKS = 13
STEP_WEEKS = 13
ORIGINS = 6
MIN_ACTUAL = 100.0
# Table name → forecaster component.
METHODS = {
    "historical_avg": "baseline",
    "seasonal_naive": "seasonal_naive",
    "seasonal_growth": "seasonal_growth",
    "lasso": "lasso",
    "nn": "nn",
    "count": "count",
    "ensemble": "ensemble",
}
MEASURES = ("mape", "wape", "rmse_zero", "rmse_all", "wmae")
TITLES = {"mape": "MAPE", "wape": "WAPE", "rmse_zero": "RMSE0", "rmse_all": "RMSE all"}
TITLES["wmae"] = "WMAE"


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


@dataclass
class WindowResult:
    """One holdout window: metrics per segment (plus ``overall``) and method, and timings."""

    start: str
    end: str
    rows: int
    metrics: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    diverged: dict[str, dict[str, str]] = field(default_factory=dict)
    weights: dict[str, dict[str, float]] = field(default_factory=dict)
    prep_s: float = 0.0
    fit_s: float = 0.0
    total_s: float = 0.0


def evaluate_window(frame: Any, exog: list[str], end: Any, holdout_weeks: int) -> WindowResult:
    """Train per segment on the weeks before the holdout ending ``end``; score the holdout."""
    import pandas as pd

    from pipelines.src.forecasting import features as F
    from pipelines.src.forecasting import metrics as M
    from pipelines.src.forecasting.models import SegmentForecaster, TrainConfig

    started = time.perf_counter()
    window = frame[frame["week_start"] <= end]
    history, holdout = F.split_holdout(window, holdout_weeks)
    window = window.assign(velocity=F.assign_velocity(window, history))
    history, holdout = F.split_holdout(window, holdout_weeks)
    train = F.build_features(history, history, exog)
    test = F.build_features(history, holdout, exog)
    split = F.validation_split(history)
    fit, check = (
        (F.build_features(split[0], split[0], exog), F.build_features(split[0], split[1], exog))
        if split is not None
        else (None, None)
    )
    result = WindowResult(
        start=str(holdout["week_start"].min().date()),
        end=str(holdout["week_start"].max().date()),
        rows=len(test),
        prep_s=time.perf_counter() - started,
    )
    config = TrainConfig(min_actual=MIN_ACTUAL)
    pooled: list[pd.DataFrame] = []
    for key, group in train.groupby(["format", "velocity"], sort=True):
        segment = "/".join(str(k) for k in key)

        def rows(table: Any, key: Any = key) -> Any:
            return table[(table["format"] == key[0]) & (table["velocity"] == key[1])]

        target = rows(test)
        validation = (rows(fit), rows(check)) if fit is not None else None
        fitted = time.perf_counter()
        model = SegmentForecaster(exog, config).fit(group, validation)
        result.fit_s += time.perf_counter() - fitted
        parts = model.predict_components(target)
        preds = pd.DataFrame(
            {"actual": target["quantity"], "holiday": target["holiday"] > 0}
            | {method: parts[component] for method, component in METHODS.items()}
        )
        pooled.append(preds)
        result.metrics[segment] = _measure(preds, M)
        result.diverged[segment] = {
            name: report.reason for name, report in model.reports.items() if report.diverged
        }
        result.weights[segment] = dict(model.weights)
    result.metrics["overall"] = _measure(pd.concat(pooled), M)
    result.total_s = time.perf_counter() - started
    return result


def _measure(preds: Any, M: Any) -> dict[str, dict[str, float]]:
    return {
        method: {
            "mape": M.mape(preds["actual"], preds[method], MIN_ACTUAL),
            "wape": M.wape(preds["actual"], preds[method]),
            "rmse_zero": M.rmse_zero(preds["actual"], preds[method]),
            "rmse_all": M.rmse_all(preds["actual"], preds[method]),
            "wmae": M.wmae(preds["actual"], preds[method], preds["holiday"]),
        }
        for method in METHODS
    }


# ------------------------------------------------------------------------------ printing


def _num(value: float, digits: int) -> str:
    return "nan" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _header(first: str, width: int) -> str:
    cols = "".join(f" {TITLES[m]:>9}" for m in MEASURES)
    return f"{first:<{width}} {'method':<15}{cols}"


def _line(label: str, width: int, method: str, values: dict[str, float]) -> str:
    cells = "".join(f" {_num(values[m], 3 if m in ('mape', 'wape') else 1):>9}" for m in MEASURES)
    return f"{label:<{width}} {method:<15}{cells}"


def print_window(result: WindowResult) -> None:
    header = _header("segment", 14)
    print(f"\nholdout {result.start} .. {result.end}: {result.rows:,} rows")
    print(header)
    print("-" * len(header))
    for segment, table in result.metrics.items():
        for method in METHODS:
            print(_line(segment, 14, method, table[method]))
    for segment, members in result.diverged.items():
        for name, reason in members.items():
            print(f"diverged: {segment} {name}: {reason}")


def print_rolling(results: list[WindowResult]) -> None:
    header = _header("holdout", 24)
    print("\nper origin (all segments pooled)")
    print(header)
    print("-" * len(header))
    for r in results:
        label = f"{r.start}..{r.end}"
        for method in METHODS:
            print(_line(label, 24, method, r.metrics["overall"][method]))
    print("\nover origins (all segments pooled)")
    print(_header("statistic", 24))
    print("-" * len(header))
    for label, pick in (("median", statistics.median), ("worst origin", max)):
        for method in METHODS:
            values = {m: pick(r.metrics["overall"][method][m] for r in results) for m in MEASURES}
            print(_line(label, 24, method, values))
    slow = sorted({s for r in results for s in r.metrics if s.endswith("/slow")})
    print("\nslow movers: median over origins")
    print(_header("segment", 24))
    print("-" * len(header))
    for segment in slow:
        for method in METHODS:
            values = {
                m: statistics.median(r.metrics[segment][method][m] for r in results)
                for m in MEASURES
            }
            print(_line(segment, 24, method, values))
    print("\nwall time per origin")
    for r in results:
        print(
            f"  {r.start}..{r.end}: {r.total_s:6.1f}s "
            f"(features {r.prep_s:.1f}s, fitting {r.fit_s:.1f}s)"
        )
    print("\nensemble weights and diverged members per origin")
    for r in results:
        for segment in sorted(r.weights):
            weights = ", ".join(f"{n} {w:.2f}" for n, w in r.weights[segment].items())
            diverged = "; ".join(f"{n} ({why})" for n, why in r.diverged[segment].items())
            print(
                f"  {r.end} {segment:<11} {weights}"
                + (f"  DIVERGED {diverged}" if diverged else "")
            )


def goals(results: list[WindowResult]) -> list[tuple[str, bool, str]]:
    """Each benchmark goal: (statement, holds, the figures behind it)."""
    mape = [{m: r.metrics["overall"][m]["mape"] for m in METHODS} for r in results]
    below = [o["ensemble"] < min(o["historical_avg"], o["seasonal_naive"]) for o in mape]
    median = {m: statistics.median(o[m] for o in mape) for m in METHODS}
    vs_avg = 1 - median["ensemble"] / median["historical_avg"]
    vs_naive = 1 - median["ensemble"] / median["seasonal_naive"]
    # The same goals read per origin: the median of each origin's own reduction.
    per_avg = statistics.median(1 - o["ensemble"] / o["historical_avg"] for o in mape)
    per_naive = statistics.median(1 - o["ensemble"] / o["seasonal_naive"] for o in mape)
    members = [m for m in METHODS if m not in ("historical_avg", "ensemble")]
    worst = max(max(o[m] for m in members) / o["historical_avg"] for o in mape)
    blown = [
        f"{r.end} {seg} {m}"
        for r in results
        for seg, table in r.metrics.items()
        if seg != "overall"
        for m in METHODS
        if table[m]["mape"] > 2 * table["historical_avg"]["mape"]
    ]
    return [
        (
            "every origin: ensemble MAPE below seasonal naive and historical average",
            all(below),
            f"{sum(below)} of {len(below)} origins",
        ),
        (
            "median: ensemble MAPE >= 40% below historical average",
            min(vs_avg, per_avg) >= 0.40,
            f"median MAPEs {median['ensemble']:.3f} vs {median['historical_avg']:.3f}: "
            f"{vs_avg:.1%} below; median of the per-origin reductions {per_avg:.1%}",
        ),
        (
            "median: ensemble MAPE >= 10% below seasonal naive",
            min(vs_naive, per_naive) >= 0.10,
            f"median MAPEs {median['ensemble']:.3f} vs {median['seasonal_naive']:.3f}: "
            f"{vs_naive:.1%} below; median of the per-origin reductions {per_naive:.1%}",
        ),
        (
            "no origin where a member's MAPE exceeds 2x the historical average's",
            worst <= 2.0,
            f"worst member / historical average {worst:.2f}; single segments over 2x: "
            f"{', '.join(blown) or 'none'}",
        ),
    ]


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--holdout-end", help="one window: the last week of the holdout")
    parser.add_argument("--holdout-weeks", type=int, default=HOLDOUT_WEEKS)
    parser.add_argument("--origins", type=int, default=ORIGINS)
    parser.add_argument("--step-weeks", type=int, default=STEP_WEEKS)
    parser.add_argument("--data", type=Path, default=DATA, help="the Walmart files")
    args = parser.parse_args(argv)
    for name in ("holdout_weeks", "origins", "step_weeks"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if not args.data.is_dir():
        print(f"skipped: Walmart data not found at {args.data} (read from ../shared/data)")
        return 0
    import pandas as pd

    from pipelines.src.forecasting.models import single_threaded

    single_threaded()
    t0 = time.perf_counter()
    frame, exog = load_walmart(args.data)
    weeks = sorted(frame["week_start"].unique())
    series = frame.groupby(["store_id", "product_id"]).ngroups
    print(
        f"data: {len(frame):,} rows, {series:,} series, "
        f"weeks {weeks[0]:%Y-%m-%d}..{weeks[-1]:%Y-%m-%d}"
    )
    if args.holdout_end:
        try:
            end = pd.Timestamp(args.holdout_end)
        except ValueError:
            print(f"error: --holdout-end {args.holdout_end!r} is not a date (YYYY-MM-DD)")
            return 2
        known = [w for w in weeks if w <= end]
        if len(known) < args.holdout_weeks + 52:
            print(
                f"error: a {args.holdout_weeks}-week holdout ending {end:%Y-%m-%d} leaves less "
                "than a year of history (the seasonal naive needs one)"
            )
            return 2
        result = evaluate_window(frame, exog, known[-1], args.holdout_weeks)
        print_window(result)
        total = time.perf_counter() - t0
        print(
            f"\nwall time: total {total:.1f}s "
            f"(prep {result.prep_s:.1f}s, fitting {result.fit_s:.1f}s)"
        )
        overall = result.metrics["overall"]
        print(
            f"overall ensemble_mape={overall['ensemble']['mape']:.3f} "
            f"historical_avg_mape={overall['historical_avg']['mape']:.3f} "
            f"seasonal_naive_mape={overall['seasonal_naive']['mape']:.3f}"
        )
        return 0
    ends = [weeks[len(weeks) - 1 - i * args.step_weeks] for i in range(args.origins)]
    ends = [e for e in ends if weeks.index(e) + 1 >= args.holdout_weeks + 52]
    if len(ends) < args.origins:
        print(f"note: {args.origins - len(ends)} origin(s) dropped: less than a year of history")
    first = weeks[weeks.index(ends[-1]) - args.holdout_weeks + 1]
    print(
        f"rolling origins: {len(ends)} holdouts of {args.holdout_weeks} weeks, ends "
        f"{args.step_weeks} weeks apart, covering {first:%Y-%m-%d}..{ends[0]:%Y-%m-%d}"
    )
    results = []
    for end in reversed(ends):
        started = time.perf_counter()
        result = evaluate_window(frame, exog, end, args.holdout_weeks)
        results.append(result)
        o = result.metrics["overall"]
        print(
            f"  origin {result.start}..{result.end}: ensemble {o['ensemble']['mape']:.3f}, "
            f"historical avg {o['historical_avg']['mape']:.3f}, seasonal naive "
            f"{o['seasonal_naive']['mape']:.3f} ({time.perf_counter() - started:.0f}s)",
            flush=True,
        )
    print_rolling(results)
    total = time.perf_counter() - t0
    prep = sum(r.prep_s for r in results)
    fitting = sum(r.fit_s for r in results)
    print("\ngoals")
    for statement, holds, figures in goals(results):
        print(f"  [{'yes' if holds else 'NO '}] {statement}: {figures}")
    print(
        f"\nwall time: total {total:.1f}s (prep {prep:.1f}s, fitting {fitting:.1f}s; goal <= 600s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
