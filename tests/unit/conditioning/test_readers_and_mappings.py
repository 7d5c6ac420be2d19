"""Sniffing, readers and mapping validation."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conditioning.contracts import CONTRACTS
from conditioning.mapping import MappingError, builtin_mappings, choose_mapping, parse_mapping
from conditioning.readers import detect_encoding, iter_batches, profile_file, sniff_delimiter


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\xef\xbb\xbfa,b\n", "utf-8-sig"),
        ("a,b\n\u00e9,\u20ac\n".encode(), "utf-8"),
        ("a,b\n\u00e9,\u00fc\n".encode("latin-1"), "latin-1"),
        ("a,b\n\u00e9,\u20ac\n".encode("cp1252"), "cp1252"),
        ("a,b\n".encode("utf-16"), "utf-16"),
    ],
)
def test_encoding_detection(data: bytes, expected: str) -> None:
    assert detect_encoding(data, complete=True) == expected


def test_a_sample_cut_inside_a_character_is_still_utf8() -> None:
    assert detect_encoding("ab\u20ac".encode()[:-1], complete=False) == "utf-8"


@pytest.mark.parametrize("sep", [",", ";", "\t", "|"])
def test_delimiter_sniffing(sep: str) -> None:
    text = "\n".join(sep.join(r) for r in [["a", "b", "c"], ["1", "2,5", "3"], ["4", "5", "6"]])
    if sep == ",":
        text = text.replace("2,5", '"2,5"')
    assert sniff_delimiter(text) == sep


def test_parquet_dates_and_numbers_become_text(tmp_path: Path) -> None:
    path = tmp_path / "x.parquet"
    pq.write_table(
        pa.table({"d": [dt.date(2024, 1, 8)], "t": [dt.datetime(2024, 1, 9)], "q": [1.5]}), path
    )
    profile = profile_file(path)
    assert (profile.format, profile.header) == ("parquet", ("d", "t", "q"))
    (batch,) = list(iter_batches(path, profile))
    assert batch.table.to_pylist() == [{"d": "2024-01-08", "t": "2024-01-09", "q": "1.5"}]
    assert batch.row_numbers.tolist() == [1]


def test_every_shipped_mapping_is_valid_and_sources_are_covered() -> None:
    catalog = builtin_mappings()
    assert set(catalog) == set(CONTRACTS)
    names = {m.name for ms in catalog.values() for m in ms}
    assert {"shipments_walmart", "weather_walmart", "events_walmart", "stores_walmart"} <= names


def test_mapping_errors_list_every_problem() -> None:
    doc = {
        "source": "shipments",
        "read": {"format": "xml", "delimiter": ";;"},
        "columns": {
            "week_start": {"from": "W", "align": "month"},
            "nonsense": "x",
            "quantity": {"from": "Q", "decimal": "'", "colour": "red"},
        },
    }
    with pytest.raises(MappingError) as err:
        parse_mapping(doc, "broken")
    text = "\n".join(err.value.problems)
    for expected in (
        "read.format",
        "read.delimiter",
        "align must be week_start",
        "'nonsense' is not a column",
        "decimal must be",
        "unknown keys ['colour']",
        "required column 'store_id' has no rule",
    ):
        assert expected in text


def test_mapping_is_chosen_by_header() -> None:
    shipments = builtin_mappings()["shipments"]
    header = ["Store", "Dept", "Date", "Weekly_Sales", "IsHoliday"]
    assert choose_mapping(shipments, header).name == "shipments_walmart"
    with pytest.raises(KeyError, match="misses columns"):
        choose_mapping(shipments, ["foo", "bar"])
