"""Conditioning against a real Azurite: drop -> outputs + manifest; redelivery -> no-op."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from pathlib import Path

import pytest

from adapters.datalake import AzureBlobDataLake
from adapters.datasets import blob_dataset_ports
from adapters.settings import Connection
from conditioning.service import BlobDrop, ConditioningOutcome, condition_blob
from conditioning.synthetic import SyntheticSpec, write_shipments
from local.azurite import Azurite

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
