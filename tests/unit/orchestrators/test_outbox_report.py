"""The outbox gauges the "outbox backing up" alert rule watches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from adapters.alerts import DeliveryStatus, InMemoryAlertStore, OutboxRecord
from adapters.datalake import InMemoryDataLake
from adapters.settings import load_settings
from composition import Services
from orchestrators.failure_alerts import report_outbox

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def test_pending_alerts_and_the_oldest_age_are_reported() -> None:
    settings = load_settings(
        {"AzureWebJobsStorage": "UseDevelopmentStorage=true",
         "MLOPS_DATALAKE": "UseDevelopmentStorage=true"}
    )  # fmt: skip
    store = InMemoryAlertStore()
    services = Services(settings=settings, data_lake=InMemoryDataLake(), alert_store=store)
    assert report_outbox(services, NOW) == (0, 0.0)
    for i, (status, minutes) in enumerate(
        [(DeliveryStatus.PENDING, 90), (DeliveryStatus.PENDING, 5), (DeliveryStatus.SENT, 600)]
    ):
        store.add(OutboxRecord(f"a{i}", "job_failed", status, NOW - timedelta(minutes=minutes)))
    assert report_outbox(services, NOW) == (2, 90.0)
