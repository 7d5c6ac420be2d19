"""Forecast quality on real data: the Walmart store-sales dataset in ../shared/data/walmart.

Stores map to formats by Type (A → large, B/C → small); departments split slow/fast by median
sales per format, measured on each origin's own history. A Walmart date is the Friday that
ends its week, so a week here starts on the Saturday before (that puts the holiday calendar
on exactly the weeks the data flags). Sales count in units of $100: the one MAPE definition
(``forecasting.metrics``: rows with |actual| ≥ 1 unit) then covers the weeks with at least
$100 of sales; WMAE and RMSE are printed in dollars.

Every origin is trained the way the train pipeline trains: the direct model across all
series from many past origins, each segment's ensemble weights validated on origins inside
the history, never on the holdout. Markdowns are planned, so known in advance; temperature,
fuel price, CPI and unemployment are frozen at their value at the origin.

Two modes:

- rolling origins (the default, ``make bench-forecast``): ``--origins`` forecast origins,
  ``--step-weeks`` apart, the latest that far before the data's last week; from each, every
  horizon of ``--horizons`` (13, 26 and 39 weeks) that ends inside the data. One model per
  origin covers its longest horizon; the shorter ones are its first weeks. Prints per origin
  and horizon MAPE, WAPE and WMAE of every member, the baselines and the ensemble; per horizon
  the median and worst origin; slow segments; weights; what the direct model leans on
  (gain importance); whether the goals hold; wall times.
- one window: ``--holdout-end YYYY-MM-DD --holdout-weeks N`` forecasts the N weeks ending
  that Walmart date from the week before them and prints, as its last line, ``overall
  ensemble_mape=X historical_avg_mape=Y seasonal_naive_mape=Z seasonal_growth_mape=W
  ensemble_wape=A seasonal_naive_wape=B``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA = REPO_ROOT.parent / "shared" / "data" / "walmart"
HOLDOUT_WEEKS = 13
HORIZONS = (13, 26, 39)
STEP_WEEKS = 13
ORIGINS = 6
UNIT = 100.0  # dollars per unit of quantity
WEEK_END = 6  # days from a week's first day (Saturday) to the Walmart date (Friday)
MIN_HISTORY = 52  # weeks before an origin: seasonal naive needs a year
MARKDOWNS = tuple(f"MarkDown{i}" for i in range(1, 6))
FROZEN = ("Temperature", "Fuel_Price", "CPI", "Unemployment")
# Table name → forecaster component.
METHODS = {
    "historical_avg": "baseline",
    "seasonal_naive": "seasonal_naive",
    "seasonal_growth": "seasonal_growth",
    "direct": "direct",
    "ensemble": "ensemble",
}
MEASURES = ("mape", "wape", "wmae")
TITLES = {"mape": "MAPE", "wape": "WAPE", "wmae": "WMAE $"}


def load_walmart(folder: Path) -> tuple[Any, list[str]]:
    """The Walmart files as one standard frame (keys, quantity, segment columns, outside
    values) and the outside columns."""
    import pandas as pd

    train = pd.read_csv(folder / "train.csv", na_values=["NA"])
    stores = pd.read_csv(folder / "stores.csv")
    feats = pd.read_csv(folder / "features.csv", na_values=["NA"]).drop(columns=["IsHoliday"])
    frame = train.merge(stores, on="Store").merge(feats, on=["Store", "Date"], how="left")
    frame[list(MARKDOWNS)] = frame[list(MARKDOWNS)].fillna(0.0)
    frame = frame.rename(
        columns={"Store": "store_id", "Dept": "product_id", "Weekly_Sales": "quantity"}
    )
    frame["quantity"] = frame["quantity"] / UNIT
    frame["store_id"] = frame["store_id"].astype(str)
    frame["product_id"] = frame["product_id"].astype(str)
    frame["week_start"] = pd.to_datetime(frame["Date"]) - pd.Timedelta(days=WEEK_END)
    frame["region"] = "walmart"
    frame["format"] = frame["Type"].map({"A": "large", "B": "small", "C": "small"})
    frame["zip"] = frame["store_id"]
    holiday = frame["IsHoliday"]
    if holiday.dtype != bool:
        holiday = holiday.astype(str).str.upper() == "TRUE"
    frame["event_count"] = holiday.astype(float)  # the data's own holiday calendar
    columns = ["store_id", "product_id", "week_start", "quantity", "region", "format", "zip",
               "event_count", *FROZEN, *MARKDOWNS]  # fmt: skip
    return frame[columns], [*FROZEN, *MARKDOWNS]


def _label(week_start: Any) -> str:
    import pandas as pd

    return f"{pd.Timestamp(week_start) + pd.Timedelta(days=WEEK_END):%Y-%m-%d}"


@dataclass
class OriginResult:
    """One forecast origin: metrics per horizon, segment (plus ``overall``) and method."""

    origin: str
    horizons: dict[int, dict[str, dict[str, dict[str, float]]]] = field(default_factory=dict)
    ends: dict[int, str] = field(default_factory=dict)
    rows: dict[int, int] = field(default_factory=dict)
    diverged: dict[str, dict[str, str]] = field(default_factory=dict)
    weights: dict[str, dict[str, float]] = field(default_factory=dict)
    importance: dict[str, float] = field(default_factory=dict)
    validation: dict[str, float] = field(default_factory=dict)
    examples: int = 0
    prep_s: float = 0.0
    fit_s: float = 0.0
    total_s: float = 0.0


def evaluate_origin(
    frame: Any, exog: list[str], origin: Any, horizons: Sequence[int]
) -> OriginResult:
    """Train on the weeks up to ``origin``; score each horizon's weeks after it."""
    import pandas as pd

    from pipelines.src.forecasting import features as F
    from pipelines.src.forecasting.models import TrainConfig, train_segments

    started = time.perf_counter()
    longest = max(horizons)
    last = origin + pd.Timedelta(weeks=longest)
    window = frame[frame["week_start"] <= last]
    history = window[window["week_start"] <= origin]
    window = window.assign(velocity=F.assign_velocity(window, history))
    history = window[window["week_start"] <= origin]
    holdout = window[window["week_start"] > origin]
    test = F.build_features(history, holdout, exog, MARKDOWNS)
    result = OriginResult(origin=_label(origin), prep_s=time.perf_counter() - started)
    keys = sorted({tuple(k) for k in history[["region", "format", "velocity"]].values})
    fitted = time.perf_counter()
    config = TrainConfig(horizon=longest)
    forecasters = train_segments(history, exog, config, MARKDOWNS, keys)
    result.fit_s = time.perf_counter() - fitted
    parts = []
    for key, model in forecasters.items():
        segment = "/".join(key[1:])
        mask = (test["format"] == key[1]) & (test["velocity"] == key[2])
        target = test[mask]
        predicted = model.predict_components(target)
        parts.append(
            pd.DataFrame(
                {
                    "segment": segment,
                    "horizon": target["horizon"],
                    "actual": target["quantity"],
                    "holiday": target["holiday"] > 0,
                }
                | {m: predicted[c] for m, c in METHODS.items() if c in predicted}
            )
        )
        result.diverged[segment] = {n: r.reason for n, r in model.reports.items() if r.diverged}
        result.weights[segment] = dict(model.weights)
        result.examples = model.trained_rows
        direct = model.members.get("direct")
        if direct is not None and not result.importance:
            result.importance = importance(direct)
    scored = pd.concat(parts)
    for horizon in horizons:
        rows = scored[scored["horizon"] <= horizon]
        tables = {"overall": _measure(rows)}
        for segment, group in rows.groupby("segment"):
            tables[str(segment)] = _measure(group)
        result.horizons[horizon] = tables
        result.rows[horizon] = len(rows)
        result.ends[horizon] = _label(origin + pd.Timedelta(weeks=horizon))
    result.total_s = time.perf_counter() - started
    return result


