"""From standard conditioned tables to model features (pure pandas/numpy, no I/O except
``read_folder``).

Forecasts are direct, from a forecast origin: every feature of a target week is computed
from the history up to the origin — levels over the last 4/8/13/26/52 weeks, the same week
last year and the weeks either side, year-over-year growth, the product's and the store's
seasonal profile pooled across the other series, the share of zero weeks — plus what is
known in advance about the target week: the holiday calendar, the event calendar, the
horizon ``h`` and the outside columns named ``known_ahead`` (planned markdowns, say). Every
other outside value (weather, prices) is taken at the origin: nobody knows it 13 weeks
ahead, so no forecast may depend on it.

Training examples are built the way forecasts are made (``stack_origins``): many origins
inside the history, each with the weeks ``h = 1..H`` after it, features as of that origin.
The same function (``origin_features``) computes the features of a training example, a
validation example, a holdout row and a future week, so training and use cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .holiday_calendar import week_calendar
from .schema import EVENTS, SERIES, SHIPMENTS, STORES, WEATHER_KEYS

YEAR = 52  # weeks: the same week day last year (364 days)
RECENT_WEEKS = 8
FOURIER_TERMS = 3
RATIO_CLIP = (0.0, 5.0)
# Year-over-year growth is measured on a few weeks of noisy data: bounded so one odd week
# cannot double or halve a whole series' forecast.
GROWTH_CLIP = (0.5, 2.0)
SERIES_ATTRIBUTES = ("region", "format", "zip", "velocity")
# The features the first learned members (LASSO, network, count model) were trained on; kept
# so models registered before the direct model still forecast.
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
# The direct model's features (besides the outside columns and the categoricals).
DIRECT_NUMERIC = (
    "horizon",
    "log_level",
    "level4_r",
    "level8_r",
    "level26_r",
    "level52_r",
    "mean_r",
    "cv13",
    "zero13",
    "ly_r",
    "ly_prev_r",
    "ly_next_r",
    "ly_season",
    "ly_season_nbr",
    "yoy",
    "ly2_season",
    "product_season",
    "product_season_nbr",
    "store_season",
    "store_season_nbr",
    "event_count",
    "ly_event_count",
    "woy",
    "holiday",
    "super_bowl",
    "labor_day",
    "thanksgiving",
    "christmas",
    "days_to_christmas",
    "ly_christmas",
    "ly_thanksgiving",
    "ly_days_to_christmas",
)
DIRECT_CATEGORICAL = ("store_id", "product_id", "format")
POOLED = ("product_season", "product_season_nbr", "store_season", "store_season_nbr")


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
        # fillna first: a blank CSV cell reads as missing, which astype(str) keeps missing
        text = e[column].fillna("").astype(str) if column in e else pd.Series("", index=e.index)
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
    for column in ("store_id", "zip", "region"):
        master[column] = master[column].astype(str)
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


def future_weeks(
    history: pd.DataFrame, horizon: int, start: pd.Timestamp | None = None
) -> pd.DataFrame:
    """One row per known series and each of ``horizon`` weeks after the history (or ``start``)."""
    last = history["week_start"].max()
    first = last + pd.Timedelta(days=7) if start is None else pd.Timestamp(start)
    keys = history.drop_duplicates(list(SERIES))[[*SERIES, "region", "format", "zip", "velocity"]]
    weeks = pd.DataFrame({"week_start": [first + pd.Timedelta(days=7 * i) for i in range(horizon)]})
    return keys.merge(weeks, how="cross")


# -- features as of a forecast origin -------------------------------------------------------


class Panel:
    """Every series' weekly quantities (and outside values) on one dense weekly grid.

    Features of a target week ``t`` forecast from origin ``o`` (both grid columns) read only
    columns up to ``o`` — except the known-in-advance ones (the calendar, events and the
    outside columns named ``known_ahead``), read at ``t``. Running sums make a window mean
    one subtraction, so features for millions of (series, origin, horizon) examples cost a
    few array operations.
    """

    def __init__(
        self, history: pd.DataFrame, exog: Sequence[str] = (), known_ahead: Sequence[str] = ()
    ) -> None:
        require(history, (*SERIES, "week_start", "quantity"), "history")
        if history.empty:
            raise InputError("history has no rows")
        frame = history.copy()
        frame["week_start"] = pd.to_datetime(frame["week_start"]).dt.normalize()
        attrs = [c for c in SERIES_ATTRIBUTES if c in frame]
        self.series = (
            frame.drop_duplicates(list(SERIES))[[*SERIES, *attrs]].reset_index(drop=True).copy()
        )
        for column in (*SERIES, *attrs):
            self.series[column] = self.series[column].astype(str)
        pairs = zip(self.series["store_id"], self.series["product_id"], strict=True)
        self.index = {k: i for i, k in enumerate(pairs)}
        self.first = pd.Timestamp(frame["week_start"].min())
        self.weeks = int(_column_of(frame["week_start"].max(), self.first)) + 1
        rows = self.rows_of(frame["store_id"].astype(str), frame["product_id"].astype(str))
        cols = _column_of(frame["week_start"], self.first)
        n, w = len(self.series), self.weeks
        self.y = np.full((n, w), np.nan)
        quantity = pd.to_numeric(frame["quantity"], errors="coerce").to_numpy(dtype=np.float64)
        ok = np.isfinite(quantity)
        self.y[rows[ok], cols[ok]] = quantity[ok]
        self.events = np.zeros((n, w))
        if "event_count" in frame:
            ev = frame["event_count"].fillna(0.0).to_numpy(dtype=np.float64)
            self.events[rows, cols] = ev
        self.exog = list(exog)
        self.known_ahead = [c for c in known_ahead if c in self.exog]
        self.outside: dict[str, np.ndarray] = {}
        for column in self.exog:
            values = np.full((n, w), np.nan)
            if column in frame:
                values[rows, cols] = pd.to_numeric(frame[column], errors="coerce").to_numpy()
            if column not in self.known_ahead:  # as of a week: the last value seen by then
                values = _forward_fill(values)
            self.outside[column] = values
        self._sums()

    def rows_of(self, stores: pd.Series, products: pd.Series) -> np.ndarray:
        """The panel row of each (store, product); -1 for a series the history never saw."""
        return np.array(
            [self.index.get(k, -1) for k in zip(stores, products, strict=True)], dtype=np.int64
        )

    def _sums(self) -> None:
        y = self.y
        seen = np.isfinite(y)
        value = np.where(seen, y, 0.0)
        pad = np.zeros((y.shape[0], 1))
        self.cs = np.concatenate([pad, np.cumsum(value, axis=1)], axis=1)
        self.cs2 = np.concatenate([pad, np.cumsum(value**2, axis=1)], axis=1)
        self.cn = np.concatenate([pad, np.cumsum(seen, axis=1)], axis=1)
        self.cz = np.concatenate([pad, np.cumsum(seen & (value <= 0), axis=1)], axis=1)
        self.running_max = np.fmax.accumulate(np.where(seen, y, np.nan), axis=1)
        # Pooled profiles: the mean series of each product across stores, and of each store
        # across products (a department's season is clearer than one store's).
        self.pooled: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for column in ("product_id", "store_id"):
            codes, uniques = pd.factorize(self.series[column])
            total = np.zeros((len(uniques), y.shape[1]))
            count = np.zeros_like(total)
            np.add.at(total, codes, value)
            np.add.at(count, codes, seen)
            mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
            self.pooled[column] = (codes, mean)

    # -- window statistics (arrays of rows and inclusive column ranges) -------------------

    def _window(self, cum: np.ndarray, rows: np.ndarray, first: np.ndarray, last: np.ndarray
                ) -> np.ndarray:  # fmt: skip
        a = np.clip(first, 0, self.weeks)
        b = np.clip(last + 1, 0, self.weeks)
        b = np.maximum(a, b)
        out: np.ndarray = cum[rows, b] - cum[rows, a]
        return out

    def mean(self, rows: np.ndarray, first: np.ndarray, last: np.ndarray) -> np.ndarray:
        total = self._window(self.cs, rows, first, last)
        count = self._window(self.cn, rows, first, last)
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)

    def value(self, matrix: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        inside = (cols >= 0) & (cols < matrix.shape[1]) & (rows >= 0)
        out = np.full(len(rows), np.nan)
        out[inside] = matrix[rows[inside], cols[inside]]
        return out

    def pooled_ratio(self, column: str, rows: np.ndarray, target: np.ndarray, origin: np.ndarray,
                     width: int = 13) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """Last year's move of the pooled profile from the origin to the target week (its
        value at ``target - 52`` over its mean in the ``width`` weeks to ``origin - 52``),
        exactly and averaged with the weeks either side."""
        codes, mean = self.pooled[column]
        group = codes[rows]
        base = np.full(len(rows), np.nan)
        level = np.zeros(len(rows))
        count = np.zeros(len(rows))
        for k in range(width):
            v = self.value(mean, group, origin - YEAR - k)
            ok = np.isfinite(v)
            level[ok] += v[ok]
            count[ok] += 1
        base = np.where(count > 0, level / np.maximum(count, 1), np.nan)
        base = np.where(base > 0, base, np.nan)
        same = self.value(mean, group, target - YEAR)
        near = _nanmean(np.stack([self.value(mean, group, target - YEAR + d) for d in (-1, 0, 1)]))
        return same / base, near / base


def _column_of(week: Any, first: pd.Timestamp) -> Any:
    """The grid column of a week (or a series of weeks): whole weeks after ``first``."""
    if isinstance(week, pd.Series):
        days = (pd.to_datetime(week) - first).dt.days.to_numpy()
        return np.round(days / 7.0).astype(np.int64)
    return round((pd.Timestamp(week) - first).days / 7.0)


def _forward_fill(values: np.ndarray) -> np.ndarray:
    seen = np.isfinite(values)
    last = np.where(seen, np.arange(values.shape[1])[None, :], 0)
    np.maximum.accumulate(last, axis=1, out=last)
    filled: np.ndarray = values[np.arange(values.shape[0])[:, None], last]
    return filled


def _nanmean(stack: np.ndarray) -> np.ndarray:
    """The mean over axis 0 of the finite values; NaN where there is none (no warning)."""
    seen = np.isfinite(stack)
    count = seen.sum(axis=0)
    total = np.where(seen, stack, 0.0).sum(axis=0)
    out: np.ndarray = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return out


def _ratio(value: np.ndarray, scale: np.ndarray) -> np.ndarray:
    out: np.ndarray = np.clip(value / scale, *RATIO_CLIP)
    return out


class _View:
    """Panel look-ups for a batch of (row, origin, target) examples; rows of series the
    history never saw (-1) read as NaN."""

    def __init__(self, panel: Panel, rows: np.ndarray, origin: np.ndarray, target: np.ndarray):
        self.panel = panel
        self.known = rows >= 0
        self.rows = np.where(self.known, rows, 0)
        self.origin, self.target = origin, target

    def masked(self, values: np.ndarray) -> np.ndarray:
        return np.where(self.known, values, np.nan)

    def window(self, width: int, end: np.ndarray, cum: np.ndarray | None = None) -> np.ndarray:
        """The mean (or, with ``cum``, the total of that running sum) of the ``width`` weeks
        to ``end``."""
        first = end - width + 1
        if cum is None:
            return self.masked(self.panel.mean(self.rows, first, end))
        return self.masked(self.panel._window(cum, self.rows, first, end))

    def lag(self, weeks: int) -> np.ndarray:
        return self.masked(self.panel.value(self.panel.y, self.rows, self.target - weeks))


def _series_features(v: _View, out: dict[str, np.ndarray]) -> np.ndarray:
    """Level, scale and intermittency as of the origin (and the older members' inputs);
    returns the series mean."""
    panel, origin = v.panel, v.origin
    everything = v.window(10**6, origin)
    counts = v.window(10**6, origin, panel.cn)
    fallback = float(np.nanmedian(everything)) if np.isfinite(everything).any() else 1.0
    series_mean = np.where(np.isfinite(everything), everything, fallback)
    out["series_mean"] = series_mean
    top = v.masked(panel.value(panel.running_max, v.rows, np.minimum(origin, panel.weeks - 1)))
    out["series_max"] = np.where(np.isfinite(top), top, series_mean)
    zeros = v.window(10**6, origin, panel.cz)
    zero_share = np.where(counts > 0, zeros / np.maximum(counts, 1), np.nan)
    typical = float(np.nanmedian(zero_share)) if np.isfinite(zero_share).any() else 0.0
    out["zero_share"] = np.where(np.isfinite(zero_share), zero_share, typical)
    scale = np.maximum(series_mean, 1.0)
    recent = v.window(RECENT_WEEKS, origin)
    year_ago = v.window(RECENT_WEEKS, origin - YEAR)
    ok = (year_ago > 0) & np.isfinite(recent)
    growth = np.where(ok, recent / np.where(year_ago > 0, year_ago, 1.0), 1.0)
    out["growth"] = np.clip(growth, *GROWTH_CLIP)
    out["recent_ratio"] = _ratio(np.where(np.isfinite(recent), recent, series_mean), scale)
    out["log_series_mean"] = np.log1p(np.clip(series_mean, 0.0, None))
    level13 = v.window(13, origin)
    level = np.where(np.isfinite(level13), level13, series_mean)
    level_scale = np.maximum(level, 1.0)
    out["level"] = level
    out["level_scale"] = level_scale
    out["horizon"] = (v.target - origin).astype(float)
    out["log_level"] = np.log1p(np.clip(level, 0.0, None))
    for width in (4, 8, 26, 52):
        out[f"level{width}_r"] = v.window(width, origin) / level_scale
    out["mean_r"] = series_mean / level_scale
    n13 = v.window(13, origin, panel.cn)
    with np.errstate(all="ignore"):
        var = v.window(13, origin, panel.cs2) / np.maximum(n13, 1) - level13**2
        out["cv13"] = np.sqrt(np.clip(var, 0.0, None)) / level_scale
        z13 = v.window(13, origin, panel.cz)
        out["zero13"] = np.where(n13 > 0, z13 / np.maximum(n13, 1), np.nan)
    return series_mean


def _seasonal_features(v: _View, out: dict[str, np.ndarray], series_mean: np.ndarray) -> None:
    """Last year's (and the year before's) weeks around the target, on their own and as a
    move from the level at the same point last year; pooled over products and stores."""
    scale = np.maximum(series_mean, 1.0)
    level_scale = out["level_scale"]
    lag52 = v.lag(YEAR)
    near_mean = _nanmean(np.stack([v.lag(YEAR + 1), lag52, v.lag(YEAR - 1)]))
    out["has_lag52"] = np.isfinite(lag52).astype(float)
    out["lag52"] = np.where(np.isfinite(lag52), lag52, series_mean)
    out["lag52_ratio"] = _ratio(out["lag52"], scale)
    out["lag52_nbr"] = _ratio(np.where(np.isfinite(near_mean), near_mean, series_mean), scale)
    out["ly_r"] = lag52 / level_scale
    out["ly_prev_r"] = v.lag(YEAR + 1) / level_scale
    out["ly_next_r"] = v.lag(YEAR - 1) / level_scale
    ly_level = v.window(13, v.origin - YEAR)
    ly_base = np.where(ly_level > 0, ly_level, np.nan)
    ly2_level = v.window(13, v.origin - 2 * YEAR)
    with np.errstate(all="ignore"):
        out["ly_season"] = lag52 / ly_base
        out["ly_season_nbr"] = near_mean / ly_base
        out["yoy"] = out["level"] / ly_base
        out["ly2_season"] = v.lag(2 * YEAR) / np.where(ly2_level > 0, ly2_level, np.nan)
    for column, name in (("product_id", "product"), ("store_id", "store")):
        same, near_pooled = v.panel.pooled_ratio(column, v.rows, v.target, v.origin)
        out[f"{name}_season"] = v.masked(same)
        out[f"{name}_season_nbr"] = v.masked(near_pooled)


def _known_and_frozen(v: _View, out: dict[str, np.ndarray]) -> None:
    """Events (known ahead) at the target week and last year's; outside values at the target
    week when known ahead, else at the origin."""
    panel = v.panel
    out["ly_event_count"] = v.masked(panel.value(panel.events, v.rows, v.target - YEAR))
    out["event_count"] = v.masked(panel.value(panel.events, v.rows, v.target))
    at_origin = np.minimum(v.origin, panel.weeks - 1)
    for column in panel.exog:
        at = v.target if column in panel.known_ahead else at_origin
        out[column] = v.masked(panel.value(panel.outside[column], v.rows, at))


def _calendar_features(frame: pd.DataFrame, target_weeks: pd.Series) -> None:
    weeks = pd.to_datetime(pd.Series(target_weeks)).reset_index(drop=True)
    woy = weeks.dt.isocalendar().week.astype(int).clip(1, 53).to_numpy()
    frame["woy"] = woy
    angle = 2 * np.pi * woy / 52.18
    for k in range(1, FOURIER_TERMS + 1):
        frame[f"sin{k}"] = np.sin(k * angle)
        frame[f"cos{k}"] = np.cos(k * angle)
    calendar = week_calendar(weeks)
    for column in calendar.columns:
        frame[column] = calendar[column].to_numpy()
    last_year = week_calendar(weeks - pd.Timedelta(weeks=YEAR))
    for column in ("christmas", "thanksgiving", "days_to_christmas"):
        frame[f"ly_{column}"] = last_year[column].to_numpy()


def origin_features(
    panel: Panel,
    rows: np.ndarray,
    origin: np.ndarray,
    target: np.ndarray,
    target_weeks: pd.Series,
) -> pd.DataFrame:
    """The features of target weeks ``target`` forecast from ``origin`` (grid columns) for
    panel ``rows`` (-1: a series the history never saw, which gets neutral values).

    Only columns up to each row's origin are read, except the known-in-advance ones.
    """
    view = _View(
        panel,
        np.asarray(rows, dtype=np.int64),
        np.asarray(origin, dtype=np.int64),
        np.asarray(target, dtype=np.int64),
    )
    out: dict[str, np.ndarray] = {}
    series_mean = _series_features(view, out)
    _seasonal_features(view, out, series_mean)
    _known_and_frozen(view, out)
    frame = pd.DataFrame(out)
    _calendar_features(frame, target_weeks)
    return frame


def build_features(
    history: pd.DataFrame,
    target: pd.DataFrame,
    exog: Sequence[str] = (),
    known_ahead: Sequence[str] = (),
    panel: Panel | None = None,
) -> pd.DataFrame:
    """``target`` rows with the features of a forecast made at the end of ``history``.

    ``history`` needs store_id, product_id, week_start, quantity (and the ``exog`` columns,
    ``event_count``); ``target`` the keys and week, and its quantity, when present, is kept
    as the label. What is known in advance comes from ``target`` when it carries it — the
    calendar always, ``event_count`` and the ``known_ahead`` outside columns — every other
    outside value is the series' value at the origin, whatever ``target`` says.

    Besides the model features every row carries ``series_mean`` (the historical-average
    forecast), ``series_max`` (which bounds forecasts), ``lag52`` (the seasonal-naive
    forecast: the same week last year, or the series mean when unknown), ``growth``, and
    ``level_scale`` (the level at the origin that the direct model's target is relative to).
    """
    panel = panel or Panel(history, exog, known_ahead)
    out = target.copy().reset_index(drop=True)
    out["week_start"] = pd.to_datetime(out["week_start"]).dt.normalize()
    rows = panel.rows_of(out["store_id"].astype(str), out["product_id"].astype(str))
    origin = np.full(len(out), panel.weeks - 1, dtype=np.int64)
    target_cols = _column_of(out["week_start"], panel.first) if len(out) else np.zeros(0, int)
    feats = origin_features(panel, rows, origin, target_cols, out["week_start"])
    given = {c: out[c] for c in ("event_count", *panel.known_ahead) if c in out}
    for column, values in given.items():
        feats[column] = pd.to_numeric(values, errors="coerce").to_numpy()
    replaced = [c for c in feats.columns if c in out.columns]
    out = pd.concat([out.drop(columns=replaced), feats], axis=1)
    return _finish(out, panel)


def _finish(out: pd.DataFrame, panel: Panel) -> pd.DataFrame:
    out["event_count"] = out["event_count"].fillna(0.0).astype(float)
    for column in panel.exog:  # an outside value never seen: the history's mean
        values = panel.outside[column]
        mean = float(np.nanmean(values)) if np.isfinite(values).any() else 0.0
        out[column] = out[column].fillna(mean).astype(float)
    if "quantity" in out:
        scale = out["series_mean"].clip(lower=1.0)
        out["target_ratio"] = (out["quantity"] / scale).clip(*RATIO_CLIP)
    out["origin"] = panel.first + pd.to_timedelta(7 * (panel.weeks - 1), unit="D")
    return out


def stack_origins(
    panel: Panel,
    horizon: int,
    origins: Sequence[int],
    max_rows: int | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Training examples: for each origin column, every series seen in the 13 weeks before
    it and each week ``h = 1..horizon`` after it with a known quantity — features as of the
    origin, the quantity as label. ``max_rows`` keeps a seeded random sample of them."""
    parts_r, parts_o, parts_t = [], [], []
    series = np.arange(len(panel.series))
    for o in origins:
        first, last = np.full(len(series), o - 12), np.full(len(series), o)
        recent = panel._window(panel.cn, series, first, last)
        live = series[recent > 0]
        for h in range(1, horizon + 1):
            t = o + h
            if t >= panel.weeks:
                break
            ok = live[np.isfinite(panel.y[live, t])]
            parts_r.append(ok)
            parts_o.append(np.full(len(ok), o))
            parts_t.append(np.full(len(ok), t))
    if not parts_r:
        return pd.DataFrame()
    rows = np.concatenate(parts_r)
    origin = np.concatenate(parts_o)
    target = np.concatenate(parts_t)
    if max_rows is not None and len(rows) > max_rows:
        keep = np.sort(np.random.default_rng(seed).choice(len(rows), max_rows, replace=False))
        rows, origin, target = rows[keep], origin[keep], target[keep]
    weeks = pd.Series(panel.first + pd.to_timedelta(7 * target, unit="D"))
    feats = origin_features(panel, rows, origin, target, weeks)
    keys = panel.series.iloc[rows].reset_index(drop=True)
    frame = pd.concat([keys, pd.DataFrame({"week_start": weeks}), feats], axis=1)
    frame["quantity"] = panel.y[rows, target]
    frame["origin"] = panel.first + pd.to_timedelta(7 * origin, unit="D")
    frame["event_count"] = frame["event_count"].fillna(0.0)
    for column in panel.exog:
        values = panel.outside[column]
        mean = float(np.nanmean(values)) if np.isfinite(values).any() else 0.0
        frame[column] = frame[column].fillna(mean)
    scale = frame["series_mean"].clip(lower=1.0)
    frame["target_ratio"] = (frame["quantity"] / scale).clip(*RATIO_CLIP)
    return frame


def numeric_features(exog: Sequence[str]) -> list[str]:
    return [*BASE_NUMERIC, *exog]


def event_counts(frame: pd.DataFrame, events: pd.DataFrame) -> pd.Series:
    """Events per row of ``frame`` (store_id, region, week_start), joined from the event
    calendar itself — so a week without shipments (any future week) still sees its events."""
    if frame.empty or events is None or events.empty:
        return pd.Series(0.0, index=frame.index)
    weeks = pd.to_datetime(frame["week_start"]).dt.normalize()
    anchor = int(weeks.dt.day_of_week.mode().iat[0])
    keyed = frame.assign(week_start=weeks, store_id=frame["store_id"].astype(str),
                         region=frame["region"].astype(str).str.lower())  # fmt: skip
    return pd.Series(_event_counts(keyed, standard_events(events), anchor).to_numpy(),
                     index=frame.index)  # fmt: skip
