"""The command line as people and scripts use it (a real subprocess for the main path)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conditioning.__main__ import main
from tests.unit.conditioning.conftest import RunCli

REPO = Path(__file__).resolve().parents[3]
CSV = (
    b"week_start,store_id,product_id,quantity,quantity_unit,returned_quantity,is_holiday_week\n"
    b"2024-01-08,S0001,P000001,5,units,0,false\n2024-01-08,S0001,P000002,x,units,0,false\n"
)


def test_python_dash_m_writes_the_three_outputs(tmp_path: Path) -> None:
    raw = tmp_path / "drop.csv"
    raw.write_bytes(CSV)
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "conditioning", "shipments", str(raw), "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    v = summary["dataset_version"]
    assert (summary["rows_in"], summary["rows_out"], summary["rows_rejected"]) == (2, 1, 1)
    assert (out / "conditioned" / "shipments" / v / "part-00000.csv").is_file()
    assert (out / "conditioned" / "shipments" / v / "manifest.json").is_file()
    assert (out / "quarantine" / "shipments" / v / "rejects.csv").is_file()
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "no assembly leftovers"


def test_running_twice_is_a_no_op(
    run_cli: RunCli, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "shared-out"
    first = run_cli("shipments", "a.csv", CSV, out=out)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    capsys.readouterr()
    second = run_cli("shipments", "b.csv", CSV, out=out)
    assert first.exit_code == second.exit_code == 0
    assert json.loads(capsys.readouterr().out)["status"] == "unchanged"
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


def test_an_unusable_file_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = tmp_path / "empty.csv"
    raw.write_bytes(b"")
    assert main(["shipments", str(raw), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "empty_file" in err[0]


def test_a_broken_mapping_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = tmp_path / "x.csv"
    raw.write_bytes(CSV)
    mapping = tmp_path / "m.yaml"
    mapping.write_text("source: shipments\ncolumns: {week_start: week_start}\n")
    assert (
        main(["shipments", str(raw), "--out", str(tmp_path / "o"), "--mapping", str(mapping)]) == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "store_id" in err[0]


def test_a_mapping_for_another_source_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = tmp_path / "x.csv"
    raw.write_bytes(CSV)
    mapping = REPO / "conditioning" / "mappings" / "stores_walmart.yaml"
    assert (
        main(["shipments", str(raw), "--out", str(tmp_path / "o"), "--mapping", str(mapping)]) == 2
    )
    assert "feeds stores" in capsys.readouterr().err