def importance(member: Any) -> dict[str, float]:
    """The direct model's gain importance per input, as shares of the total."""
    model = getattr(member, "model", None)
    if model is None or not hasattr(model, "feature_importance"):
        return {}
    gains = model.feature_importance(importance_type="gain")
    total = float(sum(gains)) or 1.0
    return {name: float(g) / total for name, g in zip(member.inputs(), gains, strict=True)}


def _measure(preds: Any) -> dict[str, dict[str, float]]:
    from pipelines.src.forecasting import metrics as M

    out = {}
    for method in METHODS:
        if method not in preds:
            continue
        values = M.summarize(preds["actual"], preds[method], preds["holiday"])
        values["wmae"] *= UNIT
        values["rmse_all"] *= UNIT
        values["rmse_zero"] *= UNIT
        out[method] = values
    return out


# ------------------------------------------------------------------------------ printing


def _num(value: float | None, digits: int) -> str:
    return "nan" if value is None or math.isnan(value) else f"{value:,.{digits}f}"


def _header(first: str, width: int) -> str:
    cols = "".join(f" {TITLES[m]:>10}" for m in MEASURES)
    return f"{first:<{width}} {'method':<16}{cols}"


def _line(label: str, width: int, method: str, values: dict[str, float]) -> str:
    cells = "".join(
        f" {_num(values.get(m), 3 if m in ('mape', 'wape') else 0):>10}" for m in MEASURES
    )
    return f"{label:<{width}} {method:<16}{cells}"


