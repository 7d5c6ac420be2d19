"""The bad-input corpus: every case asserts the exact outcome.

Never a crash or a partial output: every input row is in the output or in rejects with a reason,
and an unusable file is quarantined whole with a reason (CLI exit status 2).
"""

from __future__ import annotations

import gzip
import random

import pytest

from adapters.datalake import InMemoryDataLake
from adapters.datasets import blob_dataset_ports
from tests.unit.conditioning.conftest import CliRun, RunCli, drop_and_condition

SHIP_HEADER = (
    "week_start,store_id,product_id,quantity,quantity_unit,returned_quantity,is_holiday_week"
)
EVENT_HEADER = "event_date,scope,scope_id,event_type,event_name,value"
WEATHER_HEADER = (
    "location_type,location_id,date,period_days,observation,issue_date,"
    "temperature_c,precipitation_mm"
)


def ship(
    week: str = "2024-01-08",
    store: str = "S0001",
    product: str = "P000001",
    qty: str = "5",
    unit: str = "units",
    returned: str = "0",
    holiday: str = "false",
    sep: str = ",",
) -> str:
    return sep.join((week, store, product, qty, unit, returned, holiday))


def csv_bytes(header: str, *rows: str, encoding: str = "utf-8") -> bytes:
    return ("\n".join((header, *rows)) + "\n").encode(encoding)


def assert_conditioned(run: CliRun, rows_out: int, rejects: list[tuple[int, str]]) -> None:
    assert run.exit_code == 0, run.manifest
    m = run.manifest
    assert m["status"] == "conditioned"
    assert run.reject_codes == rejects
    assert m["rows_out"] == rows_out == len(run.rows)
    assert m["rows_in"] == m["rows_out"] + m["rows_rejected"]
    assert m["rows_rejected"] == len(rejects)


def assert_quarantined(run: CliRun, code: str) -> None:
    assert run.exit_code == 2
    assert run.manifest["status"] == "quarantined"
    assert run.manifest["reason"]["code"] == code
    assert not (run.out / "conditioned").exists(), "no partial output may be published"
    kept = list((run.out / "quarantine" / run.source).glob("*/*"))
    names = sorted(p.name for p in kept)
    assert "manifest.json" in names and len(names) == 2, names


# --- whole-file problems ---------------------------------------------------------------------


def test_empty_file_is_quarantined(run_cli: RunCli) -> None:
    assert_quarantined(run_cli("shipments", "empty.csv", b""), "empty_file")


def test_header_only_is_an_empty_dataset(run_cli: RunCli) -> None:
    run = run_cli("shipments", "header.csv", csv_bytes(SHIP_HEADER))
    assert_conditioned(run, 0, [])
    assert run.conditioned_text.splitlines() == [
        '"week_start","store_id","product_id","quantity","quantity_unit",'
        '"returned_quantity","is_holiday_week"'
    ]


STANDARD_MAPPING_COMMA = """
name: strict_comma
source: shipments
read: {format: csv, delimiter: ","}
columns:
  week_start: week_start
  store_id: store_id
  product_id: product_id
  quantity: quantity
  quantity_unit: quantity_unit
"""


def test_wrong_delimiter_is_quarantined_with_a_hint(run_cli: RunCli) -> None:
    data = csv_bytes(SHIP_HEADER.replace(",", ";"), ship(sep=";"))
    run = run_cli("shipments", "semi.csv", data, mapping=STANDARD_MAPPING_COMMA)
    assert_quarantined(run, "wrong_delimiter")
    assert "';'" in run.manifest["reason"]["message"]


def test_semicolons_are_sniffed_when_the_mapping_does_not_fix_a_delimiter(run_cli: RunCli) -> None:
    data = csv_bytes(SHIP_HEADER.replace(",", ";"), ship(sep=";"), ship(product="P000002", sep=";"))
    run = run_cli("shipments", "semi.csv", data)
    assert_conditioned(run, 2, [])
    assert run.manifest["input"]["delimiter"] == ";"


