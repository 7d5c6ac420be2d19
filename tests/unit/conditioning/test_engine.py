"""Engine behaviour that only shows on bigger inputs: batches, parts, duplicates across both."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from conditioning.contracts import contract_for
from conditioning.dedupe import DuplicateFinder, key_hashes
from conditioning.engine import (
    EngineOptions,
    Pipeline,
    _csv_bytes,
    _formatted,
    _integral_as_int,
    condition_file,
    dataset_version,
)
from conditioning.mapping import builtin_mappings
from conditioning.normalize import _distinct, normalize
from conditioning.readers import csv_strategies, profile_file

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


def test_whole_number_floats_are_written_as_integers_only_where_the_text_is_the_same() -> None:
    columns = {
        "whole": [15.0, 0.0, -3.0, None, 9_999_999_999.0, -9_999_999_999.0],
        "negative_zero": [1.0, -0.0],
        "exponent_form": [1.0, 1e10],
        "fraction": [1.0, 2.5],
        "huge": [1.0, 1e16],
    }
    for name, values in columns.items():
        table = pa.table({"x": pa.array(values, pa.float64())})
        converted = _integral_as_int(table.column("x").combine_chunks())
        assert pa.types.is_int64(converted.type) == (name == "whole"), name
        assert _csv_bytes(_formatted(table)) == _csv_bytes(table), name


def test_key_hashes_from_normalised_encodings_equal_hashing_the_columns(tmp_path: Path) -> None:
    rows = _defective_rows(3000)
    rows += [f" 2024-01-15 , S{i:04d} ,P{i:06d},{i},Units,0,TRUE" for i in range(50)]
    raw = tmp_path / "raw.csv"
    raw.write_text("\n".join([HEADER, *rows]) + "\n")
    profile = profile_file(raw)
    (_, read), *_ = csv_strategies(raw, profile, block_bytes=1 << 20)
    batch = next(read())
    contract = contract_for("shipments")
    result = normalize(
        batch.table,
        batch.row_numbers,
        builtin_mappings()["shipments"][0],
        contract,
        AS_OF,
        1 << 20,
    )
    assert len(result.rejects), "the batch must lose rows, so encodings are filtered too"
    # Few stores and weeks: converted per distinct value; a product per row: converted whole.
    assert {"week_start", "store_id"} <= set(result.encodings)
    assert "product_id" not in result.encodings
    for name, (values, index) in result.encodings.items():
        assert len(index) == result.table.num_rows
        assert values.take(pa.array(index)).equals(result.table.column(name).combine_chunks())
    assert np.array_equal(
        key_hashes(result.table, contract.key, result.encodings),
        key_hashes(result.table, contract.key),
    )


@pytest.mark.parametrize(
    "values",
    [
        ["2024-01-08"] * 3000 + ["2024-01-15"] * 10 + [None] * 5 + ["2024-01-08"] * 100,
        [f"S{i % 7}" for i in range(3000)],  # changes every row: hashed row by row
        [None] * 2000,
        ["only"],
        [],
    ],
    ids=["runs", "no-runs", "all-null", "one", "empty"],
)
def test_distinct_values_from_runs_equal_dictionary_encoding(values: list[str | None]) -> None:
    array = pa.array(values, pa.string())
    distinct, index = _distinct(array)
    expected = pc.dictionary_encode(array, null_encoding="encode")
    assert distinct.equals(expected.dictionary)
    assert np.array_equal(index, expected.indices.to_numpy(zero_copy_only=False))


def test_spilled_keys_keep_file_order_and_positions_within_each_partition(tmp_path: Path) -> None:
    finder = DuplicateFinder(tmp_path / "keys", 3)
    hashes = np.array([5 << 40, 7 << 40, 5 << 40, 6 << 40, 7 << 40], dtype=np.uint64)
    rows = np.arange(10, 15, dtype=np.int64)
    finder.add(DuplicateFinder.spill(hashes[:3], rows[:3], 3), part=0, first_pos=0)
    finder.add(DuplicateFinder.spill(hashes[3:], rows[3:], 3), part=1, first_pos=3)
    found = [(d.row, d.first_row, d.part, d.pos) for d in finder.duplicates()]
    assert found == [(12, 10, 0, 2), (14, 11, 1, 4)]
    with pytest.raises(ValueError, match="partitions"):
        DuplicateFinder(tmp_path / "other", 2).add(DuplicateFinder.spill(hashes, rows, 3), 0, 0)


def test_version_depends_on_content_and_mapping_only() -> None:
    a = dataset_version("0" * 64, "shipments", "m1")
    assert a == dataset_version("0" * 64, "shipments", "m1")
    assert a != dataset_version("1" * 64, "shipments", "m1")
    assert a != dataset_version("0" * 64, "shipments", "m2")
    assert a != dataset_version("0" * 64, "returns", "m1")


def _defective_rows(n: int) -> list[str]:
    """Rows with a defect of some kind every few hundred rows, and repeats far apart."""
    rows = _rows(n)
    for i in range(7, n, 311):
        rows[i] = rows[i].replace(",units,", ",boxes,")
    for i in range(13, n, 457):
        rows[i] = rows[i].replace("2024-01-08", "2024-13-08")
    for i in range(29, n, 503):
        rows[i] = rows[i].replace(",false", ",=cmd|' /C calc'!A0")
    for i in range(n - 40, n, 9):
        rows[i] = rows[i - n // 2]  # repeats of rows thousands of lines earlier
    return rows


def _condition(raw: Path, staging: Path, options: EngineOptions) -> tuple[dict[str, Any], bytes]:
    result = condition_file(
        raw,
        "shipments",
        staging,
        candidates=builtin_mappings()["shipments"],
        as_of=AS_OF,
        options=options,
    )
    assert result is not None and result.usable
    data = b"".join(f.path.read_bytes() for f in result.files)
    manifest = {k: v for k, v in result.manifest.items() if k != "timings_s"}
    return manifest, data


def test_many_batches_on_worker_threads_give_the_bytes_of_a_single_batch(tmp_path: Path) -> None:
    # Hundreds of small batches prepared on two threads, out of order, must give exactly the
    # records, rejects (in row order), counts and hashes that one batch holding the file gives.
    raw = tmp_path / "raw.csv"
    raw.write_text("\n".join([HEADER, *_defective_rows(20_000)]) + "\n")
    small = EngineOptions(block_bytes=4 << 10, batch_bytes=8 << 10)
    whole = EngineOptions(block_bytes=4 << 20, batch_bytes=64 << 20)
    threaded, threaded_bytes = _condition(raw, tmp_path / "a", small)
    single, single_bytes = _condition(raw, tmp_path / "b", whole)
    assert threaded == single
    assert threaded_bytes == single_bytes
    counts = threaded["reject_counts"]
    assert set(counts) == {"invalid_value", "bad_date", "bad_boolean", "duplicate_row"}, counts
    assert threaded["rows_in"] == 20_000 == threaded["rows_out"] + threaded["rows_rejected"]
    rejects = list(
        csv.DictReader(io.StringIO((tmp_path / "a" / "work" / "rejects.csv").read_text()))
    )
    assert [int(r["row_number"]) for r in rejects] == sorted(int(r["row_number"]) for r in rejects)


def test_fast_reader_joins_blocks_into_bounded_batches_numbered_in_order(tmp_path: Path) -> None:
    raw = tmp_path / "raw.csv"
    raw.write_text("\n".join([HEADER, *_rows(30_000)]) + "\n")
    profile = profile_file(raw)
    block, batch = 16 << 10, 64 << 10
    make = dict(csv_strategies(raw, profile, block_bytes=block, batch_bytes=batch))["arrow"]
    batches = list(make())
    assert len(batches) > 10
    numbers = np.concatenate([b.row_numbers for b in batches])
    assert numbers.tolist() == list(range(2, 30_002))
    # A batch is joined from blocks until it reaches ``batch_bytes``: never a block more.
    assert all(b.table.nbytes < batch + 2 * block for b in batches)


def test_pipeline_appends_in_input_order_and_bounds_the_work_in_flight() -> None:
    started: list[int] = []
    appended: list[int] = []
    outstanding: list[int] = []
    lock = threading.Lock()

    def prepare(item: int) -> int:
        with lock:
            started.append(item)
            outstanding.append(len(started) - len(appended))
        time.sleep(0.002 * (item % 3))  # later items often finish first
        return item * 10

    pipeline: Pipeline[int, int] = Pipeline(prepare, appended.append, workers=2, in_flight=3)
    try:
        for item in range(40):
            pipeline.submit(item)
        pipeline.finish()
    finally:
        pipeline.close()
    assert appended == [i * 10 for i in range(40)]
    assert max(outstanding) <= 3


def test_pipeline_raises_a_worker_error_in_turn_and_appends_nothing_after_it() -> None:
    appended: list[int] = []

    def prepare(item: int) -> int:
        if item == 5:
            raise ValueError("batch 5 is bad")
        return item

    pipeline: Pipeline[int, int] = Pipeline(prepare, appended.append, workers=2, in_flight=2)
    with pytest.raises(ValueError, match="batch 5"):
        try:
            for item in range(20):
                pipeline.submit(item)
            pipeline.finish()
        finally:
            pipeline.close()
    assert appended == [0, 1, 2, 3, 4]
