"""The prep step: what the train step learns from, and future weeks that see the calendar."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from forecasting import prep, synthetic
from forecasting.step_common import read_json

SPEC = synthetic.SyntheticSpec(regions=("north", "south"), products=3, weeks=70)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("inputs")
    paths = synthetic.write(folder, SPEC)
    events = pd.read_csv(paths["events"] / "part-0000.csv")
    # A promotion planned for the second week after the data: known in advance.
    future = {"date": "2023-05-10", "store_id": "", "region": "north", "event": "flyer"}
    pd.concat([events, pd.DataFrame([future])]).to_csv(
        paths["events"] / "part-0000.csv", index=False
    )
    return paths


def _args(data: dict[str, Path], out: Path, **extra: object) -> argparse.Namespace:
    values = {
        "shipments": str(data["shipments"]), "stores": str(data["stores"]),
        "weather": str(data["weather"]), "events": str(data["events"]), "horizon": None,
        "mode": "train", "holdout_weeks": 13, "horizon_weeks": 13, "scoring_date": None,
        "region": "north", "format": "large", "velocity": "*", "output": str(out),
    }  # fmt: skip
    return argparse.Namespace(**(values | extra))


def test_train_mode_gives_the_whole_context_and_the_segments_holdout(
    data: dict[str, Path], tmp_path: Path
) -> None:
    meta = prep.run(_args(data, tmp_path, horizon_weeks=26))
    history = pd.read_csv(tmp_path / "history.csv")
    holdout = pd.read_csv(tmp_path / "holdout.csv")
    assert set(history["region"]) == {"north", "south"}  # one model across segments
    assert set(holdout["region"]) == {"north"} and set(holdout["format"]) == {"large"}
    assert holdout["week_start"].min() > history["week_start"].max()
    assert meta["horizon"] == 26 and meta["known_ahead"] == []
    assert meta["segments"] == ["north/large/fast", "north/large/slow"]
    assert read_json(tmp_path / "meta.json")["context_series"] == 2 * 2 * 2 * 3


def test_future_weeks_see_their_holidays_and_events_and_no_future_weather(
    data: dict[str, Path], tmp_path: Path
) -> None:
    prep.run(_args(data, tmp_path, mode="score", scoring_date="2023-05-01", horizon_weeks=30))
    future = pd.read_csv(tmp_path / "future.csv", parse_dates=["week_start"])
    assert future["week_start"].min() == pd.Timestamp("2023-05-01")
    flyer = future[future["week_start"] == pd.Timestamp("2023-05-08")]
    assert (flyer["event_count"] == 1).all() and len(flyer) == 2 * 3  # both north stores
    quiet = future[future["week_start"] != pd.Timestamp("2023-05-08")]
    assert (quiet["event_count"] == 0).all()
    labor_day = future[future["week_start"] == pd.Timestamp("2023-09-04")]
    assert (labor_day["labor_day"] == 1).all() and (labor_day["holiday"] == 1).all()
    # weather is observed, not planned: every future week carries the origin's value
    assert (future.groupby(["store_id", "product_id"])["weather_temperature"].nunique() == 1).all()
    weeks_ahead = (future["week_start"] - pd.Timestamp("2023-04-24")).dt.days / 7
    assert (future["horizon"] == weeks_ahead).all()


def _request(folder: Path, rows: list[tuple[str, str, str]]) -> Path:
    """A conditioned forecast request (the horizon source): keys, week and a request id."""
    folder.mkdir(parents=True)
    frame = pd.DataFrame(rows, columns=["store_id", "product_id", "week_start"])
    frame.assign(request_id=[f"r{i}" for i in range(len(rows))]).to_csv(
        folder / "part-0000.csv", index=False
    )
    return folder


def test_a_forecast_request_is_answered_row_for_row_new_series_included(
    data: dict[str, Path], tmp_path: Path
) -> None:
    request = _request(tmp_path / "horizon", [
        ("S001", "P000", "2023-05-01"), ("S001", "P000", "2023-05-15"),  # weeks 1 and 3 only
        ("S002", "P-new", "2023-05-08"),  # a product the store never sold: no history
        ("S999", "P000", "2023-05-01"),  # no such store: it belongs to no segment
        ("S001", "P001", "2023-04-24"),  # before the scoring date: not asked for
        ("S005", "P000", "2023-05-01"),  # a south store: another segment's request
    ])  # fmt: skip
    out = tmp_path / "out"
    meta = prep.run(_args(data, out, mode="score", scoring_date="2023-05-01", horizon=str(request)))
    future = pd.read_csv(out / "future.csv", dtype={"store_id": str, "product_id": str},
                         parse_dates=["week_start"])  # fmt: skip
    weeks = future["week_start"].dt.date.astype(str)
    asked = zip(future["store_id"], future["product_id"], weeks, strict=True)
    assert sorted(asked) == [("S001", "P000", "2023-05-01"), ("S001", "P000", "2023-05-15"),
                             ("S002", "P-new", "2023-05-08")]  # fmt: skip
    assert "request_id" not in future  # only the request's keys and weeks are read
    new = future[future["product_id"] == "P-new"].iloc[0]
    assert new["velocity"] == "slow" and new["horizon"] == 2
    # neutral, finite values for what every member reads: the level, last year, the bound
    for column in ("series_mean", "lag52", "level_scale", "series_max", "weather_temperature"):
        assert np.isfinite(new[column]) and new[column] >= 0, column
    assert meta["origin"] == "2023-04-24"
    assert meta["dataset_versions"]["horizon"].startswith("horizon@")


def test_future_outside_values_never_reach_the_requested_rows(
    data: dict[str, Path], tmp_path: Path
) -> None:
    """The data holds the week 2023-05-01 (shipments and weather); scored from that date, the
    request's rows must see the weather of the origin, whatever that week's weather was."""
    request = _request(tmp_path / "horizon", [("S001", "P000", "2023-05-01"),
                                              ("S003", "P002", "2023-05-08")])  # fmt: skip
    weather = pd.read_csv(data["weather"] / "part-0000.csv")
    hot = tmp_path / "hot_weather"
    hot.mkdir()
    future_days = pd.to_datetime(weather["date"]) >= pd.Timestamp("2023-05-01")
    assert future_days.any()
    weather.assign(temperature=weather["temperature"].where(~future_days, 45.0)).to_csv(
        hot / "part-0000.csv", index=False
    )
    frames = []
    for name, folder in (("plain", data["weather"]), ("hot", hot)):
        out = tmp_path / name
        prep.run(_args(data, out, mode="score", scoring_date="2023-05-01", region="north",
                       format="*", weather=str(folder), horizon=str(request)))  # fmt: skip
        frames.append(pd.read_csv(out / "future.csv"))
    pd.testing.assert_frame_equal(frames[0], frames[1])
    assert len(frames[0]) == 2 and (frames[0]["weather_temperature"] < 45.0).all()


def test_the_prep_step_imports_neither_mlflow_nor_the_models() -> None:
    """Every step is a process of its own, in Azure ML as here: prep logs nothing to MLflow,
    and importing mlflow and the models (scikit-learn, LightGBM, torch) cost it about 6 s of
    its 8 s in the demo."""
    import subprocess
    import sys

    src = Path(__file__).resolve().parents[3] / "pipelines" / "src"
    probe = (
        "import sys, forecasting.prep; "
        "print(sorted(m for m in ('mlflow', 'sklearn', 'torch', 'lightgbm') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=src, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout
