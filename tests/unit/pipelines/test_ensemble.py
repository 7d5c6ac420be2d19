"""Training that cannot blow up, and an ensemble fitted where it may be: on small data."""

from __future__ import annotations

import pickle
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from forecasting import features as F
from forecasting import metrics, synthetic
from forecasting.models import (
    BOUND_FACTOR,
    COMPONENTS,
    EmbeddingNet,
    InputGuard,
    SegmentForecaster,
    TrainConfig,
    poisson_mape_point,
    select_weights,
    upper_bound,
)
from sklearn.linear_model import Lasso
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

SPEC = synthetic.SyntheticSpec(regions=("north",), stores_per_format=2, products=4, weeks=110)
FAST = TrainConfig(epochs=6, gbm_iterations=40)


@dataclass
class Segment:
    exog: list[str]
    train: pd.DataFrame
    fit: pd.DataFrame
    check: pd.DataFrame
    test: pd.DataFrame

    @property
    def validation(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        return self.fit, self.check


def _segment(velocity: str = "fast", spend_in_holdout: bool = False) -> Segment:
    """One segment's feature frames. ``spend_in_holdout``: add a ``promo_spend`` column that
    is zero until the holdout and large in it — what the Walmart markdowns look like to a
    model trained before November 2011."""
    tables = synthetic.generate(SPEC)
    frame, exog = F.join_inputs(
        tables["shipments"], tables["stores"], tables["weather"], tables["events"]
    )
    if spend_in_holdout:
        late = frame["week_start"] >= np.sort(frame["week_start"].unique())[-13]
        frame["promo_spend"] = np.where(late, 40_000.0 + 1_000.0 * (frame.index % 7), 0.0)
        exog = [*exog, "promo_spend"]
    frame = frame.assign(velocity=F.assign_velocity(frame))
    frame = F.filter_segment(frame, "north", "large", velocity)
    history, holdout = F.split_holdout(frame, 13)
    split = F.validation_split(history)
    assert split is not None
    fit, check = split
    return Segment(
        exog,
        F.build_features(history, history, exog),
        F.build_features(fit, fit, exog),
        F.build_features(fit, check, exog),
        F.build_features(history, holdout, exog),
    )


@pytest.fixture(scope="module")
def segment() -> Segment:
    return _segment()


@pytest.fixture(scope="module")
def trained(segment: Segment) -> SegmentForecaster:
    return SegmentForecaster(segment.exog, FAST).fit(segment.train, segment.validation)


def test_validation_window_lies_after_the_rows_it_checks(segment: Segment) -> None:
    assert segment.fit["week_start"].max() < segment.check["week_start"].min()
    assert segment.check["week_start"].max() < segment.test["week_start"].min()
    assert segment.check["week_start"].nunique() == F.VALIDATION_WEEKS
    short = segment.train[segment.train["week_start"] < pd.Timestamp("2022-05-01")]
    assert F.validation_split(short) is None  # too little left to fit on


def test_every_member_and_the_ensemble_are_reported(
    trained: SegmentForecaster, segment: Segment
) -> None:
    parts = trained.predict_components(segment.test)
    assert list(parts.columns) == list(COMPONENTS)
    assert trained.validated
    assert sum(trained.weights.values()) == pytest.approx(1.0)
    described = trained.describe()
    assert set(described["members"]) == set(COMPONENTS) - {"ensemble"}
    assert described["diverged"] == []


def test_ensemble_is_never_worse_on_validation_than_its_best_member(
    trained: SegmentForecaster,
) -> None:
    healthy = [r.validation["mape"] for r in trained.reports.values() if not r.diverged]
    assert trained.ensemble_validation["mape"] <= min(healthy) + 1e-12


@pytest.mark.parametrize("seed", range(5))
def test_weight_selection_starts_from_the_best_member_and_only_improves(seed: int) -> None:
    rng = np.random.default_rng(seed)
    actual = rng.gamma(2.0, 50.0, 400) + 1.0
    forecasts = {
        "low": actual * rng.uniform(0.5, 1.0, 400),
        "high": actual * rng.uniform(1.0, 1.6, 400),
        "noise": actual + rng.normal(0, 40, 400),
        "broken": np.full(400, np.nan),
    }
    weights, value = select_weights(forecasts, actual, 1.0)
    assert "broken" not in weights
    assert sum(weights.values()) == pytest.approx(1.0)
    best = min(metrics.mape(actual, f) for n, f in forecasts.items() if n != "broken")
    assert value <= best
    blended = sum(w * forecasts[n] for n, w in weights.items())
    assert metrics.mape(actual, blended) == pytest.approx(value)


def test_a_diverging_network_is_caught_reported_and_never_averaged_in(segment: Segment) -> None:
    # A learning rate a million times too high: the network's weights are thrown far away
    # on the first steps, as a bad configuration or a bad batch would do.
    config = TrainConfig(epochs=3, gbm_iterations=40, learning_rate=1e4)
    model = SegmentForecaster(segment.exog, config).fit(segment.train, segment.validation)
    assert "nn" in model.diverged
    report = model.reports["nn"]
    assert report.weight == 0.0 and "nn" not in model.weights
    assert "historical average" in report.reason or "not finite" in report.reason
    parts = model.predict_components(segment.test)
    healthy = sum(w * parts[n] for n, w in model.weights.items())
    np.testing.assert_allclose(parts["ensemble"], np.clip(healthy, 0, upper_bound(segment.test)))
    assert model.describe()["diverged"] == ["nn"]


def test_a_segment_that_never_sold_trains_without_a_count_model(segment: Segment) -> None:
    def unsold(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.assign(quantity=0.0, target_ratio=0.0, series_mean=0.0, series_max=0.0,
                            lag52=0.0)  # fmt: skip

    fit, check = unsold(segment.fit), unsold(segment.check)
    model = SegmentForecaster(segment.exog, FAST).fit(unsold(segment.train), (fit, check))
    assert "count" in model.diverged
    assert "no positive quantities" in model.reports["count"].reason
    parts = model.predict_components(unsold(segment.test))
    assert parts["count"].isna().all()  # reported as missing, not as zero
    assert (parts["ensemble"] == 0).all() and "count" not in model.weights


def test_a_feature_that_only_appears_after_the_origin_cannot_move_the_network() -> None:
    # The cause of the network's divergence on the Walmart holiday window: markdowns are
    # zero throughout training and tens of thousands in the holdout.
    seg = _segment(spend_in_holdout=True)
    assert (seg.train["promo_spend"] == 0).all() and (seg.test["promo_spend"] > 10_000).all()
    model = SegmentForecaster(seg.exog, FAST).fit(seg.train, seg.validation)
    assert "nn" not in model.diverged
    with_spend = model.predict_components(seg.test)
    without = model.predict_components(seg.test.assign(promo_spend=0.0))
    pd.testing.assert_frame_equal(with_spend, without)
    nn_mape = metrics.mape(seg.test["quantity"], with_spend["nn"])
    baseline_mape = metrics.mape(seg.test["quantity"], with_spend["baseline"])
    assert nn_mape < 2 * baseline_mape


def test_input_guard_drops_constant_columns_and_clips_to_the_training_range() -> None:
    train = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "flat": [0.0] * 4})
    guard = InputGuard(["a", "flat"]).fit(train)
    assert guard.used == ["a"] and guard.dropped == ["flat"]
    far = guard.transform(pd.DataFrame({"a": [3.0, 1e9, -1e9, np.nan], "flat": [5e4] * 4}))
    edge = guard.transform(pd.DataFrame({"a": [3.0, 3.0, 0.0, 1.5], "flat": [0.0] * 4}))
    np.testing.assert_allclose(far, edge)


