"""Conditioning against a real Azurite: drop -> outputs + manifest (+ a local data asset);
redelivery -> no-op.

The blob is read the way the function app reads it: through the ``BlobClient`` the Functions
blob extension builds from model binding data (the SDK-type binding).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

from adapters.datalake import AzureBlobDataLake, BoundBlob
from adapters.datasets import blob_dataset_ports
from adapters.locator import LocalDatasetLocator
from adapters.settings import Connection
from conditioning.service import ConditioningOutcome, condition_blob
from conditioning.synthetic import SyntheticSpec, write_shipments
from local.aml import assets
from local.aml.data_assets import LocalDataAssets
from local.hosting.azurite import Azurite

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

    blobs = BlobServiceClient.from_connection_string(azurite.connection_string)

    def deliver() -> ConditioningOutcome:
        return condition_blob(
            BoundBlob(blobs.get_blob_client(raw_c, name)),
            lake,
            conditioned_container=cond_c,
            quarantine_container=quar_c,
            registry=registry,
            signals=signals,
            as_of=dt.date(2025, 6, 30),
        )

    outcome = deliver()
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
    again = deliver()
    assert (again.status, again.dataset_version) == ("unchanged", v)
    assert {i.name: i.last_modified for i in lake.list(cond_c)} == stamps

    # The same bytes uploaded again get a new etag: still no new version.
    reuploaded = lake.write(raw_c, name, local.read_bytes())
    assert reuploaded.etag != info.etag
    third = deliver()
    assert (third.status, third.dataset_version) == ("unchanged", v)
    assert len(signals.signals("shipments")) == 1


@pytest.fixture
def lake_containers(azurite: Azurite) -> tuple[AzureBlobDataLake, str, str, str]:
    lake = AzureBlobDataLake.from_connection(
        Connection(name="lake", connection_string=azurite.connection_string)
    )
    suffix = uuid.uuid4().hex[:8]
    names = f"raw{suffix}", f"conditioned{suffix}", f"quarantine{suffix}"
    lake.ensure_container(names[0])
    return lake, *names


def _condition(
    lake: AzureBlobDataLake, blob: BoundBlob, cond_c: str, quar_c: str
) -> ConditioningOutcome:
    registry, signals = blob_dataset_ports(lake, cond_c)
    return condition_blob(
        blob,
        lake,
        conditioned_container=cond_c,
        quarantine_container=quar_c,
        registry=registry,
        signals=signals,
        as_of=dt.date(2025, 6, 30),
    )


SMALL = (
    b"week_start,store_id,product_id,quantity,quantity_unit,returned_quantity,is_holiday_week\n"
    b"2024-01-08,S0001,P000001,5,units,0,false\n"
)


def test_a_blob_overwritten_while_it_is_read_is_ignored_not_mixed(
    azurite: Azurite, lake_containers: tuple[AzureBlobDataLake, str, str, str]
) -> None:
    lake, raw_c, cond_c, quar_c = lake_containers
    blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
    client = blobs.get_blob_client(raw_c, "shipments/2024-01-08/drop.csv")
    client.upload_blob(SMALL)
    blob = BoundBlob(client)
    first = blob.etag()  # the version this invocation is about
    client.upload_blob(SMALL.replace(b",5,", b",6,"), overwrite=True)
    outcome = _condition(lake, blob, cond_c, quar_c)
    assert (outcome.status, outcome.reason) == (
        "ignored",
        "the blob changed while it was being read",
    )
    assert first != BoundBlob(client).etag()
    assert list(lake.list(cond_c)) == []


def test_a_blob_deleted_before_it_is_read_is_ignored(
    azurite: Azurite, lake_containers: tuple[AzureBlobDataLake, str, str, str]
) -> None:
    lake, raw_c, cond_c, quar_c = lake_containers
    blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
    client = blobs.get_blob_client(raw_c, "shipments/2024-01-08/gone.csv")
    client.upload_blob(SMALL)
    client.delete_blob()
    outcome = _condition(lake, BoundBlob(client), cond_c, quar_c)
    assert (outcome.status, outcome.reason) == ("ignored", "the blob no longer exists")


def test_the_blob_trigger_conditions_through_the_client_the_extension_builds(
    azurite: Azurite,
    lake_containers: tuple[AzureBlobDataLake, str, str, str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import asyncio
    import logging

    import azurefunctions.extensions.bindings.blob as blob_sdk

    from adapters.settings import load_settings
    from composition import Services, use_services
    from local.hosting.invoke import blob_binding_datum
    from triggers.conditioning import on_raw_blob_created as registered

    lake, raw_c, cond_c, quar_c = lake_containers
    env = {
        "AzureWebJobsStorage": azurite.connection_string,
        "MLOPS_DATALAKE": azurite.connection_string,
        "MLOPS_RAW_CONTAINER": raw_c,
        "MLOPS_CONDITIONED_CONTAINER": cond_c,
        "MLOPS_QUARANTINE_CONTAINER": quar_c,
    }
    # The extension reads the connection from the worker's environment.
    monkeypatch.setenv("MLOPS_DATALAKE", azurite.connection_string)
    use_services(Services(settings=load_settings(env), data_lake=lake))
    try:
        name = "shipments/2024-01-08/drop.csv"
        lake.write(raw_c, name, SMALL)
        blob = blob_sdk.BlobClientConverter.decode(
            blob_binding_datum("MLOPS_DATALAKE", raw_c, name),
            trigger_metadata={},
            pytype=blob_sdk.BlobClient,
        )
        # The user function behind the decorators; the durable client is not used while
        # training on arrival is off (the default).
        user_function = registered._function._func.client_function

        def lines() -> list[dict[str, object]]:
            return [
                json.loads(r.getMessage().split(" ", 1)[1])
                for r in caplog.records
                if r.name == "mlops.conditioning"
            ]

        with caplog.at_level(logging.INFO, logger="mlops.conditioning"):
            asyncio.run(user_function(blob, client=None))
            asyncio.run(user_function(blob, client=None))
        first, second = lines()
        assert (first["status"], first["source"], first["rows_out"]) == (
            "conditioned",
            "shipments",
            1,
        )
        assert first["blob"] == f"{raw_c}/{name}"
        assert (second["status"], second["dataset_version"]) == (
            "unchanged",
            first["dataset_version"],
        )
        manifest = json.loads(
            lake.read(cond_c, f"shipments/{first['dataset_version']}/manifest.json")
        )
        assert manifest["input"]["etag"] == lake.info(raw_c, name).etag
    finally:
        use_services(None)


def test_the_bound_blob_reads_in_ranges_pinned_to_one_version(
    azurite: Azurite, lake_containers: tuple[AzureBlobDataLake, str, str, str]
) -> None:
    from adapters.errors import ConflictError

    _, raw_c, _, _ = lake_containers
    blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
    client = blobs.get_blob_client(raw_c, "shipments/2024-01-08/ranges.csv")
    content = bytes(range(256)) * 40  # 10 240 bytes: eleven ranges of 1 000
    client.upload_blob(content)
    assert BoundBlob(client, chunk_bytes=1000).open().read() == content

    blob = BoundBlob(client, chunk_bytes=1000)
    stream = blob.open()
    assert stream.read(10) == content[:10]  # the first range is in
    client.upload_blob(content[::-1], overwrite=True)
    with pytest.raises(ConflictError, match="changed while it was being read"):
        stream.read()


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
    blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
    aml_root = tmp_path / "aml"
    locator = LocalDatasetLocator(lake, cond_c, tmp_path / "datasets")
    data_assets = LocalDataAssets(locator, aml_root)

    def deliver(blob: str) -> ConditioningOutcome:
        return condition_blob(
            BoundBlob(blobs.get_blob_client(raw_c, blob)),
            lake,
            conditioned_container=cond_c,
            quarantine_container=quar_c,
            registry=registry,
            signals=signals,
            as_of=dt.date(2025, 6, 30),
            assets=data_assets,
        )

    outcome = deliver(name)
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

    assert deliver(name).status == "unchanged"
    assert [p.name for p in (aml_root / "assets" / "data" / "shipments").iterdir()] == [f"{v}.json"]

    # Unusable input is quarantined and never becomes a data asset.
    bad = "shipments/2024-01-29/garbage.csv"
    lake.write(raw_c, bad, b"\x00\x01 not a table")
    assert deliver(bad).status == "quarantined"
    assert len(list((aml_root / "assets" / "data" / "shipments").iterdir())) == 1
