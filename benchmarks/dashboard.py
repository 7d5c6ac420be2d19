"""Dashboard render time per page against the length of the history (``make bench-dashboard``).

History at 1× is a registry of 500 model versions over 12 segments (3 regions × 2 formats ×
2 velocities), 2,000 finished pipeline jobs of 4 steps (one in ten failed) and 200 conditioned
dataset versions; 4× and 16× multiply all three. For each scale:

- **summary** (what the app does): every event is folded into the summary with the same fold
  functions the activities use, the documents are written to a ``DataLakeSummaryStore`` over
  Azurite (``--in-memory``: the in-memory lake), and each page is requested from the dashboard
  function itself (``on_dashboard_get`` with a real ``HttpRequest``): read the four documents,
  render one page. Median of ``--repeat`` requests.
- **record**: one more event of each kind recorded through the store (read, fold, conditional
  write), median over 20: the cost the activities pay, also independent of history.
- **full scan** (the baseline, what the dashboard did before): read every version from a
  registry (an in-memory fake, so this understates MLflow or Azure ML) and every job record
  from disk, then render the overview (reading dominates, so every page costs about the
  same). Median of ``--scan-repeat``.

Goal: ≤ 1 s per page at every scale, and the summary's time per page independent of history
(16×/1× near 1), while the scan grows with it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

BASE_VERSIONS = 500
BASE_JOBS = 2000
BASE_DATASETS = 200
SCALES = (1, 4, 16)
REGIONS = ("r01", "r02", "r03")
SEGMENTS = [f"{r}/{f}/{v}" for r in REGIONS for f in ("large", "small") for v in ("fast", "slow")]
SOURCES = ("shipments", "weather", "events", "returns")
NOW = datetime(2026, 6, 1, tzinfo=UTC)
PAGES = ("index", "training", "monitoring", "scoring")


@dataclass
class History:
    versions: list[Any]
    jobs: list[Any]
    datasets: list[Any]


@dataclass(frozen=True)
class Base:
    """The history at 1x (``--versions``, ``--jobs``, ``--datasets`` shrink it for smoke runs)."""

    versions: int = BASE_VERSIONS
    jobs: int = BASE_JOBS
    datasets: int = BASE_DATASETS


def make_history(scale: int, base: Base = Base()) -> History:
    from adapters.datasets import DatasetVersion
    from adapters.registry import ModelVersion
    from dashboard.model import JobRun, StepRun

    count = base.versions * scale
    versions = []
    for i in range(count):
        segment = SEGMENTS[i % len(SEGMENTS)]
        number = i // len(SEGMENTS) + 1
        trained = NOW - timedelta(hours=(count - i) * 2)
        mape = 0.2 + 0.1 * ((i * 7) % 10) / 10
        versions.append(
            ModelVersion(
                name="forecast-" + segment.replace("/", "-"),
                version=str(number),
                tags={
                    "segment": segment, "trained_at": trained.isoformat(),
                    "gate": "pass" if mape <= 0.45 else "fail",
                    "role": "champion" if i >= count - len(SEGMENTS) else "",
                    "ensemble_mape": str(mape), "baseline_mape": "0.6",
                    "ensemble_rmse_all": str(10 * mape), "baseline_rmse_all": "9.0",
                    "ensemble_rmse_zero": "1.5", "baseline_rmse_zero": "2.0",
                },
            )
        )  # fmt: skip
    jobs = []
    for i in range(base.jobs * scale):
        start = NOW - timedelta(minutes=(base.jobs * scale - i) * 10)
        failed = i % 10 == 0
        steps, t = [], start
        for name, seconds in (("prep", 20), ("train", 300), ("evaluate", 40), ("register", 10)):
            status = "Failed" if failed and name == "train" else "Completed"
            steps.append(StepRun(name, status, t, t + timedelta(seconds=seconds)))
            t += timedelta(seconds=seconds)
            if status == "Failed":
                break
        jobs.append(
            JobRun(
                name=f"train_{i:07d}", pipeline="train",
                status="Failed" if failed else "Completed", created_at=start, steps=tuple(steps),
                failed_step="train" if failed else "", error="out of memory" if failed else "",
            )
        )  # fmt: skip
    datasets = []
    for i in range(base.datasets * scale):
        source = SOURCES[i % len(SOURCES)]
        datasets.append(
            DatasetVersion(
                source=source, dataset_version=f"{source}-{i:07d}", status="conditioned",
                input_name=f"{source}/{i}.csv", input_etag="e", input_sha256="s", manifest="",
                rows_in=1000, rows_out=990, rows_rejected=10,
                registered_at=(NOW - timedelta(hours=base.datasets * scale - i)).isoformat(),
            )
        )  # fmt: skip
    return History(versions, jobs, datasets)


@contextmanager
def data_lake(in_memory: bool) -> Iterator[Any]:
    from adapters.datalake import AzureBlobDataLake, InMemoryDataLake

    if in_memory:
        yield InMemoryDataLake()
        return
    from adapters.settings import Connection
    from local.hosting.azurite import Azurite

    with Azurite() as azurite:
        yield AzureBlobDataLake.from_connection(
            Connection(name="bench", connection_string=azurite.connection_string)
        )


def summarise(store: Any, history: History) -> None:
    """Fold the whole history with the activities' fold functions; write each document once."""
    from dashboard.summary import (
        CONDITIONING,
        JOBS,
        MODELS,
        conditioning_entry,
        fold_conditioning,
        fold_job,
        fold_model,
        job_entry,
        model_point,
    )

    models: dict[str, Any] = {}
    for version in history.versions:
        models = fold_model(models, model_point(version))
    jobs: dict[str, Any] = {}
    for job in history.jobs:
        jobs = fold_job(jobs, job_entry(job, "r01-large-fast", 370.0))
    datasets: dict[str, Any] = {}
    for dataset in history.datasets:
        datasets = fold_conditioning(datasets, conditioning_entry(dataset, {"bad_date": 10}))
    for name, document in ((MODELS, models), (JOBS, jobs), (CONDITIONING, datasets)):
        store.update(name, lambda _, d=document: d)