def test_forecasts_are_bounded_by_the_series_history(
    trained: SegmentForecaster, segment: Segment
) -> None:
    wild = segment.test.copy()
    wild["lag52"] = 1e9  # a corrupt "same week last year" must not reach the forecast
    wild["weather_temperature"] = 1e6
    parts = trained.predict_components(wild)
    top = BOUND_FACTOR * np.maximum(wild["series_max"], wild["series_mean"].clip(lower=1.0))
    assert (parts.to_numpy() >= 0).all()
    assert (parts.to_numpy() <= top.to_numpy()[:, None] + 1e-9).all()
    assert parts["seasonal_naive"].eq(top).all()


def test_training_is_deterministic(segment: Segment) -> None:
    a = SegmentForecaster(segment.exog, FAST).fit(segment.train, segment.validation)
    b = SegmentForecaster(segment.exog, FAST).fit(segment.train, segment.validation)
    assert a.weights == b.weights
    pd.testing.assert_frame_equal(
        a.predict_components(segment.test), b.predict_components(segment.test)
    )


def test_without_a_validation_window_learned_members_share_the_weight(segment: Segment) -> None:
    model = SegmentForecaster(segment.exog, FAST).fit(segment.train)
    assert not model.validated
    assert model.weights == pytest.approx({"lasso": 1 / 3, "nn": 1 / 3, "count": 1 / 3})


