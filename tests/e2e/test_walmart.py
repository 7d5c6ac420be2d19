"""The Walmart loop end to end, scaled down: ``python -m local run --dataset walmart --exit``
on a few stores of the real files in ../shared/data/walmart (skipped without them).

The run is the real one: Azurite, the function app on the local host, the blob trigger, the
Durable engine, the local Azure ML executor running the train, model-test and score pipelines,
MLflow's sqlite registry and the dashboard. Only the data is smaller: two stores (one of each
format) and a dozen departments, every row of them in every file.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.e2e

STORES = {"1", "3"}  # Type A (large) and Type B (small)
DEPARTMENTS = {str(d) for d in range(1, 13)}
LAST_LINE = re.compile(
    r"^walmart rows_in=(\d+) rows_out=(\d+) rows_rejected=(\d+) partitions=(\d+) "
    r"champions=(\d+) forecast_rows=(\d+) submission=(\S+)$"
)


def _subset(source: Path, target: Path) -> dict[str, int]:
    """The files' rows of ``STORES`` (and ``DEPARTMENTS``, where a row has one)."""
    target.mkdir(parents=True)
    counts = {}
    for name in ("train.csv", "test.csv", "features.csv", "stores.csv"):
        with (source / name).open(newline="") as src, (target / name).open("w", newline="") as dst:
            reader = csv.DictReader(src)
            assert reader.fieldnames is not None
            writer = csv.DictWriter(dst, reader.fieldnames, lineterminator="\n")
            writer.writeheader()
            kept = [
                row
                for row in reader
                if row["Store"] in STORES and row.get("Dept", "1") in DEPARTMENTS
            ]
            writer.writerows(kept)
            counts[name] = len(kept)
    return counts


@pytest.fixture(scope="module")
def walmart_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], Path, dict[str, int]]:
    folder = REPO_ROOT.parent / "shared" / "data" / "walmart"
    if not (folder / "train.csv").is_file():
        pytest.skip(f"the Walmart files are not at {folder} (../shared/data, see SOURCES.md)")
    tmp = tmp_path_factory.mktemp("walmart")
    counts = _subset(folder, tmp / "data")
    state = tmp / "state"
    command = [sys.executable, "-m", "local", "run", "--dataset", "walmart", "--data",
               str(tmp / "data"), "--exit", "--state-dir", str(state), "--port", "0",
               "--in-memory"]  # fmt: skip
    run = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=1800, check=False
    )
    return run, state, counts


@pytest.mark.timeout(1900)
def test_the_scaled_down_walmart_loop_accounts_for_every_row(
    walmart_run: tuple[subprocess.CompletedProcess[str], Path, dict[str, int]],
) -> None:
    run, state, counts = walmart_run
    assert run.returncode == 0, f"{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    last = run.stdout.strip().splitlines()[-1]
    match = LAST_LINE.match(last)
    assert match, last
    rows_in, rows_out, rejected, partitions, champions, forecast_rows = map(int, match.groups()[:6])
    assert (rows_in, rows_out, rejected) == (counts["train.csv"], counts["train.csv"], 0)
    assert partitions == 4  # the region's formats x velocities, one model each
    summary = json.loads((state / "walmart" / "summary.json").read_text())
    assert summary["problems"] == []
    for account in summary["accounting"]:
        assert account["rows_in"] == account["rows_out"] + account["rows_rejected"], account
    by_source = {a["source"]: a for a in summary["accounting"]}
    assert by_source["horizon"]["rows_in"] == counts["test.csv"]
    assert by_source["weather"]["rows_in"] == by_source["events"]["rows_in"]
    assert by_source["weather"]["rows_in"] == counts["features.csv"]
    # Every registered candidate was tested offline, started by its ModelRegistered event.
    registered = [
        s for s in summary["train"]["output"]["segments"].values() if s.get("model_version")
    ]
    assert len(summary["model_tests"]) == len(registered) > 0
    assert 0 < champions <= partitions
    scored = summary["train"]["output"]["score"]["segments"]
    assert forecast_rows == sum(s["forecasts"]["rows"] for s in scored.values()) > 0
    if champions == partitions:  # every segment forecast: every requested row answered
        assert forecast_rows == counts["test.csv"]
    assert all(v.startswith("200") for k, v in summary["dashboard"].items() if k != "url")
    assert summary["peak_rss_mb"] > 0 and set(summary["stages"]) >= {"conditioning", "total"}


def test_the_submission_answers_every_test_row_in_kaggles_format(
    walmart_run: tuple[subprocess.CompletedProcess[str], Path, dict[str, int]],
) -> None:
    run, state, counts = walmart_run
    assert run.returncode == 0, run.stderr[-3000:]
    submission = Path(LAST_LINE.match(run.stdout.strip().splitlines()[-1]).group(7))  # type: ignore[union-attr]
    with submission.open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["Id", "Weekly_Sales"]
    ids = [r[0] for r in rows[1:]]
    assert len(ids) == len(set(ids)) == counts["test.csv"]
    with (state.parent / "data" / "test.csv").open(newline="") as handle:
        wanted = {f"{r['Store']}_{r['Dept']}_{r['Date']}" for r in csv.DictReader(handle)}
    assert set(ids) == wanted
    assert all(float(r[1]) >= 0 for r in rows[1:])  # forecasts are never negative
