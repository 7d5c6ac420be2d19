"""The segment forecaster: simple baselines, a direct multi-horizon model, and an ensemble
validated on several origins inside the history.

Members (each a quantity forecast per row of a feature frame, see ``MEMBERS``):

- ``baseline``: the series' historical average (the case study's baseline);
- ``seasonal_naive``: the same week last year (the series mean where last year is unknown);
- ``seasonal_growth``: seasonal naive times the damped year-over-year growth of the series;
- ``direct``: gradient-boosted trees trained on examples stacked from many past origins —
  every (series, origin, h = 1..H) with features as of the origin — forecasting the quantity
  relative to the level at the origin, with the absolute loss weighted into MAPE's
  percentage error. One model for every series of the context (all segments), so a small
  segment learns from the others;
- ``lasso``, ``nn`` (a network with categorical embeddings) and ``count`` (Poisson trees):
  the first learned members, trained on the same stacked examples when ``TrainConfig.members``
  asks for them. They earned no weight next to ``direct`` on the benchmark's validation
  origins, so they are no longer trained by default; models registered with them still load.

Validation matches use: the ensemble is judged on several origins inside the history (every
``validation_spacing`` weeks, the latest 13 weeks before its end; closer together when the
history holds little more than a year), each forecast by a learned
member fitted on the examples whose targets lie up to that origin. Each segment's
weights are chosen on its rows of those origins, pooled (greedy forward selection with
replacement, which starts from the best member and only accepts steps that lower the MAPE),
so on validation the ensemble is never worse than its best member. Learned members with
weight are then refitted on every origin with the input set and iterations validation chose.

How training stays safe (every rule answers a failure seen on real data):

- features are computed as of the origin only (``features.origin_features``); outside
  values that are not known in advance are frozen at the origin, so no forecast can depend
  on a future value of one;
- the older members' inputs are guarded (``InputGuard``): a column constant in training is
  dropped and every value clipped to the training range;
- every forecast is bounded to ``[0, BOUND_FACTOR × the series' largest week]``;
- a member whose validation forecasts are not finite, whose training fails or whose
  validation MAPE exceeds ``DIVERGENCE_FACTOR`` times the historical average's is
  *diverged*: reported, and given no weight.
"""

from __future__ import annotations

import functools
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import Lasso

from . import metrics
from .features import (
    CATEGORICAL,
    DIRECT_CATEGORICAL,
    DIRECT_NUMERIC,
    POOLED,
    RATIO_CLIP,
    YEAR,
    Panel,
    numeric_features,
    stack_origins,
)
from .schema import SEGMENT

MEMBERS = ("baseline", "seasonal_naive", "seasonal_growth", "direct", "lasso", "nn", "count")
LEARNED = ("direct", "lasso", "nn", "count")
# What a segment is trained with unless asked otherwise: the members that earned weight on
# the validation origins of the Walmart benchmark (see docs/data-scientist-guide.md).
DEFAULT_MEMBERS = ("baseline", "seasonal_naive", "seasonal_growth", "direct")
COMPONENTS = (*MEMBERS, "ensemble")
DIVERGENCE_FACTOR = 2.0
BOUND_FACTOR = 2.0
DIRECT_RATIO_MAX = 10.0  # the direct model's target, the quantity over the level at the origin
# 1: LASSO + network average; 2: per-segment ensemble on one origin; 3: direct multi-horizon
FORMAT = 3


def parse_members(text: str) -> tuple[str, ...]:
    """The members a ``members`` step input names: ``default`` (``DEFAULT_MEMBERS``), ``all``
    (every one of ``MEMBERS``) or a comma-separated subset of ``MEMBERS``."""
    word = text.strip().lower()
    if word == "default":
        return DEFAULT_MEMBERS
    if word == "all":
        return MEMBERS
    chosen = tuple(dict.fromkeys(m.strip() for m in text.split(",") if m.strip()))
    unknown = sorted(set(chosen) - set(MEMBERS))
    if unknown or not chosen:
        raise ValueError(
            f"members {text!r}: name default, all, or some of {', '.join(MEMBERS)}"
            + (f" (unknown: {', '.join(unknown)})" if unknown else "")
        )
    return chosen


def single_threaded() -> None:
    """One compute thread for torch and the native pools (OpenMP, BLAS) scikit-learn uses.

    Segments train one after another and pipeline jobs run side by side on a shared node:
    there, threads of one process wait on each other at every barrier, and measured on two
    busy cores a network update took six times longer with two threads than with one.
    """
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    torch = sys.modules.get("torch")  # the network member imports it only when it trains
    if torch is not None:
        torch.set_num_threads(1)
    threadpool_limits(1)


