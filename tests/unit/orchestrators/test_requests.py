"""The train request's many-models fields: validated into the orchestration input."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from adapters.errors import BadInputError
from adapters.settings import load_settings
from orchestrators.requests import build_input

SETTINGS = load_settings(
    {
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "MLOPS_DATALAKE": "UseDevelopmentStorage=true",
    }
)
NOW = datetime(2026, 11, 30, tzinfo=UTC)


def train(**extra: object) -> dict[str, object]:
    return build_input("train", {"segments": ["r01-large-fast"], **extra}, SETTINGS, NOW)


def test_segment_models_stay_the_default() -> None:
    result = train()
    assert "many_models" not in result and "partition_by" not in result


def test_many_models_default_to_store_by_product() -> None:
    assert train(many_models=True)["partition_by"] == "store_id,product_id"


@pytest.mark.parametrize("keys", [["store_id"], "store_id", " store_id "])
def test_partition_by_takes_a_list_or_text(keys: object) -> None:
    result = train(many_models=True, partition_by=keys)
    assert result["many_models"] is True and result["partition_by"] == "store_id"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"many_models": "yes"}, "'many_models' must be true or false"),
        ({"partition_by": ["store_id"]}, "only with 'many_models': true"),
        ({"many_models": True, "partition_by": []}, "non-empty list"),
        ({"many_models": True, "partition_by": ["store id; rm"]}, "invalid column name"),
        ({"many_models": True, "partition_by": ["a", "a"]}, "names a column twice"),
    ],
)
def test_bad_many_models_fields_are_400s(extra: dict[str, object], message: str) -> None:
    with pytest.raises(BadInputError, match=message):
        train(**extra)
