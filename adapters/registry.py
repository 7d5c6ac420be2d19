"""The model registry port: model versions, their tags and metrics, champion/challenger roles.

``ModelRegistry`` is what orchestrator activities depend on. ``AzureMLModelRegistry`` uses an
Azure ML workspace through ``azure-ai-ml``; the local runtime's ``MLflowModelRegistry``
(``local/aml/registry.py``) uses MLflow's sqlite store. Both pass
tests/integration/test_registry_contract.py.

Contract:
- Versions are strings of integers ("1", "2", …); ``list_versions`` is sorted by number.
- ``set_alias(name, alias, version)`` moves ``alias`` to ``version``: afterwards exactly one
  version holds it. Roles ``champion``/``challenger`` are also written as tag ``role`` so
  pipeline code can find the champion through MLflow on either backend.
- ``ModelVersion.metrics`` are the float-valued tags ending in ``_mape``, ``_wape``, ``_wmae``,
  ``_rmse_zero`` or ``_rmse_all``; ``trained_at`` is parsed from tag ``trained_at`` (ISO 8601).
- Unknown models or versions raise ``NotFoundError`` (``list_versions`` returns []).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeVar

from adapters.errors import BadInputError, NotFoundError
from adapters.times import parse_utc

ROLE_TAG = "role"
ALIASES_TAG = "aliases"
ROLES = ("champion", "challenger")
METRIC_SUFFIXES = ("_mape", "_wape", "_wmae", "_rmse_zero", "_rmse_all")
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


def check_alias(alias: str) -> None:
    if not alias or not alias.replace("-", "").replace("_", "").isalnum():
        raise BadInputError(f"alias {alias!r} must be letters, digits, '-' or '_'")


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
        check_alias(alias)
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
