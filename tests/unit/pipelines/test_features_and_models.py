from __future__ import annotations

import pandas as pd
import pytest
from forecasting import features as F
from forecasting import metrics, synthetic
from forecasting.models import DEFAULT_MEMBERS, SegmentForecaster, TrainConfig
from forecasting.network import EmbeddingNet

SMALL = synthetic.SyntheticSpec(regions=("north",), stores_per_format=2, products=4, weeks=70)


@pytest.fixture(scope="module")
def joined() -> tuple[pd.DataFrame, list[str]]:
    tables = synthetic.generate(SMALL)
    return F.join_inputs(tables["shipments"], tables["stores"], tables["weather"], tables["events"])


def test_generator_is_deterministic() -> None:
    a, b = synthetic.generate(SMALL), synthetic.generate(SMALL)
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name])
    assert list(a["shipments"].columns) == ["store_id", "product_id", "week_start", "quantity"]


def test_join_adds_weekly_weather_and_event_counts(joined: tuple[pd.DataFrame, list[str]]) -> None:
    frame, exog = joined
    assert exog == ["weather_temperature", "weather_precipitation"]
    assert len(frame) == 70 * 4 * 4  # weeks x products x stores (2 formats x 2)
    assert frame[exog].notna().all().all()
    assert set(frame["format"]) == {"large", "small"}
    assert frame["event_count"].sum() > 0


def test_join_reports_missing_columns() -> None:
    ships = pd.DataFrame({"store_id": ["1"], "week_start": ["2024-01-01"], "quantity": [1]})
    stores = pd.DataFrame({"store_id": ["1"], "region": ["r"], "format": ["large"], "zip": ["1"]})
    with pytest.raises(F.InputError, match="product_id"):
        F.join_inputs(ships, stores)


def test_events_count_per_store_region_and_everywhere() -> None:
    ships = pd.DataFrame(
        {
            "store_id": ["1", "2"],
            "product_id": ["p", "p"],
            "week_start": ["2024-01-01", "2024-01-01"],
            "quantity": [1, 1],
        }
    )
    stores = pd.DataFrame(
        {
            "store_id": ["1", "2"],
            "region": ["a", "b"],
            "format": ["large", "small"],
            "zip": ["1", "2"],
        }
    )
    events = pd.DataFrame(
        {
            "date": ["2024-01-03", "2024-01-05", "2024-01-02", "2024-01-09"],
            "store_id": ["1", "", "", ""],
            "region": ["", "b", "", ""],
            "event": ["promo", "fair", "holiday", "next week"],
        }
    )
    frame, _ = F.join_inputs(ships, stores, None, events)
    counts = dict(zip(frame["store_id"], frame["event_count"], strict=True))
    assert counts == {"1": 2.0, "2": 2.0}


def test_velocity_splits_products_at_the_median(joined: tuple[pd.DataFrame, list[str]]) -> None:
    frame, _ = joined
    velocity = F.assign_velocity(frame)
    per_product = frame.assign(v=velocity).groupby(["format", "product_id"])["v"].nunique()
    assert (per_product == 1).all()
    assert set(velocity) == {"slow", "fast"}


def test_features_use_only_history(joined: tuple[pd.DataFrame, list[str]]) -> None:
    frame, exog = joined
    history, holdout = F.split_holdout(frame, 8)
    assert history["week_start"].max() < holdout["week_start"].min()
    feats = F.build_features(history, holdout, exog)
    assert len(feats) == len(holdout)
    means = history.groupby(["store_id", "product_id"])["quantity"].mean()
    row = feats.iloc[0]
    assert row["series_mean"] == pytest.approx(means[(row["store_id"], row["product_id"])])
    assert feats["has_lag52"].eq(1.0).all()  # 70 weeks of data: last year is known


def test_level_growth_and_intermittency_features_come_from_the_history() -> None:
    weeks = pd.date_range("2022-01-03", periods=70, freq="7D")
    quantity = [10.0] * 70
    quantity[:7] = [0.0] * 7  # a slow start: 7 of 70 weeks without sales
    quantity[20] = 30.0  # the best week
    quantity[-8:] = [15.0] * 8  # the last 8 weeks, against 10 in the same weeks last year
    history = pd.DataFrame(
        {"store_id": "s", "product_id": "p", "week_start": weeks, "quantity": quantity}
    )
    target = pd.DataFrame(
        {
            "store_id": ["s", "new"],
            "product_id": ["p", "p"],
            "week_start": [weeks[-1] + pd.Timedelta(days=7)] * 2,
        }
    )
    row, unseen = F.build_features(history, target).to_dict("records")
    assert row["growth"] == pytest.approx(1.5)
    assert row["series_max"] == 30.0
    assert row["zero_share"] == pytest.approx(0.1)
    assert row["lag52"] == 10.0 and row["has_lag52"] == 1.0
    # an unknown series gets neutral values, never NaN
    assert unseen["growth"] == 1.0 and unseen["has_lag52"] == 0.0
    assert unseen["series_max"] == unseen["series_mean"] == unseen["lag52"]


def test_forecaster_beats_the_historical_average() -> None:
    tables = synthetic.generate(synthetic.SyntheticSpec(regions=("north",), products=4, weeks=110))
    frame, exog = F.join_inputs(
        tables["shipments"], tables["stores"], tables["weather"], tables["events"]
    )
    frame = frame.assign(velocity=F.assign_velocity(frame))
    segment = F.filter_segment(frame, "north", "large", "fast")
    history, holdout = F.split_holdout(segment, 13)
    test = F.build_features(history, holdout, exog)
    config = TrainConfig(direct_iterations=80)
    model = SegmentForecaster(exog, config).fit(history)
    parts = model.predict_components(test)
    assert list(parts.columns) == [*DEFAULT_MEMBERS, "ensemble"]
    assert (parts >= 0).all().all()
    ensemble = metrics.mape(test["quantity"], parts["ensemble"])
    baseline = metrics.mape(test["quantity"], parts["baseline"])
    assert ensemble < baseline
    again = SegmentForecaster(exog, config).fit(history).predict(test)
    assert again == pytest.approx(model.predict(test))  # same seed, same model


def test_network_has_one_embedding_per_categorical() -> None:
    net = EmbeddingNet([4, 10, 53], n_numeric=5)
    assert len(net.embeddings) == 3
    assert [e.num_embeddings for e in net.embeddings] == [5, 11, 54]


def test_the_models_module_loads_without_torch_and_old_pickles_find_the_network() -> None:
    import subprocess
    import sys
    from pathlib import Path

    from forecasting import models, network

    src = Path(models.__file__).resolve().parents[1]
    probe = "import sys, forecasting.models; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], cwd=src, capture_output=True,
                         text=True, check=True)  # fmt: skip
    assert out.stdout.strip() == "False"
    # models pickled when the network lived in forecasting.models resolve it there
    assert models.EmbeddingNet is network.EmbeddingNet
    assert models._NetMember is network._NetMember