def median_ms(action: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def request_page(page: str) -> Callable[[], None]:
    import azure.functions as func

    from triggers.dashboard import on_dashboard_get

    handler = on_dashboard_get.build().get_user_function()
    request = func.HttpRequest(
        "GET", f"http://127.0.0.1/api/dashboard/{page}.html", params={"code": "k"},
        route_params={"page": f"{page}.html"}, body=b"",
    )  # fmt: skip

    def run() -> None:
        response = handler(request)
        assert response.status_code == 200, response.get_body()[:200]

    return run


class ListingRegistry:
    """A registry that holds every version in memory (the scan's best case)."""

    def __init__(self, versions: list[Any]) -> None:
        self.by_name: dict[str, list[Any]] = {}
        for v in versions:
            self.by_name.setdefault(v.name, []).append(v)

    def list_versions(self, name: str) -> list[Any]:
        return list(self.by_name.get(name, []))


def write_job_records(root: Path, jobs: list[Any]) -> None:
    folder = root / "jobs"
    for job in jobs:
        target = folder / job.name
        target.mkdir(parents=True, exist_ok=True)
        record = {
            "name": job.name, "pipeline_path": "pipelines/train.yml", "status": job.status,
            "created_at": job.created_at.isoformat(), "failed_step": job.failed_step,
            "error": job.error,
            "steps": {s.name: {"name": s.name, "status": s.status,
                               "started_at": s.started_at.isoformat(),
                               "ended_at": s.ended_at.isoformat()} for s in job.steps},
        }  # fmt: skip
        (target / "job.json").write_text(json.dumps(record), encoding="utf-8")


def scan_page(registry: ListingRegistry, jobs_root: Path, page: str) -> Callable[[], None]:
    from dashboard.collect import Sources, collect
    from dashboard.pages import render_page

    sources = Sources(
        registry=registry,  # type: ignore[arg-type]
        model_names=lambda: sorted(registry.by_name),
        jobs_root=jobs_root,
    )

    def run() -> None:
        render_page(collect(sources, now=NOW), page)

    return run


def record_one(store: Any, history: History) -> float:
    """Median ms of recording one more model version, job and dataset through the store."""
    from dataclasses import replace

    from dashboard.summary import model_point, record_dataset_version, record_job, record_model

    times = []
    for i in range(20):
        version = history.versions[-1 - i]
        job = replace(history.jobs[-1 - i], name=f"extra_{i}")
        dataset = replace(history.datasets[-1 - i], dataset_version=f"extra-{i}")
        start = time.perf_counter()
        record_model(store, model_point(version))
        record_job(store, job)
        record_dataset_version(store, dataset)
        times.append((time.perf_counter() - start) * 1000 / 3)
    return statistics.median(times)


def _print_table(
    lake_name: str, base: Base, scales: tuple[int, ...], summary: dict[int, dict[str, float]],
    scan: dict[int, dict[str, float]], scan_pages: tuple[str, ...], record: dict[int, float],
    sizes: dict[int, int],
) -> None:  # fmt: skip
    print(f"\nDashboard render time per page (median ms; summary read from {lake_name})")
    print(f"history at 1x: {base.versions} model versions, {base.jobs} job records, "
          f"{base.datasets} dataset versions, {len(SEGMENTS)} segments\n")  # fmt: skip
    head = f"{'path':<10} {'page':<11}" + "".join(f"{f'{s}x':>10}" for s in scales)
    head += "".join(f"{f'{s}x/1x':>9}" for s in scales[1:])
    print(head)
    print("-" * len(head))

    def ratios(row: list[float]) -> str:
        return "".join(f"{v / row[0]:>9.2f}" for v in row[1:])

    for label, table in (("summary", summary), ("full scan", scan)):
        if not table:
            continue
        for page in PAGES if table is summary else scan_pages:
            row = [table[s][page] for s in scales]
            print(f"{label:<10} {page:<11}" + "".join(f"{v:>10.1f}" for v in row) + ratios(row))
    rec = [record[s] for s in scales]
    print(f"{'record':<10} {'one event':<11}" + "".join(f"{v:>10.1f}" for v in rec) + ratios(rec))
    kb = [sizes[s] / 1024 for s in scales]
    print(f"{'summary':<10} {'KB stored':<11}" + "".join(f"{v:>10.0f}" for v in kb) + ratios(kb))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=15, help="requests per page and scale")
    parser.add_argument("--in-memory", action="store_true", help="in-memory lake, not Azurite")
    parser.add_argument("--scan-repeat", type=int, default=2, help="full scans per scale")
    parser.add_argument("--no-scan", action="store_true", help="skip the full-scan baseline")
    parser.add_argument("--scales", default=",".join(map(str, SCALES)), help="e.g. 1,4,16")
    parser.add_argument("--versions", type=int, default=BASE_VERSIONS, help="model versions at 1x")
    parser.add_argument("--jobs", type=int, default=BASE_JOBS, help="job records at 1x")
    parser.add_argument("--datasets", type=int, default=BASE_DATASETS, help="datasets at 1x")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    scales = tuple(int(x) for x in args.scales.split(","))
    if len(scales) < 2 or scales[0] != 1:
        parser.error("--scales must start with 1 and name at least one more scale")
    base = Base(args.versions, args.jobs, args.datasets)

    from adapters.settings import load_settings
    from adapters.summary import DataLakeSummaryStore
    from composition import Services, use_services

    settings = load_settings(
        {"AzureWebJobsStorage": "UseDevelopmentStorage=true",
         "MLOPS_DATALAKE": "UseDevelopmentStorage=true"}
    )  # fmt: skip
    summary: dict[int, dict[str, float]] = {}
    scan: dict[int, dict[str, float]] = {}
    scan_pages = ("index",)
    record: dict[int, float] = {}
    sizes: dict[int, int] = {}
    lake_name = "in-memory lake" if args.in_memory else "Azurite"
    with data_lake(args.in_memory) as lake, tempfile.TemporaryDirectory() as tmp:
        for scale in scales:
            history = make_history(scale, base)
            store = DataLakeSummaryStore(lake, f"ops{scale}")
            summarise(store, history)
            sizes[scale] = sum(
                len(json.dumps(store.read(n))) for n in ("models", "jobs", "conditioning")
            )
            use_services(Services(settings=settings, data_lake=lake, summary=store))
            try:
                for page in PAGES:
                    request_page(page)()  # warm up: imports, first connection
                summary[scale] = {p: median_ms(request_page(p), args.repeat) for p in PAGES}
                record[scale] = record_one(store, history)
            finally:
                use_services(None)
            if not args.no_scan:
                root = Path(tmp) / f"aml{scale}"
                write_job_records(root, history.jobs)
                registry = ListingRegistry(history.versions)
                scan[scale] = {
                    p: median_ms(scan_page(registry, root, p), args.scan_repeat) for p in scan_pages
                }
            print(f"scale {scale}x done", file=sys.stderr, flush=True)

    _print_table(lake_name, base, scales, summary, scan, scan_pages, record, sizes)
    worst = max(v for table in summary.values() for v in table.values())
    print(f"\ngoal: every summary page <= 1000 ms: worst {worst:.1f} ms "
          f"-> {'met' if worst <= 1000 else 'NOT met'}")  # fmt: skip
    if args.json:
        result = {"base": base.__dict__, "scales": scales, "summary_ms": summary,
                  "scan_ms": scan, "record_ms": record, "summary_bytes": sizes}  # fmt: skip
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
