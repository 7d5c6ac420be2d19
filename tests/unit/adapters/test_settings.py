from __future__ import annotations

import pytest

from adapters.errors import SettingsError
from adapters.settings import load_settings

CONN = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"


def test_defaults_apply_when_only_connections_are_set() -> None:
    s = load_settings({"AzureWebJobsStorage": CONN, "MLOPS_DATALAKE": CONN})
    assert s.environment == "local"
    assert s.task_hub == "mlopshub"
    assert (s.raw_container, s.conditioned_container, s.quarantine_container) == (
        "raw",
        "conditioned",
        "quarantine",
    )
    assert s.datalake.connection_string == CONN and not s.datalake.uses_identity


def test_identity_based_connections() -> None:
    s = load_settings(
        {
            "AzureWebJobsStorage__accountName": "appstore",
            "MLOPS_DATALAKE__blobServiceUri": "https://lake.blob.core.windows.net/",
            "MLOPS_DATALAKE__clientId": "1111",
        }
    )
    assert s.storage.blob_service_uri == "https://appstore.blob.core.windows.net"
    assert s.datalake.blob_service_uri == "https://lake.blob.core.windows.net"
    assert s.datalake.client_id == "1111" and s.datalake.uses_identity


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(
            {
                "MLOPS_ENVIRONMENT": "cloud",
                "MLOPS_TASK_HUB": "1bad",
                "MLOPS_RAW_CONTAINER": "Raw_Data",
            }
        )
    problems = info.value.problems
    joined = "\n".join(problems)
    for key in (
        "MLOPS_ENVIRONMENT",
        "MLOPS_TASK_HUB",
        "MLOPS_RAW_CONTAINER",
        "AzureWebJobsStorage",
        "MLOPS_DATALAKE",
    ):
        assert key in joined
    assert len(problems) == 5
    assert str(info.value).startswith("5 setting problem(s)")


def test_a_malformed_connection_string_is_named() -> None:
    with pytest.raises(SettingsError, match="MLOPS_DATALAKE: not a storage connection string"):
        load_settings({"AzureWebJobsStorage": CONN, "MLOPS_DATALAKE": "nonsense"})


def test_azure_services_share_one_lazy_workspace_client() -> None:
    from adapters.jobs import AzureMLPipelineJobs, LazyMLClient
    from adapters.registry import AzureMLModelRegistry
    from composition import build_ml_services

    settings = load_settings(
        {
            "MLOPS_ENVIRONMENT": "azure",
            "AzureWebJobsStorage__accountName": "appstore",
            "AzureWebJobsStorage__clientId": "client-1",
            "MLOPS_DATALAKE__blobServiceUri": "https://lake.blob.core.windows.net",
            "MLOPS_AML_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000001",
            "MLOPS_AML_RESOURCE_GROUP": "rg",
            "MLOPS_AML_WORKSPACE": "ws",
        }
    )
    jobs, registry = build_ml_services(settings)
    assert isinstance(jobs, AzureMLPipelineJobs) and isinstance(registry, AzureMLModelRegistry)
    assert isinstance(jobs._client, LazyMLClient)
    assert jobs._client is registry._client  # one MLClient (and one token cache) per process


def test_azure_data_assets_and_job_steps_share_the_workspace_client() -> None:
    from adapters.data_assets import AzureMLDataAssets
    from composition import build_services

    settings = load_settings(
        {
            "MLOPS_ENVIRONMENT": "azure",
            "AzureWebJobsStorage__accountName": "appstore",
            "AzureWebJobsStorage__clientId": "client-1",
            "MLOPS_DATALAKE__blobServiceUri": "https://lake.blob.core.windows.net",
            "MLOPS_AML_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000001",
            "MLOPS_AML_RESOURCE_GROUP": "rg",
            "MLOPS_AML_WORKSPACE": "ws",
        }
    )
    services = build_services(settings)
    assert isinstance(services.data_assets, AzureMLDataAssets)
    client = services.pipeline_jobs._client  # type: ignore[union-attr]
    assert services.data_assets._client is client
    assert services.job_steps._client is client  # type: ignore[union-attr]


def test_the_model_name_prefix_defaults_to_the_pipelines_names_and_is_validated() -> None:
    assert load_settings(
        {"AzureWebJobsStorage": CONN, "MLOPS_DATALAKE": CONN}
    ).model_name_prefix == ("forecast-")
    custom = {
        "AzureWebJobsStorage": CONN,
        "MLOPS_DATALAKE": CONN,
        "MLOPS_MODEL_NAME_PREFIX": "dmd_",
    }
    assert load_settings(custom).model_name_prefix == "dmd_"
    for bad in ("team/", "-lead", "x" * 65, "a b"):
        with pytest.raises(SettingsError, match="MLOPS_MODEL_NAME_PREFIX"):
            load_settings({**custom, "MLOPS_MODEL_NAME_PREFIX": bad})
