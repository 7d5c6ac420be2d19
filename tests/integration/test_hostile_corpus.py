"""The hostile-input corpus through the CLI and through the app's blob trigger on the local host.

The corpus (``benchmarks.hostile``) is written here, at test time: decompression bombs for gzip,
an Excel workbook's zip and Parquet pages and dictionaries, each expanding to 1 GiB or more;
very long lines and fields; a 1,000,000-column header; deeply nested JSON; oversized Event Grid
batches and events; odd blob names. Every file and request must end in a quarantine with a
reason (or a row-level reject, or a 4xx), never a traceback, a 5xx or a poisoned blob, with the
peak resident memory of the process doing the work at most 600 MB:

* CLI: the ``python -m conditioning`` process itself, as the kernel reports it when it exits;
* blob trigger and HTTP: the worker (the local Functions host running the real app, a process
  of its own), its peak reset before each file and read after it.

Wall time is reported by ``make bench-hostile`` (goal: 30 s each on 2 cores), not asserted here:
timings on a shared machine are noise.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks import hostile
from benchmarks.hostile import FILES, GOAL_MB, ODD_NAMES, REQUESTS, FileCase, HttpCase
from conditioning.service import parse_blob_name
from local.hosting.azurite import Azurite

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    written = hostile.write_corpus(tmp_path_factory.mktemp("hostile-corpus"))
    return {case.name: path for case, path in written}


@pytest.fixture(scope="module")
def worker(
    azurite: Azurite, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[hostile.HostWorker, hostile.BlobTarget]]:
    with hostile.local_worker(
        tmp_path_factory.mktemp("hostile-worker"), azurite.connection_string
    ) as running:
        yield running


def _within_memory(m: hostile.Measured) -> None:
    assert m.peak_mb is not None and m.peak_mb <= GOAL_MB, f"{m.case} via {m.path}: {m.peak_mb} MB"


@pytest.mark.parametrize("case", FILES, ids=lambda c: c.name)
def test_through_the_cli(case: FileCase, corpus: dict[str, Path], tmp_path: Path) -> None:
    m = hostile.run_cli(case, corpus[case.name], tmp_path / "out")
    assert m.outcome in case.expect, m.detail
    assert m.detail["exit"] == (0 if m.outcome.startswith("conditioned") else 2)
    assert "Traceback" not in m.detail["stderr"]
    _within_memory(m)


@pytest.mark.parametrize("case", FILES, ids=lambda c: c.name)
def test_through_the_blob_trigger(
    case: FileCase,
    corpus: dict[str, Path],
    worker: tuple[hostile.HostWorker, hostile.BlobTarget],
) -> None:
    running, target = worker
    name = f"{case.source}/hostile/{case.filename}"
    m = hostile.run_blob(running, target, case.source, name, corpus[case.name])
    assert m.outcome in case.expect, m.detail
    assert m.detail == {"failures": 0, "poisoned": 0, "completed": 1}, "quarantined, not retried"
    _within_memory(m)


@pytest.mark.parametrize(("case", "name", "expect"), ODD_NAMES, ids=[n for n, _, _ in ODD_NAMES])
def test_odd_blob_names(
    case: str,
    name: str,
    expect: frozenset[str],
    worker: tuple[hostile.HostWorker, hostile.BlobTarget],
    tmp_path: Path,
) -> None:
    running, target = worker
    small = tmp_path / "small.csv"
    small.write_bytes(hostile.EVENT_HEADER + hostile.EVENT_ROW)
    source, _ = parse_blob_name(name, target.raw)
    m = hostile.run_blob(running, target, source, name, small)
    assert m.outcome in expect
    assert m.detail["failures"] == 0 and m.detail["poisoned"] == 0
    # Whatever that name did, the next ordinary drop is conditioned.
    fresh = tmp_path / "fresh.csv"
    fresh.write_bytes(hostile.EVENT_HEADER + hostile.EVENT_ROW.replace(b"hostile", case.encode()))
    good = f"events/after-{case}/ok.csv"
    assert hostile.run_blob(running, target, "events", good, fresh).outcome == "conditioned"


@pytest.mark.parametrize("case", REQUESTS, ids=lambda c: c.name)
def test_requests(case: HttpCase, worker: tuple[hostile.HostWorker, hostile.BlobTarget]) -> None:
    running, _ = worker
    m = hostile.run_http(running, case)
    assert m.outcome in case.expect, m.detail
    body = json.loads(m.detail["body"]) if m.detail["body"].startswith("{") else None
    assert isinstance(body, dict) and "error" in body, m.detail
    assert "Traceback" not in m.detail["body"]
    _within_memory(m)


def test_the_worker_logged_no_traceback(
    worker: tuple[hostile.HostWorker, hostile.BlobTarget],
) -> None:
    running, _ = worker
    running.ask("peak")  # every earlier request has been answered
    assert not [line for line in running.log if "Traceback" in line], "".join(running.log[-40:])


def test_make_bench_hostile_prints_a_row_per_case_and_path(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # The benchmark's smoke test: two small cases on every path, its table and exit status.
    code = hostile.main(["--cases", "many_columns,eventgrid_not_json", "--tmp", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    rows = [line for line in out.splitlines() if line.startswith("| many_columns")]
    assert [r.split("|")[2].strip() for r in rows] == ["cli", "blob"]
    assert all("too_many_columns" in r and "| yes |" in r for r in rows)
    assert "| eventgrid_not_json | http | 415 |" in out
