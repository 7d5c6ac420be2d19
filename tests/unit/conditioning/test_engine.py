"""Engine behaviour that only shows on bigger inputs: batches, parts, duplicates across both."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
from pathlib import Path

import pyarrow as pa

from conditioning.dedupe import key_hashes
from conditioning.engine import EngineOptions, condition_file, dataset_version
from conditioning.mapping import builtin_mappings

HEADER = "week_start,store_id,product_id,quantity,quantity_unit,returned_quantity,is_holiday_week"
AS_OF = dt.date(2025, 6, 30)


def _rows(n: int) -> list[str]:
    return [f"2024-01-08,S{i % 50:04d},P{i:06d},{i % 17},units,0,false" for i in range(n)]


def test_duplicates_far_apart_are_found_across_batches_and_parts(tmp_path: Path) -> None:
    rows = _rows(6000)
    rows.append(rows[10])  # exact repeat, thousands of rows later
    rows.append(rows[20].replace(",units,", ",units,").replace(f",{20 % 17},", ",999,"))
    raw = tmp_path / "big.csv"
    raw.write_text("\n".join([HEADER, *rows]) + "\n")
    options = EngineOptions(
        block_bytes=16 << 10,
        batch_bytes=32 << 10,
        part_bytes=64 << 10,
        dedupe_partition_bytes=32 << 10,
    )
    result = condition_file(
        raw,
        "shipments",
        tmp_path / "st",
        candidates=builtin_mappings()["shipments"],
        as_of=AS_OF,
        options=options,
    )
    assert result is not None and result.usable
    m = result.manifest
    parts = [f for f in result.files if f.kind == "part"]
    assert len(parts) > 2, "the test must span several parts"
    assert (m["rows_in"], m["rows_out"], m["rows_rejected"]) == (6002, 6000, 2)
    assert m["reject_counts"] == {"duplicate_key": 1, "duplicate_row": 1}
    records = []
    for part, listed in zip(parts, m["outputs"], strict=True):
        data = part.path.read_bytes()
        assert hashlib.sha256(data).hexdigest() == listed["sha256"]
        got = list(csv.DictReader(io.StringIO(data.decode())))
        assert len(got) == listed["records"]
        records += got
    assert len(records) == 6000
    assert len({(r["week_start"], r["store_id"], r["product_id"]) for r in records}) == 6000
    rejects = list(
        csv.DictReader(io.StringIO((tmp_path / "st" / "work" / "rejects.csv").read_text()))
    )
    assert [(r["row_number"], r["reason_code"]) for r in rejects] == [
        ("6002", "duplicate_row"),
        ("6003", "duplicate_key"),
    ]


def test_key_hash_does_not_depend_on_the_batch() -> None:
    short = pa.table({"a": ["S1", "P000001"], "b": pa.array([1, 2], pa.int32())})
    long = pa.table(
        {"a": ["S1", "a-much-longer-identifier-value"], "b": pa.array([1, 9], pa.int32())}
    )
    assert key_hashes(short, ("a", "b"))[0] == key_hashes(long, ("a", "b"))[0]
    assert key_hashes(short, ("a", "b"))[1] != key_hashes(long, ("a", "b"))[1]
    assert (
        key_hashes(pa.table({"a": ["ab"], "b": [1]}), ("a", "b"))[0]
        != key_hashes(pa.table({"a": ["ba"], "b": [1]}), ("a", "b"))[0]
    )


def test_version_depends_on_content_and_mapping_only() -> None:
    a = dataset_version("0" * 64, "shipments", "m1")
    assert a == dataset_version("0" * 64, "shipments", "m1")
    assert a != dataset_version("1" * 64, "shipments", "m1")
    assert a != dataset_version("0" * 64, "shipments", "m2")
    assert a != dataset_version("0" * 64, "returns", "m1")
