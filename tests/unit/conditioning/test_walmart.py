"""The real Walmart files in ../shared/data/walmart through the shipped Walmart mappings.

Expected figures are computed independently from the raw files with the csv module.
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest

from conditioning.engine import ConditionResult, condition_file
from conditioning.mapping import builtin_mappings

AS_OF = dt.date(2025, 6, 30)


@pytest.fixture
def walmart(shared_data: Path) -> Path:
    folder = shared_data / "walmart"
    if not (folder / "train.csv").exists():
        pytest.skip(f"Walmart files not found in {folder}")
    return folder


def _raw(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _run(path: Path, source: str, tmp: Path) -> ConditionResult:
    result = condition_file(path, source, tmp, candidates=builtin_mappings()[source], as_of=AS_OF)
    assert result is not None and result.usable, result and result.reason
    return result


def _table(result: ConditionResult) -> pa.Table:
    parts = [f.path for f in result.files if f.kind == "part"]
    return pa.concat_tables([pacsv.read_csv(p) for p in parts])


def test_train_becomes_shipments(walmart: Path, tmp_path: Path) -> None:
    result = _run(walmart / "train.csv", "shipments", tmp_path)
    m = result.manifest
    assert m["mapping"]["name"] == "shipments_walmart"
    assert (m["rows_in"], m["rows_out"], m["rows_rejected"]) == (421_570, 421_570, 0)
    table = _table(result)
    raw = _raw(walmart / "train.csv")
    negative = sum(1 for r in raw if float(r["Weekly_Sales"]) < 0)
    assert negative == 1285
    assert pc.sum(pc.less(table["quantity"], 0)).as_py() == negative
    assert pc.unique(table["quantity_unit"]).to_pylist() == ["usd"]
    assert len(pc.unique(table["store_id"])) == 45
    weekdays = {d.weekday() for d in pc.unique(table["week_start"]).to_pylist()}
    assert weekdays == {0}, "weeks are aligned to Mondays"
    assert (m["period"]["start"], m["period"]["end"]) == ("2010-02-01", "2012-10-22")
    holidays = sum(1 for r in raw if r["IsHoliday"] == "TRUE")
    assert pc.sum(table["is_holiday_week"]).as_py() == holidays


def test_stores_become_the_store_master(walmart: Path, tmp_path: Path) -> None:
    result = _run(walmart / "stores.csv", "stores", tmp_path)
    table = _table(result)
    raw = _raw(walmart / "stores.csv")
    large = sum(1 for r in raw if r["Type"] == "A")
    assert table.num_rows == len(raw) == 45
    assert table["format"].to_pylist().count("large") == large
    assert table["format"].to_pylist().count("small") == 45 - large
    assert table["store_id"][0].as_py() == "WM-0001"


def test_features_become_weather_in_celsius(walmart: Path, tmp_path: Path) -> None:
    result = _run(walmart / "features.csv", "weather", tmp_path)
    table = _table(result)
    raw = _raw(walmart / "features.csv")
    assert result.manifest["rows_out"] == len(raw) == 8190
    first_f = float(raw[0]["Temperature"])
    assert table["temperature_c"][0].as_py() == pytest.approx((first_f - 32) * 5 / 9, abs=1e-4)
    assert set(result.manifest["ignored_columns"]) >= {"Fuel_Price", "CPI", "Unemployment"}


def test_features_become_holiday_and_markdown_events(walmart: Path, tmp_path: Path) -> None:
    result = _run(walmart / "features.csv", "events", tmp_path)
    table = _table(result)
    raw = _raw(walmart / "features.csv")
    holidays = sum(1 for r in raw if r["IsHoliday"] == "TRUE")
    markdowns = sum(1 for r in raw for i in range(1, 6) if r[f"MarkDown{i}"] != "NA")
    m = result.manifest
    assert (m["rows_in"], m["rows_out"], m["rows_rejected"]) == (8190, 8190, 0)
    assert m["records_out"] == table.num_rows == holidays + markdowns
    types = table["event_type"].to_pylist()
    assert (types.count("holiday"), types.count("markdown")) == (holidays, markdowns)


def test_test_weeks_become_the_forecast_horizon_with_kaggle_ids(
    walmart: Path, tmp_path: Path
) -> None:
    result = _run(walmart / "test.csv", "horizon", tmp_path)
    m = result.manifest
    assert m["mapping"]["name"] == "horizon_walmart"
    assert (m["rows_in"], m["rows_out"], m["rows_rejected"]) == (115_064, 115_064, 0)
    table = _table(result)
    raw = _raw(walmart / "test.csv")
    ids = {f"{r['Store']}_{r['Dept']}_{r['Date']}" for r in raw}
    assert set(table["request_id"].to_pylist()) == ids  # one answer per competition row
    weeks = pc.unique(table["week_start"]).to_pylist()
    assert len(weeks) == 39 and {w.weekday() for w in weeks} == {0}
    first_friday = min(dt.date.fromisoformat(r["Date"]) for r in raw)
    assert min(weeks) == first_friday - dt.timedelta(days=4)
