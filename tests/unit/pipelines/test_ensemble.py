"""Training that cannot blow up, forecasts made the way they are used, and an ensemble
validated where it may be: on small data."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import pytest
from forecasting import features as F
from forecasting import metrics, synthetic
from forecasting.models import (
    BOUND_FACTOR,
    DEFAULT_MEMBERS,
    MEMBERS,
    EmbeddingNet,
    InputGuard,
    SegmentForecaster,
    TrainConfig,
    mape_weights,
    parse_members,
    plan_origins,
    poisson_mape_point,
    select_weights,
    train_segments,
    upper_bound,
    validation_spacing,
)
from sklearn.linear_model import Lasso
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

SPEC = synthetic.SyntheticSpec(regions=("north",), stores_per_format=2, products=4, weeks=110)
FAST = TrainConfig(epochs=3, gbm_iterations=30, direct_iterations=60)


@dataclass
class Segment:
    exog: list[str]
    history: pd.DataFrame  # joined rows before the holdout: what training sees
    test: pd.DataFrame  # the holdout with features as of the origin


def _segment(velocity: str = "fast", spend: bool = False) -> Segment:
    """One segment's history and holdout. ``spend``: add a planned ``promo_spend`` column
    (known in advance) that is zero until the last 20 weeks — what the Walmart markdowns look
    like to a model whose validation starts before November 2011."""
    tables = synthetic.generate(SPEC)
    frame, exog = F.join_inputs(
        tables["shipments"], tables["stores"], tables["weather"], tables["events"]
    )
    if spend:
        late = frame["week_start"] >= np.sort(frame["week_start"].unique())[-20]
        frame["promo_spend"] = np.where(late, 40_000.0 + 1_000.0 * (frame.index % 7), 0.0)
        exog = [*exog, "promo_spend"]
    frame = frame.assign(velocity=F.assign_velocity(frame))
    frame = F.filter_segment(frame, "north", "large", velocity)
    history, holdout = F.split_holdout(frame, 13)
    known = ["promo_spend"] if spend else []
    return Segment(exog, history, F.build_features(history, holdout, exog, known))


@pytest.fixture(scope="module")
def segment() -> Segment:
    return _segment()


@pytest.fixture(scope="module")
def trained(segment: Segment) -> SegmentForecaster:
    return SegmentForecaster(segment.exog, FAST).fit(segment.history)


def test_validation_origins_lie_inside_the_history_after_enough_weeks_to_fit() -> None:
    plan = plan_origins(96, series=16, config=TrainConfig())
    assert plan.validation == (57, 70, 83)  # 13 weeks apart, the latest 13 before the end
    assert plan.step == 1
    assert plan.training[0] == 12 and plan.training[-1] == 95
    short = plan_origins(40, series=16, config=TrainConfig())
    assert short.validation == (27,)  # fewer origins where fewer fit
    assert plan_origins(30, series=16, config=TrainConfig()).validation == ()
    many = plan_origins(120, series=5_000, config=TrainConfig(horizon=39))
    assert many.step > 1  # a big panel stacks fewer origins


def test_validation_origins_close_up_when_the_history_holds_little_more_than_a_year() -> None:
    # 67 weeks (the demo's history): origins 13 weeks apart would put two of three fits
    # before any example with last year's week behind it; 4 apart, all three lie after it.
    plan = plan_origins(66, series=16, config=TrainConfig())
    assert plan.validation == (54, 58, 62)
    assert all(o > F.YEAR for o in plan.validation)
    assert validation_spacing(66, TrainConfig()) == 4
    assert validation_spacing(53, TrainConfig()) == 1  # a year and a week: as close as can be
    assert validation_spacing(96, TrainConfig()) == 13  # a longer history keeps the spacing
    assert validation_spacing(40, TrainConfig()) == 13  # less than a year: nothing to gain
    assert validation_spacing(66, TrainConfig(validation_origins=0)) == 13


def test_training_examples_see_nothing_after_their_origin(segment: Segment) -> None:
    panel = F.Panel(segment.history, segment.exog)
    origins = [30, 50]
    stack = F.stack_origins(panel, 13, origins)
    assert set(stack["horizon"]) == set(range(1, 14))
    assert (stack["week_start"] > stack["origin"]).all()
    # Rewrite everything after week 30 (targets aside, they are the label): the examples
    # from origin 30 must not move.
    cut = panel.first + pd.Timedelta(weeks=30)
    changed = segment.history.copy()
    later = changed["week_start"] > cut
    changed.loc[later, "quantity"] *= 3.0
    changed.loc[later, segment.exog] += 50.0
    again = F.stack_origins(F.Panel(changed, segment.exog), 13, origins)
    first = (stack["origin"] == cut).to_numpy()
    features = [c for c in stack.columns if c not in ("quantity", "target_ratio")]
    pd.testing.assert_frame_equal(
        stack.loc[first, features].reset_index(drop=True),
        again.loc[first, features].reset_index(drop=True),
    )


def test_a_future_value_of_a_feature_not_known_ahead_cannot_change_a_forecast(
    trained: SegmentForecaster, segment: Segment
) -> None:
    tables = synthetic.generate(SPEC)
    frame, exog = F.join_inputs(
        tables["shipments"], tables["stores"], tables["weather"], tables["events"]
    )
    _, holdout = F.split_holdout(frame.assign(velocity="fast"), 13)
    holdout = holdout[holdout["store_id"].isin(segment.history["store_id"])]
    heatwave = holdout.assign(**{c: holdout[c] + 25.0 for c in exog})
    plain = F.build_features(segment.history, holdout, exog)
    hot = F.build_features(segment.history, heatwave, exog)
    pd.testing.assert_frame_equal(plain[exog], hot[exog])  # frozen at the origin
    pd.testing.assert_frame_equal(trained.predict_components(plain),
                                  trained.predict_components(hot))  # fmt: skip
    # What is known ahead does reach the features: events and planned spend.
    busy = F.build_features(segment.history, holdout.assign(event_count=3.0), exog)
    assert (busy["event_count"] == 3.0).all()


def test_a_series_the_history_never_saw_still_gets_a_forecast(
    trained: SegmentForecaster, segment: Segment
) -> None:
    """A forecast request may ask for a product a store never sold (Walmart's test.csv has 11
    such series): it gets neutral features and a finite, bounded forecast from every member."""
    rows = segment.test.drop_duplicates("week_start")[["store_id", "product_id", "week_start",
                                                       "region", "format", "velocity"]]  # fmt: skip
    request = rows.assign(product_id="P-new")
    new = F.build_features(segment.history, request, segment.exog)
    assert (new["has_lag52"] == 0).all() and new["level_scale"].notna().all()
    parts = trained.predict_components(new)
    assert list(parts.columns) == [*DEFAULT_MEMBERS, "ensemble"]
    values = parts.to_numpy()
    assert np.isfinite(values).all() and (values >= 0).all()
    assert (parts["ensemble"] <= upper_bound(new)).all()


def test_min_actual_is_the_mape_filter_of_validation_weights_and_the_direct_loss(
    segment: Segment, trained: SegmentForecaster
) -> None:
    # A row filter that leaves out the smaller weeks, as 100 does for sales in dollars.
    threshold = float(segment.history["quantity"].quantile(0.4))
    quantity = segment.history["quantity"].to_numpy(dtype=float)
    scale = np.full(len(quantity), 10.0)
    weights = mape_weights(quantity, scale, threshold)
    small = np.abs(quantity) < threshold
    assert small.any() and (weights[small] == 1.0).all()  # left out of MAPE: neutral
    np.testing.assert_allclose(weights, np.where(small, 1.0, mape_weights(quantity, scale)))
    config = replace(FAST, min_actual=threshold)
    model = SegmentForecaster(segment.exog, config).fit(segment.history)
    assert model.describe()["min_actual"] == threshold
    assert trained.describe()["min_actual"] == metrics.MIN_ACTUAL
    validation = {n: r.validation["mape"] for n, r in model.reports.items() if r.validation}
    default = {n: r.validation["mape"] for n, r in trained.reports.items() if r.validation}
    assert validation["baseline"] != default["baseline"]  # measured on other rows
    direct = model.members["direct"].predict(segment.test)
    assert not np.allclose(direct, trained.members["direct"].predict(segment.test))
    with pytest.raises(ValueError, match="min_actual"):
        replace(FAST, min_actual=0.0)


def test_members_are_named_by_default_all_or_a_list() -> None:
    assert parse_members("default") == DEFAULT_MEMBERS
    assert parse_members(" ALL ") == MEMBERS
    assert parse_members("baseline, direct,direct") == ("baseline", "direct")
    for bad in ("", "baseline,prophet", " , "):
        with pytest.raises(ValueError, match="members"):
            parse_members(bad)


def test_every_member_and_the_ensemble_are_reported(
    trained: SegmentForecaster, segment: Segment
) -> None:
    parts = trained.predict_components(segment.test)
    assert list(parts.columns) == [*DEFAULT_MEMBERS, "ensemble"]
    assert trained.validated
    assert sum(trained.weights.values()) == pytest.approx(1.0)
    described = trained.describe()
    assert set(described["members"]) == set(DEFAULT_MEMBERS)
    assert described["diverged"] == []
    assert described["origins"]["validation_origins"] == 3
    assert "horizon" in described["members"]["direct"]["settings"]["inputs"]


def test_ensemble_is_never_worse_on_validation_than_its_best_member(
    trained: SegmentForecaster,
) -> None:
    healthy = [r.validation["mape"] for r in trained.reports.values() if not r.diverged]
    assert trained.ensemble_validation["mape"] <= min(healthy) + 1e-12
    assert {"wape", "wmae"} <= set(trained.ensemble_validation)


def test_segments_share_the_direct_model_and_get_their_own_weights() -> None:
    tables = synthetic.generate(SPEC)
    frame, exog = F.join_inputs(
        tables["shipments"], tables["stores"], tables["weather"], tables["events"]
    )
    frame = frame.assign(velocity=F.assign_velocity(frame))
    history, _ = F.split_holdout(frame, 13)
    keys = [("north", "large", "fast"), ("north", "small", "slow")]
    models = train_segments(history, exog, FAST, (), keys)
    assert set(models) == set(keys)
    a, b = (models[k] for k in keys)
    assert a.members["direct"] is b.members["direct"]  # one model across segments
    assert a.reports["baseline"].validation["mape"] != b.reports["baseline"].validation["mape"]


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
    weights, value = select_weights(forecasts, actual)
    assert "broken" not in weights
    assert sum(weights.values()) == pytest.approx(1.0)
    best = min(metrics.mape(actual, f) for n, f in forecasts.items() if n != "broken")
    assert value <= best
    blended = sum(w * forecasts[n] for n, w in weights.items())
    assert metrics.mape(actual, blended) == pytest.approx(value)


def test_a_diverging_network_is_caught_reported_and_never_averaged_in(segment: Segment) -> None:
    # A learning rate a million times too high: the network's weights are thrown far away
    # on the first steps, as a bad configuration or a bad batch would do.
    config = TrainConfig(epochs=2, direct_iterations=40, learning_rate=1e4,
                         members=(*DEFAULT_MEMBERS, "nn"))  # fmt: skip
    model = SegmentForecaster(segment.exog, config).fit(segment.history)
    assert "nn" in model.diverged
    report = model.reports["nn"]
    assert report.weight == 0.0 and "nn" not in model.weights
    assert "historical average" in report.reason or "not finite" in report.reason
    parts = model.predict_components(segment.test)
    healthy = sum(w * parts[n] for n, w in model.weights.items())
    np.testing.assert_allclose(parts["ensemble"], np.clip(healthy, 0, upper_bound(segment.test)))
    assert model.describe()["diverged"] == ["nn"]


def test_a_segment_that_never_sold_trains_and_forecasts_zero(segment: Segment) -> None:
    config = TrainConfig(gbm_iterations=20, direct_iterations=30,
                         members=(*DEFAULT_MEMBERS, "count"))  # fmt: skip
    model = SegmentForecaster(segment.exog, config).fit(segment.history.assign(quantity=0.0))
    assert "count" in model.diverged
    assert "no positive quantities" in model.reports["count"].reason
    test = F.build_features(segment.history.assign(quantity=0.0), segment.test, segment.exog)
    parts = model.predict_components(test)
    assert parts["count"].isna().all()  # reported as missing, not as zero
    assert (parts["ensemble"] == 0).all() and "count" not in model.weights


def test_the_refit_keeps_the_input_set_validation_chose() -> None:
    # Planned spend is zero up to the latest validation origin and varies after it: the
    # validated model could not use it, so the refit on every origin must not either.
    seg = _segment(spend=True)
    config = TrainConfig(direct_iterations=40)
    model = train_segments(seg.history, seg.exog, config, ["promo_spend"])[("*", "*", "*")]
    direct = model.members["direct"]
    assert "promo_spend" not in direct.inputs()  # type: ignore[attr-defined]
    assert "promo_spend" in model.reports["direct"].settings["dropped_inputs"]
    with_spend = model.predict_components(seg.test)
    without = model.predict_components(seg.test.assign(promo_spend=0.0))
    pd.testing.assert_frame_equal(with_spend, without)


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
    a = SegmentForecaster(segment.exog, FAST).fit(segment.history)
    b = SegmentForecaster(segment.exog, FAST).fit(segment.history)
    assert a.weights == b.weights
    pd.testing.assert_frame_equal(
        a.predict_components(segment.test), b.predict_components(segment.test)
    )


def test_without_validation_origins_learned_members_share_the_weight(segment: Segment) -> None:
    short = segment.history[segment.history["week_start"] < pd.Timestamp("2022-07-01")]
    config = TrainConfig(epochs=2, gbm_iterations=20, direct_iterations=30,
                         members=(*DEFAULT_MEMBERS, "lasso"))  # fmt: skip
    model = SegmentForecaster(segment.exog, config).fit(short)
    assert not model.validated
    assert model.weights == pytest.approx({"direct": 1 / 2, "lasso": 1 / 2})


def test_slow_movers_are_reported_with_wape_wmae_and_rmse_zero() -> None:
    seg = _segment("slow")
    model = SegmentForecaster(seg.exog, FAST).fit(seg.history)
    parts = model.predict_components(seg.test)
    summary = metrics.summarize(seg.test["quantity"], parts["ensemble"], seg.test["holiday"])
    assert set(metrics.MEASURES) <= set(summary)
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
    train = F.build_features(segment.history, segment.history, segment.exog)
    x = train[numeric].to_numpy(dtype=float)
    lasso = make_pipeline(StandardScaler(), Lasso(alpha=0.001)).fit(x, train["target_ratio"])
    vocab = {
        n: {v: i + 1 for i, v in enumerate(sorted(train[n].astype(str).unique()))}
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
        "trained_rows": len(train),
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
