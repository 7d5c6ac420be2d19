"""The weekly retrain with the prod parameter file's ``regions``: "" means every region with data.

``infra/main.prod.parameters.json`` sets ``regions`` to "", which ``main.bicep`` passes on as
``MLOPS_REGIONS`` and documents (like the operator guide) as "every region with data". The
timer runs here against Azurite holding a conditioned store master, as the conditioning service
registers it; the Durable client is a recording stand-in (the start is what is checked; the
engine's own behaviour is covered in test_durable_engine.py).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest

from adapters.datalake import AzureBlobDataLake
from adapters.datasets import DatasetVersion, blob_dataset_ports
from adapters.settings import load_settings
from composition import Services, use_services
from local.hosting.azurite import Azurite
from orchestrators.regions import covered_regions
from tests.infra.bicep import INFRA, Expr, load

pytestmark = pytest.mark.integration


def _prod_regions_setting() -> str:
    """``MLOPS_REGIONS`` as main.bicep sets it from the prod parameter file."""
    settings = load(INFRA / "main.bicep").variables["appSettings"]
    assert settings["MLOPS_REGIONS"] == Expr("regions")
    params = json.loads((INFRA / "main.prod.parameters.json").read_text(encoding="utf-8"))
    value = params["parameters"]["regions"]["value"]
    assert isinstance(value, str)
    return value


@dataclass
class RecordingClient:
    """What the timer asks of the Durable client, answered as azure-functions-durable does."""

    started: list[tuple[str, str, Any]] = field(default_factory=list)

    async def get_status(self, instance_id: str) -> Any:
        return type("Status", (), {"runtime_status": None})()

    async def start_new(self, orchestrator: str, instance_id: str, payload: Any) -> str:
        self.started.append((orchestrator, instance_id, payload))
        return instance_id


def _services(azurite: Azurite, regions: str) -> Services:
    settings = load_settings(
        {
            "AzureWebJobsStorage": azurite.connection_string,
            "MLOPS_DATALAKE": azurite.connection_string,
            "MLOPS_CONDITIONED_CONTAINER": f"cond{uuid.uuid4().hex[:8]}",
            "MLOPS_REGIONS": regions,
        }
    )
    lake = AzureBlobDataLake.from_connection(settings.datalake)
    datasets, signals = blob_dataset_ports(lake, settings.conditioned_container)
    return Services(settings=settings, data_lake=lake, datasets=datasets, signals=signals)


def _store_master(services: Services, version: str, rows: str, status: str = "conditioned") -> None:
    """One version of the store master in the lake, registered as conditioning registers it."""
    assert services.datasets is not None
    lake, container = services.data_lake, services.settings.conditioned_container
    lake.ensure_container(container)
    blob = f"stores/{version}/part-00000.csv"
    lake.write(container, blob, ("store_id,region,format,zip,size_sqft\n" + rows).encode())
    services.datasets.register(
        DatasetVersion(
            source="stores", dataset_version=version, status=status, input_name="stores.csv",
            input_etag=version, input_sha256=version, manifest=f"{container}/stores/{version}/m",
            files=(f"{container}/{blob}",), rows_in=2, rows_out=2,
            registered_at=f"2026-11-2{len(version)}T00:00:00+00:00",
        )
    )  # fmt: skip


def _run_weekly_timer(services: Services) -> RecordingClient:
    from triggers.timers import on_weekly_retrain_timer

    client = RecordingClient()
    use_services(services)
    try:
        # Below the durable-client middleware, which would build a client from binding JSON.
        timer = on_weekly_retrain_timer._function.get_user_function().__wrapped__
        asyncio.run(timer(None, client))
    finally:
        use_services(None)
    return client


def test_prod_retrains_every_region_the_conditioned_store_master_names(azurite: Azurite) -> None:
    services = _services(azurite, _prod_regions_setting())
    _store_master(services, "v1", "S1,R01,large,10001,5000\nS2,r02,small,10002,900\n")
    # A later master adds a region; one whose id cannot name a segment is left out.
    _store_master(services, "v2", "S3,R03,small,10003,800\nS9,walmart-us,large,,\n")
    # Quarantined data is no region's data.
    _store_master(services, "v3", "S4,r04,small,10004,800\n", status="quarantined")

    client = _run_weekly_timer(services)

    ((orchestrator, instance, payload),) = client.started
    assert orchestrator == "run_train" and instance.startswith("train-weekly-")
    regions = sorted({s.rsplit("-", 2)[0] for s in payload["segments"]})
    assert regions == ["r01", "r02", "r03"]
    assert len(payload["segments"]) == 12  # large and small x slow and fast, per region


def test_named_regions_win_over_the_data(azurite: Azurite) -> None:
    services = _services(azurite, "r07")
    _store_master(services, "v1", "S1,R01,large,10001,5000\n")
    assert covered_regions(services) == ("r07",)


def test_without_any_conditioned_store_master_the_weekly_retrain_starts_nothing(
    azurite: Azurite,
) -> None:
    services = _services(azurite, "")
    assert _run_weekly_timer(services).started == []
