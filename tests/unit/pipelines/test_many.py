"""Many models: partitions written as an MLTable, per-partition gates, exact pooling, and the
segment model that routes rows to partition forecasters."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from forecasting import features as F
from forecasting import many, metrics, synthetic
from forecasting.models import TrainConfig

from local.aml import mltable


@pytest.fixture(scope="module")
def frames() -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    tables = synthetic.generate(synthetic.SyntheticSpec(regions=("north",), products=3, weeks=80))
    frame, exog = F.join_inputs(tables["shipments"], tables["stores"], tables["weather"])
    history, _ = F.split_holdout(frame, 8)
    frame = frame.assign(velocity=F.assign_velocity(frame, history))
    history, holdout = F.split_holdout(frame, 8)
    return history, F.build_features(history, holdout, exog), exog


def _partitioned(
    frames: tuple[pd.DataFrame, pd.DataFrame, list[str]],
) -> tuple[pd.DataFrame, list[str]]:
    """History and holdout rows as the parallel step gets them: ``split`` and ``partition``."""
    train, holdout, exog = frames
    both = pd.concat([train.assign(split="train"), holdout.assign(split="holdout")])
    both["partition"] = many.with_partition(both, ("store_id", "product_id"))
    return both, exog


def test_partitions_are_an_mltable_the_executor_reads_back(
    tmp_path: Path, frames: tuple[pd.DataFrame, pd.DataFrame, list[str]]
) -> None:
    train, holdout, _ = frames
    names = many.write_partitions(train, holdout, ("store_id", "product_id"), tmp_path)
    assert len(names) == train[["store_id", "product_id"]].drop_duplicates().shape[0]
    table = mltable.to_frame(mltable.read(tmp_path))
    assert sorted(table[many.PARTITION].unique()) == names
    assert len(table) == len(train) + len(holdout)
    one = table[table[many.PARTITION] == names[0]]
    assert one["store_id"].astype(str).nunique() == 1 and set(one[many.SPLIT]) == {
        "train",
        "holdout",
    }


def test_a_coarser_key_still_stays_inside_one_segment(
    tmp_path: Path, frames: tuple[pd.DataFrame, pd.DataFrame, list[str]]
) -> None:
    train, holdout, _ = frames
    names = many.write_partitions(train, holdout, many.parse_keys("store_id"), tmp_path)
    segments_per_store = train.groupby("store_id")["velocity"].nunique()
    assert len(names) == int(segments_per_store.sum())  # fast and slow products apart
    assert all(n.count("__") == 3 for n in names)


def test_each_partition_is_gated_and_segments_pool_exactly(
    frames: tuple[pd.DataFrame, pd.DataFrame, list[str]],
) -> None:
    both, exog = _partitioned(frames)
    config = TrainConfig(direct_iterations=30)
    rows = []
    forecasts = []
    for name, group in both.groupby("partition", sort=True):
        forecaster, row = many.train_partition(group, str(name), exog, config, max_mape=0.45)
        assert forecaster is not None
        assert row["gate"]["passed"] == (
            row["ensemble"]["mape"] <= 0.45 and row["ensemble"]["mape"] < row["baseline"]["mape"]
        )
        rows.append(row)
        part = group[group["split"] == "holdout"]
        forecasts.append((part, forecaster.predict_components(part)))
    result = many.summarise(rows, 0.45)
    segment = "north/large/fast"
    seg = result["segments"][segment]
    mine = [
        (p, f)
        for p, f in forecasts
        if p["velocity"].iat[0] == "fast" and p["format"].iat[0] == "large"
    ]
    actual = pd.concat([p["quantity"] for p, _ in mine])
    ensemble = pd.concat([f["ensemble"] for _, f in mine])
    assert seg["ensemble"]["mape"] == pytest.approx(metrics.mape(actual, ensemble))
    assert seg["ensemble"]["rmse_all"] == pytest.approx(metrics.rmse_all(actual, ensemble))
    assert seg["partitions"]["total"] == len(mine)
    assert seg["partitions"]["passed"] + seg["partitions"]["failed"] == len(mine)
    assert seg["gate"]["verdict"] in ("pass", "fail")


def test_a_partition_is_gated_with_the_row_filter_it_was_given_and_says_so(
    frames: tuple[pd.DataFrame, pd.DataFrame, list[str]],
) -> None:
    both, exog = _partitioned(frames)
    name, group = next(iter(both.groupby("partition", sort=True)))
    part = group[group["split"] == "holdout"]
    threshold = float(part["quantity"].median())
    config = TrainConfig(direct_iterations=30, min_actual=threshold)
    forecaster, row = many.train_partition(group, str(name), exog, config, max_mape=0.45)
    assert forecaster is not None and row["min_actual"] == threshold
    ensemble = forecaster.predict_components(part)["ensemble"]
    assert row["ensemble"]["mape"] == pytest.approx(metrics.mape(part["quantity"], ensemble,
                                                                 threshold))  # fmt: skip
    assert row["ensemble"]["sums"]["ape_n"] < len(part)  # the small weeks are left out
    summary = many.summarise([row], 0.45)
    assert summary["min_actual"] == threshold
    assert summary["segments"][row["segment"]]["ensemble"]["mape"] == pytest.approx(
        row["ensemble"]["mape"]
    )
    with pytest.raises(ValueError, match="min_actual"):
        many.summarise([row, {**row, "partition": "other", "min_actual": 1.0}], 0.45)


def test_a_sparse_partition_loses_its_learned_member_not_its_forecaster(
    frames: tuple[pd.DataFrame, pd.DataFrame, list[str]],
) -> None:
    # Two weeks of history months apart (a store x department of the Walmart data sold in
    # two weeks of 2012): every feature of the direct model's examples is constant, and
    # LightGBM refuses to build its dataset. The partition keeps the members that can forecast.
    both, exog = _partitioned(frames)
    name, group = next(iter(both.groupby("partition", sort=True)))
    history = group[group["split"] == "train"].iloc[[0, 20]]
    sparse = pd.concat([history, group[group["split"] == "holdout"].iloc[:1]])
    forecaster, row = many.train_partition(sparse, str(name), exog, TrainConfig(), 0.45)
    assert forecaster is not None
    assert forecaster.reports["direct"].reason.startswith("training failed: LightGBM")
    assert np.isfinite(row["ensemble"]["wape"]) and row["gate"]["reasons"]


def test_an_untrained_partition_fails_its_gate_and_ranks_worst() -> None:
    ok = {"partition": "a", "segment": "s/large/fast", "gate": {"passed": False, "reasons": ["x"]},
          "ensemble": {"mape": 0.6, "sums": {"ape_sum": 6.0, "ape_n": 10.0, "se_sum": 1.0,
                                              "n": 10.0, "zse_sum": 0.0, "zn": 0.0}},
          "baseline": {"mape": 0.7, "sums": {"ape_sum": 7.0, "ape_n": 10.0, "se_sum": 2.0,
                                              "n": 10.0, "zse_sum": 0.0, "zn": 0.0}}}  # fmt: skip
    lost = {
        "partition": "b",
        "segment": "s/large/fast",
        "gate": {"passed": False, "reasons": ["y"]},
    }
    seg = many.summarise([ok, lost], 0.45)["segments"]["s/large/fast"]
    assert seg["partitions"]["failed"] == 2
    assert [w["partition"] for w in seg["partitions"]["worst"]] == ["b", "a"]
    assert seg["ensemble"]["mape"] == pytest.approx(0.6)
    assert math.isnan(seg["ensemble"]["rmse_zero"])


def test_the_segment_model_routes_rows_and_falls_back_to_the_baseline(
    tmp_path: Path, frames: tuple[pd.DataFrame, pd.DataFrame, list[str]]
) -> None:
    import mlflow

    train, holdout, exog = frames
    keys = ("store_id", "product_id")
    both = pd.concat([train.assign(split="train"), holdout.assign(split="holdout")])
    both["partition"] = many.with_partition(both, keys)
    first = sorted(both["partition"].unique())[0]
    group = both[both["partition"] == first]
    forecaster, _ = many.train_partition(group, first, exog, TrainConfig(epochs=2), 0.45)
    assert forecaster is not None
    many.save_forecaster(forecaster, tmp_path / "partitions" / first)
    many.save_segment_model(tmp_path / "model", tmp_path / "partitions", keys, {"segment": "x"})
    # One archive holds the forecasters: one artefact to list and fetch at any partition count.
    artefacts = sorted(p.name for p in (tmp_path / "model" / "artifacts").iterdir())
    assert artefacts == [many.PARTITIONS_ARCHIVE]
    assert many.archived_forecasters(tmp_path / "model" / "artifacts" / artefacts[0]) == 1
    sys.modules.pop("forecasting.many", None)  # loading must not depend on this process's state
    model = mlflow.pyfunc.load_model(str(tmp_path / "model"))
    known = group[group["split"] == "holdout"]
    unknown = holdout[~holdout.index.isin(known.index)].head(3)
    predicted = pd.DataFrame(model.predict(pd.concat([known, unknown])))
    expected = forecaster.predict_components(known)["ensemble"].to_numpy()
    assert np.allclose(predicted["ensemble"].to_numpy()[: len(known)], expected)
    baseline = unknown["series_mean"].clip(lower=0).to_numpy()
    assert np.allclose(predicted["ensemble"].to_numpy()[len(known) :], baseline)


def test_a_version_saved_with_a_folder_per_partition_still_loads(
    tmp_path: Path, frames: tuple[pd.DataFrame, pd.DataFrame, list[str]]
) -> None:
    """Champions registered before the archive keep their forecasts: the folder form loads."""
    import mlflow

    both, exog = _partitioned(frames)
    first = sorted(both["partition"].unique())[0]
    group = both[both["partition"] == first]
    forecaster, _ = many.train_partition(group, first, exog, TrainConfig(epochs=2), 0.45)
    assert forecaster is not None
    many.save_forecaster(forecaster, tmp_path / "partitions" / first)
    keys = ("store_id", "product_id")
    mlflow.pyfunc.save_model(
        str(tmp_path / "model"),
        python_model=many.ManyModelsForecast(keys, {"segment": "x"}),
        artifacts={"partitions": str(tmp_path / "partitions")},
        code_paths=[str(Path(many.__file__).parent)],
    )
    assert many.archived_forecasters(tmp_path / "model" / "artifacts" / "partitions") == 1
    sys.modules.pop("forecasting.many", None)
    model = mlflow.pyfunc.load_model(str(tmp_path / "model"))
    known = group[group["split"] == "holdout"]
    predicted = pd.DataFrame(model.predict(known))
    expected = forecaster.predict_components(known)["ensemble"].to_numpy()
    assert np.allclose(predicted["ensemble"].to_numpy(), expected)
    # Such versions pickled only these attributes; unpickled, they read the folder.
    from types import SimpleNamespace

    from forecasting import many as fresh

    old = fresh.ManyModelsForecast.__new__(fresh.ManyModelsForecast)
    old.__setstate__({"keys": list(keys), "metadata": {}, "_folder": None, "_cache": {}})
    old.load_context(SimpleNamespace(artifacts={"partitions": str(tmp_path / "partitions")}))
    again = pd.DataFrame(old.predict(None, known))
    assert np.allclose(again["ensemble"].to_numpy(), expected)


def test_the_archive_holds_each_partition_once_in_name_order(tmp_path: Path) -> None:
    for name in ("b__2", "a__1", "c__3"):
        (tmp_path / "partitions" / name).mkdir(parents=True)
        (tmp_path / "partitions" / name / many.FORECASTER_FILE).write_bytes(name.encode())
    (tmp_path / "partitions" / "empty").mkdir()  # a partition whose training failed
    archive = tmp_path / many.PARTITIONS_ARCHIVE
    assert many.pack_partitions(tmp_path / "partitions", archive) == 3
    import zipfile

    with zipfile.ZipFile(archive) as z:
        assert z.namelist() == [f"{n}/{many.FORECASTER_FILE}" for n in ("a__1", "b__2", "c__3")]
        assert z.read(f"b__2/{many.FORECASTER_FILE}") == b"b__2"
    assert many.archived_forecasters(archive) == 3
    assert many.archived_forecasters(tmp_path / "missing") == 0
