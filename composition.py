"""The composition root for adapters: one ``Services`` set per process, built lazily.

``MLOPS_ENVIRONMENT`` chooses the set: ``azure`` takes every adapter from ``adapters/``;
``local`` takes the Azure ML jobs, registry and data asset adapters of the local runtime,
which only this module may choose (nothing in ``adapters/`` imports ``local/``, and the
deployment package leaves ``local/`` out). Tests build their own ``Services`` with fakes and
pass it to ``use_services``. Nothing here runs at import time, so importing the function app
never touches the network or heavy SDKs.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from adapters.settings import Settings, load_settings

if TYPE_CHECKING:
    from adapters.alerts import AlertStore
    from adapters.data_assets import DataAssets
    from adapters.datalake import DataLake
    from adapters.datasets import ConditionedSignals, DatasetRegistry
    from adapters.job_steps import JobSteps
    from adapters.jobs import LazyMLClient, PipelineJobs
    from adapters.locator import DatasetLocator
    from adapters.notify import Notifier
    from adapters.registry import ModelRegistry
    from adapters.summary import SummaryStore


@dataclass
class Services:
    """Every collaborator a trigger or activity may need, already configured."""

    settings: Settings
    data_lake: DataLake
    pipeline_jobs: PipelineJobs | None = None
    model_registry: ModelRegistry | None = None
    datasets: DatasetRegistry | None = None
    signals: ConditionedSignals | None = None
    locator: DatasetLocator | None = None
    alert_store: AlertStore | None = None
    notifier: Notifier | None = None
    data_assets: DataAssets | None = None
    job_steps: JobSteps | None = None
    summary: SummaryStore | None = None


def build_services(settings: Settings) -> Services:
    """Build the adapter set ``settings`` asks for."""
    from adapters.datalake import AzureBlobDataLake
    from adapters.datasets import blob_dataset_ports
    from adapters.locator import AzureMLDatastoreLocator, LocalDatasetLocator

    data_lake = AzureBlobDataLake.from_connection(settings.datalake)
    client = workspace_client(settings) if settings.environment == "azure" else None
    pipeline_jobs, model_registry = build_ml_services(settings, client)
    datasets, signals = blob_dataset_ports(data_lake, settings.conditioned_container)
    alert_store, notifier = build_alert_services(settings, data_lake)
    job_steps = build_job_steps(settings, client)
    locator: DatasetLocator
    data_assets: DataAssets
    if settings.environment == "azure":
        from adapters.data_assets import AzureMLDataAssets

        locator = AzureMLDatastoreLocator(settings.aml_datastore)
        data_assets = AzureMLDataAssets(client, settings.aml_datastore)
    else:
        from local.aml.data_assets import LocalDataAssets

        local_locator = LocalDatasetLocator(
            data_lake, settings.conditioned_container, settings.local_root / "datasets"
        )
        locator = local_locator
        data_assets = LocalDataAssets(local_locator, settings.local_root / "aml")
    return Services(
        settings=settings,
        data_lake=data_lake,
        pipeline_jobs=pipeline_jobs,
        model_registry=model_registry,
        datasets=datasets,
        signals=signals,
        locator=locator,
        alert_store=alert_store,
        notifier=notifier,
        data_assets=data_assets,
        job_steps=job_steps,
        summary=build_summary_store(settings, data_lake),
    )


def build_summary_store(settings: Settings, data_lake: DataLake) -> SummaryStore:
    """The dashboard's summary documents, beside the alert outbox in the ops container."""
    from adapters.alerts import AlertSettings
    from adapters.summary import DataLakeSummaryStore

    return DataLakeSummaryStore(data_lake, AlertSettings.from_settings(settings).container)


def build_job_steps(settings: Settings, client: LazyMLClient | None = None) -> JobSteps:
    """Steps of finished jobs: Azure ML child jobs (through ``client``, the workspace client
    the other Azure ML adapters share), or the local executor's records."""
    if settings.environment == "azure":
        from adapters.job_steps import AzureMLJobSteps

        return AzureMLJobSteps(client or workspace_client(settings))
    from local.aml.job_steps import LocalJobSteps

    return LocalJobSteps(settings.local_root / "aml")


def build_alert_services(settings: Settings, data_lake: DataLake) -> tuple[AlertStore, Notifier]:
    """The alert outbox (blobs in the alerts container) and the mail transport."""
    from adapters.alerts import AlertSettings, DataLakeAlertStore, build_notifier

    alerts = AlertSettings.from_settings(settings)
    store = DataLakeAlertStore(data_lake, alerts.container)
    return store, build_notifier(alerts, client_id=settings.storage.client_id)


def workspace_client(settings: Settings) -> LazyMLClient:
    """The Azure ML workspace client the Azure adapters share (built on first use)."""
    from adapters.jobs import LazyMLClient

    return LazyMLClient(
        settings.aml_subscription_id,
        settings.aml_resource_group,
        settings.aml_workspace,
        settings.storage.client_id,
    )


def build_ml_services(
    settings: Settings, client: LazyMLClient | None = None
) -> tuple[PipelineJobs, ModelRegistry]:
    """Azure ML jobs and registry for ``settings.environment``; constructing them is cheap
    (SDK clients are created on first use). In Azure they share ``client`` (a new one if
    none is given)."""
    if settings.environment == "azure":
        from adapters.jobs import AzureMLPipelineJobs
        from adapters.registry import AzureMLModelRegistry

        client = client or workspace_client(settings)
        azure_jobs = AzureMLPipelineJobs(client, compute=settings.aml_compute)
        return azure_jobs, AzureMLModelRegistry(client)
    from local.aml.jobs import LocalPipelineJobs
    from local.aml.registry import MLflowModelRegistry

    jobs = LocalPipelineJobs(
        settings.local_root / "aml",
        tracking_uri=settings.tracking_uri,
        events_url=settings.aml_events_url or None,
        max_parallel=settings.aml_max_parallel,
        max_jobs=settings.aml_max_jobs,
        env_mode=settings.aml_step_environments,
    )
    return jobs, MLflowModelRegistry(settings.tracking_uri)


_lock = threading.Lock()
_current: Services | None = None


def get_services() -> Services:
    """The process-wide ``Services``; built from the environment on first use."""
    global _current
    with _lock:
        if _current is None:
            from adapters.telemetry import configure_telemetry

            _current = build_services(load_settings())
            configure_telemetry(_current.settings)
        return _current


def get_services_if_built() -> Services | None:
    """The process-wide ``Services`` if something built them already (for shutdown)."""
    with _lock:
        return _current


def use_services(services: Services | None) -> None:
    """Install ``services`` for this process (tests, the local runtime); ``None`` resets."""
    global _current
    with _lock:
        _current = services
