"""One contract for every ``ModelRegistry``: MLflow's (sqlite store) and Azure ML's (through
azure-ai-ml's real ``MLClient`` against the loopback stand-in of the Azure ML REST surface,
whose model bodies are the recorded service traffic in ``../shared/data/azureml-rest``).

Versions are seeded the way they appear in each registry: MLflow's client creates them; in
Azure ML a pipeline's register step does, so the stand-in holds them already."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.errors import BadInputError, NotFoundError
from adapters.registry import AzureMLModelRegistry, ModelRegistry
from local.aml.registry import MLflowModelRegistry
from local.aml.tracking import sqlite_tracking_uri

Seed = Callable[[str, dict[str, str]], None]


@pytest.fixture(params=["mlflow", pytest.param("azure", marks=pytest.mark.azure_http)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[ModelRegistry, Seed]:
    if request.param == "mlflow":
        uri = sqlite_tracking_uri(tmp_path / "mlflow")
        registry = MLflowModelRegistry(uri)
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        source = tmp_path / "model"
        source.mkdir()

        def seed_mlflow(name: str, tags: dict[str, str]) -> None:
            if not client.search_registered_models(f"name = '{name}'"):
                client.create_registered_model(name)
            client.create_model_version(name, source.as_uri(), tags=tags)

        return registry, seed_mlflow
    workspace = request.getfixturevalue("azureml")

    def seed_azure(name: str, tags: dict[str, str]) -> None:
        workspace.app.add_model(name, tags)

    return AzureMLModelRegistry(workspace.client()), seed_azure


def test_versions_are_listed_in_order_with_tags_metrics_and_trained_at(
    backend: tuple[ModelRegistry, Seed],
) -> None:
    registry, seed = backend
    for i in range(1, 4):
        seed(
            "forecast-a",
            {
                "segment": "a/large/fast",
                "ensemble_mape": f"0.{i}",
                "trained_at": f"2024-0{i}-01T00:00:00Z",
            },
        )
    versions = registry.list_versions("forecast-a")
    assert [v.version for v in versions] == ["1", "2", "3"]
    third = registry.get("forecast-a", "3")
    assert third.tags["segment"] == "a/large/fast"
    assert third.metrics == {"ensemble_mape": 0.3}
    assert third.trained_at == datetime(2024, 3, 1, tzinfo=UTC)
    assert registry.list_versions("forecast-unknown") == []


def test_unknown_versions_are_not_found(backend: tuple[ModelRegistry, Seed]) -> None:
    registry, seed = backend
    seed("forecast-b", {})
    with pytest.raises(NotFoundError):
        registry.get("forecast-b", "9")
    with pytest.raises(NotFoundError):
        registry.get("forecast-nope", "1")


def test_tags_are_merged(backend: tuple[ModelRegistry, Seed]) -> None:
    registry, seed = backend
    seed("forecast-c", {"segment": "c/small/slow"})
    registry.set_tags("forecast-c", "1", {"gate": "pass", "test_passed": "true"})
    tags = registry.get("forecast-c", "1").tags
    assert tags["segment"] == "c/small/slow"
    assert tags["gate"] == "pass"
    assert tags["test_passed"] == "true"


def test_champion_alias_moves_to_exactly_one_version(backend: tuple[ModelRegistry, Seed]) -> None:
    registry, seed = backend
    seed("forecast-d", {})
    seed("forecast-d", {})
    assert registry.get_by_alias("forecast-d", "champion") is None
    registry.set_alias("forecast-d", "champion", "1")
    registry.set_alias("forecast-d", "challenger", "2")
    assert registry.get_by_alias("forecast-d", "champion").version == "1"  # type: ignore[union-attr]
    registry.set_alias("forecast-d", "champion", "2")
    champion = registry.get_by_alias("forecast-d", "champion")
    assert champion is not None and champion.version == "2"
    assert "champion" in champion.aliases
    assert champion.tags["role"] == "champion"
    old = registry.get("forecast-d", "1")
    assert "champion" not in old.aliases
    assert old.tags.get("role") != "champion"


def test_invalid_alias_is_bad_input(backend: tuple[ModelRegistry, Seed]) -> None:
    registry, seed = backend
    seed("forecast-e", {})
    with pytest.raises(BadInputError):
        registry.set_alias("forecast-e", "not an alias!", "1")
