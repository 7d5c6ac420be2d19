"""Hostile files are refused with a reason, in bounded time and memory, never with a traceback.

The bombs are written by the tests (``benchmarks.hostile`` builds them in about a second each)
and would expand to 1 GiB or more; the refusal reads only a bounded prefix. Peak memory is
measured where it means something, per process, in ``tests/integration/test_hostile_corpus.py``.
"""

from __future__ import annotations

import datetime as dt
import gzip
from pathlib import Path
from typing import IO, Any

import numpy as np
import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from adapters.datalake import InMemoryDataLake
from adapters.datasets import blob_dataset_ports
from adapters.errors import SettingsError
from benchmarks import hostile
from conditioning.engine import ConditionResult, EngineOptions, condition_file
from conditioning.mapping import builtin_mappings
from conditioning.readers import ReadLimits
from conditioning.service import ConditioningOutcome, condition_blob
from tests.unit.conditioning.conftest import CliRun, RunCli, drop_and_condition

AS_OF = dt.date(2025, 6, 30)


def _corpus_file(tmp_path: Path, name: str) -> Path:
    ((_, path),) = hostile.write_corpus(tmp_path / "corpus", {name})
    return path


def _cli(run_cli: RunCli, tmp_path: Path, name: str) -> CliRun:
    case = next(c for c in hostile.FILES if c.name == name)
    return run_cli(case.source, case.filename, _corpus_file(tmp_path, name).read_bytes())


def _quarantined(run: CliRun, code: str) -> None:
    assert run.exit_code == 2
    assert run.manifest["status"] == "quarantined", run.manifest
    assert run.manifest["reason"]["code"] == code, run.manifest["reason"]
    assert not (run.out / "conditioned").exists()


def _blob(data: bytes, name: str, limits: ReadLimits | None = None) -> ConditioningOutcome:
    options = EngineOptions(limits=limits or ReadLimits())
    return drop_and_condition(InMemoryDataLake(), name, data, options=options)


def _condition(path: Path, source: str, tmp_path: Path, limits: ReadLimits) -> dict[str, Any]:
    return _result(path, source, tmp_path, limits).manifest


def _result(path: Path, source: str, tmp_path: Path, limits: ReadLimits) -> ConditionResult:
    result = condition_file(
        path,
        source,
        tmp_path / "staging",
        candidates=builtin_mappings()[source],
        as_of=AS_OF,
        options=EngineOptions(limits=limits),
    )
    assert result is not None
    return result


# --- finding 1: a small compressed file -------------------------------------------------------


def test_a_gzip_bomb_with_one_huge_field_is_quarantined_not_a_traceback(
    run_cli: RunCli, tmp_path: Path
) -> None:
    _quarantined(_cli(run_cli, tmp_path, "gzip_huge_field"), "record_too_large")


def test_a_gzip_bomb_blob_is_quarantined_so_the_trigger_never_retries_it(tmp_path: Path) -> None:
    data = _corpus_file(tmp_path, "gzip_huge_field").read_bytes()
    outcome = _blob(data, "events/b1/bomb.csv.gz")
    assert (outcome.status, outcome.reason_code) == ("quarantined", "record_too_large")


def test_a_long_line_after_good_rows_is_quarantined(run_cli: RunCli, tmp_path: Path) -> None:
    _quarantined(_cli(run_cli, tmp_path, "gzip_long_line"), "record_too_large")


def test_a_quoted_value_of_many_short_lines_is_bounded_too(run_cli: RunCli, tmp_path: Path) -> None:
    _quarantined(_cli(run_cli, tmp_path, "gzip_quoted_newlines"), "record_too_large")


