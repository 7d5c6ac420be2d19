"""Forecast quality metrics: the one definition the gate, the model test, the ensemble
weights, the dashboard and the benchmark all use.

- MAPE: the mean of |actual − forecast| / |actual| over the rows whose |actual| is at least
  ``MIN_ACTUAL`` = 1 unit of the quantity (a percentage error on a week that sold nothing, or
  a fraction of a unit, says nothing about the forecast); a fraction (0.45 = 45 %).
- WAPE: total absolute error over total absolute actuals, every row — defined for slow movers,
  whose many zero and tiny weeks MAPE leaves out.
- WMAE: mean absolute error with holiday weeks weighted ``HOLIDAY_WEIGHT`` = 5 (the Walmart
  competition's metric; the holiday weeks are ``holiday_calendar.holiday_weeks``).
- RMSE on zero actuals ("RMSE 0"): how much is forecast where nothing sold; RMSE over all rows.

The threshold is in units of the quantity, so the unit matters: the Walmart benchmark counts
sales in hundreds of dollars, which keeps its MAPE on the weeks with at least $100 of sales.
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


def mape_rows(actual: npt.ArrayLike) -> np.ndarray:
    """The rows MAPE counts: |actual| ≥ ``MIN_ACTUAL``."""
    mask: np.ndarray = np.abs(np.asarray(actual, dtype=float)) >= MIN_ACTUAL
    return mask


def mape(actual: npt.ArrayLike, forecast: npt.ArrayLike) -> float:
    a, f = _arrays(actual, forecast)
    mask = mape_rows(a)
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
    actual: npt.ArrayLike, forecast: npt.ArrayLike, holiday: npt.ArrayLike | None = None
) -> dict[str, float]:
    """Every measure and the row count, keyed as they are logged. Without ``holiday`` flags
    no week is a holiday week (WMAE is then the plain mean absolute error)."""
    a = np.asarray(actual, dtype=float)
    flags = np.zeros(a.shape, dtype=bool) if holiday is None else np.asarray(holiday, dtype=bool)
    return {
        "mape": mape(actual, forecast),
        "wape": wape(actual, forecast),
        "wmae": wmae(actual, forecast, flags),
        "rmse_zero": rmse_zero(actual, forecast),
        "rmse_all": rmse_all(actual, forecast),
        "rows": float(a.size),
    }