def print_origin(result: OriginResult, horizon: int) -> None:
    header = _header("segment", 14)
    print(
        f"\nholdout {result.origin} + {horizon} weeks (to {result.ends[horizon]}): "
        f"{result.rows[horizon]:,} rows"
    )
    print(header)
    print("-" * len(header))
    for segment, table in result.horizons[horizon].items():
        for method, values in table.items():
            print(_line(segment, 14, method, values))
    for segment, members in result.diverged.items():
        for name, reason in members.items():
            print(f"diverged: {segment} {name}: {reason}")


def print_rolling(results: list[OriginResult], horizons: Sequence[int]) -> None:
    header = _header("origin   horizon", 22)
    print("\nper origin and horizon (all segments pooled)")
    print(header)
    print("-" * len(header))
    for horizon in horizons:
        for r in results:
            if horizon not in r.horizons:
                continue
            for method, values in r.horizons[horizon]["overall"].items():
                print(_line(f"{r.origin} {horizon:>3}w", 22, method, values))
    print("\nover origins (all segments pooled)")
    print(_header("statistic", 22))
    print("-" * len(header))
    for horizon in horizons:
        done = [r for r in results if horizon in r.horizons]
        for label, pick in (("median", statistics.median), ("worst", max)):
            for method in METHODS:
                tables = [r.horizons[horizon]["overall"].get(method) for r in done]
                if not done or any(t is None for t in tables):
                    continue
                values = {m: pick(t[m] for t in tables if t) for m in MEASURES}
                print(_line(f"{label} {horizon:>3}w", 22, method, values))
    print("\nslow movers: median over origins, 13 weeks")
    print(_header("segment", 22))
    print("-" * len(header))
    first = horizons[0]
    slow = sorted({s for r in results for s in r.horizons.get(first, {}) if s.endswith("/slow")})
    for segment in slow:
        for method in METHODS:
            tables = [r.horizons[first][segment].get(method) for r in results
                      if segment in r.horizons.get(first, {})]  # fmt: skip
            if tables and all(tables):
                values = {m: statistics.median(t[m] for t in tables if t) for m in MEASURES}
                print(_line(segment, 22, method, values))
    print("\nwall time per origin")
    for r in results:
        print(f"  {r.origin}: {r.total_s:6.1f}s (features {r.prep_s:.1f}s, training "
              f"{r.fit_s:.1f}s on {r.examples:,} examples)")  # fmt: skip
    print("\nensemble weights and diverged members per origin")
    for r in results:
        for segment in sorted(r.weights):
            weights = ", ".join(f"{n} {w:.2f}" for n, w in r.weights[segment].items())
            diverged = "; ".join(f"{n} ({why})" for n, why in r.diverged[segment].items())
            flag = f"  DIVERGED {diverged}" if diverged else ""
            print(f"  {r.origin} {segment:<11} {weights}{flag}")
    shares: dict[str, list[float]] = {}
    for r in results:
        for name, share in r.importance.items():
            shares.setdefault(name, []).append(share)
    if shares:
        print("\nwhat the direct model leans on (gain share, mean over origins)")
        ranked = sorted(shares.items(), key=lambda kv: -statistics.fmean(kv[1]))
        for name, gains in ranked[:20]:
            print(f"  {name:<22} {statistics.fmean(gains):6.1%}")


