"""Golden files: raw vendor drops -> the exact standard CSV and rejects they must produce.

Each case folder under ``golden/`` holds ``case.json`` (source, as-of day), one ``input.*`` file
(made once by ``conditioning.synthetic`` with defects) and the expected ``expected.csv`` and
``expected_rejects.csv``. After an intended change of output, regenerate with
``python -m tests.unit.conditioning.test_golden`` and review the diff.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import pytest

from conditioning.synthetic import (
    SyntheticSpec,
    write_demographics_xlsx,
    write_events_jsonl,
    write_returns_parquet,
    write_shipments,
    write_stores,
    write_weather,
)
from tests.unit.conditioning.conftest import RunCli, collect

GOLDEN = Path(__file__).parent / "golden"
SPEC = SyntheticSpec(regions=2, stores_per_region=2, products=6, weeks=2, seed=11, defect_rate=0.25)
CASES = (
    sorted(p.name for p in GOLDEN.iterdir() if (p / "case.json").exists())
    if GOLDEN.exists()
    else []
)


def _input(case: Path) -> Path:
    (found,) = [p for p in case.iterdir() if p.name.startswith("input.")]
    return found


@pytest.mark.parametrize("name", CASES)
def test_golden_case(name: str, run_cli: RunCli) -> None:
    case = GOLDEN / name
    meta = json.loads((case / "case.json").read_text())
    inp = _input(case)
    run = run_cli(meta["source"], inp.name, inp.read_bytes(), as_of=meta["as_of"])
    assert run.exit_code == 0, run.manifest
    assert run.conditioned_text == (case / "expected.csv").read_text(encoding="utf-8")
    assert run.rejects_text == (case / "expected_rejects.csv").read_text(encoding="utf-8")
    m = run.manifest
    assert m["rows_in"] == m["rows_out"] + m["rows_rejected"]
    assert m["rows_rejected"] == meta["rows_rejected"]


def test_there_are_golden_cases_for_every_source() -> None:
    sources = {json.loads((GOLDEN / c / "case.json").read_text())["source"] for c in CASES}
    assert sources == {
        "shipments", "weather", "demographics", "returns", "events", "stores", "horizon"
    }  # fmt: skip


# A forecast request with one defect of each kind a requester makes: a date that is no date,
# a week beyond two years after as-of, a missing product, an identifier with a space, and the
# same week asked for twice.
HORIZON_INPUT = """week_start,store_id,product_id
2025-07-02,S0001,P000001
2025-07-09,S0001,P000001
2025-07-16,S0001,P000001
2025-07-16,S0002,P000001
07/23/2025,S0002,P000001
2027-07-05,S0002,P000001
2025-07-23,S0002,
2025-07-23,S 0002,P000002
2025-07-09,S0001,P000001
"""


def regenerate() -> None:
    """Write every case's input (deterministic) and its expected outputs from the current code."""
    from conditioning.__main__ import main

    makers = {
        "shipments_standard": (
            "shipments",
            "input.csv.gz",
            lambda p: write_shipments(p, SPEC, "standard"),
        ),
        "shipments_vendor_eu": (
            "shipments",
            "input.csv",
            lambda p: write_shipments(p, SPEC, "vendor_eu"),
        ),
        "shipments_vendor_us": (
            "shipments",
            "input.jsonl",
            lambda p: write_shipments(p, SPEC, "vendor_us"),
        ),
        "weather_vendor_us": (
            "weather",
            "input.tsv",
            lambda p: write_weather(p, SPEC, "vendor_us"),
        ),
        "demographics_xlsx": (
            "demographics",
            "input.xlsx",
            lambda p: write_demographics_xlsx(p, SPEC),
        ),
        "returns_parquet": ("returns", "input.parquet", lambda p: write_returns_parquet(p, SPEC)),
        "events_jsonl": ("events", "input.jsonl", lambda p: write_events_jsonl(p, SPEC)),
        "stores_standard": ("stores", "input.csv", lambda p: write_stores(p, SPEC)),
        "horizon_standard": ("horizon", "input.csv", lambda p: p.write_text(HORIZON_INPUT)),
    }
    for name, (source, file_name, make) in makers.items():
        case = GOLDEN / name
        case.mkdir(parents=True, exist_ok=True)
        inp = case / file_name
        if not inp.exists():
            make(inp)
        as_of = "2025-06-30"
        with tempfile.TemporaryDirectory() as tmp:
            code = main([source, str(inp), "--out", tmp, "--as-of", as_of])
            run = collect(Path(tmp), source, code)
        assert code == 0, run.manifest
        (case / "expected.csv").write_text(run.conditioned_text, encoding="utf-8")
        (case / "expected_rejects.csv").write_text(run.rejects_text, encoding="utf-8")
        meta = {"source": source, "as_of": as_of, "rows_rejected": run.manifest["rows_rejected"]}
        (case / "case.json").write_text(json.dumps(meta, indent=2) + "\n")
        print(f"{name}: {run.manifest['rows_out']} rows, {run.manifest['rows_rejected']} rejected")


if __name__ == "__main__":
    regenerate()
    sys.exit(0)
