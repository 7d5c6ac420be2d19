"""Helpers for conditioning tests: run the CLI on bytes and read back what it wrote."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from adapters.datalake import InMemoryDataLake, LakeBlob
from adapters.datasets import blob_dataset_ports
from conditioning.__main__ import main
from conditioning.engine import EngineOptions
from conditioning.service import ConditioningOutcome, condition_blob

AS_OF = "2025-06-30"
AS_OF_DATE = dt.date.fromisoformat(AS_OF)


@dataclass
class CliRun:
    """Everything one CLI run left behind."""

    exit_code: int
    out: Path
    source: str
    manifest: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, str]] = field(default_factory=list)
    rejects: list[dict[str, str]] = field(default_factory=list)
    conditioned_text: str = ""
    rejects_text: str = ""

    @property
    def reject_codes(self) -> list[tuple[int, str]]:
        return [(int(r["row_number"]), r["reason_code"]) for r in self.rejects]


def _read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def collect(out: Path, source: str, exit_code: int) -> CliRun:
    run = CliRun(exit_code, out, source)
    manifests = sorted(out.glob(f"*/{source}/*/manifest.json"))
    if manifests:
        run.manifest = json.loads(manifests[-1].read_text())
    parts = sorted(out.glob(f"conditioned/{source}/*/part-*.csv"))
    for i, part in enumerate(parts):
        text = part.read_text(encoding="utf-8")
        run.conditioned_text += text if i == 0 else text.split("\n", 1)[1]
    run.rows = _read_csv(run.conditioned_text) if run.conditioned_text else []
    rejects = sorted(out.glob(f"quarantine/{source}/*/rejects.csv"))
    if rejects:
        run.rejects_text = rejects[0].read_text(encoding="utf-8")
        run.rejects = _read_csv(run.rejects_text)
    return run


RunCli = Callable[..., CliRun]


@pytest.fixture
def run_cli(tmp_path: Path) -> RunCli:
    """Write ``data`` to a file called ``name`` and condition it with the CLI."""
    counter = iter(range(1000))

    def run(
        source: str,
        name: str,
        data: bytes,
        *,
        mapping: str | None = None,
        as_of: str = AS_OF,
        out: Path | None = None,
    ) -> CliRun:
        n = next(counter)
        inp = tmp_path / f"in-{n}" / name
        inp.parent.mkdir(parents=True)
        inp.write_bytes(data)
        target = out or tmp_path / f"out-{n}"
        args = [source, str(inp), "--out", str(target), "--as-of", as_of]
        if mapping is not None:
            mp = tmp_path / f"mapping-{n}.yaml"
            mp.write_text(mapping, encoding="utf-8")
            args += ["--mapping", str(mp)]
        code = main(args)
        return collect(target, source, code)

    return run


def drop_and_condition(
    lake: InMemoryDataLake,
    name: str,
    data: bytes,
    *,
    as_of: dt.date | None = AS_OF_DATE,
    options: EngineOptions | None = None,
) -> ConditioningOutcome:
    """Write ``data`` to ``raw/{name}`` in ``lake`` and run the blob service on it."""
    lake.ensure_container("raw")
    lake.write("raw", name, data)
    registry, signals = blob_dataset_ports(lake, "conditioned")
    return condition_blob(
        LakeBlob(lake, "raw", name),
        lake,
        conditioned_container="conditioned",
        quarantine_container="quarantine",
        registry=registry,
        signals=signals,
        as_of=as_of,
        options=options,
    )
