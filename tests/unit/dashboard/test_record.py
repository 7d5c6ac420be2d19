"""Recording from the app's services into the summary, and the health figures read back."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from adapters.datalake import InMemoryDataLake
from adapters.datasets import DatasetVersion, blob_dataset_ports
from adapters.errors import NotFoundError, TransientError
from adapters.job_steps import JobStep
from adapters.registry import ModelVersion
from adapters.settings import load_settings
from adapters.summary import InMemorySummaryStore
from composition import Services
from dashboard.record import (
    record_conditioned,
    record_finished_job,
    record_gated_model,
    record_tested_model,
    report_health,
)
from dashboard.summary import ScoredSegment, load_dashboard, record_scoring
from tests.unit.dashboard.sample import NOW


class _Steps:
    def __init__(self, fail: Exception | None = None) -> None:
        self.fail = fail

    def steps(self, job_name: str) -> list[JobStep]:
        if self.fail:
            raise self.fail
        return [
            JobStep("prep", "Completed", NOW - timedelta(minutes=5), NOW - timedelta(minutes=4)),
            JobStep("train", "Failed", NOW - timedelta(minutes=4), NOW, "exit code 1"),
        ]


def _services(tmp_path: Path, steps: Any = None) -> Services:
    settings = load_settings(
        {"AzureWebJobsStorage": "UseDevelopmentStorage=true",
         "MLOPS_DATALAKE": "UseDevelopmentStorage=true", "MLOPS_LOCAL_DIR": str(tmp_path)}
    )  # fmt: skip
    lake = InMemoryDataLake()
    datasets, signals = blob_dataset_ports(lake, settings.conditioned_container)
    return Services(
        settings=settings, data_lake=lake, datasets=datasets, signals=signals,
        summary=InMemorySummaryStore(), job_steps=steps or _Steps(),
    )  # fmt: skip


def _request(**extra: Any) -> dict[str, Any]:
    return {"pipeline": "train", "segment": "r01-large-fast", "status": "Failed",
            "duration_seconds": 300.0, "job_name": "train_1",
            "started_at": (NOW - timedelta(minutes=5)).isoformat(), "error": "boom",
            "failed_step": "train", **extra}  # fmt: skip


def test_a_finished_job_is_recorded_with_its_steps(tmp_path: Path) -> None:
    services = _services(tmp_path)
    record_finished_job(services, _request())
    record_finished_job(services, _request())  # the activity retried
    assert services.summary is not None
    data = load_dashboard(services.summary, now=NOW)
    assert [j.name for j in data.jobs] == ["train_1"]
    assert [s.name for s in data.jobs[0].steps] == ["prep", "train"]
    assert data.failed_jobs()[0].failed_step == "train"


@pytest.mark.parametrize("error", [NotFoundError("no job"), TransientError("503")])
def test_a_job_whose_steps_cannot_be_read_is_recorded_without_them(
    tmp_path: Path, error: Exception
) -> None:
    services = _services(tmp_path, _Steps(error))
    record_finished_job(services, _request(status="Completed"))
    assert services.summary is not None
    jobs = load_dashboard(services.summary, now=NOW).jobs
    assert jobs[0].steps == () and jobs[0].status == "Completed"


def test_gate_then_test_verdicts_land_on_the_same_version(tmp_path: Path) -> None:
    services = _services(tmp_path)
    version = ModelVersion(
        "forecast-r01-large-fast", "2",
        tags={"segment": "r01/large/fast", "gate": "champion", "role": "champion",
              "trained_at": (NOW - timedelta(days=70)).isoformat(), "ensemble_mape": "0.3"},
    )  # fmt: skip
    record_tested_model(services, version, passed=False)  # the test may finish first
    record_gated_model(services, version)
    assert services.summary is not None
    (model,) = load_dashboard(services.summary, now=NOW).models
    assert (model.role, model.gate, model.test) == ("champion", "champion", "fail")
    health = report_health(services, NOW, stale_after_days=60)
    assert health["champion_age_days"] == {"r01/large/fast": 70.0}
    assert health["hours_since_conditioning"] is None


def test_conditioned_shipments_count_and_become_actuals_of_the_latest_forecasts(
    tmp_path: Path,
) -> None:
    services = _services(tmp_path)
    assert services.datasets is not None and services.summary is not None
    container = services.settings.conditioned_container
    lake = services.data_lake
    lake.ensure_container(container)
    week = "2024-06-03"
    record_scoring(
        services.summary, week,
        [ScoredSegment("r01-large-fast", ({"store_id": "1", "product_id": "A", "week_start": week,
                                            "forecast": "10"},))],
        {},
    )  # fmt: skip
    rows = f"week_start,store_id,product_id,quantity\n{week},1,A,8\n{week},2,B,50\n"
    lake.write(container, "shipments/v9/part-00000.csv", rows.encode())
    services.datasets.register(
        DatasetVersion(
            source="shipments", dataset_version="v9", status="conditioned", input_name="s.csv",
            input_etag="e", input_sha256="x", manifest="", rows_in=3, rows_out=2, rows_rejected=1,
            files=(f"{container}/shipments/v9/part-00000.csv",),
            registered_at=(NOW - timedelta(hours=3)).isoformat(),
        )
    )  # fmt: skip
    record_conditioned(services, "shipments", "v9", {"bad_date": 1})
    data = load_dashboard(services.summary, now=NOW)
    assert data.conditioning[0].reject_counts == {"bad_date": 1}
    (series,) = data.forecasts
    assert series.actual == {next(iter(series.forecast)): 8.0}  # store 2 is not scored here
    assert report_health(services, NOW, 60)["hours_since_conditioning"] == pytest.approx(3.0)
    with pytest.raises(NotFoundError):
        record_conditioned(services, "shipments", "never-registered", {})


class _CountingLake(InMemoryDataLake):
    """Counts the blobs opened for reading."""

    def __init__(self) -> None:
        super().__init__()
        self.opened: list[str] = []

    def open(self, container: str, name: str) -> Any:
        self.opened.append(name)
        return super().open(container, name)


def test_conditioned_shipments_are_not_read_before_anything_was_scored(tmp_path: Path) -> None:
    services = _services(tmp_path)
    lake = _CountingLake()
    services.data_lake = lake
    assert services.datasets is not None
    container = services.settings.conditioned_container
    lake.ensure_container(container)
    lake.write(container, "shipments/v1/part-00000.csv", b"week_start,store_id,product_id,"
               b"quantity\n2024-06-03,1,A,8\n")  # fmt: skip
    services.datasets.register(
        DatasetVersion(
            source="shipments", dataset_version="v1", status="conditioned", input_name="s.csv",
            input_etag="e", input_sha256="x", manifest="", rows_in=1, rows_out=1,
            files=(f"{container}/shipments/v1/part-00000.csv",),
            registered_at=NOW.isoformat(),
        )
    )  # fmt: skip
    record_conditioned(services, "shipments", "v1", {})
    assert lake.opened == []  # a huge first drop is recorded without reading its rows


def test_actuals_are_kept_only_for_scored_pairs_from_their_first_forecast_week() -> None:
    from datetime import date

    from dashboard.summary import read_actual_rows

    lake = InMemoryDataLake()
    lake.ensure_container("c")
    rows = (
        "week_start,store_id,product_id,quantity,quantity_unit\n"
        '2024-05-27,"1","A",7,"units"\n2024-06-03,"1","A",8,"units"\n'
        '2024-06-03,"1","B",9,"units"\n2024-06-10,"2","A",,"units"\n'
        '2024-06-10,"2","A",3.5,"units"\n'
    )
    lake.write("c", "shipments/v1/part-00000.csv", rows.encode())
    wanted = {("1", "A"): date(2024, 6, 3), ("2", "A"): date(2024, 6, 3)}
    got = read_actual_rows(lake, ["c/shipments/v1/part-00000.csv", "c/x/manifest.json"], "c",
                           wanted)  # fmt: skip
    assert got == {("1", "A", date(2024, 6, 3)): 8.0, ("2", "A", date(2024, 6, 10)): 3.5}


def test_a_part_without_the_actual_columns_gives_no_actuals() -> None:
    from datetime import date

    from dashboard.summary import read_actual_rows

    lake = InMemoryDataLake()
    lake.ensure_container("c")
    lake.write("c", "shipments/v1/part-00000.csv", b"store_id,value\n1,2\n")
    wanted = {("1", "A"): date(2024, 6, 3)}
    assert read_actual_rows(lake, ["c/shipments/v1/part-00000.csv"], "c", wanted) == {}
