"""Forecast quality metrics as the case study defines them.

- MAPE over rows with |actual| >= ``min_actual`` (a percentage error is meaningless near 0);
  returned as a fraction (0.45 = 45 %).
- RMSE on zero actuals ("RMSE 0"): how much is forecast where nothing sold.
- RMSE over all rows ("RMSE All").
- WAPE: total absolute error over total absolute actuals — defined for slow movers, whose
  many zero and tiny weeks make MAPE say little.
- WMAE: mean absolute error with holiday weeks weighted 5 (the Walmart competition metric).
Empty selections give NaN, never an exception.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt


def _arrays(actual: npt.ArrayLike, forecast: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(actual, dtype=float)
    f = np.asarray(forecast, dtype=float)
    if a.shape != f.shape:
        raise ValueError(f"actual has {a.shape} values, forecast {f.shape}")
    return a, f


def mape(actual: npt.ArrayLike, forecast: npt.ArrayLike, min_actual: float = 1.0) -> float:
    a, f = _arrays(actual, forecast)
    mask = np.abs(a) >= min_actual
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
    actual: npt.ArrayLike, forecast: npt.ArrayLike, holiday: npt.ArrayLike, weight: float = 5.0
) -> float:
    a, f = _arrays(actual, forecast)
    w = np.where(np.asarray(holiday, dtype=bool), weight, 1.0)
    if a.size == 0:
        return math.nan
    return float(np.sum(w * np.abs(a - f)) / np.sum(w))


def summarize(
    actual: npt.ArrayLike, forecast: npt.ArrayLike, min_actual: float = 1.0
) -> dict[str, float]:
    """The three case-study metrics, WAPE and the row count, keyed as they are logged."""
    return {
        "mape": mape(actual, forecast, min_actual),
        "wape": wape(actual, forecast),
        "rmse_zero": rmse_zero(actual, forecast),
        "rmse_all": rmse_all(actual, forecast),
        "rows": float(np.asarray(actual).size),
    }
