"""The model registry port: model versions, their tags and metrics, champion/challenger roles.

``ModelRegistry`` is what orchestrator activities depend on. ``MLflowModelRegistry`` uses an
MLflow registry (locally the sqlite store under ``.local/``); ``AzureMLModelRegistry`` uses an
Azure ML workspace through ``azure-ai-ml``. Both pass tests/integration/test_registry_contract.py.

Contract:
- Versions are strings of integers ("1", "2", …); ``list_versions`` is sorted by number.
- ``set_alias(name, alias, version)`` moves ``alias`` to ``version``: afterwards exactly one
  version holds it. Roles ``champion``/``challenger`` are also written as tag ``role`` so
  pipeline code can find the champion through MLflow on either backend.
- ``ModelVersion.metrics`` are the float-valued tags ending in ``_mape``, ``_rmse_zero`` or
  ``_rmse_all``; ``trained_at`` is parsed from tag ``trained_at`` (ISO 8601).
- Unknown models or versions raise ``NotFoundError`` (``list_versions`` returns []).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from adapters.errors import BadInputError, NotFoundError, TransientError
from adapters.times import parse_utc

ROLE_TAG = "role"
ALIASES_TAG = "aliases"
ROLES = ("champion", "challenger")
METRIC_SUFFIXES = ("_mape", "_rmse_zero", "_rmse_all")
T = TypeVar("T")


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: str
    tags: dict[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()

    @property
    def trained_at(self) -> datetime | None:
        return parse_utc(self.tags.get("trained_at"))

    @property
    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for key, value in self.tags.items():
            if key.endswith(METRIC_SUFFIXES):
                try:
                    out[key] = float(value)
                except ValueError:
                    continue
        return out


class ModelRegistry(Protocol):
    def get(self, name: str, version: str) -> ModelVersion: ...

    def list_versions(self, name: str) -> list[ModelVersion]: ...

    def set_tags(self, name: str, version: str, tags: Mapping[str, str]) -> None: ...

    def set_alias(self, name: str, alias: str, version: str) -> None: ...

    def get_by_alias(self, name: str, alias: str) -> ModelVersion | None: ...


def _check_alias(alias: str) -> None:
    if not alias or not alias.replace("-", "").replace("_", "").isalnum():
        raise BadInputError(f"alias {alias!r} must be letters, digits, '-' or '_'")


class MLflowModelRegistry:
    """``ModelRegistry`` over an MLflow registry (sqlite store locally; no server needed)."""

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri
        self._client: Any = None
        self._lock = threading.Lock()

    def _mlflow(self) -> Any:
        with self._lock:
            if self._client is None:
                import logging

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
        _check_alias(alias)
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


class AzureMLModelRegistry:
    """``ModelRegistry`` over an Azure ML workspace's model registry (``MLClient.models``).

    Azure ML models have tags but no aliases, so an alias is kept in tag ``aliases`` (comma
    separated) and moved by rewriting the tags of the old and the new holder. The version
    list is read page by page inside the error translation: a page that fails midway raises
    ``TransientError``/``NotFoundError`` like any other call, never the SDK's own error.
    """

    def __init__(self, client: Any) -> None:
        self._client = client

    @staticmethod
    def _convert(model: Any) -> ModelVersion:
        tags = {str(k): str(v) for k, v in (model.tags or {}).items()}
        aliases = tuple(sorted(a for a in tags.get(ALIASES_TAG, "").split(",") if a))
        return ModelVersion(str(model.name), str(model.version), tags, aliases)

    def _call(self, action: Callable[[], T], what: str) -> T:
        from adapters.azure_calls import call_azure
        from adapters.jobs import AZURE_ML

        return call_azure(action, what, AZURE_ML)

    def _model(self, name: str, version: str) -> Any:
        return self._call(
            lambda: self._client.models.get(name=name, version=str(version)),
            f"read model {name}:{version}",
        )

    def get(self, name: str, version: str) -> ModelVersion:
        return self._convert(self._model(name, version))

    def list_versions(self, name: str) -> list[ModelVersion]:
        try:
            # models.list is a lazy pager: each page is requested while iterating, so the
            # iteration itself must happen inside the translation.
            models = self._call(
                lambda: list(self._client.models.list(name=name)), f"list versions of {name}"
            )
        except NotFoundError:
            return []
        return sorted((self._convert(m) for m in models), key=lambda v: int(v.version))

    def _write_tags(self, model: Any, tags: dict[str, str]) -> None:
        model.tags = tags
        self._call(
            lambda: self._client.models.create_or_update(model),
            f"tag model {model.name}:{model.version}",
        )

    def set_tags(self, name: str, version: str, tags: Mapping[str, str]) -> None:
        model = self._model(name, version)
        self._write_tags(model, {**(model.tags or {}), **{k: str(v) for k, v in tags.items()}})

    def set_alias(self, name: str, alias: str, version: str) -> None:
        _check_alias(alias)
        target = self._model(name, version)
        for holder in self.list_versions(name):
            if alias in holder.aliases and holder.version != str(version):
                model = self._model(name, holder.version)
                tags = dict(model.tags or {})
                tags[ALIASES_TAG] = ",".join(a for a in holder.aliases if a != alias)
                if tags.get(ROLE_TAG) == alias:
                    del tags[ROLE_TAG]
                self._write_tags(model, tags)
        tags = dict(target.tags or {})
        current = [a for a in tags.get(ALIASES_TAG, "").split(",") if a]
        tags[ALIASES_TAG] = ",".join(sorted({*current, alias}))
        if alias in ROLES:
            tags[ROLE_TAG] = alias
        self._write_tags(target, tags)

    def get_by_alias(self, name: str, alias: str) -> ModelVersion | None:
        holders = [v for v in self.list_versions(name) if alias in v.aliases]
        return holders[-1] if holders else None
