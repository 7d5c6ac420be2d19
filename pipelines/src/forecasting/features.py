"""From standard conditioned tables to model features (pure pandas, no I/O except ``read_folder``).

Forecasts are direct, from a forecast origin: every feature of a target row is computed from
the history before the origin (series level, same week last year, recent level, year-over-year
growth, share of zero weeks), plus calendar and exogenous values known for that week
(weather, events). The target is the ratio of quantity to the series' historical mean, which
puts big and small series on one scale so a single model per segment can learn from all of
them.

Model selection needs forecasts it has not seen the answers to: ``validation_split`` holds
out the last weeks of a history the same way ``split_holdout`` holds out a holdout, so the
ensemble can be fitted on a window inside the training data and never on the holdout.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .schema import EVENTS, SERIES, SHIPMENTS, STORES, WEATHER_KEYS

LAG_DAYS = 364  # 52 weeks: the same week day last year
RECENT_WEEKS = 8
FOURIER_TERMS = 3
RATIO_CLIP = (0.0, 5.0)
# Year-over-year growth is measured on a few weeks of noisy data: bounded so one odd week
# cannot double or halve a whole series' forecast.
GROWTH_CLIP = (0.5, 2.0)
VALIDATION_WEEKS = 13
BASE_NUMERIC = (
    "lag52_ratio",
    "lag52_nbr",
    "has_lag52",
    "recent_ratio",
    "growth",
    "zero_share",
    "log_series_mean",
    "event_count",
    *(f"{f}{k}" for k in range(1, FOURIER_TERMS + 1) for f in ("sin", "cos")),
)
CATEGORICAL = ("store_id", "product_id", "woy")


class InputError(ValueError):
    """An input table is missing columns or has no usable rows."""


def read_folder(path: str | Path) -> pd.DataFrame:
    """Every CSV under ``path`` (a folder, searched recursively, or one file) as one frame."""
    root = Path(path)
    files = [root] if root.is_file() else sorted(root.rglob("*.csv"))
    if not files:
        raise InputError(f"no CSV files under {root}")
    text = {"store_id": str, "product_id": str, "zip": str, "location_id": str, "scope_id": str}
    frames = [pd.read_csv(f, dtype=text) for f in files]
    return pd.concat(frames, ignore_index=True)


def require(frame: pd.DataFrame, columns: Iterable[str], table: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"{table} is missing column(s) {', '.join(missing)}")


def _week_of(day: pd.Series, anchor: int) -> pd.Series:
    """The week start (weekday ``anchor``, Monday = 0) of the week containing each day."""
    back = (day.dt.day_of_week - anchor) % 7
    return day - pd.to_timedelta(back, unit="D")


def standard_weather(weather: pd.DataFrame, stores: pd.DataFrame) -> pd.DataFrame:
    """Weather in the conditioning contract (location_type/location_id, observation, …) as
    ``zip, date`` + numeric columns: historical observations only (forecasts are not
    observations), store-located rows mapped to their store's zip. Other layouts pass through.
    """
    if "location_id" not in weather.columns:
        return weather
    w = weather.copy()
    if "observation" in w.columns:
        w = w[w["observation"].astype(str).str.lower() == "historical"]
    kind = w.get("location_type", pd.Series("zip", index=w.index)).astype(str).str.lower()
    zips = dict(zip(stores["store_id"].astype(str), stores["zip"].astype(str), strict=False))
    location = w["location_id"].astype(str)
    w["zip"] = location.where(kind == "zip", location.map(zips))
    w = w.dropna(subset=["zip"])
    dropped = {"location_type", "location_id", "observation", "issue_date", "period_days"}
    return w.drop(columns=[c for c in dropped if c in w.columns])


def standard_events(events: pd.DataFrame) -> pd.DataFrame:
    """Events in the conditioning contract (event_date, scope, scope_id, event_name) as
    ``date, store_id, region, event``. Other layouts pass through."""
    if "event_date" not in events.columns:
        return events
    scope = events["scope"].astype(str).str.lower()
    scope_id = events["scope_id"].astype(str)
    return pd.DataFrame(
        {
            "date": events["event_date"],
            "store_id": scope_id.where(scope == "store", ""),
            "region": scope_id.where(scope == "region", ""),
            "event": events.get("event_name", events.get("event_type", "")),
        }
    )


def _weekly_weather(weather: pd.DataFrame, anchor: int) -> tuple[pd.DataFrame, list[str]]:
    require(weather, WEATHER_KEYS, "weather")
    w = weather.copy()
    w["zip"] = w["zip"].astype(str)
    values = [c for c in w.columns if c not in WEATHER_KEYS]
    w[values] = w[values].apply(pd.to_numeric, errors="coerce")
    values = [c for c in values if w[c].notna().any()]
    w["week_start"] = _week_of(pd.to_datetime(w["date"]).dt.normalize(), anchor)
    weekly = w.groupby(["zip", "week_start"], as_index=False)[values].mean()
    names = {c: f"weather_{c}" for c in values}
    return weekly.rename(columns=names), list(names.values())


def _event_counts(frame: pd.DataFrame, events: pd.DataFrame, anchor: int) -> pd.Series:
    require(events, EVENTS, "events")
    e = events.copy()
    e["week_start"] = _week_of(pd.to_datetime(e["date"]).dt.normalize(), anchor)
    for column in ("store_id", "region"):
        text = e[column].astype(str) if column in e else pd.Series("", index=e.index)
        e[column] = text.replace({"nan": "", "None": ""}).str.strip()
    e["region"] = e["region"].str.lower()  # region ids are case-insensitive (see join_inputs)
    total = pd.Series(0.0, index=frame.index)
    by_store = e[e["store_id"] != ""].groupby(["store_id", "week_start"]).size()
    by_region = (
        e[(e["store_id"] == "") & (e["region"] != "")].groupby(["region", "week_start"]).size()
    )
    everywhere = e[(e["store_id"] == "") & (e["region"] == "")].groupby("week_start").size()
    for keys, counts in (
        (["store_id", "week_start"], by_store),
        (["region", "week_start"], by_region),
    ):
        idx = pd.MultiIndex.from_frame(frame[keys])
        total += counts.reindex(idx).fillna(0).to_numpy()
    total += everywhere.reindex(frame["week_start"]).fillna(0).to_numpy()
    return total


def join_inputs(
    shipments: pd.DataFrame,
    stores: pd.DataFrame,
    weather: pd.DataFrame | None = None,
    events: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """Shipments joined with the store master, weekly weather and event counts.

    Returns the frame (one row per store, product and week) and the names of the exogenous
    numeric columns it carries (``weather_*``). Rows whose store is not in the master are
    dropped: without a region and format they belong to no segment. Weather and events are
    assigned to the week (starting on the shipments' week day) that contains their date.
    """
    require(shipments, SHIPMENTS, "shipments")
    require(stores, STORES, "stores")
    ship = shipments.loc[:, list(SHIPMENTS)].copy()
    ship["store_id"] = ship["store_id"].astype(str)
    ship["product_id"] = ship["product_id"].astype(str)
    ship["week_start"] = pd.to_datetime(ship["week_start"]).dt.normalize()
    ship["quantity"] = pd.to_numeric(ship["quantity"], errors="coerce")
    ship = ship.dropna(subset=["quantity"])
    if ship.empty:
        raise InputError("shipments has no rows with a numeric quantity")
    ship = ship.groupby([*SERIES, "week_start"], as_index=False)["quantity"].sum()
    master = stores.loc[:, list(STORES)].drop_duplicates("store_id").copy()
    no_zip = master["zip"].isna() | (master["zip"].astype(str).str.strip() == "")
    for column in ("store_id", "zip", "region"):
        master[column] = master[column].astype(str)
    # A store without a zip code (Walmart's stores have none) gets weather recorded for the
    # store itself: its weather key is the store, never one shared "nan" zip.
    master.loc[no_zip, "zip"] = "store:" + master.loc[no_zip, "store_id"]
    master["format"] = master["format"].astype(str).str.lower()
    # Region ids are case-insensitive: segment keys, model names and orchestrator inputs use
    # the lower-case form whatever a vendor's store master spells.
    master["region"] = master["region"].str.lower()
    frame = ship.merge(master, on="store_id", how="inner")
    anchor = int(frame["week_start"].dt.day_of_week.mode().iat[0]) if len(frame) else 0
    exog: list[str] = []
    if weather is not None and len(weather):
        weekly, exog = _weekly_weather(standard_weather(weather, master), anchor)
        frame = frame.merge(weekly, on=["zip", "week_start"], how="left")
    frame["event_count"] = 0.0
    if events is not None and len(events):
        frame["event_count"] = _event_counts(frame, standard_events(events), anchor)
    return frame.sort_values([*SERIES, "week_start"]).reset_index(drop=True), exog


def assign_velocity(frame: pd.DataFrame, history: pd.DataFrame | None = None) -> pd.Series:
    """``fast`` for products whose mean weekly quantity (per region and format, over
    ``history``) is at least the median product's, ``slow`` otherwise."""
    hist = frame if history is None else history
    mean = hist.groupby(["region", "format", "product_id"])["quantity"].mean().rename("pmean")
    median = mean.groupby(level=["region", "format"]).transform("median").rename("pmedian")
    label = pd.Series(np.where(mean >= median, "fast", "slow"), index=mean.index, name="velocity")
    keys = pd.MultiIndex.from_frame(frame[["region", "format", "product_id"]])
    return pd.Series(label.reindex(keys).fillna("slow").to_numpy(), index=frame.index)


def filter_segment(frame: pd.DataFrame, region: str, fmt: str, velocity: str) -> pd.DataFrame:
    """Rows of one segment; ``*`` (or empty) matches everything."""
    mask = pd.Series(True, index=frame.index)
    for column, value in (("region", region), ("format", fmt), ("velocity", velocity)):
        if value not in ("*", "", "all"):
            mask &= frame[column].astype(str).str.lower() == value.lower()
    return frame.loc[mask]


def split_holdout(frame: pd.DataFrame, holdout_weeks: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(history, holdout): the last ``holdout_weeks`` distinct weeks are the holdout."""
    weeks = np.sort(frame["week_start"].unique())
    if len(weeks) <= holdout_weeks:
        raise InputError(f"{len(weeks)} weeks of data cannot hold out {holdout_weeks}")
    origin = weeks[-holdout_weeks]
    return frame[frame["week_start"] < origin], frame[frame["week_start"] >= origin]


def validation_split(
    history: pd.DataFrame, weeks: int = VALIDATION_WEEKS, min_fit_weeks: int = 8
) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """(fit history, validation rows): the last ``weeks`` distinct weeks of ``history``, held out
    like a holdout, for choosing ensemble weights and stopping training early.

    ``None`` when the history is too short to leave ``min_fit_weeks`` weeks to fit on.
    """
    distinct = np.sort(history["week_start"].unique())
    if len(distinct) < weeks + min_fit_weeks:
        return None
    return split_holdout(history, weeks)


def future_weeks(
    history: pd.DataFrame, horizon: int, start: pd.Timestamp | None = None
) -> pd.DataFrame:
    """One row per known series and each of ``horizon`` weeks after the history (or ``start``)."""
    last = history["week_start"].max()
    first = last + pd.Timedelta(days=7) if start is None else pd.Timestamp(start)
    keys = history.drop_duplicates(list(SERIES))[[*SERIES, "region", "format", "zip", "velocity"]]
    weeks = pd.DataFrame({"week_start": [first + pd.Timedelta(days=7 * i) for i in range(horizon)]})
    return keys.merge(weeks, how="cross")


def requested_weeks(
    horizon: pd.DataFrame, history: pd.DataFrame, start: pd.Timestamp | None = None
) -> pd.DataFrame:
    """The rows a forecast request (a conditioned ``horizon``) asks for, from ``start`` on.

    Each row gets its store's region, format and zip from ``history`` (a store the history
    does not know belongs to no segment and is left out) and its product's velocity as
    ``assign_velocity`` labels it on ``history`` (``slow`` for a product never seen in that
    region and format). Series without history are kept: the request asks for them.
    """
    require(horizon, (*SERIES, "week_start"), "horizon")
    rows = horizon.loc[:, [*SERIES, "week_start"]].copy()
    rows["store_id"] = rows["store_id"].astype(str)
    rows["product_id"] = rows["product_id"].astype(str)
    rows["week_start"] = pd.to_datetime(rows["week_start"]).dt.normalize()
    if start is not None:
        rows = rows[rows["week_start"] >= pd.Timestamp(start)]
    stores = history.drop_duplicates("store_id")[["store_id", "region", "format", "zip"]]
    rows = rows.drop_duplicates().merge(stores, on="store_id", how="inner")
    rows["velocity"] = assign_velocity(rows, history).to_numpy()
    return rows.sort_values([*SERIES, "week_start"]).reset_index(drop=True)


def build_features(
    history: pd.DataFrame, target: pd.DataFrame, exog: Sequence[str] = ()
) -> pd.DataFrame:
    """``target`` with model features computed from ``history`` (quantities known so far).

    ``history`` needs store_id, product_id, week_start, quantity; ``target`` the keys and week
    (its quantity, when present, is kept as the label). Exogenous columns missing for a
    target week are filled with the history's mean for that column.

    Besides the model features, every row carries ``series_mean`` (the scale of the ratio
    target and the historical-average forecast), ``series_max`` (the largest week in the
    history, which bounds forecasts), ``lag52`` (the seasonal-naive forecast: the same week
    last year, or the series mean when unknown) and ``growth`` (the last ``RECENT_WEEKS``
    against the same weeks a year earlier, 1 when unknown).
    """
    out = target.copy()
    keys = list(SERIES)
    grouped = history.groupby(keys)["quantity"]
    stats = pd.concat(
        [
            grouped.mean().rename("series_mean"),
            grouped.max().rename("series_max"),
            history["quantity"]
            .le(0)
            .groupby([history[k] for k in keys])
            .mean()
            .rename("zero_share"),
        ],
        axis=1,
    )
    origin = history["week_start"].max()
    recent_start = origin - pd.Timedelta(weeks=RECENT_WEEKS)
    recent = history[history["week_start"] > recent_start]
    recent_mean = recent.groupby(keys)["quantity"].mean().rename("recent_mean")
    year_ago = pd.Timedelta(days=LAG_DAYS)
    last_year = history[
        (history["week_start"] > recent_start - year_ago)
        & (history["week_start"] <= origin - year_ago)
    ]
    last_year_mean = last_year.groupby(keys)["quantity"].mean()
    growth = (recent_mean / last_year_mean.where(last_year_mean > 0)).rename("growth")
    out = (
        out.merge(stats, on=keys, how="left")
        .merge(recent_mean, on=keys, how="left")
        .merge(growth, on=keys, how="left")
    )
    fallback = float(stats["series_mean"].median()) if len(stats) else 1.0
    out["series_mean"] = out["series_mean"].fillna(fallback)
    out["series_max"] = out["series_max"].fillna(out["series_mean"])
    out["zero_share"] = out["zero_share"].fillna(
        float(stats["zero_share"].median()) if len(stats) else 0.0
    )
    out["growth"] = out["growth"].replace([np.inf, -np.inf], np.nan).fillna(1.0).clip(*GROWTH_CLIP)
    scale = out["series_mean"].clip(lower=1.0)
    out["recent_ratio"] = (out["recent_mean"].fillna(out["series_mean"]) / scale).clip(*RATIO_CLIP)
    out["log_series_mean"] = np.log1p(out["series_mean"].clip(lower=0.0))

    lookup = history.set_index([*SERIES, "week_start"])["quantity"]
    lookup = lookup[~lookup.index.duplicated()]

    def lag(days: int) -> pd.Series:
        idx = pd.MultiIndex.from_arrays(
            [out["store_id"], out["product_id"], out["week_start"] - pd.Timedelta(days=days)]
        )
        return pd.Series(lookup.reindex(idx).to_numpy(), index=out.index)

    lag52 = lag(LAG_DAYS)
    neighbours = pd.concat([lag(LAG_DAYS - 7), lag52, lag(LAG_DAYS + 7)], axis=1).mean(axis=1)
    out["has_lag52"] = lag52.notna().astype(float)
    out["lag52"] = lag52.fillna(out["series_mean"])
    out["lag52_ratio"] = (out["lag52"] / scale).clip(*RATIO_CLIP)
    out["lag52_nbr"] = (neighbours.fillna(out["series_mean"]) / scale).clip(*RATIO_CLIP)

    woy = out["week_start"].dt.isocalendar().week.astype(int).clip(1, 53)
    out["woy"] = woy
    angle = 2 * np.pi * woy.to_numpy() / 52.18
    for k in range(1, FOURIER_TERMS + 1):
        out[f"sin{k}"] = np.sin(k * angle)
        out[f"cos{k}"] = np.cos(k * angle)
    if "event_count" not in out:
        out["event_count"] = 0.0
    out["event_count"] = out["event_count"].fillna(0.0).astype(float)
    for column in exog:
        if column not in out:
            out[column] = np.nan
        mean = history[column].mean() if column in history else np.nan
        out[column] = out[column].fillna(0.0 if pd.isna(mean) else mean).astype(float)
    if "quantity" in out:
        out["target_ratio"] = (out["quantity"] / scale).clip(*RATIO_CLIP)
    return out.drop(columns=["recent_mean"])


def numeric_features(exog: Sequence[str]) -> list[str]:
    return [*BASE_NUMERIC, *exog]
