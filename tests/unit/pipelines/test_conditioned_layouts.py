"""The pipelines read what the conditioning service writes (its standard contracts)."""

from __future__ import annotations

import pandas as pd
from forecasting.features import join_inputs, standard_events, standard_weather

STORES = pd.DataFrame(
    {"store_id": ["S1", "S2"], "region": ["R01", "R01"], "format": ["large", "small"],
     "zip": ["01000", "02000"]}
)  # fmt: skip


def test_conditioned_weather_keeps_historical_rows_and_maps_stores_to_zips() -> None:
    weather = pd.DataFrame(
        {
            "location_type": ["zip", "store", "zip"],
            "location_id": ["01000", "S2", "01000"],
            "date": ["2024-01-01", "2024-01-01", "2024-01-02"],
            "period_days": [1, 1, 1],
            "observation": ["historical", "historical", "forecast"],
            "issue_date": [None, None, "2024-01-01"],
            "temperature_c": [1.0, 2.0, 9.0],
        }
    )
    out = standard_weather(weather, STORES)
    assert list(out["zip"]) == ["01000", "02000"]
    assert list(out["temperature_c"]) == [1.0, 2.0]
    assert {"location_id", "observation", "issue_date"}.isdisjoint(out.columns)


def test_conditioned_events_become_store_and_region_events() -> None:
    events = pd.DataFrame(
        {
            "event_date": ["2024-01-03", "2024-01-04"],
            "scope": ["store", "region"],
            "scope_id": ["S1", "R01"],
            "event_type": ["promotion", "holiday"],
            "event_name": ["flyer", "new year"],
            "value": [1, 1],
        }
    )
    out = standard_events(events)
    assert out.to_dict("records") == [
        {"date": "2024-01-03", "store_id": "S1", "region": "", "event": "flyer"},
        {"date": "2024-01-04", "store_id": "", "region": "R01", "event": "new year"},
    ]


def test_join_reads_the_conditioned_layouts_and_lowercases_regions() -> None:
    shipments = pd.DataFrame(
        {"store_id": ["S1", "S2"], "product_id": ["P1", "P1"],
         "week_start": ["2024-01-01", "2024-01-01"], "quantity": [5, 7]}
    )  # fmt: skip
    weather = pd.DataFrame(
        {"location_type": ["zip"], "location_id": ["01000"], "date": ["2024-01-02"],
         "observation": ["historical"], "temperature_c": [3.5]}
    )  # fmt: skip
    events = pd.DataFrame(
        {"event_date": ["2024-01-02"], "scope": ["region"], "scope_id": ["R01"],
         "event_name": ["sale"]}
    )  # fmt: skip
    frame, exog = join_inputs(shipments, STORES, weather, events)
    assert exog == ["weather_temperature_c"]
    assert list(frame["region"]) == ["r01", "r01"]
    assert list(frame["event_count"]) == [1.0, 1.0]
    assert frame.loc[frame["store_id"] == "S1", "weather_temperature_c"].iat[0] == 3.5


def test_weather_recorded_per_store_reaches_stores_without_a_zip() -> None:
    stores = pd.DataFrame(
        {"store_id": ["WM-1", "WM-2"], "region": ["walmart"] * 2, "format": ["large", "small"],
         "zip": [None, None]}
    )  # fmt: skip
    shipments = pd.DataFrame(
        {"store_id": ["WM-1", "WM-2"], "product_id": ["d1", "d1"],
         "week_start": ["2024-01-01", "2024-01-01"], "quantity": [5, 7]}
    )  # fmt: skip
    weather = pd.DataFrame(
        {"location_type": ["store", "store"], "location_id": ["WM-1", "WM-2"],
         "date": ["2024-01-01", "2024-01-01"], "observation": ["historical"] * 2,
         "temperature_c": [10.0, 20.0]}
    )  # fmt: skip
    frame, _ = join_inputs(shipments, stores, weather)
    by_store = dict(zip(frame["store_id"], frame["weather_temperature_c"], strict=True))
    assert by_store == {"WM-1": 10.0, "WM-2": 20.0}  # not one average over both stores


def test_a_forecast_request_is_scored_row_for_row_new_series_included() -> None:
    from forecasting.features import requested_weeks

    history = pd.DataFrame(
        {"store_id": ["S1", "S1", "S2", "S2"], "product_id": ["P1", "P2", "P1", "P2"],
         "week_start": pd.to_datetime(["2024-01-01"] * 4), "quantity": [50.0, 1.0, 60.0, 2.0],
         "region": ["r01"] * 4, "format": ["large"] * 4, "zip": ["01000"] * 4}
    )  # fmt: skip
    horizon = pd.DataFrame(
        {"store_id": ["S1", "S2", "S2", "S9", "S1"], "product_id": ["P1", "P2", "P3", "P1", "P1"],
         "week_start": ["2024-01-08", "2024-01-15", "2024-01-15", "2024-01-15", "2023-12-25"]}
    )  # fmt: skip
    rows = requested_weeks(horizon, history, pd.Timestamp("2024-01-08"))
    got = rows[["store_id", "product_id", "velocity", "format"]].to_dict("records")
    assert got == [
        {"store_id": "S1", "product_id": "P1", "velocity": "fast", "format": "large"},
        {"store_id": "S2", "product_id": "P2", "velocity": "slow", "format": "large"},
        # a department the store never sold: still asked for, labelled slow
        {"store_id": "S2", "product_id": "P3", "velocity": "slow", "format": "large"},
    ]  # S9 is no known store; the week before the start is not asked for
