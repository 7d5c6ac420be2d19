"""``ModelRegistry`` over an MLflow registry: the local runtime's model registry.

MLflow's sqlite store under ``.local/`` stands in for the Azure ML registry (Azure ML is
MLflow-compatible, so pipeline code registers the same way in both). Passes the contract suite
in tests/integration/test_registry_contract.py with ``AzureMLModelRegistry``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from adapters.errors import BadInputError, NotFoundError, TransientError
from adapters.registry import ROLE_TAG, ROLES, ModelVersion, check_alias


class MLflowModelRegistry:
    """``ModelRegistry`` over an MLflow registry (sqlite store locally; no server needed)."""

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri
        self._client: Any = None
        self._lock = threading.Lock()

    def _mlflow(self) -> Any:
        with self._lock:
            if self._client is None:
                from mlflow.tracking import MlflowClient

                logging.getLogger("mlflow").setLevel(logging.WARNING)
                logging.getLogger("alembic").setLevel(logging.WARNING)
                if self.tracking_uri.startswith("sqlite:///"):
                    db = Path(self.tracking_uri.removeprefix("sqlite:///"))
                    db.parent.mkdir(parents=True, exist_ok=True)
                self._client = MlflowClient(
                    tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri
                )
            return self._client

    def _call(self, action: Any, what: str) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return action()
        except MlflowException as exc:
            code = str(getattr(exc, "error_code", ""))
            if code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND") or "not found" in str(exc).lower():
                raise NotFoundError(f"{what} does not exist") from exc
            if code in ("INVALID_PARAMETER_VALUE", "BAD_REQUEST"):
                raise BadInputError(f"{what}: {exc.message}") from exc
            raise TransientError(f"MLflow registry failed for {what}: {exc.message}") from exc

    @staticmethod
    def _convert(v: Any) -> ModelVersion:
        return ModelVersion(
            name=str(v.name),
            version=str(v.version),
            tags={str(k): str(t) for k, t in (v.tags or {}).items()},
            aliases=tuple(sorted(str(a) for a in (getattr(v, "aliases", None) or []))),
        )

    def get(self, name: str, version: str) -> ModelVersion:
        client = self._mlflow()
        return self._convert(
            self._call(lambda: client.get_model_version(name, str(version)), f"{name}:{version}")
        )

    def list_versions(self, name: str) -> list[ModelVersion]:
        client = self._mlflow()
        found = self._call(lambda: client.search_model_versions(f"name = '{name}'"), name)
        # search results may omit aliases; read each version for a complete view
        versions = [self.get(name, str(v.version)) for v in found]
        return sorted(versions, key=lambda v: int(v.version))

    def set_tags(self, name: str, version: str, tags: Mapping[str, str]) -> None:
        client = self._mlflow()
        self.get(name, version)
        for key, value in tags.items():
            self._call(
                lambda k=key, v=value: client.set_model_version_tag(name, str(version), k, str(v)),
                f"{name}:{version}",
            )

    def set_alias(self, name: str, alias: str, version: str) -> None:
        check_alias(alias)
        client = self._mlflow()
        self.get(name, version)
        previous = self.get_by_alias(name, alias)
        where = f"{name}:{version}"
        self._call(lambda: client.set_registered_model_alias(name, alias, str(version)), where)
        if alias not in ROLES:
            return
        moved = previous is not None and previous.version != str(version)
        if moved and previous is not None and previous.tags.get(ROLE_TAG) == alias:
            self._call(
                lambda: client.delete_model_version_tag(name, previous.version, ROLE_TAG),
                f"{name}:{previous.version}",
            )
        self.set_tags(name, version, {ROLE_TAG: alias})

    def get_by_alias(self, name: str, alias: str) -> ModelVersion | None:
        client = self._mlflow()
        try:
            found = self._call(
                lambda: client.get_model_version_by_alias(name, alias), f"{name}@{alias}"
            )
        except NotFoundError:
            return None
        return self.get(name, str(found.version))
