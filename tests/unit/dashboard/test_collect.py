"""Reading the dashboard's data from the data lake, job records and a registry (fakes only)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, date, datetime
from pathlib import Path

from adapters.datalake import InMemoryDataLake
from adapters.datasets import BlobDatasetRegistry, DatasetVersion
from adapters.errors import TransientError
from adapters.registry import ModelVersion
from dashboard.collect import Sources, collect, read_forecasts, read_jobs

NOW = datetime(2024, 6, 1, tzinfo=UTC)


def _conditioned(
    lake: InMemoryDataLake, source: str, version: str, rows: list[str], rejects: Mapping[str, int]
) -> None:
    part = f"{source}/{version}/part-00000.csv"
    lake.write("conditioned", part, ("\n".join(rows) + "\n").encode())
    manifest = f"{source}/{version}/manifest.json"
    lake.write("conditioned", manifest, json.dumps({"reject_counts": dict(rejects)}).encode())
    BlobDatasetRegistry(lake, "conditioned").register(
        DatasetVersion(
            source=source,
            dataset_version=version,
            status="conditioned",
            input_name=f"raw/{source}/{version}.csv",
            input_etag="e",
            input_sha256="s",
            manifest=f"conditioned/{manifest}",
            files=(f"conditioned/{part}", f"quarantine/{source}/{version}/rejects.csv"),
            rows_in=len(rows) - 1 + sum(rejects.values()),
            rows_out=len(rows) - 1,
            rows_rejected=sum(rejects.values()),
            registered_at=f"2024-05-0{version[-1]}T00:00:00+00:00",
        )
    )


def _lake() -> InMemoryDataLake:
    lake = InMemoryDataLake()
    for c in ("conditioned", "forecasts"):
        lake.ensure_container(c)
    header = "week_start,store_id,product_id,quantity,quantity_unit"
    _conditioned(
        lake, "shipments", "v1",
        [header, "2024-05-06,1,A,10,units", "2024-05-13,1,A,12,units", "2024-05-13,2,B,7,units",
         "2024-05-13,9,Z,999,units"],
        {"bad_date": 2},
    )  # fmt: skip
    # a later delivery corrects store 1's week of 05-13: it must replace, not add
    _conditioned(lake, "shipments", "v2", [header, "2024-05-13,1,A,20,units"], {"negative": 1})
    forecast = "store_id,product_id,week_start,segment,forecast,model_name,model_version,stale\n"
    lake.write(
        "forecasts",
        "2024-05-13/north-large-fast.csv",
        (forecast + "1,A,2024-05-13,north/large/fast,25,forecast-north-large-fast,3,False\n"
         "2,B,2024-05-13,north/large/fast,5,forecast-north-large-fast,3,False\n"
         "1,A,2024-05-20,north/large/fast,30,forecast-north-large-fast,3,False\n").encode(),
    )  # fmt: skip
    lake.write(
        "forecasts",
        "2024-05-06/north-large-fast.csv",
        (forecast + "1,A,2024-05-06,x,1,m,1,True\n").encode(),
    )
    return lake


def test_forecasts_of_the_latest_scoring_date_with_deduplicated_actuals() -> None:
    (series,) = read_forecasts(_lake(), "forecasts", "conditioned")
    assert series.scoring_date == "2024-05-13"
    assert series.model_version == "3" and series.stale is False and series.rows == 3
    assert series.forecast == {date(2024, 5, 13): 30.0, date(2024, 5, 20): 30.0}
    # store 1 + store 2 only (store 9 is not in this segment); v2 replaced 12 by 20
    assert series.actual == {date(2024, 5, 6): 10.0, date(2024, 5, 13): 27.0}


class _Registry:
    def __init__(self, versions: dict[str, list[ModelVersion]]) -> None:
        self.versions = versions

    def list_versions(self, name: str) -> list[ModelVersion]:
        return self.versions.get(name, [])

    def get(self, name: str, version: str) -> ModelVersion:
        raise NotImplementedError

    def set_tags(self, name: str, version: str, tags: Mapping[str, str]) -> None:
        raise NotImplementedError

    def set_alias(self, name: str, alias: str, version: str) -> None:
        raise NotImplementedError

    def get_by_alias(self, name: str, alias: str) -> ModelVersion | None:
        raise NotImplementedError


def test_collect_reads_every_source_and_reports_what_failed(tmp_path: Path) -> None:
    job = tmp_path / "jobs" / "train_1" / "job.json"
    job.parent.mkdir(parents=True)
    job.write_text(json.dumps({
        "name": "train_1", "pipeline_path": "pipelines/train.yml", "status": "Failed",
        "created_at": "2024-05-31T10:00:00Z", "failed_step": "train", "error": "exit 1",
        "steps": {
            "train": {"name": "train", "status": "Failed", "started_at": "2024-05-31T10:00:05Z",
                      "ended_at": "2024-05-31T10:01:05Z"},
            "prep": {"name": "prep", "status": "Completed", "started_at": "2024-05-31T10:00:00Z",
                     "ended_at": "2024-05-31T10:00:05Z"},
        },
    }))  # fmt: skip
    (tmp_path / "jobs" / "broken").mkdir()
    (tmp_path / "jobs" / "broken" / "job.json").write_text("{not json")
    tags = {"segment": "north/large/fast", "trained_at": "2024-05-01T00:00:00Z", "gate": "pass",
            "ensemble_mape": "0.2", "ensemble_rmse_zero": "nan", "role": "champion"}  # fmt: skip
    registry = _Registry(
        {"forecast-north-large-fast": [ModelVersion("forecast-north-large-fast", "1", tags)]}
    )
    sources = Sources(
        lake=_lake(),
        registry=registry,
        model_names=lambda: ["forecast-north-large-fast"],
        jobs_root=tmp_path,
    )
    data = collect(sources, now=NOW)
    assert data.problems == ()
    (model,) = data.models
    assert model.role == "champion" and model.metric("ensemble", "mape") == 0.2
    assert model.metric("ensemble", "rmse_zero") is None
    assert data.age_days(model) == 31.0
    (run,) = data.jobs
    assert [s.name for s in run.steps] == ["prep", "train"]
    assert run.failed and run.steps[1].duration_seconds == 60.0
    assert [(c.dataset_version, dict(c.reject_counts)) for c in data.conditioning] == [
        ("v1", {"bad_date": 2}),
        ("v2", {"negative": 1}),
    ]
    assert len(data.forecasts) == 1

    def failing() -> list[str]:
        raise TransientError("registry unreachable")

    data = collect(Sources(lake=None, registry=registry, model_names=failing), now=NOW)
    assert data.models == ()
    assert "model registry: transient: registry unreachable" in data.problems
    assert any(p.startswith("data lake: not configured") for p in data.problems)


def test_no_job_records_directory_means_no_jobs(tmp_path: Path) -> None:
    assert read_jobs(tmp_path / "missing") == ()
