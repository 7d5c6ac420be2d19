"""The prep step: what the train step learns from, and future weeks that see the calendar."""

from __future__ import annotations

import argparse
from pathlib import Path

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
        "weather": str(data["weather"]), "events": str(data["events"]), "mode": "train",
        "holdout_weeks": 13, "horizon_weeks": 13, "scoring_date": None, "region": "north",
        "format": "large", "velocity": "*", "output": str(out),
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
