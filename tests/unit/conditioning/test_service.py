"""The blob service and the blob trigger, on the in-memory data lake."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from adapters.datalake import InMemoryDataLake, LakeBlob
from adapters.datasets import blob_dataset_ports
from conditioning.service import condition_blob
from tests.unit.conditioning.conftest import drop_and_condition

HEADER = "week_start,store_id,product_id,quantity,quantity_unit,returned_quantity,is_holiday_week\n"
GOOD = (
    HEADER + "2024-01-08,S0001,P000001,5,units,0,false\n2024-01-08,S0001,P2,oops,units,0,false\n"
).encode()
AS_OF = dt.date(2025, 6, 30)


def test_a_drop_produces_outputs_manifest_registry_entry_and_signal() -> None:
    lake = InMemoryDataLake()
    outcome = drop_and_condition(lake, "shipments/2024-01-08/drop.csv", GOOD)
    assert (outcome.status, outcome.rows_in, outcome.rows_out, outcome.rows_rejected) == (
        "conditioned",
        2,
        1,
        1,
    )
    v = outcome.dataset_version
    assert sorted(i.name for i in lake.list("conditioned", "shipments/")) == [
        f"shipments/{v}/manifest.json",
        f"shipments/{v}/part-00000.csv",
    ]
    assert [i.name for i in lake.list("quarantine")] == [f"shipments/{v}/rejects.csv"]
    manifest = json.loads(lake.read("conditioned", f"shipments/{v}/manifest.json"))
    assert manifest["input"]["name"] == "shipments/2024-01-08/drop.csv"
    assert manifest["input"]["etag"] == lake.info("raw", "shipments/2024-01-08/drop.csv").etag
    assert outcome.written[-1] == f"conditioned/shipments/{v}/manifest.json", "manifest last"
    registry, signals = blob_dataset_ports(lake, "conditioned")
    (entry,) = registry.versions("shipments")
    assert (entry.dataset_version, entry.status, entry.rows_out) == (v, "conditioned", 1)
    (signal,) = signals.signals("shipments")
    assert (signal.dataset_version, signal.period_start, signal.period_end) == (
        v,
        "2024-01-08",
        "2024-01-08",
    )
    assert signal.files == (f"conditioned/shipments/{v}/part-00000.csv",)


def test_redelivery_of_the_same_blob_is_a_no_op() -> None:
    lake = InMemoryDataLake()
    first = drop_and_condition(lake, "shipments/2024-01-08/drop.csv", GOOD)
    before = {i.name: i.etag for i in lake.list("conditioned")}
    registry, signals = blob_dataset_ports(lake, "conditioned")
    again = condition_blob(
        LakeBlob(lake, "raw", "shipments/2024-01-08/drop.csv"),
        lake,
        conditioned_container="conditioned",
        quarantine_container="quarantine",
        registry=registry,
        signals=signals,
        as_of=AS_OF,
    )
    assert (again.status, again.dataset_version) == ("unchanged", first.dataset_version)
    assert {i.name: i.etag for i in lake.list("conditioned")} == before
    assert len(signals.signals()) == 1


def test_same_content_under_another_name_is_recognised() -> None:
    lake = InMemoryDataLake()
    first = drop_and_condition(lake, "shipments/2024-01-08/drop.csv", GOOD)
    copy = drop_and_condition(lake, "shipments/2024-01-08/copy-of-drop.csv", GOOD)
    assert (copy.status, copy.dataset_version) == ("unchanged", first.dataset_version)
    registry, _ = blob_dataset_ports(lake, "conditioned")
    etag = lake.info("raw", "shipments/2024-01-08/copy-of-drop.csv").etag
    found = registry.find_input("shipments", "shipments/2024-01-08/copy-of-drop.csv", etag)
    assert found is not None and found.dataset_version == first.dataset_version


def test_different_content_gets_a_different_version() -> None:
    lake = InMemoryDataLake()
    a = drop_and_condition(lake, "shipments/2024-01-08/a.csv", GOOD)
    b = drop_and_condition(lake, "shipments/2024-01-08/a.csv", GOOD.replace(b"5,units", b"6,units"))
    assert b.status == "conditioned" and a.dataset_version != b.dataset_version
    assert len(blob_dataset_ports(lake, "conditioned")[1].signals("shipments")) == 2


def test_an_unusable_file_is_quarantined_registered_and_not_signalled() -> None:
    lake = InMemoryDataLake()
    outcome = drop_and_condition(lake, "shipments/2024-01-08/bad.csv", b"\x00\x01\x02binary")
    assert (outcome.status, outcome.reason_code) == ("quarantined", "not_tabular")
    registry, signals = blob_dataset_ports(lake, "conditioned")
    (entry,) = registry.versions("shipments")
    assert (entry.status, entry.reason_code) == ("quarantined", "not_tabular")
    assert signals.signals() == []
    names = sorted(i.name for i in lake.list("quarantine"))
    assert names == [
        f"shipments/{outcome.dataset_version}/bad.csv",
        f"shipments/{outcome.dataset_version}/manifest.json",
    ]


def test_an_empty_blob_is_ignored() -> None:
    lake = InMemoryDataLake()
    outcome = drop_and_condition(lake, "shipments/2024-01-08/empty.csv", b"")
    assert outcome.status == "ignored"
    assert list(lake.list("conditioned")) == []


def test_an_excel_drop_is_read_by_its_extension(tmp_path: Path) -> None:
    from adapters.datalake import InMemoryDataLake
    from adapters.datasets import blob_dataset_ports
    from conditioning.service import condition_blob
    from conditioning.synthetic import SyntheticSpec, write_demographics_xlsx

    workbook = tmp_path / "demographics.xlsx"
    rows = write_demographics_xlsx(workbook, SyntheticSpec(regions=1))
    lake = InMemoryDataLake()
    lake.ensure_container("raw")
    lake.write("raw", "demographics/2025-07-07/stores.xlsx", workbook.read_bytes())
    registry, signals = blob_dataset_ports(lake, "conditioned")
    outcome = condition_blob(
        LakeBlob(lake, "raw", "demographics/2025-07-07/stores.xlsx"),
        lake,
        conditioned_container="conditioned",
        quarantine_container="quarantine",
        registry=registry,
        signals=signals,
    )
    assert (outcome.status, outcome.rows_out) == ("conditioned", rows)


def test_the_outcome_counts_rejects_by_reason() -> None:
    # GOOD holds one row with a non-numeric quantity.
    outcome = drop_and_condition(InMemoryDataLake(), "shipments/2024-01-08/reasons.csv", GOOD)
    assert outcome.rows_rejected == 1
    assert sum(outcome.reject_counts.values()) == 1
    assert all(code and count > 0 for code, count in outcome.reject_counts.items())
