"""Forecast quality metrics: the one definition the gate, the model test, the ensemble
weights, the dashboard and the benchmark all use.

- MAPE: the mean of |actual − forecast| / |actual| over the rows whose |actual| is at least
  ``min_actual`` units of the quantity (a percentage error on a week that sold nothing, or a
  fraction of the unit, says nothing about the forecast); a fraction (0.45 = 45 %).
- WAPE: total absolute error over total absolute actuals, every row — defined for slow movers,
  whose many zero and tiny weeks MAPE leaves out.
- WMAE: mean absolute error with holiday weeks weighted ``HOLIDAY_WEIGHT`` = 5 (the Walmart
  competition's metric; the holiday weeks are ``holiday_calendar.holiday_weeks``).
- RMSE on zero actuals ("RMSE 0"): how much is forecast where nothing sold; RMSE over all rows.

MAPE's row filter is one rule with one parameter, the data's unit: ``min_actual`` defaults to
``MIN_ACTUAL`` = 1 unit. Data counted in a unit too small for that (sales in dollars) passes
a larger threshold in that unit — the pipelines take it as their ``min_actual`` input
(``MLOPS_MAPE_MIN_ACTUAL``; the Walmart run passes 100, i.e. $100), and the Walmart benchmark
counts sales in hundreds of dollars with the default, which is the same $100 filter.
Empty selections give NaN, never an exception.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

MIN_ACTUAL = 1.0
HOLIDAY_WEIGHT = 5.0
MEASURES = ("mape", "wape", "wmae", "rmse_zero", "rmse_all")


def _arrays(actual: npt.ArrayLike, forecast: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(actual, dtype=float)
    f = np.asarray(forecast, dtype=float)
    if a.shape != f.shape:
        raise ValueError(f"actual has {a.shape} values, forecast {f.shape}")
    return a, f


def check_min_actual(min_actual: float) -> float:
    """``min_actual`` as a float; a threshold that is not finite or not positive is refused
    (0 would count zero weeks, whose percentage error is infinite)."""
    value = float(min_actual)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"min_actual must be a positive number of units, not {min_actual!r}")
    return value


def mape_rows(actual: npt.ArrayLike, min_actual: float = MIN_ACTUAL) -> np.ndarray:
    """The rows MAPE counts: |actual| ≥ ``min_actual``."""
    threshold = check_min_actual(min_actual)
    mask: np.ndarray = np.abs(np.asarray(actual, dtype=float)) >= threshold
    return mask


def mape(actual: npt.ArrayLike, forecast: npt.ArrayLike, min_actual: float = MIN_ACTUAL) -> float:
    a, f = _arrays(actual, forecast)
    mask = mape_rows(a, min_actual)
    if not mask.any():
        return math.nan
    return float(np.mean(np.abs(a[mask] - f[mask]) / np.abs(a[mask])))


def rmse_zero(actual: npt.ArrayLike, forecast: npt.ArrayLike) -> float:
    a, f = _arrays(actual, forecast)
    mask = a == 0
    if not mask.any():
        return math.nan
    return float(np.sqrt(np.mean(f[mask] ** 2)))


def rmse_all(actual: npt.ArrayLike, forecast: npt.ArrayLike) -> float:
    a, f = _arrays(actual, forecast)
    if a.size == 0:
        return math.nan
    return float(np.sqrt(np.mean((a - f) ** 2)))


def wape(actual: npt.ArrayLike, forecast: npt.ArrayLike) -> float:
    a, f = _arrays(actual, forecast)
    total = float(np.sum(np.abs(a)))
    if a.size == 0 or total == 0.0:
        return math.nan
    return float(np.sum(np.abs(a - f)) / total)


def wmae(
    actual: npt.ArrayLike,
    forecast: npt.ArrayLike,
    holiday: npt.ArrayLike,
    weight: float = HOLIDAY_WEIGHT,
) -> float:
    a, f = _arrays(actual, forecast)
    w = np.where(np.asarray(holiday, dtype=bool), weight, 1.0)
    if a.size == 0:
        return math.nan
    return float(np.sum(w * np.abs(a - f)) / np.sum(w))


def summarize(
    actual: npt.ArrayLike,
    forecast: npt.ArrayLike,
    holiday: npt.ArrayLike | None = None,
    min_actual: float = MIN_ACTUAL,
) -> dict[str, float]:
    """Every measure and the row count, keyed as they are logged. Without ``holiday`` flags
    no week is a holiday week (WMAE is then the plain mean absolute error); ``min_actual``
    is MAPE's row filter."""
    a = np.asarray(actual, dtype=float)
    flags = np.zeros(a.shape, dtype=bool) if holiday is None else np.asarray(holiday, dtype=bool)
    return {
        "mape": mape(actual, forecast, min_actual),
        "wape": wape(actual, forecast),
        "wmae": wmae(actual, forecast, flags),
        "rmse_zero": rmse_zero(actual, forecast),
        "rmse_all": rmse_all(actual, forecast),
        "rows": float(a.size),
    }
