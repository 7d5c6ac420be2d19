"""The per-segment forecaster: simple baselines, learned members, and a validated ensemble.

Members (each a quantity forecast per row, see ``MEMBERS``):

- ``baseline``: the series' historical average (the case study's baseline);
- ``seasonal_naive``: the same week last year (the series mean where last year is unknown);
- ``seasonal_growth``: seasonal naive times the damped year-over-year growth of the series;
- ``lasso``: a LASSO regression on the ratio of quantity to the series mean;
- ``nn``: a network with categorical embeddings (store, product, week of year) on that ratio;
- ``count``: gradient-boosted trees with a Poisson loss on that ratio, weighted by the
  series' scale — a count-data model that suits slow movers with many zero or near-zero weeks.
  It forecasts a Poisson mean μ and reports the point of that distribution with the least
  expected percentage error (``poisson_mape_point``: about μ − 1). For big series that is the
  mean; for a slow mover selling 3 a week it is 2 — MAPE rewards forecasting below the mean
  of a count, which is why WAPE and RMSE are reported next to it.

How training stays safe (every rule answers a failure seen on real data):

- inputs are guarded (``InputGuard``): a column that is constant in training is dropped and
  every value is clipped to the range seen in training, so a feature that only appears after
  the origin (markdowns on the Walmart data) cannot push the network far outside what it
  learned;
- the network and the trees stop early on a validation window that lies after the rows they
  fit (time-ordered, never shuffled), with fixed seeds;
- every forecast is bounded to ``[0, BOUND_FACTOR × the series' largest week]``;
- a member whose validation forecasts are not finite, whose training loss is not finite or
  whose validation MAPE exceeds ``DIVERGENCE_FACTOR`` times the historical average's is
  *diverged*: reported, and given no weight.

The ensemble is fitted on the validation window (greedy forward selection with replacement,
which starts from the best single member and only accepts steps that lower the validation
MAPE), so on validation it is never worse than its best member. Members with weight are then
refitted on the whole history with the settings validation chose; a refit that fails the same
checks falls back to the validated model.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import Lasso
from torch import nn

from . import metrics
from .features import CATEGORICAL, RATIO_CLIP, numeric_features

MEMBERS = ("baseline", "seasonal_naive", "seasonal_growth", "lasso", "nn", "count")
LEARNED = ("lasso", "nn", "count")
COMPONENTS = (*MEMBERS, "ensemble")
DIVERGENCE_FACTOR = 2.0
BOUND_FACTOR = 2.0
FORMAT = 2  # bumped when the pickled layout changes; 1 = the LASSO + network average


def single_threaded() -> None:
    """One compute thread for torch and the native pools (OpenMP, BLAS) scikit-learn uses.

    Segments train one after another and pipeline jobs run side by side on a shared node:
    there, threads of one process wait on each other at every barrier, and measured on two
    busy cores a network update took six times longer with two threads than with one.
    """
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    torch.set_num_threads(1)
    threadpool_limits(1)


class EmbeddingNet(nn.Module):
    """One ``nn.Embedding`` per categorical column, concatenated with the numeric features,
    then a small MLP to one output."""

    def __init__(self, cardinalities: Sequence[int], n_numeric: int, hidden: int = 64) -> None:
        super().__init__()
        dims = [min(16, (c + 1) // 2 + 1) for c in cardinalities]
        # Index 0 of every embedding is "unseen in training".
        self.embeddings = nn.ModuleList(
            nn.Embedding(c + 1, d) for c, d in zip(cardinalities, dims, strict=True)
        )
        self.mlp = nn.Sequential(
            nn.Linear(sum(dims) + n_numeric, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden // 2),
            nn.ReLU(),
            nn.Linear(hidden // 2, 1),
        )

    def forward(self, cats: torch.Tensor, nums: torch.Tensor) -> torch.Tensor:
        parts = [emb(cats[:, i]) for i, emb in enumerate(self.embeddings)]
        return self.mlp(torch.cat([*parts, nums], dim=1)).squeeze(1)  # type: ignore[no-any-return]


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
    min_actual: float = 1.0  # MAPE's threshold when weighting the ensemble on validation
    members: tuple[str, ...] = MEMBERS
    refit: bool = True
    ensemble_steps: int = 20

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


class _NetMember:
    name = "nn"

    def __init__(self, numeric: Sequence[str], config: TrainConfig) -> None:
        self.guard = InputGuard(numeric)
        self.config = config
        self.vocab: dict[str, dict[str, int]] = {}
        self.net: EmbeddingNet | None = None
        self.epochs = 0
        self.fixed_epochs: int | None = None
        self.validation_curve: list[float] = []

    def _cats(self, frame: pd.DataFrame) -> torch.Tensor:
        columns = [
            frame[name].astype(str).map(self.vocab[name]).fillna(0).astype(np.int64).to_numpy()
            for name in CATEGORICAL
        ]
        return torch.from_numpy(np.stack(columns, axis=1))

    def _nums(self, frame: pd.DataFrame) -> torch.Tensor:
        return torch.from_numpy(self.guard.transform(frame).astype(np.float32))

    def _forward(self, net: EmbeddingNet, frame: pd.DataFrame) -> np.ndarray:
        net.eval()
        with torch.no_grad():
            ratio = net(self._cats(frame), self._nums(frame)).numpy().astype(np.float64)
        net.train()
        values: np.ndarray = np.clip(ratio, *RATIO_CLIP) * scale_of(frame)
        return values

    def fit(self, train: pd.DataFrame, validation: pd.DataFrame | None) -> None:
        config = self.config
        self.guard.fit(train)
        self.vocab = {
            name: {v: i + 1 for i, v in enumerate(sorted(train[name].astype(str).unique()))}
            for name in CATEGORICAL
        }
        torch.manual_seed(config.seed)
        generator = torch.Generator().manual_seed(config.seed)
        net = EmbeddingNet(
            [len(self.vocab[n]) for n in CATEGORICAL], len(self.guard.used), config.hidden
        )
        cats, nums = self._cats(train), self._nums(train)
        y = torch.from_numpy(train["target_ratio"].to_numpy(dtype=np.float32))
        optimiser = torch.optim.Adam(net.parameters(), lr=config.learning_rate)
        loss_fn = nn.L1Loss()  # median-seeking: what percentage errors reward
        rows = len(train)
        epochs = self.fixed_epochs or config.epochs_for(rows)
        watch = validation is not None and self.fixed_epochs is None and len(validation) > 0
        best, best_state, best_epoch, waited = math.inf, None, 0, 0
        self.validation_curve = []
        for epoch in range(1, epochs + 1):
            order = torch.randperm(rows, generator=generator)
            for start in range(0, rows, config.batch_size):
                idx = order[start : start + config.batch_size]
                optimiser.zero_grad()
                loss = loss_fn(net(cats[idx], nums[idx]), y[idx])
                if not torch.isfinite(loss):
                    raise Diverged(f"training loss is not finite in epoch {epoch}")
                loss.backward()
                # Bounded steps: one batch of extreme ratios cannot throw the weights away.
                nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                optimiser.step()
            if not watch:
                continue
            assert validation is not None
            forecast = bounded(self._forward(net, validation), validation)
            score = metrics.mape(validation["quantity"], forecast, config.min_actual)
            score = score if math.isfinite(score) else math.inf
            self.validation_curve.append(score)
            if score < best - 1e-6:
                best, best_epoch, waited = score, epoch, 0
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            else:
                waited += 1
                if waited >= config.patience:
                    break
        if best_state is not None:
            net.load_state_dict(best_state)
            self.epochs = best_epoch
        else:
            self.epochs = epochs
        net.eval()
        self.net = net

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        assert self.net is not None
        return self._forward(self.net, frame)

    def settings(self) -> dict[str, Any]:
        return {
            "epochs": self.epochs,
            "validation_curve": [round(v, 4) for v in self.validation_curve],
            "dropped_inputs": self.guard.dropped,
        }


def _make(name: str, numeric: Sequence[str], config: TrainConfig) -> Member:
    if name == "baseline":
        return _Fixed(name, _historical_average)
    if name == "seasonal_naive":
        return _Fixed(name, _seasonal_naive)
    if name == "seasonal_growth":
        return _Fixed(name, _seasonal_growth)
    if name == "lasso":
        return _LassoMember(numeric, config)
    if name == "count":
        return _CountMember(numeric, config)
    if name == "nn":
        return _NetMember(numeric, config)
    raise ValueError(f"unknown ensemble member {name!r}; use some of {', '.join(MEMBERS)}")


def _refit_like(member: Member, numeric: Sequence[str], config: TrainConfig) -> Member:
    """A fresh member with the settings validation chose (epochs, iterations), no stopping."""
    fresh = _make(member.name, numeric, config)
    if isinstance(member, _NetMember) and isinstance(fresh, _NetMember):
        fresh.fixed_epochs = max(1, member.epochs)
    if isinstance(member, _CountMember) and isinstance(fresh, _CountMember):
        fresh.iterations = max(1, member.iterations)
    return fresh


def select_weights(
    forecasts: Mapping[str, np.ndarray],
    actual: np.ndarray,
    min_actual: float,
    steps: int = 20,
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
    """What validation said about one member."""

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


class SegmentForecaster:
    """Fit on a feature frame (``features.build_features`` with a quantity), predict on another.

    ``fit(train, validation=(fit_frame, validation_frame))`` validates members and fits the
    ensemble weights on ``validation_frame`` (features built from the history before it, see
    ``features.validation_split``); without it the learned members get equal weights.
    """

    format = FORMAT

    def __init__(self, exog: Sequence[str] = (), config: TrainConfig | None = None) -> None:
        self.exog = list(exog)
        self.numeric = numeric_features(self.exog)
        self.config = config or TrainConfig()
        self.members: dict[str, Member] = {}
        self.weights: dict[str, float] = {}
        self.reports: dict[str, MemberReport] = {}
        self.ensemble_validation: dict[str, float] = {}
        self.validated = False
        self.trained_rows = 0

    # -- training -------------------------------------------------------------------------

    def _fit_member(self, member: Member, train: pd.DataFrame, check: pd.DataFrame | None) -> str:
        """Fit ``member``; '' when healthy, else why it diverged."""
        started = time.perf_counter()
        try:
            member.fit(train, check)
        except Diverged as exc:
            return str(exc)
        except (ValueError, FloatingPointError, RuntimeError) as exc:
            return f"training failed: {exc}"
        finally:
            if member.name in self.reports:
                self.reports[member.name].seconds += time.perf_counter() - started
        return ""

    def _check(
        self, member: Member, frame: pd.DataFrame, reference: float
    ) -> tuple[str, dict[str, float]]:
        forecast = bounded(member.predict(frame), frame)
        if not np.isfinite(forecast).all():
            return "forecasts are not finite", {}
        summary = metrics.summarize(frame["quantity"], forecast, self.config.min_actual)
        mape = summary["mape"]
        if (
            math.isfinite(reference)
            and math.isfinite(mape)
            and mape > DIVERGENCE_FACTOR * reference
        ):
            return (
                f"validation MAPE {mape:.3f} is more than {DIVERGENCE_FACTOR:g}x the historical "
                f"average's {reference:.3f}"
            ), summary
        return "", summary

    def fit(
        self,
        frame: pd.DataFrame,
        validation: tuple[pd.DataFrame, pd.DataFrame] | None = None,
    ) -> SegmentForecaster:
        if frame.empty:
            raise ValueError("cannot train on an empty frame")
        config = self.config
        names = [n for n in MEMBERS if n in config.members]
        if "baseline" not in names:
            names.insert(0, "baseline")  # the divergence check measures against it
        self.trained_rows = len(frame)
        usable = validation is not None and not validation[0].empty and not validation[1].empty
        if not usable:
            self._fit_unvalidated(frame, names)
            return self
        assert validation is not None
        fit_frame, check = validation
        reference = metrics.mape(
            check["quantity"], bounded(_historical_average(check), check), config.min_actual
        )
        forecasts: dict[str, np.ndarray] = {}
        for name in names:
            member = _make(name, self.numeric, config)
            report = self.reports[name] = MemberReport(name)
            report.reason = self._fit_member(member, fit_frame, check)
            if not report.reason:  # trained: it forecasts, even if validation rejects it
                self.members[name] = member
                report.reason, report.validation = self._check(member, check, reference)
            report.diverged = bool(report.reason)
            report.settings = member.settings()
            if not report.diverged:
                forecasts[name] = bounded(member.predict(check), check)
        self.weights, _ = select_weights(
            forecasts, check["quantity"].to_numpy(dtype=np.float64), config.min_actual,
            config.ensemble_steps,
        )  # fmt: skip
        ensemble = sum(w * forecasts[n] for n, w in self.weights.items())
        self.ensemble_validation = metrics.summarize(
            check["quantity"], np.asarray(ensemble, dtype=np.float64), config.min_actual
        )
        for name, weight in self.weights.items():
            self.reports[name].weight = weight
        if config.refit:
            self._refit(frame, check, reference)
        self.validated = True
        return self

    def _refit(self, frame: pd.DataFrame, check: pd.DataFrame, reference: float) -> None:
        for name in self.weights:
            if name not in LEARNED:
                continue
            validated = self.members[name]
            fresh = _refit_like(validated, self.numeric, self.config)
            reason = self._fit_member(fresh, frame, None)
            if not reason:
                reason, _ = self._check(fresh, check, reference)
            if reason:
                self.reports[name].reason = f"refit on the whole history rejected ({reason})"
                continue  # keep the model validation accepted
            self.members[name] = fresh
            self.reports[name].settings = fresh.settings()

    def _fit_unvalidated(self, frame: pd.DataFrame, names: list[str]) -> None:
        """Too little history for a validation window: learned members share the weight."""
        for name in names:
            member = _make(name, self.numeric, self.config)
            report = self.reports[name] = MemberReport(name)
            reason = self._fit_member(member, frame, None)
            if not reason:
                self.members[name] = member
                forecast = bounded(member.predict(frame), frame)
                reason = "" if np.isfinite(forecast).all() else "forecasts are not finite"
            report.diverged, report.reason = bool(reason), reason
            report.settings = member.settings()
        healthy = [n for n in names if n in LEARNED and not self.reports[n].diverged]
        chosen = healthy or ["baseline"]
        self.weights = {n: 1.0 / len(chosen) for n in chosen}
        for name, weight in self.weights.items():
            self.reports[name].weight = weight

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


class _LegacyNet(_LegacyLasso):
    name = "nn"

    def __init__(self, state: dict[str, Any]) -> None:
        super().__init__(None, state["numeric"])
        self.net, self.vocab = state["net"], state["vocab"]
        self.mean, self.std = state["num_mean"], state["num_std"]

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        cats = np.stack(
            [
                frame[n].astype(str).map(self.vocab[n]).fillna(0).astype(np.int64).to_numpy()
                for n in CATEGORICAL
            ],
            axis=1,
        )
        x = (frame[self.numeric].to_numpy(dtype=np.float64) - self.mean) / self.std
        with torch.no_grad():
            ratio = self.net(torch.from_numpy(cats), torch.from_numpy(x.astype(np.float32)))
        values: np.ndarray = np.clip(ratio.numpy(), *RATIO_CLIP) * scale_of(frame)
        return values


def _upgrade_format_1(state: dict[str, Any]) -> dict[str, Any]:
    """A champion pickled by the first version still scores, as it did: LASSO and network
    averaged, plus the historical average."""
    numeric = list(state["numeric"])
    members: dict[str, Member] = {
        "baseline": _Fixed("baseline", _historical_average),
        "lasso": _LegacyLasso(state["lasso"], numeric),
        "nn": _LegacyNet(state),
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
