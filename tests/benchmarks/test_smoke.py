"""Every ``make bench-*`` benchmark, end to end at a small size, with its bounds that are not
timings: peak memory, sizes, counts, history events. A merge that breaks a benchmark, or one
of the bounds it exists to watch, fails here instead of on the next person who runs it.

Timings are never asserted (a shared machine makes them noise); the benchmarks print them.
``make bench-forecast`` runs the forecast benchmark, whose command line is checked on small
Walmart-layout files in tests/unit/pipelines/test_benchmark_forecast.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.benchmarks.conftest import REPO, RunBench

pytestmark = pytest.mark.bench

# Where each benchmark module's smoke test lives (the file must run that module).
SMOKE_TESTS = {
    "startup": "tests/benchmarks/test_smoke.py",
    "conditioning": "tests/benchmarks/test_smoke.py",
    "forecast": "tests/unit/pipelines/test_benchmark_forecast.py",
    "polling": "tests/benchmarks/test_smoke.py",
    "dashboard": "tests/benchmarks/test_smoke.py",
    "loop": "tests/benchmarks/test_smoke.py",
    "blob_binding": "tests/benchmarks/test_smoke.py",
    "executor": "tests/benchmarks/test_smoke.py",
    "many_models": "tests/benchmarks/test_smoke.py",
    "hostile": "tests/benchmarks/test_smoke.py",
}


def test_every_make_bench_target_has_a_smoke_test() -> None:
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    targets = dict(
        re.findall(r"^(bench-[\w-]+):.*\n\t\$\(PY\) -m benchmarks\.(\w+)", makefile, re.M)
    )
    assert len(targets) >= 9, targets
    missing = sorted(m for m in targets.values() if m not in SMOKE_TESTS)
    assert not missing, f"benchmarks without a smoke test: {missing}"
    for module, test_file in SMOKE_TESTS.items():
        text = (REPO / test_file).read_text(encoding="utf-8")
        assert f'"{module}"' in text or f"benchmarks import {module}" in text, test_file


def test_startup_imports_no_heavy_library(run_bench: RunBench) -> None:
    result = run_bench("startup", "--runs", "1")
    assert result["heavy_modules"] == []
    assert result["median_s"]["app"] > 0


def test_conditioning_engine_duckdb_and_polars_account_alike(run_bench: RunBench) -> None:
    result = run_bench("conditioning", "--mb", "4", "--methods", "engine,pyarrow,duckdb,polars")
    assert result["accounting_differs"] == []
    by = {m["method"]: m for m in result["measured"]}
    engine = by["engine"]["detail"]
    assert engine["rows_in"] == engine["rows_out"] + engine["rows_rejected"]
    assert engine["reject_counts"].get("out_of_range", 0) > 0  # the defects were checked
    for method in ("duckdb", "polars"):
        assert by[method]["detail"]["reject_counts"] == engine["reject_counts"]
    assert by["engine"]["peak_rss_mb"] <= 300


def test_polling_meets_its_call_and_delay_goals(run_bench: RunBench) -> None:
    # The simulation is deterministic: these are counts, not timings.
    result = run_bench("polling", "--jobs", "120")
    for strategy in ("adaptive", "adaptive+hint"):
        assert result["overall"][strategy]["meets"], result["overall"][strategy]


def test_dashboard_summary_stays_the_same_size_as_history_grows(run_bench: RunBench) -> None:
    # 1x is past every document's keep limits (26 versions x 12 segments, 50 jobs, 200
    # versions per source), so 4x the history must not store more.
    args = ["--in-memory", "--no-scan", "--repeat", "1", "--scales", "1,4"]
    result = run_bench("dashboard", *args, "--versions", "320", "--jobs", "60",
                       "--datasets", "820")  # fmt: skip
    sizes = result["summary_bytes"]
    assert sizes["4"] <= 1.1 * sizes["1"], sizes
    assert set(result["summary_ms"]["4"]) == {"index", "training", "monitoring", "scoring"}


def test_loop_completes_with_bounded_status_and_histories(run_bench: RunBench) -> None:
    result = run_bench("loop", "--segments", "4", "8", "--job-seconds", "0.5")
    for run in result["runs"]:
        assert run["status"] == "Completed", run
        assert run["trained"] == run["segments"]
        assert run["jobs"] == run["segments"] + 1  # a train job per segment, one score job
        assert run["peak_status_bytes"] <= 16 * 1024
        assert run["largest_events"] <= 200
    assert all(goal["holds"] for goal in result["goals"][:3]), result["goals"]


@pytest.mark.timeout(900)
def test_blob_trigger_streams_a_drop_in_bounded_memory(run_bench: RunBench) -> None:
    result = run_bench("blob_binding", "--mb", "40", "--methods", "sdk", timeout=900)
    (run,) = result["measured"]
    assert run["detail"]["status"] == "conditioned"
    assert run["detail"]["rows_in"] == run["detail"]["rows_out"] + run["detail"]["rows_rejected"]
    assert run["peak_rss_mb"] <= run["goal_mb"], run


@pytest.mark.timeout(900)
def test_executor_runs_every_partition_within_its_memory_bound(run_bench: RunBench) -> None:
    args = ["--partitions", "40", "--steps", "3", "--no-cold"]
    result = run_bench("executor", *args, timeout=900)
    progress = result["parallel"]["progress"]
    assert progress["total"] == progress["succeeded"] == 40
    assert progress["failed"] == progress["retried"] == 0
    assert result["parallel"]["rss_peak_mb"] <= 1024
    assert len(result["chain"]["starts"]) == 3


@pytest.mark.timeout(1200)
def test_many_models_loop_trains_gates_registers_and_scores_partitions(
    run_bench: RunBench, tmp_path: Path
) -> None:
    args = ["--partitions", "12", "--scale", "1", "--weeks", "60", "--segments", "1"]
    result = run_bench("many_models", *args, timeout=1200)
    (run, _) = result["runs"]
    assert run["status"] == "Completed", run["result"]
    assert 0 < run["partitions"] <= 12
    (model,) = run["models"].values()  # one registered model for the segment...
    assert model["forecasters"] == run["partitions"]  # ...holding every partition's forecaster
    assert run["forecast_rows"] > 0
    assert run["peak_status_bytes"] <= 16 * 1024
    assert run["largest_history_events"] <= 250  # a job monitor continues as new at ~200
    assert all(str(v).startswith("200") for v in run["dashboard"]["pages"].values())
    assert all(goal["holds"] for goal in result["goals"]), result["goals"]


@pytest.mark.timeout(900)
def test_hostile_inputs_are_refused_within_the_memory_goal(run_bench: RunBench) -> None:
    # One decompression bomb, the million-column header and deep JSON on every path, plus an
    # oversized Event Grid batch; the whole corpus runs in tests/integration/test_hostile_corpus.py.
    cases = "gzip_huge_field,wide_header,deep_jsonl,start_deep_json,eventgrid_20mb_batch"
    result = run_bench("hostile", "--cases", cases, timeout=900)
    measured = result["measured"]
    assert {m["case"] for m in measured} == set(cases.split(","))
    assert {m["path"] for m in measured} == {"cli", "blob", "http"}
    for m in measured:
        assert m["outcome"] in m["expected"], m
        assert m["peak_mb"] is not None and m["peak_mb"] <= result["goal_mb"], m
