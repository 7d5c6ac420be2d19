"""Conditioned data as Azure ML data assets: the ``DataAssets`` port and its Azure adapter.

Every conditioned dataset version becomes a ``uri_folder`` data asset named after its source,
versioned by its content-derived dataset version, and tagged with where it came from (rows in,
out and rejected, the input blob and its etag, the manifest's sha256). A training job that
takes ``azureml:<source>:<version>`` as input then names the exact data in its lineage.

``AzureMLDataAssets`` registers into the workspace (``MLClient.data``), pointing at the
version's folder in the conditioned container through the workspace's datastore over it; the
local runtime's ``LocalDataAssets`` (``local/aml/data_assets.py``) registers into the local
executor's asset index, which resolves the same references to local folders.

Contract:
- ``register(entry, manifest_sha256=…)`` → the ``DataAsset``. Idempotent: registering a
  version again returns the asset as it is. A version is immutable: the same name and version
  over other data raises ``ConflictError``. Only ``conditioned`` versions are data
  (``BadInputError`` otherwise).
- ``get(name, version)`` → the ``DataAsset`` (``version="latest"``: the newest one);
  ``NotFoundError`` when there is none.
- Azure failures are translated as in ``adapters/azure_calls.py`` (``TransientError``,
  ``AccessDeniedError`` naming the role).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Protocol

from adapters.azure_calls import call_azure
from adapters.datasets import DatasetVersion
from adapters.errors import BadInputError, ConflictError, NotFoundError

LATEST = "latest"
_DATASTORE_PATH = re.compile(r"datastores/([^/]+)/paths/(.*)$")


@dataclass(frozen=True)
class DataAsset:
    """A registered data asset; ``path`` is where its data lies (a datastore URI in Azure, a
    folder locally)."""

    name: str
    version: str
    path: str
    type: str = "uri_folder"
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def reference(self) -> str:
        """How a pipeline input names it: ``azureml:<name>:<version>``."""
        return f"azureml:{self.name}:{self.version}"


class DataAssets(Protocol):
    def register(self, entry: DatasetVersion, *, manifest_sha256: str) -> DataAsset: ...

    def get(self, name: str, version: str = LATEST) -> DataAsset: ...


def asset_tags(entry: DatasetVersion, manifest_sha256: str) -> dict[str, str]:
    """The tags every data asset of a conditioned version carries (values are strings)."""
    tags = {
        "rows_in": str(entry.rows_in),
        "rows_out": str(entry.rows_out),
        "rows_rejected": str(entry.rows_rejected),
        "input_blob": entry.input_name,
        "input_etag": entry.input_etag or "",
        "input_sha256": entry.input_sha256,
        "manifest": entry.manifest,
        "manifest_sha256": manifest_sha256,
    }
    if entry.period_start:
        tags["period_start"] = entry.period_start
    if entry.period_end:
        tags["period_end"] = entry.period_end
    return tags


def check_registrable(entry: DatasetVersion) -> None:
    if entry.status != "conditioned":
        raise BadInputError(
            f"{entry.source} version {entry.dataset_version} is {entry.status}, not conditioned "
            "data: it is not registered as a data asset",
            code="not_conditioned",
        )


def datastore_path(uri: str) -> str:
    """``<datastore>/paths/<path>`` of a short or long ``azureml://`` datastore URI."""
    match = _DATASTORE_PATH.search(uri)
    return f"{match.group(1)}/paths/{match.group(2).strip('/')}" if match else uri.rstrip("/")


class AzureMLDataAssets:
    """``DataAssets`` in an Azure ML workspace. ``datastore`` is the workspace datastore over the
    data lake's conditioned container, whose paths start at the source (as for
    ``AzureMLDatastoreLocator``). ``client`` is an ``MLClient``, usually the shared
    ``LazyMLClient``."""

    def __init__(self, client: Any, datastore: str) -> None:
        self._client = client
        self._datastore = datastore

    def _path(self, entry: DatasetVersion) -> str:
        return (
            f"azureml://datastores/{self._datastore}/paths/{entry.source}/{entry.dataset_version}/"
        )

    @staticmethod
    def _convert(data: Any) -> DataAsset:
        kind = getattr(data.type, "value", data.type)
        return DataAsset(
            name=str(data.name),
            version=str(data.version),
            path=str(data.path),
            type=str(kind or "uri_folder"),
            tags={str(k): str(v) for k, v in (data.tags or {}).items()},
        )

    def get(self, name: str, version: str = LATEST) -> DataAsset:
        from adapters.jobs import AZURE_ML

        def read() -> Any:
            if version == LATEST:
                return self._client.data.get(name=name, label=LATEST)
            return self._client.data.get(name=name, version=version)

        return self._convert(call_azure(read, f"read data asset {name}:{version}", AZURE_ML))

    def register(self, entry: DatasetVersion, *, manifest_sha256: str) -> DataAsset:
        from azure.ai.ml.constants import AssetTypes
        from azure.ai.ml.entities import Data
        from azure.ai.ml.exceptions import MlException

        from adapters.jobs import AZURE_ML

        check_registrable(entry)
        path = self._path(entry)
        try:
            existing: DataAsset | None = self.get(entry.source, entry.dataset_version)
        except NotFoundError:
            existing = None
        if existing is None:
            data = Data(
                name=entry.source,
                version=entry.dataset_version,
                type=AssetTypes.URI_FOLDER,
                path=path,
                description=f"conditioned {entry.source} data from {entry.input_name}",
                tags=asset_tags(entry, manifest_sha256),
            )
            what = f"register data asset {entry.source}:{entry.dataset_version}"
            try:
                created = call_azure(
                    lambda: self._client.data.create_or_update(data), what, AZURE_ML
                )
                return self._convert(created)
            except ConflictError:  # registered by a concurrent delivery of the same data
                existing = self.get(entry.source, entry.dataset_version)
            except MlException as exc:  # the SDK's own validation of the asset
                detail = " ".join(str(exc).split())[:400]
                raise BadInputError(f"Azure ML refused to {what}: {detail}") from exc
        if datastore_path(existing.path) != datastore_path(path):
            raise ConflictError(
                f"data asset {entry.source}:{entry.dataset_version} exists over "
                f"{existing.path}, not {path}"
            )
        return existing
