"""Forecast quality metrics as the case study defines them.

- MAPE over rows with |actual| >= ``min_actual`` (a percentage error is meaningless near 0);
  returned as a fraction (0.45 = 45 %).
- RMSE on zero actuals ("RMSE 0"): how much is forecast where nothing sold.
- RMSE over all rows ("RMSE All").
- WMAE: mean absolute error with holiday weeks weighted 5 (the Walmart competition metric).
Empty selections give NaN, never an exception.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def _arrays(actual: Sequence[float], forecast: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(actual, dtype=float)
    f = np.asarray(forecast, dtype=float)
    if a.shape != f.shape:
        raise ValueError(f"actual has {a.shape} values, forecast {f.shape}")
    return a, f


def mape(actual: Sequence[float], forecast: Sequence[float], min_actual: float = 1.0) -> float:
    a, f = _arrays(actual, forecast)
    mask = np.abs(a) >= min_actual
    if not mask.any():
        return math.nan
    return float(np.mean(np.abs(a[mask] - f[mask]) / np.abs(a[mask])))


def rmse_zero(actual: Sequence[float], forecast: Sequence[float]) -> float:
    a, f = _arrays(actual, forecast)
    mask = a == 0
    if not mask.any():
        return math.nan
    return float(np.sqrt(np.mean(f[mask] ** 2)))


def rmse_all(actual: Sequence[float], forecast: Sequence[float]) -> float:
    a, f = _arrays(actual, forecast)
    if a.size == 0:
        return math.nan
    return float(np.sqrt(np.mean((a - f) ** 2)))


def wmae(
    actual: Sequence[float], forecast: Sequence[float], holiday: Sequence[bool], weight: float = 5.0
) -> float:
    a, f = _arrays(actual, forecast)
    w = np.where(np.asarray(holiday, dtype=bool), weight, 1.0)
    if a.size == 0:
        return math.nan
    return float(np.sum(w * np.abs(a - f)) / np.sum(w))


def summarize(
    actual: Sequence[float], forecast: Sequence[float], min_actual: float = 1.0
) -> dict[str, float]:
    """The three case-study metrics plus the row count, keyed as they are logged."""
    return {
        "mape": mape(actual, forecast, min_actual),
        "rmse_zero": rmse_zero(actual, forecast),
        "rmse_all": rmse_all(actual, forecast),
        "rows": float(len(actual)),
    }
