"""Which pipeline input a source's conditioned data becomes: its data asset for one version,
the locator's folder for several — on the in-memory data lake and the real local asset index."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

from adapters.datalake import InMemoryDataLake, LakeBlob
from adapters.datasets import blob_dataset_ports
from adapters.locator import LocalDatasetLocator
from adapters.settings import load_settings
from composition import Services
from conditioning.service import condition_blob
from local.aml import assets
from local.aml.data_assets import LocalDataAssets
from orchestrators.activities import _data_inputs

HEADER = "week_start,store_id,product_id,quantity,quantity_unit,returned_quantity,is_holiday_week\n"


def services_with(tmp_path: Path, *, with_assets: bool) -> Services:
    settings = load_settings(
        {
            "AzureWebJobsStorage": "UseDevelopmentStorage=true",
            "MLOPS_DATALAKE": "UseDevelopmentStorage=true",
            "MLOPS_TRAINING_SOURCES": "shipments",
        }
    )
    lake = InMemoryDataLake()
    datasets, signals = blob_dataset_ports(lake, "conditioned")
    locator = LocalDatasetLocator(lake, "conditioned", tmp_path / "datasets")
    data_assets = LocalDataAssets(locator, tmp_path / "aml") if with_assets else None
    return Services(
        settings=settings,
        data_lake=lake,
        datasets=datasets,
        signals=signals,
        locator=locator,
        data_assets=data_assets,
    )


def drop(services: Services, week: str) -> str:
    lake = services.data_lake
    lake.ensure_container("raw")
    name = f"shipments/{week}/drop.csv"
    lake.write("raw", name, (HEADER + f"{week},S0001,P000001,5,units,0,false\n").encode())
    assert services.datasets is not None and services.signals is not None
    outcome = condition_blob(
        LakeBlob(lake, "raw", name),
        lake,
        conditioned_container="conditioned",
        quarantine_container="quarantine",
        registry=services.datasets,
        signals=services.signals,
        as_of=dt.date(2025, 6, 30),
    )
    assert outcome.status == "conditioned" and outcome.dataset_version
    return outcome.dataset_version


def test_one_version_is_named_by_its_data_asset(tmp_path: Path) -> None:
    services = services_with(tmp_path, with_assets=True)
    # Conditioned without registering an asset (as before data assets existed).
    version = drop(services, "2024-01-08")
    inputs, missing, used = _data_inputs(services)
    assert missing == []
    assert inputs["shipments"] == f"azureml:shipments:{version}"
    asset = assets.resolve(tmp_path / "aml", "shipments", version)
    manifest = services.data_lake.read("conditioned", f"shipments/{version}/manifest.json")
    assert asset.tags["manifest_sha256"] == hashlib.sha256(manifest).hexdigest()
    assert [p.name for p in Path(asset.path).rglob("*.csv")] == ["part-00000.csv"]
    assert used["shipments"]["versions"] == [version]
    assert _data_inputs(services)[0] == inputs  # asked again: the same reference


def test_several_versions_are_the_locators_folder(tmp_path: Path) -> None:
    services = services_with(tmp_path, with_assets=True)
    first, second = drop(services, "2024-01-08"), drop(services, "2024-01-15")
    inputs, _, _ = _data_inputs(services)
    folder = Path(inputs["shipments"])
    assert sorted(p.parent.name for p in folder.rglob("*.csv")) == sorted([first, second])


def test_without_data_assets_the_input_is_a_folder(tmp_path: Path) -> None:
    services = services_with(tmp_path, with_assets=False)
    drop(services, "2024-01-08")
    assert Path(_data_inputs(services)[0]["shipments"]).is_dir()


def test_scoring_takes_the_newest_request_that_still_has_weeks_to_forecast(
    tmp_path: Path,
) -> None:
    from orchestrators.activities import _horizon_for

    services = services_with(tmp_path, with_assets=False)
    lake = services.data_lake
    assert services.datasets is not None and services.signals is not None
    lake.ensure_container("raw")
    versions = {}
    for batch, weeks in (("b1", ("2024-03-04", "2024-03-11")), ("b2", ("2024-01-01",))):
        name = f"horizon/{batch}/request.csv"
        rows = "".join(f"{w},S0001,P000001\n" for w in weeks)
        lake.write("raw", name, ("week_start,store_id,product_id\n" + rows).encode())
        outcome = condition_blob(
            LakeBlob(lake, "raw", name), lake, conditioned_container="conditioned",
            quarantine_container="quarantine", registry=services.datasets,
            signals=services.signals, as_of=dt.date(2024, 1, 1),
        )  # fmt: skip
        assert outcome.status == "conditioned" and outcome.dataset_version
        versions[batch] = outcome.dataset_version
    found = _horizon_for(services, "2024-03-04")
    assert found is not None and found.dataset_version == versions["b1"]
    newest = _horizon_for(services, "2023-12-25")  # both still ahead: the newest request
    assert newest is not None and newest.dataset_version == versions["b2"]
    assert _horizon_for(services, "2024-03-18") is None  # every request is behind us