def goals(results: list[OriginResult], horizons: Sequence[int]) -> list[tuple[str, bool, str]]:
    """Each benchmark goal: (statement, holds, the figures behind it)."""
    cells = [
        (r.origin, h, r.horizons[h]["overall"]) for r in results for h in horizons
        if h in r.horizons
    ]  # fmt: skip
    naive_cut = [
        c for c in cells if c[2]["ensemble"]["mape"] <= 0.9 * c[2]["seasonal_naive"]["mape"]
    ]
    growth = [c for c in cells if c[2]["ensemble"]["mape"] < c[2]["seasonal_growth"]["mape"]]
    wape = [c for c in cells if c[2]["ensemble"]["wape"] < c[2]["seasonal_naive"]["wape"]]

    def missing(hit: list[Any]) -> str:
        names = [f"{o} {h}w" for o, h, _ in cells if (o, h) not in {(a, b) for a, b, _ in hit}]
        return "; missed " + ", ".join(names) if names else ""

    first = horizons[0]
    short = [c[2] for c in cells if c[1] == first]
    out = [
        (
            "every origin and horizon: ensemble MAPE >= 10% below seasonal naive",
            len(naive_cut) == len(cells),
            f"{len(naive_cut)} of {len(cells)}{missing(naive_cut)}",
        ),
        (
            "every origin and horizon: ensemble MAPE below seasonal growth",
            len(growth) == len(cells),
            f"{len(growth)} of {len(cells)}{missing(growth)}",
        ),
        (
            "every origin and horizon: ensemble WAPE below seasonal naive",
            len(wape) == len(cells),
            f"{len(wape)} of {len(cells)}{missing(wape)}",
        ),
    ]
    if short:
        median = {m: statistics.median(t[m]["mape"] for t in short) for m in METHODS if
                  all(m in t for t in short)}  # fmt: skip
        vs_naive = 1 - median["ensemble"] / median["seasonal_naive"]
        vs_avg = 1 - median["ensemble"] / median["historical_avg"]
        out += [
            (
                f"median over origins at {first} weeks: MAPE >= 20% below seasonal naive",
                vs_naive >= 0.20,
                f"{median['ensemble']:.3f} vs {median['seasonal_naive']:.3f}: {vs_naive:.1%} below",
            ),
            (
                f"median over origins at {first} weeks: MAPE >= 50% below historical average",
                vs_avg >= 0.50,
                f"{median['ensemble']:.3f} vs {median['historical_avg']:.3f}: {vs_avg:.1%} below",
            ),
        ]
    return out


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--holdout-end", help="one window: the Walmart date of its last week")
    parser.add_argument("--holdout-weeks", type=int, default=HOLDOUT_WEEKS)
    parser.add_argument("--origins", type=int, default=ORIGINS)
    parser.add_argument("--step-weeks", type=int, default=STEP_WEEKS)
    parser.add_argument("--horizons", default=",".join(str(h) for h in HORIZONS),
                        help="comma-separated weeks ahead, rolling mode")  # fmt: skip
    parser.add_argument("--data", type=Path, default=DATA, help="the Walmart files")
    args = parser.parse_args(argv)
    for name in ("holdout_weeks", "origins", "step_weeks"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    try:
        args.horizons = sorted({int(h) for h in str(args.horizons).split(",") if h.strip()})
    except ValueError:
        parser.error("--horizons must be whole numbers of weeks, e.g. 13,26,39")
    if not args.horizons or min(args.horizons) < 1:
        parser.error("--horizons must name at least one horizon of 1 week or more")
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
    print(f"data: {len(frame):,} rows, {series:,} series, "
          f"weeks ending {_label(weeks[0])}..{_label(weeks[-1])}")  # fmt: skip
    if args.holdout_end:
        try:
            end = pd.Timestamp(args.holdout_end) - pd.Timedelta(days=WEEK_END)
        except ValueError:
            print(f"error: --holdout-end {args.holdout_end!r} is not a date (YYYY-MM-DD)")
            return 2
        known = [w for w in weeks if w <= end]
        if len(known) < args.holdout_weeks + MIN_HISTORY:
            print(
                f"error: a {args.holdout_weeks}-week holdout ending {args.holdout_end} leaves "
                "less than a year of history (the seasonal naive needs one)"
            )
            return 2
        origin = known[-args.holdout_weeks - 1]
        result = evaluate_origin(frame, exog, origin, [args.holdout_weeks])
        print_origin(result, args.holdout_weeks)
        total = time.perf_counter() - t0
        print(f"\nwall time: total {total:.1f}s (features {result.prep_s:.1f}s, "
              f"training {result.fit_s:.1f}s)")  # fmt: skip
        o = result.horizons[args.holdout_weeks]["overall"]
        print(
            f"overall ensemble_mape={o['ensemble']['mape']:.3f} "
            f"historical_avg_mape={o['historical_avg']['mape']:.3f} "
            f"seasonal_naive_mape={o['seasonal_naive']['mape']:.3f} "
            f"seasonal_growth_mape={o['seasonal_growth']['mape']:.3f} "
            f"ensemble_wape={o['ensemble']['wape']:.3f} "
            f"seasonal_naive_wape={o['seasonal_naive']['wape']:.3f}"
        )
        return 0
    last = len(weeks) - 1
    origins = [last - k * args.step_weeks for k in range(1, args.origins + 1)]
    origins = [o for o in origins if o + 1 >= MIN_HISTORY and o + min(args.horizons) <= last]
    if len(origins) < args.origins:
        print(f"note: {args.origins - len(origins)} origin(s) dropped: less than a year of "
              "history or no horizon inside the data")  # fmt: skip
    if not origins:
        print("error: no origin has a year of history and a horizon inside the data")
        return 2
    print(
        f"rolling origins: {len(origins)} origins {args.step_weeks} weeks apart, "
        f"{_label(weeks[min(origins)])}..{_label(weeks[max(origins)])}; horizons "
        f"{', '.join(str(h) for h in args.horizons)} weeks where they end inside the data"
    )
    results = []
    for index in sorted(origins):
        fits = [h for h in args.horizons if index + h <= last]
        started = time.perf_counter()
        result = evaluate_origin(frame, exog, weeks[index], fits)
        results.append(result)
        summary = ", ".join(
            f"{h}w ensemble {result.horizons[h]['overall']['ensemble']['mape']:.3f} / seasonal "
            f"naive {result.horizons[h]['overall']['seasonal_naive']['mape']:.3f}"
            for h in fits
        )
        print(f"  origin {result.origin}: {summary} ({time.perf_counter() - started:.0f}s)",
              flush=True)  # fmt: skip
    print_rolling(results, args.horizons)
    total = time.perf_counter() - t0
    print("\ngoals")
    for statement, holds, figures in goals(results, args.horizons):
        print(f"  [{'yes' if holds else 'NO '}] {statement}: {figures}")
    prep = sum(r.prep_s for r in results)
    fitting = sum(r.fit_s for r in results)
    print(f"\nwall time: total {total:.1f}s (features {prep:.1f}s, training {fitting:.1f}s; "
          "goal <= 600s)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
