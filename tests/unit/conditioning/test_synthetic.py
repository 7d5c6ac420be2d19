"""The synthetic generator: deterministic, realistic, and every injected defect is caught."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import openpyxl
import pytest

from conditioning.engine import condition_file
from conditioning.mapping import builtin_mappings
from conditioning.synthetic import SHIPMENT_LAYOUTS, SyntheticSpec, write_drop, write_shipments

AS_OF = dt.date(2025, 6, 30)
SPEC = SyntheticSpec(regions=3, stores_per_region=3, products=9, weeks=3, seed=5, defect_rate=0.15)


def _sheet_rows(path: Path) -> list[tuple[object, ...]]:
    book = openpyxl.load_workbook(path, read_only=True)
    try:
        return [tuple(r) for r in book.worksheets[0].iter_rows(values_only=True)]
    finally:
        book.close()


def test_same_seed_same_files(tmp_path: Path) -> None:
    a, b = write_drop(tmp_path / "a", SPEC), write_drop(tmp_path / "b", SPEC)
    assert a.rows == b.rows and a.defects == b.defects
    for path in sorted((tmp_path / "a").iterdir()):
        twin = tmp_path / "b" / path.name
        if path.suffix == ".xlsx":  # the workbook format stamps its save time
            assert _sheet_rows(path) == _sheet_rows(twin)
        else:
            assert path.read_bytes() == twin.read_bytes(), path.name


def test_another_seed_gives_other_data(tmp_path: Path) -> None:
    write_shipments(tmp_path / "a.csv", SPEC)
    write_shipments(tmp_path / "b.csv", SyntheticSpec(**{**SPEC.__dict__, "seed": 6}))
    assert (tmp_path / "a.csv").read_bytes() != (tmp_path / "b.csv").read_bytes()


@pytest.mark.parametrize("layout", SHIPMENT_LAYOUTS)
def test_every_injected_defect_is_rejected_with_its_reason(tmp_path: Path, layout: str) -> None:
    suffix = {"standard": ".csv", "vendor_eu": ".csv", "vendor_us": ".jsonl"}[layout]
    raw = tmp_path / f"drop{suffix}"
    drop = write_shipments(raw, SPEC, layout)
    assert sum(drop.defects.values()) >= 6, "the spec should inject a fair number of defects"
    result = condition_file(
        raw,
        "shipments",
        tmp_path / "staging",
        candidates=builtin_mappings()["shipments"],
        as_of=AS_OF,
    )
    assert result is not None and result.usable
    m = result.manifest
    assert m["mapping"]["name"] == f"shipments_{layout}"
    assert m["rows_in"] == drop.rows["shipments"]
    assert m["reject_counts"] == dict(sorted(drop.defects.items()))
    clean = SPEC.regions * SPEC.stores_per_region * SPEC.products * SPEC.weeks
    assert m["rows_out"] == clean


def test_a_full_drop_conditions_every_source(tmp_path: Path) -> None:
    spec = SyntheticSpec(regions=2, stores_per_region=2, products=6, weeks=2, seed=9)
    drop = write_drop(tmp_path / "drop", spec)
    catalog = builtin_mappings()
    for source, files in drop.files.items():
        for path in files:
            with tempfile.TemporaryDirectory() as tmp:
                result = condition_file(
                    path, source, Path(tmp), candidates=catalog[source], as_of=AS_OF
                )
                assert result is not None and result.usable, (path.name, result and result.reason)
                m = result.manifest
                assert m["rows_rejected"] == 0, (path.name, m["reject_counts"])
                assert m["rows_in"] == drop.rows.get(path.name, m["rows_in"]) > 0
