"""Conditioning against a real Azurite: drop -> outputs + manifest (+ a local data asset);
redelivery -> no-op."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from pathlib import Path

import pytest

from adapters.datalake import AzureBlobDataLake
from adapters.datasets import blob_dataset_ports
from adapters.locator import LocalDatasetLocator
from adapters.settings import Connection
from conditioning.service import BlobDrop, ConditioningOutcome, condition_blob
from conditioning.synthetic import SyntheticSpec, write_shipments
from local.aml import assets
from local.azurite import Azurite
from local.data_assets import LocalDataAssets

pytestmark = pytest.mark.integration


def test_drop_conditions_into_azurite_and_redelivery_is_a_no_op(
    azurite: Azurite, tmp_path: Path
) -> None:
    lake = AzureBlobDataLake.from_connection(
        Connection(name="lake", connection_string=azurite.connection_string)
    )
    suffix = uuid.uuid4().hex[:8]
    raw_c, cond_c, quar_c = f"raw{suffix}", f"conditioned{suffix}", f"quarantine{suffix}"
    lake.ensure_container(raw_c)
    spec = SyntheticSpec(regions=2, stores_per_region=3, products=20, weeks=3, defect_rate=0.05)
    local = tmp_path / "drop.csv.gz"
    drop = write_shipments(local, spec, "standard")
    name = "shipments/2024-01-22/drop.csv.gz"
    info = lake.write(raw_c, name, local.read_bytes())
    registry, signals = blob_dataset_ports(lake, cond_c)

    def deliver(etag: str) -> ConditioningOutcome:
        return condition_blob(
            lake,
            BlobDrop(raw_c, name, etag),
            conditioned_container=cond_c,
            quarantine_container=quar_c,
            registry=registry,
            signals=signals,
            as_of=dt.date(2025, 6, 30),
        )

    outcome = deliver(info.etag)
    assert outcome.status == "conditioned"
    v = outcome.dataset_version
    manifest = json.loads(lake.read(cond_c, f"shipments/{v}/manifest.json"))
    assert manifest["rows_in"] == drop.rows["shipments"]
    assert manifest["rows_in"] == manifest["rows_out"] + manifest["rows_rejected"]
    assert manifest["rows_rejected"] == sum(drop.defects.values()) > 0
    assert manifest["input"]["etag"] == info.etag
    assert manifest["input"]["compression"] == "gzip"
    part = lake.read(cond_c, f"shipments/{v}/part-00000.csv")
    assert len(part.decode().splitlines()) == manifest["rows_out"] + 1
    assert hashlib.sha256(part).hexdigest() == manifest["outputs"][0]["sha256"]
    rejects = lake.read(quar_c, f"shipments/{v}/rejects.csv").decode().splitlines()
    assert len(rejects) == manifest["rows_rejected"] + 1
    (signal,) = signals.signals("shipments")
    assert signal.dataset_version == v

    stamps = {i.name: i.last_modified for i in lake.list(cond_c)}
    again = deliver(info.etag)
    assert (again.status, again.dataset_version) == ("unchanged", v)
    assert {i.name: i.last_modified for i in lake.list(cond_c)} == stamps

    # The same bytes uploaded again get a new etag: still no new version.
    reuploaded = lake.write(raw_c, name, local.read_bytes())
    assert reuploaded.etag != info.etag
    third = deliver(reuploaded.etag)
    assert (third.status, third.dataset_version) == ("unchanged", v)
    assert len(signals.signals("shipments")) == 1


def test_conditioned_data_becomes_a_local_data_asset_once(azurite: Azurite, tmp_path: Path) -> None:
    lake = AzureBlobDataLake.from_connection(
        Connection(name="lake", connection_string=azurite.connection_string)
    )
    suffix = uuid.uuid4().hex[:8]
    raw_c, cond_c, quar_c = f"raw{suffix}", f"conditioned{suffix}", f"quarantine{suffix}"
    lake.ensure_container(raw_c)
    spec = SyntheticSpec(regions=1, stores_per_region=2, products=10, weeks=2, defect_rate=0.05)
    drop = tmp_path / "drop.csv.gz"
    write_shipments(drop, spec, "standard")
    name = "shipments/2024-01-22/drop.csv.gz"
    info = lake.write(raw_c, name, drop.read_bytes())
    registry, signals = blob_dataset_ports(lake, cond_c)
    aml_root = tmp_path / "aml"
    locator = LocalDatasetLocator(lake, cond_c, tmp_path / "datasets")
    data_assets = LocalDataAssets(locator, aml_root)

    def deliver(blob: str, etag: str) -> ConditioningOutcome:
        return condition_blob(
            lake,
            BlobDrop(raw_c, blob, etag),
            conditioned_container=cond_c,
            quarantine_container=quar_c,
            registry=registry,
            signals=signals,
            as_of=dt.date(2025, 6, 30),
            assets=data_assets,
        )

    outcome = deliver(name, info.etag)
    v = outcome.dataset_version
    assert outcome.status == "conditioned" and v
    asset = assets.resolve(aml_root, "shipments", v)
    manifest = lake.read(cond_c, f"shipments/{v}/manifest.json")
    assert asset.tags["manifest_sha256"] == hashlib.sha256(manifest).hexdigest()
    assert asset.tags["input_blob"] == name and asset.tags["input_etag"] == info.etag
    rows = json.loads(manifest)
    assert asset.tags["rows_in"] == str(rows["rows_in"])
    assert asset.tags["rows_out"] == str(rows["rows_out"])
    assert asset.tags["rows_rejected"] == str(rows["rows_rejected"])
    # The asset's folder holds exactly this version's data, as the data lake has it.
    parts = sorted(Path(asset.path).rglob("*.csv"))
    assert [p.name for p in parts] == ["part-00000.csv"]
    assert parts[0].read_bytes() == lake.read(cond_c, f"shipments/{v}/part-00000.csv")
    assert data_assets.get("shipments").reference == f"azureml:shipments:{v}"

    assert deliver(name, info.etag).status == "unchanged"
    assert [p.name for p in (aml_root / "assets" / "data" / "shipments").iterdir()] == [f"{v}.json"]

    # Unusable input is quarantined and never becomes a data asset.
    bad = "shipments/2024-01-29/garbage.csv"
    bad_info = lake.write(raw_c, bad, b"\x00\x01 not a table")
    assert deliver(bad, bad_info.etag).status == "quarantined"
    assert len(list((aml_root / "assets" / "data" / "shipments").iterdir())) == 1