def test_missing_required_column_is_quarantined(run_cli: RunCli) -> None:
    header = SHIP_HEADER.replace("quantity,", "")
    run = run_cli(
        "shipments", "noqty.csv", csv_bytes(header, "2024-01-08,S0001,P000001,units,0,false")
    )
    assert_quarantined(run, "missing_columns")


def test_duplicate_header_names_are_quarantined(run_cli: RunCli) -> None:
    run = run_cli("shipments", "dup.csv", csv_bytes(SHIP_HEADER + ",store_id", ship() + ",S2"))
    assert_quarantined(run, "duplicate_columns")


def test_truncated_gzip_is_quarantined(run_cli: RunCli) -> None:
    data = gzip.compress(csv_bytes(SHIP_HEADER, ship()))
    run = run_cli("shipments", "cut.csv.gz", data[: len(data) // 2])
    assert_quarantined(run, "unreadable_compression")


def test_gzip_truncated_after_many_batches_leaves_no_partial_output(run_cli: RunCli) -> None:
    rows = [ship(product=f"P{i:06d}") for i in range(120_000)]
    data = gzip.compress(csv_bytes(SHIP_HEADER, *rows), compresslevel=1)
    run = run_cli("shipments", "long.csv.gz", data[: int(len(data) * 0.9)])
    assert_quarantined(run, "unreadable_compression")


def test_binary_file_is_quarantined(run_cli: RunCli) -> None:
    rng = random.Random(3)  # noqa: S311 - reproducible noise
    data = bytes(rng.randrange(256) for _ in range(4096)) + b"\x00\x00"
    assert_quarantined(run_cli("shipments", "blob.bin", data), "not_tabular")


def test_corrupt_workbook_is_quarantined(run_cli: RunCli) -> None:
    run = run_cli("demographics", "people.xlsx", b"PK\x03\x04" + b"not really a zip" * 20)
    assert_quarantined(run, "unreadable_xlsx")


# --- encodings ---------------------------------------------------------------------------------


def test_utf8_bom_is_removed_from_the_header(run_cli: RunCli) -> None:
    run = run_cli("shipments", "bom.csv", b"\xef\xbb\xbf" + csv_bytes(SHIP_HEADER, ship()))
    assert_conditioned(run, 1, [])
    assert run.manifest["input"]["encoding"] == "utf-8-sig"


def test_utf16_with_bom_is_read(run_cli: RunCli) -> None:
    run = run_cli("shipments", "u16.csv", csv_bytes(SHIP_HEADER, ship(), encoding="utf-16"))
    assert_conditioned(run, 1, [])
    assert run.rows[0]["store_id"] == "S0001"


def test_latin1_text_is_decoded(run_cli: RunCli) -> None:
    data = csv_bytes(
        EVENT_HEADER, "2024-06-21,region,R01,local_event,Fête de la musique,", encoding="latin-1"
    )
    run = run_cli("events", "fete.csv", data)
    assert_conditioned(run, 1, [])
    assert run.manifest["input"]["encoding"] == "latin-1"
    assert run.rows[0]["event_name"] == "Fête de la musique"


def test_cp1252_text_is_decoded(run_cli: RunCli) -> None:
    data = csv_bytes(
        EVENT_HEADER, "2024-06-21,store,S0001,promotion,Sale – 20 € off,20", encoding="cp1252"
    )
    run = run_cli("events", "sale.csv", data)
    assert_conditioned(run, 1, [])
    assert run.manifest["input"]["encoding"] == "cp1252"
    assert run.rows[0]["event_name"] == "Sale – 20 € off"


# --- row problems --------------------------------------------------------------------------------


def test_mixed_date_formats_use_the_mapping_formats_in_order(run_cli: RunCli) -> None:
    lines = [
        '{"ship_date": "01/10/2024", "store_nbr": 1, "item_nbr": 1, "cases": 1, "holiday": "N"}',
        '{"ship_date": "2024-01-17", "store_nbr": 1, "item_nbr": 2, "cases": 2, "holiday": "N"}',
        '{"ship_date": "17.01.2024", "store_nbr": 1, "item_nbr": 3, "cases": 3, "holiday": "N"}',
    ]
    run = run_cli("shipments", "us.jsonl", ("\n".join(lines) + "\n").encode())
    assert_conditioned(run, 2, [(3, "bad_date")])
    assert [r["week_start"] for r in run.rows] == ["2024-01-08", "2024-01-15"]
    assert [r["quantity"] for r in run.rows] == ["12", "24"]


def test_unknown_extra_columns_are_ignored_and_listed(run_cli: RunCli) -> None:
    run = run_cli(
        "shipments", "extra.csv", csv_bytes(SHIP_HEADER + ",vendor_note", ship() + ",hello")
    )
    assert_conditioned(run, 1, [])
    assert run.manifest["ignored_columns"] == ["vendor_note"]


def test_duplicated_rows_keep_the_first(run_cli: RunCli) -> None:
    run = run_cli(
        "shipments", "dups.csv", csv_bytes(SHIP_HEADER, ship(), ship(), ship(product="P2"))
    )
    assert_conditioned(run, 2, [(3, "duplicate_row")])
    assert "repeats row 2" in run.rejects[0]["message"]


def test_duplicated_keys_keep_the_first(run_cli: RunCli) -> None:
    run = run_cli("shipments", "keys.csv", csv_bytes(SHIP_HEADER, ship(qty="5"), ship(qty="7")))
    assert_conditioned(run, 1, [(3, "duplicate_key")])
    assert run.rows[0]["quantity"] == "5"


def test_negative_quantities_are_net_returns_and_kept(run_cli: RunCli) -> None:
    run = run_cli("shipments", "neg.csv", csv_bytes(SHIP_HEADER, ship(qty="-3")))
    assert_conditioned(run, 1, [])
    assert run.rows[0]["quantity"] == "-3"


def test_absurd_quantities_are_rejected(run_cli: RunCli) -> None:
    data = csv_bytes(
        SHIP_HEADER, ship(qty="50000000"), ship(product="P2", returned="-1"), ship(product="P3")
    )
    run = run_cli("shipments", "absurd.csv", data)
    assert_conditioned(run, 1, [(2, "out_of_range"), (3, "out_of_range")])
    assert run.rejects[0]["column"] == "quantity"
    assert run.rejects[1]["column"] == "returned_quantity"


def test_future_dates_are_rejected(run_cli: RunCli) -> None:
    data = csv_bytes(
        SHIP_HEADER, ship(week="2099-01-05"), ship(week="2025-07-07"), ship(week="2025-06-30")
    )
    run = run_cli("shipments", "future.csv", data, as_of="2025-06-30")
    assert_conditioned(run, 1, [(2, "future_date"), (3, "future_date")])


def test_dates_before_2000_are_rejected(run_cli: RunCli) -> None:
    run = run_cli("shipments", "old.csv", csv_bytes(SHIP_HEADER, ship(week="1999-12-27")))
    assert_conditioned(run, 0, [(2, "date_out_of_range")])


def test_embedded_newlines_and_quotes_survive(run_cli: RunCli) -> None:
    data = csv_bytes(
        EVENT_HEADER,
        '2024-06-01,store,S0001,promotion,"Summer\nsale",10',
        '2024-06-02,store,S0001,promotion,"He said ""hi""",5',
    )
    run = run_cli("events", "quotes.csv", data)
    assert_conditioned(run, 2, [])
    assert [r["event_name"] for r in run.rows] == ["Summer\nsale", 'He said "hi"']
    assert run.manifest["reader"] == "arrow"


def test_ragged_rows_are_rejected_with_their_row_numbers(run_cli: RunCli) -> None:
    data = csv_bytes(
        SHIP_HEADER,
        ship(),
        "2024-01-08,S0001,P2,5,units,0",
        ship(product="P3") + ",extra,fields",
        ship(product="P4"),
    )
    run = run_cli("shipments", "ragged.csv", data)
    assert_conditioned(run, 2, [(3, "ragged_row"), (4, "ragged_row")])
    assert run.rejects[0]["original_row"] == "2024-01-08,S0001,P2,5,units,0"
    assert run.manifest["reader"] == "careful"


def test_a_10mb_field_rejects_its_row_only(run_cli: RunCli) -> None:
    huge = "x" * (10 * 1024 * 1024)
    data = csv_bytes(
        EVENT_HEADER,
        "2024-06-01,store,S0001,promotion,ok,1",
        f"2024-06-02,store,S0001,promotion,{huge},1",
        "2024-06-03,store,S0001,promotion,ok too,1",
    )
    run = run_cli("events", "huge.csv", data)
    assert_conditioned(run, 2, [(3, "field_too_large")])
    assert len(run.rejects[0]["original_row"]) < 1000


def test_formula_like_text_is_neutralised(run_cli: RunCli) -> None:
    data = csv_bytes(
        EVENT_HEADER,
        '2024-06-01,store,S0001,promotion,"=HYPERLINK(""http://x"")",1',
        "2024-06-02,store,S0001,promotion,+1 day,1",
        "2024-06-03,store,S0001,promotion,-5%,1",
        "2024-06-04,store,S0001,promotion,@SUM(A1),1",
        "2024-06-05,store,=cmd,promotion,plain,1",
    )
    run = run_cli("events", "formula.csv", data)
    assert_conditioned(run, 4, [(6, "bad_format")])
    assert [r["event_name"] for r in run.rows] == [
        '\'=HYPERLINK("http://x")',
        "'+1 day",
        "'-5%",
        "'@SUM(A1)",
    ]
    assert run.rejects[0]["original_row"] == "2024-06-05,store,=cmd,promotion,plain,1"


def test_rejects_file_neutralises_formulas_too(run_cli: RunCli) -> None:
    run = run_cli(
        "shipments", "f.csv", csv_bytes(SHIP_HEADER, ship(week="=1+1"), ship(product="P2"))
    )
    assert_conditioned(run, 1, [(2, "bad_date")])
    assert run.rejects[0]["original_row"].startswith("'=1+1,S0001")


def test_bad_numbers_are_rejected(run_cli: RunCli) -> None:
    data = csv_bytes(
        SHIP_HEADER, ship(qty="12x"), ship(product="P2", qty="nan"), ship(product="P3", qty="inf")
    )
    run = run_cli("shipments", "nums.csv", data)
    assert_conditioned(run, 0, [(2, "bad_number"), (3, "bad_number"), (4, "bad_number")])


def test_missing_required_values_are_rejected(run_cli: RunCli) -> None:
    run = run_cli(
        "shipments", "blank.csv", csv_bytes(SHIP_HEADER, ship(store=""), ship(product="P2"))
    )
    assert_conditioned(run, 1, [(2, "missing_value")])


def test_bad_booleans_and_units_are_rejected(run_cli: RunCli) -> None:
    data = csv_bytes(SHIP_HEADER, ship(holiday="maybe"), ship(product="P2", unit="boxes"))
    run = run_cli("shipments", "flags.csv", data)
    assert_conditioned(run, 0, [(2, "bad_boolean"), (3, "invalid_value")])


def test_values_outside_a_value_map_are_rejected(run_cli: RunCli) -> None:
    run = run_cli("stores", "stores.csv", b"Store,Type,Size\n1,A,151315\n2,D,90000\n")
    assert_conditioned(run, 1, [(3, "unmapped_value")])


def test_padding_whitespace_is_trimmed(run_cli: RunCli) -> None:
    run = run_cli("shipments", "pad.csv", csv_bytes(SHIP_HEADER, ship(store=" S0001 ", qty=" 4 ")))
    assert_conditioned(run, 1, [])
    assert (run.rows[0]["store_id"], run.rows[0]["quantity"]) == ("S0001", "4")


def test_gzip_input_is_read(run_cli: RunCli) -> None:
    run = run_cli("shipments", "ok.csv.gz", gzip.compress(csv_bytes(SHIP_HEADER, ship())))
    assert_conditioned(run, 1, [])
    assert run.manifest["input"]["compression"] == "gzip"


def test_broken_json_lines_are_rejected_alone(run_cli: RunCli) -> None:
    data = (
        b'{"event_date": "2024-06-01", "scope": "store", "scope_id": "S1",'
        b' "event_type": "closure", "event_name": "storm", "value": null}\n'
        b'{"event_date": "2024-06-02", "scope": \n'
        b"[1, 2]\n"
    )
    run = run_cli("events", "events.jsonl", data)
    assert_conditioned(run, 1, [(2, "bad_json"), (3, "bad_json")])


def test_weather_forecast_rules(run_cli: RunCli) -> None:
    data = csv_bytes(
        WEATHER_HEADER,
        "zip,10001,2025-06-29,1,historical,,21.5,0",
        "zip,10001,2025-07-03,1,forecast,2025-06-30,25,1",
        "zip,10001,2025-07-03,1,forecast,,25,1",
        "zip,10001,2025-07-10,1,forecast,2025-06-20,25,1",
        "zip,10001,2025-07-02,1,historical,,22,0",
    )
    run = run_cli("weather", "wx.csv", data, as_of="2025-06-30")
    assert_conditioned(
        run, 2, [(4, "missing_value"), (5, "inconsistent_forecast"), (6, "future_date")]
    )


# --- blob names (through the service) ----------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "source", "code"),
    [
        ("shipments/../../etc/passwd", "shipments", "unsafe_name"),
        ("../outside.csv", "unknown", "unsafe_name"),
        ("shipments\\..\\x.csv", "unknown", "unsafe_name"),
        ("shipments//x.csv", "shipments", "unsafe_name"),
        ("pricing/2024-01-08/prices.csv", "unknown", "unknown_source"),
    ],
)
def test_unsafe_or_unknown_blob_names_are_quarantined_whole(
    name: str, source: str, code: str
) -> None:
    lake = InMemoryDataLake()
    data = csv_bytes(SHIP_HEADER, ship())
    outcome = drop_and_condition(lake, name, data, as_of=None)
    _, signals = blob_dataset_ports(lake, "conditioned")
    assert (outcome.status, outcome.source, outcome.reason_code) == ("quarantined", source, code)
    assert list(lake.list("conditioned", f"{source}/")) == []
    stored = sorted(i.name for i in lake.list("quarantine"))
    manifests = [n for n in stored if n.endswith("/manifest.json")]
    kept = [n for n in stored if not n.endswith("/manifest.json")]
    assert len(manifests) == 1 and len(kept) == 1
    assert all(".." not in n and "\\" not in n and n.startswith(f"{source}/") for n in stored)
    assert lake.read("quarantine", kept[0]) == data
    assert signals.signals() == []


def test_an_encoding_change_after_the_sniffed_sample_quarantines_the_file(run_cli: RunCli) -> None:
    rows = [f"2024-06-{1 + i % 28:02d},store,S0001,promotion,promo {i},1" for i in range(40_000)]
    late = "2024-06-02,store,S0001,promotion,Fête,1".encode("latin-1")
    data = csv_bytes(EVENT_HEADER, *rows) + late + b"\n"
    assert len(data) > (1 << 20), "the odd byte must sit after the first MiB"
    run = run_cli("events", "late.csv", data)
    assert_quarantined(run, "encoding_error")
    assert "read.encoding" in run.manifest["reason"]["message"]


def test_a_declared_encoding_reads_such_a_file(run_cli: RunCli) -> None:
    rows = [f"2024-06-{1 + i % 28:02d},store,S0001,promotion,promo {i},1" for i in range(40_000)]
    data = csv_bytes(EVENT_HEADER, *rows) + "2024-06-02,store,S0001,promotion,Fête,1\n".encode(
        "latin-1"
    )
    mapping = (
        "name: events_latin1\nsource: events\nread: {format: csv, encoding: latin-1}\n"
        "columns: {event_date: event_date, scope: scope, scope_id: scope_id,"
        " event_type: event_type, event_name: event_name, value: value}\n"
    )
    run = run_cli("events", "late.csv", data, mapping=mapping)
    assert_conditioned(run, 40_001, [])
    assert run.rows[-1]["event_name"] == "Fête"