@dataclass
class TrainConfig:
    lasso_alpha: float = 0.001
    hidden: int = 64
    epochs: int | None = None  # the network's most epochs; None: chosen from the row count
    batch_size: int = 1024
    learning_rate: float = 3e-3
    seed: int = 0
    max_updates: int = 3000
    patience: int = 3  # epochs without a better validation MAPE before the network stops
    gbm_iterations: int = 200
    members: tuple[str, ...] = DEFAULT_MEMBERS
    refit: bool = True
    ensemble_steps: int = 20
    # The direct model and the examples it learns from.
    horizon: int = 13  # weeks ahead the model forecasts (h = 1..horizon)
    max_examples: int = 200_000  # training examples kept (a seeded sample beyond this)
    origin_step: int = 0  # weeks between training origins; 0: 1 to 4, from the data size
    validation_origins: int = 3  # origins inside the history the ensemble is validated on
    validation_spacing: int = 13  # weeks between them
    min_fit_weeks: int = 26  # weeks before the first validation origin, at least
    direct_iterations: int = 400
    direct_learning_rate: float = 0.1
    direct_leaves: int = 31
    direct_min_leaf: int = 50
    backend: str = "lightgbm"  # or "hgb" (scikit-learn), measured slower at the same trees
    # MAPE's row filter in the data's unit (``metrics``): what validation, the divergence
    # check, the ensemble weights and the direct model's loss weights count as a MAPE row.
    min_actual: float = metrics.MIN_ACTUAL

    def __post_init__(self) -> None:
        self.min_actual = metrics.check_min_actual(self.min_actual)

    def epochs_for(self, rows: int) -> int:
        if self.epochs is not None:
            return self.epochs
        batches = max(1, math.ceil(rows / self.batch_size))
        return int(min(60, max(4, self.max_updates // batches)))


class InputGuard:
    """Standardises numeric inputs and keeps them inside what training saw.

    Columns constant in training carry no information the model could have learned, and a
    model given a value far outside its training range extrapolates without any evidence:
    both are neutralised here, for every learned member.
    """

    def __init__(self, names: Sequence[str]) -> None:
        self.names = list(names)
        self.keep = np.ones(len(self.names), dtype=bool)
        self.low = np.zeros(len(self.names))
        self.high = np.zeros(len(self.names))
        self.mean = np.zeros(len(self.names))
        self.std = np.ones(len(self.names))

    def fit(self, frame: pd.DataFrame) -> InputGuard:
        x = frame[self.names].to_numpy(dtype=np.float64)
        low, high = np.nanmin(x, axis=0), np.nanmax(x, axis=0)
        self.keep = np.isfinite(low) & np.isfinite(high) & (high - low > 1e-9)
        kept = x[:, self.keep]
        self.low, self.high = low[self.keep], high[self.keep]
        self.mean = np.nanmean(kept, axis=0)
        std = np.nanstd(kept, axis=0)
        self.std = np.where(std > 1e-9, std, 1.0)
        return self

    @property
    def used(self) -> list[str]:
        return [n for n, k in zip(self.names, self.keep, strict=True) if k]

    @property
    def dropped(self) -> list[str]:
        return [n for n, k in zip(self.names, self.keep, strict=True) if not k]

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        x = frame[self.used].to_numpy(dtype=np.float64)
        x = np.where(np.isfinite(x), x, self.mean)
        z: np.ndarray = (np.clip(x, self.low, self.high) - self.mean) / self.std
        return z


class Diverged(Exception):
    """A member's training or validation went non-finite or far worse than the baseline."""


def scale_of(frame: pd.DataFrame) -> np.ndarray:
    """The per-row scale of the ratio target (the series mean, at least 1)."""
    values: np.ndarray = frame["series_mean"].clip(lower=1.0).to_numpy(dtype=np.float64)
    return values


def upper_bound(frame: pd.DataFrame) -> np.ndarray:
    """The largest plausible forecast per row: ``BOUND_FACTOR`` × the series' largest week."""
    scale = scale_of(frame)
    if "series_max" in frame:
        top = frame["series_max"].fillna(0.0).to_numpy(dtype=np.float64)
    else:  # feature frames written before series_max existed
        top = scale * RATIO_CLIP[1] / BOUND_FACTOR
    return np.asarray(BOUND_FACTOR * np.maximum(top, scale), dtype=np.float64)


def bounded(values: np.ndarray, frame: pd.DataFrame) -> np.ndarray:
    """Forecasts clipped to ``[0, upper_bound]``; non-finite values stay non-finite (so a
    diverged member is still recognisable)."""
    out: np.ndarray = np.clip(np.asarray(values, dtype=np.float64), 0.0, upper_bound(frame))
    return out


_POINT_TOP = 200.0  # beyond this mean the point is μ − 1 to well under a unit


@functools.lru_cache(maxsize=8)
def _point_table(min_actual: float) -> tuple[np.ndarray, np.ndarray]:
    means = np.concatenate([np.linspace(0.02, 50.0, 1250), np.linspace(50.2, _POINT_TOP, 750)])
    first = max(1, math.ceil(min_actual))
    counts = np.arange(first, int(_POINT_TOP * 2 + 100), dtype=np.float64)[:, None]
    log_factorial = np.array([[math.lgamma(c + 1.0)] for c in counts[:, 0]])
    log_pmf = counts * np.log(means[None, :]) - means[None, :] - log_factorial
    weights = np.exp(log_pmf) / counts  # MAPE weighs each count's error by 1 / count
    cumulative = np.cumsum(weights, axis=0)
    median = (cumulative >= cumulative[-1] / 2.0).argmax(axis=0)
    return means, counts[median, 0]


def poisson_mape_point(mean: np.ndarray, min_actual: float = 1.0) -> np.ndarray:
    """The forecast minimising the expected absolute percentage error (over counts of at
    least ``min_actual``) when demand is Poisson with ``mean``: the median of the counts
    weighted by 1 / count, interpolated between tabulated means."""
    mu = np.asarray(mean, dtype=np.float64)
    means, points = _point_table(float(min_actual))
    inside = np.interp(np.clip(mu, means[0], means[-1]), means, points)
    out: np.ndarray = np.where(mu > means[-1], mu - 1.0, inside)
    return np.where(np.isfinite(mu), out, mu)


class Member(Protocol):
    name: str

    def fit(self, train: pd.DataFrame, validation: pd.DataFrame | None) -> None: ...

    def predict(self, frame: pd.DataFrame) -> np.ndarray: ...

    def settings(self) -> dict[str, Any]: ...


class _Fixed:
    """A member with nothing to learn: a function of the features."""

    def __init__(self, name: str, rule: Callable[[pd.DataFrame], np.ndarray]) -> None:
        self.name = name
        self.rule = rule

    def fit(self, train: pd.DataFrame, validation: pd.DataFrame | None) -> None:
        return None

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return self.rule(frame)

    def settings(self) -> dict[str, Any]:
        return {}


def _historical_average(frame: pd.DataFrame) -> np.ndarray:
    values: np.ndarray = frame["series_mean"].clip(lower=0.0).to_numpy(dtype=np.float64)
    return values


def _seasonal_naive(frame: pd.DataFrame) -> np.ndarray:
    values: np.ndarray = frame["lag52"].to_numpy(dtype=np.float64)
    return values


def _seasonal_growth(frame: pd.DataFrame) -> np.ndarray:
    # The square root damps the growth: measured on a few weeks, it is noisy, and the full
    # factor overshoots as often as it helps.
    growth = frame["growth"].to_numpy(dtype=np.float64) if "growth" in frame else 1.0
    values: np.ndarray = _seasonal_naive(frame) * np.sqrt(growth)
    return values


class _LassoMember:
    name = "lasso"

    def __init__(self, numeric: Sequence[str], config: TrainConfig) -> None:
        self.guard = InputGuard(numeric)
        self.alpha = config.lasso_alpha
        self.model: Lasso | None = None

    def fit(self, train: pd.DataFrame, validation: pd.DataFrame | None) -> None:
        self.guard.fit(train)
        self.model = Lasso(alpha=self.alpha)
        self.model.fit(self.guard.transform(train), train["target_ratio"].to_numpy())

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        assert self.model is not None
        ratio = np.clip(self.model.predict(self.guard.transform(frame)), *RATIO_CLIP)
        values: np.ndarray = ratio * scale_of(frame)
        return values

    def settings(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "dropped_inputs": self.guard.dropped}


class _CountMember:
    """Poisson-loss trees on the ratio, weighted by the scale: the Poisson likelihood of the
    quantity with the series mean as exposure, which is what intermittent counts need."""

    name = "count"

    def __init__(self, numeric: Sequence[str], config: TrainConfig) -> None:
        self.guard = InputGuard([*numeric, "woy"])
        self.iterations = config.gbm_iterations
        self.seed = config.seed
        self.model: HistGradientBoostingRegressor | None = None

    def fit(self, train: pd.DataFrame, validation: pd.DataFrame | None) -> None:
        self.guard.fit(train)
        y = train["target_ratio"].to_numpy(dtype=np.float64)
        if not (y > 0).any():
            raise Diverged("no positive quantities to fit a count model on")
        stop = validation is not None and len(validation) > 0
        self.model = HistGradientBoostingRegressor(
            loss="poisson",
            learning_rate=0.1,
            max_iter=self.iterations,
            max_leaf_nodes=31,
            min_samples_leaf=20,
            l2_regularization=1.0,
            early_stopping=stop,
            n_iter_no_change=10,
            random_state=self.seed,
        )
        extra: dict[str, Any] = {}
        if stop:
            assert validation is not None
            extra = {
                "X_val": self.guard.transform(validation),
                "y_val": validation["target_ratio"].to_numpy(dtype=np.float64),
                "sample_weight_val": scale_of(validation),
            }
        self.model.fit(self.guard.transform(train), y, sample_weight=scale_of(train), **extra)
        self.iterations = int(self.model.n_iter_)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        assert self.model is not None
        ratio = np.clip(self.model.predict(self.guard.transform(frame)), *RATIO_CLIP)
        # Over every non-zero week, whatever threshold the gate's MAPE uses: the point is a
        # property of the demand, and for big series it is the mean less one unit anyway.
        return poisson_mape_point(ratio * scale_of(frame))

    def settings(self) -> dict[str, Any]:
        return {"iterations": self.iterations, "dropped_inputs": self.guard.dropped}


def mape_weights(
    quantity: np.ndarray, scale: np.ndarray, min_actual: float = metrics.MIN_ACTUAL
) -> np.ndarray:
    """Sample weights that make an absolute error on ``quantity / scale`` the row's
    percentage error: ``scale / quantity`` on the rows MAPE counts (|quantity| ≥
    ``min_actual``; at most ``1 / WEIGHT_FLOOR``: a week far below the series' level must not
    outweigh ten normal ones), and a neutral 1 on the weeks it leaves out, so zero weeks
    still pull a slow mover down."""
    ratio = np.asarray(quantity, dtype=np.float64) / np.asarray(scale, dtype=np.float64)
    counted = metrics.mape_rows(quantity, min_actual)
    out: np.ndarray = np.where(counted, 1.0 / np.clip(np.abs(ratio), WEIGHT_FLOOR, None), 1.0)
    return out


WEIGHT_FLOOR = 0.1
MAX_CATEGORIES = 250  # more distinct values than this: the column is left to the pooled features


class _DirectMember:
    """The direct multi-horizon model: gradient-boosted trees over every series and origin at
    once, forecasting the quantity ``h`` weeks ahead relative to the level at the origin
    (``level_scale``), with an absolute loss weighted so it is the percentage error MAPE
    counts. Stores, products and formats are categorical inputs.

    The input set is chosen once, on the examples before the first validation origin
    (columns that never vary there carry nothing the trees could learn; pooled features are
    dropped when every product or store has a single series, where they repeat the series'
    own); a refit keeps that set and the number of trees validation chose.
    """

    name = "direct"

    def __init__(self, numeric: Sequence[str], config: TrainConfig) -> None:
        self.config = config
        self.candidates = [c for c in numeric if c not in DIRECT_CATEGORICAL]
        self.used: list[str] = []
        self.categorical: list[str] = []
        self.vocab: dict[str, dict[str, int]] = {}
        self.iterations = config.direct_iterations
        self.fixed_inputs: tuple[list[str], list[str]] | None = None
        self.model: Any = None
        self.backend = config.backend

    def _choose_inputs(self, train: pd.DataFrame) -> None:
        used = [c for c in self.candidates if c in train and train[c].nunique(dropna=True) > 1]
        pairs = train[["store_id", "product_id"]].drop_duplicates()
        for column, prefix in (("product_id", "product_"), ("store_id", "store_")):
            if pairs.groupby(column).size().max() <= 1:
                used = [c for c in used if not (c in POOLED and c.startswith(prefix))]
        cats = [
            c for c in DIRECT_CATEGORICAL if c in train and 1 < train[c].nunique() <= MAX_CATEGORIES
        ]
        self.used, self.categorical = used, cats

    def _matrix(self, frame: pd.DataFrame) -> np.ndarray:
        columns = [
            frame[c].to_numpy(dtype=np.float64) if c in frame else np.full(len(frame), np.nan)
            for c in self.used
        ]
        for c in self.categorical:
            codes = frame[c].astype(str).map(self.vocab[c]) if c in frame else None
            columns.append(
                np.full(len(frame), np.nan) if codes is None else codes.to_numpy(dtype=np.float64)
            )
        return np.column_stack(columns) if columns else np.zeros((len(frame), 0))

    def _target(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        scale = direct_scale(frame)
        quantity = frame["quantity"].to_numpy(dtype=np.float64)
        weights = mape_weights(quantity, scale, self.config.min_actual)
        return np.clip(quantity / scale, 0.0, DIRECT_RATIO_MAX), weights

    def fit(self, train: pd.DataFrame, validation: pd.DataFrame | None) -> None:
        if train.empty:
            raise Diverged("no training examples (the history is too short)")
        if self.fixed_inputs is None:
            self._choose_inputs(train)
        else:
            self.used, self.categorical = (list(x) for x in self.fixed_inputs)
        self.vocab = {
            c: {v: i for i, v in enumerate(sorted(train[c].astype(str).unique()))}
            for c in self.categorical
        }
        x, (y, w) = self._matrix(train), self._target(train)
        stop = validation is not None and len(validation) > 0 and self.fixed_inputs is None
        x_val = y_val = w_val = None
        if stop:
            assert validation is not None
            x_val, (y_val, w_val) = self._matrix(validation), self._target(validation)
        if self.backend == "lightgbm":
            self._fit_lightgbm(x, y, w, x_val, y_val, w_val)
        else:
            self._fit_hgb(x, y, w, x_val, y_val, w_val)

    def _fit_hgb(self, x: np.ndarray, y: np.ndarray, w: np.ndarray, x_val: Any, y_val: Any,
                 w_val: Any) -> None:  # fmt: skip
        config = self.config
        mask = [False] * len(self.used) + [True] * len(self.categorical)
        self.model = HistGradientBoostingRegressor(
            loss="absolute_error",
            learning_rate=config.direct_learning_rate,
            max_iter=self.iterations,
            max_leaf_nodes=config.direct_leaves,
            min_samples_leaf=config.direct_min_leaf,
            l2_regularization=1.0,
            categorical_features=mask if any(mask) else None,
            early_stopping=x_val is not None,
            n_iter_no_change=30,
            random_state=config.seed,
        )
        extra: dict[str, Any] = {}
        if x_val is not None:
            extra = {"X_val": x_val, "y_val": y_val, "sample_weight_val": w_val}
        self.model.fit(x, y, sample_weight=w, **extra)
        self.iterations = int(self.model.n_iter_)

    def _fit_lightgbm(self, x: np.ndarray, y: np.ndarray, w: np.ndarray, x_val: Any, y_val: Any,
                      w_val: Any) -> None:  # fmt: skip
        import lightgbm as lgb  # type: ignore[import-not-found,unused-ignore]

        config = self.config
        categorical = list(range(len(self.used), len(self.used) + len(self.categorical)))
        params = {
            "objective": "l1",
            "learning_rate": config.direct_learning_rate,
            "num_leaves": config.direct_leaves,
            "min_data_in_leaf": config.direct_min_leaf,
            "lambda_l2": 1.0,
            "bagging_fraction": 0.7,
            "bagging_freq": 1,
            "feature_fraction": 0.8,
            "seed": config.seed,
            "deterministic": True,
            "num_threads": 1,
            "verbose": -1,
        }
        data = lgb.Dataset(x, y, weight=w, categorical_feature=categorical or "auto")
        callbacks: list[Any] = []
        valid: list[Any] = []
        if x_val is not None:
            valid = [lgb.Dataset(x_val, y_val, weight=w_val, reference=data)]
            callbacks = [lgb.early_stopping(30, verbose=False)]
        try:
            self.model = lgb.train(params, data, num_boost_round=self.iterations,
                                   valid_sets=valid, callbacks=callbacks)  # fmt: skip
        except lgb.basic.LightGBMError as exc:
            # LightGBM refuses rows it cannot split at all (a few weeks of a sparse series: every
            # feature constant after binning); the member is then unusable, not the partition.
            raise RuntimeError(f"LightGBM: {exc}") from exc
        if x_val is not None and self.model.best_iteration:
            self.iterations = int(self.model.best_iteration)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        assert self.model is not None
        ratio = np.clip(self.model.predict(self._matrix(frame)), 0.0, DIRECT_RATIO_MAX)
        values: np.ndarray = ratio * direct_scale(frame)
        return values

    def inputs(self) -> list[str]:
        return [*self.used, *self.categorical]

    def settings(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "iterations": self.iterations,
            "inputs": self.inputs(),
            "dropped_inputs": [c for c in self.candidates if c not in self.used],
        }


def direct_scale(frame: pd.DataFrame) -> np.ndarray:
    """The level the direct model's target is relative to (at least 1)."""
    if "level_scale" in frame:
        values: np.ndarray = frame["level_scale"].clip(lower=1.0).to_numpy(dtype=np.float64)
        return values
    return scale_of(frame)


def _make(name: str, numeric: Sequence[str], config: TrainConfig) -> Member:
    if name == "baseline":
        return _Fixed(name, _historical_average)
    if name == "seasonal_naive":
        return _Fixed(name, _seasonal_naive)
    if name == "seasonal_growth":
        return _Fixed(name, _seasonal_growth)
    if name == "direct":
        return _DirectMember(numeric, config)
    if name == "lasso":
        return _LassoMember(numeric, config)
    if name == "count":
        return _CountMember(numeric, config)
    if name == "nn":
        from .network import _NetMember

        return _NetMember(numeric, config)
    raise ValueError(f"unknown ensemble member {name!r}; use some of {', '.join(MEMBERS)}")


def _refit_like(member: Member, numeric: Sequence[str], config: TrainConfig) -> Member:
    """A fresh member with the settings validation chose (inputs, epochs, iterations), no
    stopping."""
    fresh = _make(member.name, numeric, config)
    if member.name == "nn" and hasattr(fresh, "fixed_epochs"):
        fresh.fixed_epochs = max(1, getattr(member, "epochs", 1))
    if isinstance(member, _CountMember) and isinstance(fresh, _CountMember):
        fresh.iterations = max(1, member.iterations)
    if isinstance(member, _DirectMember) and isinstance(fresh, _DirectMember):
        fresh.iterations = max(1, member.iterations)
        fresh.fixed_inputs = (list(member.used), list(member.categorical))
    return fresh


def select_weights(
    forecasts: Mapping[str, np.ndarray],
    actual: np.ndarray,
    steps: int = 20,
    min_actual: float = metrics.MIN_ACTUAL,
) -> tuple[dict[str, float], float]:
    """Ensemble weights by greedy forward selection with replacement (Caruana et al., 2004).

    Starts from the member with the lowest MAPE and adds, one vote at a time, the member that
    lowers it most; stops when no addition helps. Returns the weights (summing to 1) and the
    ensemble's MAPE, which is never above the best member's.
    """
    names = [n for n, f in forecasts.items() if np.isfinite(f).all()]
    if not names:
        raise Diverged("no member produced finite forecasts")

    def score(values: np.ndarray) -> float:
        value = metrics.mape(actual, values, min_actual)
        return value if math.isfinite(value) else math.inf

    singles = {n: score(forecasts[n]) for n in names}
    first = min(names, key=lambda n: (singles[n], names.index(n)))
    votes = dict.fromkeys(names, 0)
    votes[first] = 1
    current, best = np.asarray(forecasts[first], dtype=np.float64), singles[first]
    for k in range(1, steps):
        trials = [(score((current * k + forecasts[n]) / (k + 1)), names.index(n), n) for n in names]
        value, _, choice = min(trials)
        if not value < best - 1e-9:
            break
        votes[choice] += 1
        current = (current * k + forecasts[choice]) / (k + 1)
        best = value
    total = sum(votes.values())
    return {n: v / total for n, v in votes.items() if v}, best


@dataclass
class MemberReport:
    """What validation said about one member (for one segment)."""

    name: str
    validation: dict[str, float] = field(default_factory=dict)
    diverged: bool = False
    reason: str = ""
    weight: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0  # fitting time, validation and refit together

    def as_dict(self) -> dict[str, Any]:
        return {
            "validation": self.validation,
            "diverged": self.diverged,
            "reason": self.reason,
            "weight": self.weight,
            "settings": self.settings,
            "seconds": round(self.seconds, 2),
        }


# -- training: origins, validation, weights, refit --------------------------------------------

FIRST_ORIGIN = 12  # a training origin has at least 13 weeks behind it
ALL = ("*", "*", "*")
SegmentKey = tuple[str, ...]


@dataclass(frozen=True)
class OriginPlan:
    """Where training examples and validation come from, as grid columns of the history."""

    last: int  # the forecast origin: the history's last week
    training: tuple[int, ...]  # origins training examples are stacked from
    validation: tuple[int, ...]  # origins the ensemble is validated on (may be empty)
    step: int


def validation_spacing(last: int, config: TrainConfig) -> int:
    """Weeks between validation origins: ``config.validation_spacing``, or fewer when the
    history ending at grid column ``last`` has less than that many weeks per origin after its
    first year (a history shorter than a year keeps the configured spacing)."""
    after_first_year = last - YEAR
    if after_first_year <= 0:
        return config.validation_spacing
    origins = max(1, config.validation_origins)
    return max(1, min(config.validation_spacing, after_first_year // origins))


def plan_origins(last: int, series: int, config: TrainConfig) -> OriginPlan:
    """Validation origins every ``validation_spacing`` weeks back from ``last − min(horizon,
    spacing)`` (so the latest still has a quarter of targets inside the history), keeping
    ``min_fit_weeks`` before the first; training origins every 1–4 weeks (``origin_step``, or
    the smallest step that keeps about ``2 × max_examples`` candidate examples).

    A learned member sees its first examples with last year's week behind them at week
    ``YEAR``. When the history holds little more than a year, origins 13 weeks apart would
    judge fits that have seen few or none of those examples, while the final fit has them
    all: the learned members would lose weight they earn in use. So the spacing shrinks until
    every validation origin lies in the weeks after the first year."""
    spacing = validation_spacing(last, config)
    latest = last - min(config.horizon, spacing)
    validation = sorted(
        o
        for o in (latest - k * spacing for k in range(config.validation_origins))
        if o >= config.min_fit_weeks
    )
    step = config.origin_step
    if step <= 0:
        span = max(0, last - FIRST_ORIGIN)
        examples = series * span * min(config.horizon, max(span, 1))
        step = next((s for s in (1, 2, 3) if examples / s <= 2 * config.max_examples), 4)
    training = tuple(range(last - 1, FIRST_ORIGIN - 1, -step))[::-1]
    return OriginPlan(last, training, tuple(validation), step)


def _segment_mask(frame: pd.DataFrame, key: SegmentKey) -> np.ndarray:
    if key == ALL:
        return np.ones(len(frame), dtype=bool)
    mask = np.ones(len(frame), dtype=bool)
    for column, value in zip(SEGMENT, key, strict=True):
        mask &= frame[column].astype(str).to_numpy() == str(value)
    return mask


def train_segments(
    history: pd.DataFrame,
    exog: Sequence[str] = (),
    config: TrainConfig | None = None,
    known_ahead: Sequence[str] = (),
    segments: Sequence[SegmentKey] | None = None,
) -> dict[SegmentKey, SegmentForecaster]:
    """One forecaster per segment key (region, format, velocity) — or one for everything
    (key ``ALL``) — from the raw ``history`` rows of every series (the context).

    The learned members are trained across all the series: once per validation origin (on
    the examples known by then) and, if they earn weight anywhere, once more on every origin
    with the inputs and iterations the latest validation fit chose. Each segment gets its own
    ensemble weights, fitted on its rows of the validation origins (pooled), and its own
    divergence checks.
    """
    config = config or TrainConfig()
    panel = Panel(history, exog, known_ahead)
    plan = plan_origins(panel.weeks - 1, len(panel.series), config)
    keys = list(segments) if segments else [ALL]
    numeric = [*dict.fromkeys([*DIRECT_NUMERIC, *numeric_features(exog)])]
    names = [n for n in MEMBERS if n in config.members]
    if "baseline" not in names:
        names.insert(0, "baseline")  # the gate and the divergence check measure against it
    stack = stack_origins(panel, config.horizon, plan.training, config.max_examples, config.seed)
    folds = _folds(panel, plan, config)
    forecasters = {k: SegmentForecaster(exog, config, known_ahead) for k in keys}
    for forecaster in forecasters.values():
        forecaster.horizon = config.horizon
        forecaster.origin_plan = {"step": plan.step, "training_origins": len(plan.training),
                                  "validation_origins": len(folds)}  # fmt: skip
        forecaster.trained_rows = len(stack)
    if not folds or stack.empty:
        _train_unvalidated(forecasters, stack, names, numeric, config)
        return forecasters
    check = pd.concat([rows for _, rows in folds], ignore_index=True)
    members: dict[str, Member] = {}
    trouble: dict[str, str] = {}
    seconds: dict[str, float] = {}
    settings: dict[str, dict[str, Any]] = {}
    predictions: dict[str, np.ndarray] = {}
    for name in names:
        started = time.perf_counter()
        member, trouble[name], forecast = _validate_member(name, folds, stack, panel.first,
                                                           numeric, config)  # fmt: skip
        seconds[name] = time.perf_counter() - started
        settings[name] = member.settings()
        if not trouble[name]:
            members[name] = member
            predictions[name] = forecast
    weighted: set[str] = set()
    for key, forecaster in forecasters.items():
        rows = _segment_mask(check, key)
        _validate_segment(forecaster, check[rows], {n: p[rows] for n, p in predictions.items()},
                          names, trouble, settings, seconds)  # fmt: skip
        weighted |= set(forecaster.weights)
    refits = _refit(members, weighted, stack, check, forecasters, numeric, config)
    for forecaster in forecasters.values():
        forecaster.members = {n: refits.get(n, m) for n, m in members.items()}
        forecaster.validated = True
    return forecasters


def _folds(panel: Panel, plan: OriginPlan, config: TrainConfig) -> list[tuple[int, pd.DataFrame]]:
    """Each validation origin's examples (every series, ``h = 1..horizon`` inside the
    history). When every week forecast from the end of the history has last year's week
    behind it, only validation weeks that do too are kept: first-year weeks, where seasonal
    naive cannot work, would judge the members on a task they will not face."""
    seasonal_only = plan.last >= YEAR - 1
    folds = []
    for origin in plan.validation:
        rows = stack_origins(panel, config.horizon, [origin])
        if seasonal_only and not rows.empty:
            rows = rows[rows["has_lag52"] > 0].reset_index(drop=True)
        if not rows.empty:
            folds.append((origin, rows))
    return folds


def _validate_member(
    name: str,
    folds: Sequence[tuple[int, pd.DataFrame]],
    stack: pd.DataFrame,
    first: pd.Timestamp,
    numeric: Sequence[str],
    config: TrainConfig,
) -> tuple[Member, str, np.ndarray]:
    """A member's forecasts of every validation origin, each made the way it is used: a
    learned member is fitted on the examples whose targets lie up to that origin (stopping
    early on its weeks). Returns the member of the latest origin, why it failed ('' if it
    did not) and the forecasts, fold after fold."""
    parts: list[np.ndarray] = []
    member = _make(name, numeric, config)
    for origin, rows in folds:
        if name in LEARNED:
            member = _make(name, numeric, config)
            known = stack[stack["week_start"] <= first + pd.Timedelta(weeks=origin)]
            reason = _fit_member(member, known, rows)
            if reason:
                return member, reason, np.zeros(0)
        parts.append(bounded(member.predict(rows), rows))
    return member, "", np.concatenate(parts)


def _refit(
    members: Mapping[str, Member],
    weighted: set[str],
    stack: pd.DataFrame,
    check: pd.DataFrame,
    forecasters: Mapping[SegmentKey, SegmentForecaster],
    numeric: Sequence[str],
    config: TrainConfig,
) -> dict[str, Member]:
    """Learned members with weight in some segment, refitted on every origin with the inputs
    and iterations validation chose; a refit that fails keeps the validated model."""
    refits: dict[str, Member] = {}
    if not config.refit:
        return refits
    for name, member in members.items():
        if name not in LEARNED or name not in weighted:
            continue
        fresh = _refit_like(member, numeric, config)
        started = time.perf_counter()
        reason = _fit_member(fresh, stack, None)
        if not reason and not np.isfinite(fresh.predict(check.iloc[:2000])).all():
            reason = "forecasts are not finite"
        for forecaster in forecasters.values():
            report = forecaster.reports[name]
            report.seconds += time.perf_counter() - started
            if reason:
                report.reason = f"refit on every origin rejected ({reason})"
            else:
                report.settings = fresh.settings()
        if not reason:
            refits[name] = fresh
    return refits


def _fit_member(member: Member, train: pd.DataFrame, check: pd.DataFrame | None) -> str:
    """Fit ``member``; '' when healthy, else why it diverged."""
    try:
        member.fit(train, check)
    except Diverged as exc:
        return str(exc)
    except (ValueError, FloatingPointError, RuntimeError) as exc:
        return f"training failed: {exc}"
    return ""


def _validate_segment(
    forecaster: SegmentForecaster,
    check: pd.DataFrame,
    predictions: Mapping[str, np.ndarray],
    names: Sequence[str],
    trouble: Mapping[str, str],
    settings: Mapping[str, dict[str, Any]],
    seconds: Mapping[str, float],
) -> None:
    """The segment's divergence checks and ensemble weights on its validation rows."""
    actual = check["quantity"].to_numpy(dtype=np.float64)
    holiday = check["holiday"].to_numpy() if "holiday" in check else None
    min_actual = forecaster.config.min_actual
    baseline = predictions.get("baseline")
    reference = math.nan if baseline is None else metrics.mape(actual, baseline, min_actual)
    healthy: dict[str, np.ndarray] = {}
    for name in names:
        report = forecaster.reports[name] = MemberReport(name, settings=dict(settings[name]))
        report.seconds = seconds[name]
        report.reason = trouble[name]
        if not report.reason and name in predictions:
            forecast = predictions[name]
            if not np.isfinite(forecast).all():
                report.reason = "forecasts are not finite"
            elif len(actual):
                report.validation = metrics.summarize(actual, forecast, holiday, min_actual)
                mape = report.validation["mape"]
                if (
                    math.isfinite(reference)
                    and math.isfinite(mape)
                    and (mape > DIVERGENCE_FACTOR * reference)
                ):
                    report.reason = (
                        f"validation MAPE {mape:.3f} is more than {DIVERGENCE_FACTOR:g}x the "
                        f"historical average's {reference:.3f}"
                    )
        report.diverged = bool(report.reason)
        if not report.diverged:
            healthy[name] = predictions[name]
    if not len(actual) or not healthy:
        forecaster.weights = {"baseline": 1.0}
    else:
        forecaster.weights, _ = select_weights(
            healthy, actual, forecaster.config.ensemble_steps, min_actual
        )
        ensemble = sum(w * healthy[n] for n, w in forecaster.weights.items())
        forecaster.ensemble_validation = metrics.summarize(
            actual, np.asarray(ensemble, dtype=np.float64), holiday, min_actual
        )
    for name, weight in forecaster.weights.items():
        forecaster.reports[name].weight = weight


def _train_unvalidated(
    forecasters: Mapping[SegmentKey, SegmentForecaster],
    stack: pd.DataFrame,
    names: Sequence[str],
    numeric: Sequence[str],
    config: TrainConfig,
) -> None:
    """Too little history for validation origins: learned members share the weight."""
    members: dict[str, Member] = {}
    reasons: dict[str, str] = {}
    settings: dict[str, dict[str, Any]] = {}
    for name in names:
        member = _make(name, numeric, config)
        reason = _fit_member(member, stack, None)
        if not reason and name in LEARNED and not np.isfinite(member.predict(stack)).all():
            reason = "forecasts are not finite"
        reasons[name], settings[name] = reason, member.settings()
        if not reason:
            members[name] = member
    healthy = [n for n in names if n in LEARNED and n in members]
    chosen = healthy or ["baseline"]
    for forecaster in forecasters.values():
        forecaster.members = dict(members)
        for name in names:
            report = forecaster.reports[name] = MemberReport(name, settings=settings[name])
            report.reason = reasons[name]
            report.diverged = bool(reasons[name])
        forecaster.weights = {n: 1.0 / len(chosen) for n in chosen}
        for name, weight in forecaster.weights.items():
            forecaster.reports[name].weight = weight


class SegmentForecaster:
    """A segment's ensemble: forecasts a feature frame (``features.build_features``: target
    weeks with features as of their origin), ``predict_components`` giving every member's.

    ``fit(history)`` trains one on raw history rows (all of them one segment); the train
    step uses ``train_segments`` to train many segments' forecasters with shared members.
    """

    format = FORMAT

    def __init__(
        self,
        exog: Sequence[str] = (),
        config: TrainConfig | None = None,
        known_ahead: Sequence[str] = (),
    ) -> None:
        self.exog = list(exog)
        self.known_ahead = list(known_ahead)
        self.numeric = numeric_features(self.exog)
        self.config = config or TrainConfig()
        self.members: dict[str, Member] = {}
        self.weights: dict[str, float] = {}
        self.reports: dict[str, MemberReport] = {}
        self.ensemble_validation: dict[str, float] = {}
        self.validated = False
        self.trained_rows = 0
        self.horizon = self.config.horizon
        self.origin_plan: dict[str, int] = {}

    def fit(self, history: pd.DataFrame) -> SegmentForecaster:
        """Train on the raw rows of ``history`` (store_id, product_id, week_start, quantity,
        the outside columns, event_count) as one segment."""
        if history.empty:
            raise ValueError("cannot train on an empty history")
        trained = train_segments(history, self.exog, self.config, self.known_ahead)[ALL]
        self.__dict__.update(trained.__dict__)
        return self

    # -- prediction -----------------------------------------------------------------------

    def predict_components(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Bounded quantity forecasts of every member and the ensemble, index of ``frame``.

        Diverged members are still reported (so their failure shows in the metrics) but carry
        no weight in ``ensemble``; a member that could not be trained at all forecasts NaN.
        """
        if not self.members:
            raise RuntimeError("the forecaster is not trained")
        out = pd.DataFrame(index=frame.index)
        for name in [*self.reports, *(n for n in self.members if n not in self.reports)]:
            member = self.members.get(name)
            out[name] = bounded(member.predict(frame), frame) if member else np.nan
        ensemble = np.zeros(len(frame))
        for name, weight in self.weights.items():
            ensemble += weight * out[name].to_numpy()
        out["ensemble"] = bounded(ensemble, frame)
        return out

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        values: np.ndarray = self.predict_components(frame)["ensemble"].to_numpy()
        return values

    @property
    def diverged(self) -> list[str]:
        return sorted(n for n, r in self.reports.items() if r.diverged)

    def describe(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "numeric_features": self.numeric,
            "categorical_features": list(CATEGORICAL),
            "known_ahead": getattr(self, "known_ahead", []),
            "horizon": getattr(self, "horizon", None),
            "min_actual": self.config.min_actual,
            "origins": getattr(self, "origin_plan", {}),
            "trained_rows": self.trained_rows,
            "validated": self.validated,
            "weights": self.weights,
            "diverged": self.diverged,
            "ensemble_validation": self.ensemble_validation,
            "members": {n: r.as_dict() for n, r in self.reports.items()},
        }

    # -- models saved by earlier versions ---------------------------------------------------

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "members" not in state:  # format 1: the average of a LASSO and a network
            state = _upgrade_format_1(state)
        self.__dict__.update(state)


class _LegacyLasso:
    """A format-1 LASSO pipeline (scaler + LASSO on the raw numeric features)."""

    name = "lasso"

    def __init__(self, pipeline: Any, numeric: Sequence[str]) -> None:
        self.pipeline, self.numeric = pipeline, list(numeric)

    def fit(self, train: pd.DataFrame, validation: pd.DataFrame | None) -> None:
        raise RuntimeError("a format-1 model cannot be retrained")

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        x = frame[self.numeric].to_numpy(dtype=np.float64)
        values: np.ndarray = np.clip(self.pipeline.predict(x), *RATIO_CLIP) * scale_of(frame)
        return values

    def settings(self) -> dict[str, Any]:
        return {"format": 1}


def _legacy_net(state: dict[str, Any]) -> Member:
    from .network import _LegacyNet

    return _LegacyNet(state)


def __getattr__(name: str) -> Any:
    """The network lives in ``network`` (it needs torch, which nothing else does); models
    pickled when it lived here still find it under this module's name."""
    if name in ("EmbeddingNet", "_NetMember", "_LegacyNet"):
        from . import network

        return getattr(network, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _upgrade_format_1(state: dict[str, Any]) -> dict[str, Any]:
    """A champion pickled by the first version still scores, as it did: LASSO and network
    averaged, plus the historical average."""
    numeric = list(state["numeric"])
    members: dict[str, Member] = {
        "baseline": _Fixed("baseline", _historical_average),
        "lasso": _LegacyLasso(state["lasso"], numeric),
        "nn": _legacy_net(state),
    }
    return {
        "exog": state.get("exog", []),
        "numeric": numeric,
        "config": state.get("config") or TrainConfig(),
        "members": members,
        "weights": {"lasso": 0.5, "nn": 0.5},
        "reports": {},
        "ensemble_validation": {},
        "validated": False,
        "trained_rows": state.get("trained_rows", 0),
        "format": 1,
    }
