"""``DataAssets`` for the local runtime: conditioned versions in the local executor's index.

A conditioned version's files are copied out of the data lake (Azurite) once, by the same
``LocalDatasetLocator`` that prepares training inputs, and the folder is registered in the
local executor's data asset index (``local/aml/assets.py``) under ``<source>:<version>``. A
local pipeline job given ``azureml:<source>:<version>`` then reads exactly that folder, as an
Azure ML job reads the data asset registered by ``AzureMLDataAssets``.
"""

from __future__ import annotations

from pathlib import Path

from adapters.data_assets import LATEST, DataAsset, asset_tags, check_registrable
from adapters.datasets import DatasetVersion
from adapters.locator import LocalDatasetLocator
from local.aml import assets


class LocalDataAssets:
    """``aml_root`` is the local executor's state folder (``<MLOPS_LOCAL_DIR>/aml``)."""

    def __init__(self, locator: LocalDatasetLocator, aml_root: str | Path) -> None:
        self._locator = locator
        self._root = Path(aml_root)

    @staticmethod
    def _convert(asset: assets.LocalDataAsset) -> DataAsset:
        return DataAsset(asset.name, asset.version, asset.path, asset.type, dict(asset.tags))

    def register(self, entry: DatasetVersion, *, manifest_sha256: str) -> DataAsset:
        check_registrable(entry)
        folder = self._locator.folder_for(entry.source, [entry])
        registered = assets.register(
            self._root,
            entry.source,
            entry.dataset_version,
            folder,
            tags=asset_tags(entry, manifest_sha256),
        )
        return self._convert(registered)

    def get(self, name: str, version: str = LATEST) -> DataAsset:
        return self._convert(assets.resolve(self._root, name, version))