def test_valid_rows_expanding_past_the_ratio_are_too_large(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv.gz"
    hostile.gzip_bomb(path, hostile.EVENT_HEADER, hostile.EVENT_ROW, total=64 << 20)
    limits = ReadLimits(expansion_allowance=4 << 20)
    manifest = _condition(path, "events", tmp_path, limits)
    assert manifest["status"] == "quarantined"
    assert manifest["reason"] == {"code": "too_large", "message": manifest["reason"]["message"]}
    assert "decompression bomb" in str(manifest["reason"])


def test_an_ordinary_gzip_file_is_not_refused(tmp_path: Path) -> None:
    rows = b"".join(
        b"2024-06-%02d,store,S%04d,promotion,p%d,%d\n" % (1 + i % 28, i % 97, i, i)
        for i in range(100_000)
    )
    path = tmp_path / "ok.csv.gz"
    path.write_bytes(gzip.compress(hostile.EVENT_HEADER + rows))
    manifest = _condition(path, "events", tmp_path, ReadLimits(expansion_allowance=1 << 20))
    assert manifest["status"] == "conditioned"
    assert manifest["rows_in"] == 100_000


def test_a_json_lines_bomb_is_too_large(run_cli: RunCli, tmp_path: Path) -> None:
    _quarantined(_cli(run_cli, tmp_path, "jsonl_gzip_long_line"), "too_large")


def test_a_deeply_nested_json_record_is_refused_not_a_traceback(
    run_cli: RunCli, tmp_path: Path
) -> None:
    _quarantined(_cli(run_cli, tmp_path, "deep_jsonl"), "not_tabular")


def test_a_deeply_nested_json_line_later_on_rejects_its_row(run_cli: RunCli) -> None:
    deep = b'{"event_name": ' + b"[" * 50_000 + b"]" * 50_000 + b"}\n"
    run = run_cli("events", "deep.jsonl", hostile.JSONL_RECORD + deep + hostile.JSONL_RECORD)
    assert run.exit_code == 0
    assert run.reject_codes[0] == (2, "bad_json")
    assert "nests deeper" in run.rejects[0]["message"]


def test_a_workbook_expanding_to_a_gigabyte_is_too_large(run_cli: RunCli, tmp_path: Path) -> None:
    _quarantined(_cli(run_cli, tmp_path, "xlsx_bomb"), "too_large")


def test_a_workbook_whose_directory_lies_is_unreadable(run_cli: RunCli, tmp_path: Path) -> None:
    _quarantined(_cli(run_cli, tmp_path, "xlsx_lying_sizes"), "unreadable_xlsx")


def test_a_workbook_with_a_huge_shared_string_table_is_too_large(
    run_cli: RunCli, tmp_path: Path
) -> None:
    _quarantined(_cli(run_cli, tmp_path, "xlsx_shared_strings"), "too_large")


def test_a_workbook_row_wider_than_the_limit_is_refused(tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["store_id", "population", "median_income"])
    sheet.append(["S1", 1, 2, *range(20)])
    path = tmp_path / "wide.xlsx"
    book.save(path)
    manifest = _condition(path, "demographics", tmp_path, ReadLimits(max_columns=10))
    assert manifest["reason"]["code"] == "too_many_columns"


def test_a_parquet_page_bomb_is_too_large(run_cli: RunCli, tmp_path: Path) -> None:
    _quarantined(_cli(run_cli, tmp_path, "parquet_pages"), "too_large")


def test_a_parquet_dictionary_bomb_is_too_large(run_cli: RunCli, tmp_path: Path) -> None:
    _quarantined(_cli(run_cli, tmp_path, "parquet_dictionary"), "too_large")


def test_a_parquet_value_over_the_field_limit_rejects_its_row_without_decoding_it(
    tmp_path: Path,
) -> None:
    n = 5
    reasons = pa.DictionaryArray.from_arrays(
        pa.array(np.array([0, 1, 0, 0, 1], np.int32)), pa.array(["damaged", "r" * 5000])
    )
    table = pa.table(
        {
            "week_start": [dt.date(2024, 1, 8)] * n,
            "store_id": [f"S{i:04d}" for i in range(n)],
            "product_id": ["P000001"] * n,
            "returned_quantity": [1.0] * n,
            "return_reason": reasons,
        }
    )
    path = tmp_path / "r.parquet"
    pq.write_table(table, path)
    result = _result(path, "returns", tmp_path, ReadLimits(max_field_bytes=1000))
    manifest = result.manifest
    assert manifest["status"] == "conditioned"
    assert (manifest["rows_out"], manifest["reject_counts"]) == (3, {"field_too_large": 2})
    (rejects,) = [f for f in result.files if f.kind == "rejects"]
    text = rejects.path.read_text()
    assert "rrrr" in text and len(text) < 2000


def test_a_blob_over_the_input_limit_is_refused_while_it_downloads() -> None:
    data = hostile.EVENT_HEADER + hostile.EVENT_ROW * 1000
    outcome = _blob(data, "events/b1/big.csv", ReadLimits(max_input_bytes=4096))
    assert (outcome.status, outcome.reason_code) == ("quarantined", "too_large")
    assert "4,096 bytes" in str(outcome.reason)
    assert not [w for w in outcome.written if not w.endswith("manifest.json")], outcome.written


class _MangledName:
    """A blob storage cannot serve under its own name (it addresses another path, refused)."""

    container = "raw"
    name = "events/b1/..\\..\\x6.csv"

    def etag(self) -> str | None:
        raise SettingsError(["HTTP 403: the signature does not match the path"])

    def open(self) -> IO[bytes]:
        raise AssertionError("an unreadable blob is not opened")


def test_an_unsafe_name_storage_cannot_read_is_quarantined_not_retried() -> None:
    lake = InMemoryDataLake()
    registry, signals = blob_dataset_ports(lake, "conditioned")
    outcome = condition_blob(
        _MangledName(),
        lake,
        conditioned_container="conditioned",
        quarantine_container="quarantine",
        registry=registry,
        signals=signals,
    )
    assert (outcome.status, outcome.reason_code) == ("quarantined", "unsafe_name")
    assert "cannot be read under that name" in str(outcome.reason)


# --- finding 2: a very wide header -------------------------------------------------------------


def test_a_million_column_header_is_header_too_long_through_the_cli(
    run_cli: RunCli, tmp_path: Path
) -> None:
    _quarantined(_cli(run_cli, tmp_path, "wide_header"), "header_too_long")


def test_a_million_column_header_is_header_too_long_through_the_blob_service(
    tmp_path: Path,
) -> None:
    data = _corpus_file(tmp_path, "wide_header").read_bytes()
    outcome = _blob(data, "events/b1/wide.csv")
    assert (outcome.status, outcome.reason_code) == ("quarantined", "header_too_long")


def test_forty_thousand_columns_are_too_many_columns(run_cli: RunCli, tmp_path: Path) -> None:
    _quarantined(_cli(run_cli, tmp_path, "many_columns"), "too_many_columns")


def test_a_repeated_name_among_sixteen_thousand_is_still_named(run_cli: RunCli) -> None:
    names = [*hostile.EVENT_HEADER.decode().strip().split(","), *(f"x{i}" for i in range(16_000))]
    names.append("X15999")
    run = run_cli("events", "dup.csv", (",".join(names) + "\n").encode())
    _quarantined(run, "duplicate_columns")
    assert "x15999" in run.manifest["reason"]["message"]


def test_every_refusal_code_is_documented() -> None:
    doc = (Path(__file__).resolve().parents[3] / "docs" / "data-contracts.md").read_text()
    for code in (
        "too_large",
        "header_too_long",
        "too_many_columns",
        "record_too_large",
        "unreadable_input",
    ):
        assert f"`{code}`" in doc, code


@pytest.mark.parametrize("name", ["long_line", "long_fields"])
def test_uncompressed_long_lines_and_fields(run_cli: RunCli, tmp_path: Path, name: str) -> None:
    run = _cli(run_cli, tmp_path, name)
    if name == "long_line":
        _quarantined(run, "record_too_large")
    else:
        assert run.exit_code == 0
        assert [code for _, code in run.reject_codes] == ["field_too_large"] * 5
        assert run.manifest["rows_out"] == 5