def test_slow_movers_get_a_count_model_and_are_reported_with_wape_and_rmse_zero() -> None:
    seg = _segment("slow")
    model = SegmentForecaster(seg.exog, FAST).fit(seg.train, seg.validation)
    parts = model.predict_components(seg.test)
    assert "count" in parts
    summary = metrics.summarize(seg.test["quantity"], parts["ensemble"])
    assert {"mape", "wape", "rmse_zero", "rmse_all"} <= set(summary)
    assert 0 < summary["wape"] < 1


@pytest.mark.parametrize("mean", [0.5, 2.0, 3.0, 4.5, 8.0, 30.0])
def test_poisson_point_minimises_the_expected_percentage_error(mean: float) -> None:
    counts = np.arange(1, 400)
    log_pmf = (
        counts * np.log(mean)
        - mean
        - np.array([np.sum(np.log(np.arange(1, c + 1))) for c in counts])
    )
    pmf = np.exp(log_pmf)
    candidates = np.linspace(0.1, 2 * mean + 2, 4000)
    expected = [(pmf * np.abs(counts - f) / counts).sum() for f in candidates]
    best = float(candidates[int(np.argmin(expected))])
    point = float(poisson_mape_point(np.array([mean]))[0])
    loss = (pmf * np.abs(counts - point) / counts).sum()
    assert loss == pytest.approx(min(expected), rel=1e-3, abs=1e-4)
    assert abs(point - best) <= 1.0
    assert float(poisson_mape_point(np.array([5_000.0]))[0]) == pytest.approx(4_999.0)


def test_a_champion_saved_by_the_first_version_still_forecasts(segment: Segment) -> None:
    """Models registered before the validated ensemble (format 1: LASSO and network
    averaged) load and forecast as they did, so their champions keep scoring."""
    numeric = [c for c in F.numeric_features(segment.exog) if c not in ("growth", "zero_share")]
    x = segment.train[numeric].to_numpy(dtype=float)
    lasso = make_pipeline(StandardScaler(), Lasso(alpha=0.001)).fit(
        x, segment.train["target_ratio"]
    )
    vocab = {
        n: {v: i + 1 for i, v in enumerate(sorted(segment.train[n].astype(str).unique()))}
        for n in F.CATEGORICAL
    }
    net = EmbeddingNet([len(vocab[n]) for n in F.CATEGORICAL], len(numeric))
    net.eval()
    state = {
        "exog": segment.exog,
        "numeric": numeric,
        "config": TrainConfig(),
        "vocab": vocab,
        "lasso": lasso,
        "net": net,
        "num_mean": x.mean(axis=0),
        "num_std": np.where(x.std(axis=0) > 1e-9, x.std(axis=0), 1.0),
        "trained_rows": len(segment.train),
    }
    legacy = SegmentForecaster.__new__(SegmentForecaster)
    legacy.__dict__.update(state)
    loaded = pickle.loads(pickle.dumps(legacy))  # noqa: S301 - our own object, in memory
    parts = loaded.predict_components(segment.test)
    scale = segment.test["series_mean"].clip(lower=1.0)
    expected_lasso = np.clip(lasso.predict(segment.test[numeric].to_numpy(dtype=float)), 0, 5)
    np.testing.assert_allclose(
        parts["lasso"], np.clip(expected_lasso * scale, 0, upper_bound(segment.test))
    )
    np.testing.assert_allclose(parts["ensemble"], (parts["lasso"] + parts["nn"]) / 2)
    assert loaded.format == 1
