"""Where a pipeline job finds conditioned data: the ``DatasetLocator`` port.

In Azure a pipeline input is a datastore URI over the data lake's conditioned container, so
the job reads the data where it lies. Locally the executor runs steps as subprocesses that read
folders, so ``LocalDatasetLocator`` materialises the chosen dataset versions from the data lake
(Azurite) into a folder under ``.local/`` — once per version, then reused.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from adapters.datalake import DataLake
    from adapters.datasets import DatasetVersion


def data_files(container: str, files: Sequence[str]) -> list[str]:
    """The CSV parts of a registered version inside ``container`` (paths in the container).

    A version's ``files`` are ``container/path`` entries for everything it wrote — its data
    parts and manifest in the conditioned container, its rejects in quarantine.
    """
    prefix = f"{container}/"
    return [f[len(prefix) :] for f in files if f.startswith(prefix) and f.endswith(".csv")]


class DatasetLocator(Protocol):
    def folder_for(self, source: str, versions: Sequence[DatasetVersion]) -> str:
        """A ``uri_folder`` input holding exactly the CSV files of ``versions`` of ``source``."""
        ...


class AzureMLDatastoreLocator:
    """``azureml://datastores/<datastore>/paths/<source>/`` (all its versions).

    The datastore is registered over the data lake's conditioned container (a datastore is
    bound to one container), so paths inside it start at the source.
    """

    def __init__(self, datastore: str) -> None:
        self._datastore = datastore

    def folder_for(self, source: str, versions: Sequence[DatasetVersion]) -> str:
        return f"azureml://datastores/{self._datastore}/paths/{source}/"


class LocalDatasetLocator:
    """Copies each version's files out of the data lake once, then links a folder per selection.

    Layout: ``<root>/cache/<source>/<version>/<file>`` (the copies) and
    ``<root>/<source>/<selection hash>/<version>/<file>`` (hard links; the input folder).
    """

    def __init__(self, lake: DataLake, container: str, root: Path) -> None:
        self._lake = lake
        self._container = container
        self._root = root

    @staticmethod
    def _publish(tmp: Path, folder: Path) -> None:
        """Move a finished temp folder into place; a concurrent builder may have won."""
        (tmp / ".complete").touch()
        try:
            tmp.rename(folder)
        except OSError:
            if not (folder / ".complete").exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)

    def _cached(self, source: str, version: DatasetVersion) -> list[Path]:
        folder = self._root / "cache" / source / version.dataset_version
        if not (folder / ".complete").exists():
            folder.parent.mkdir(parents=True, exist_ok=True)
            # A private temp folder per builder: concurrent activities never share one.
            tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
            for blob in data_files(self._container, version.files):
                target = tmp / Path(blob).name
                with self._lake.open(self._container, blob) as src, target.open("wb") as dst:
                    shutil.copyfileobj(src, dst, 1024 * 1024)
            self._publish(tmp, folder)
        return sorted(p for p in folder.iterdir() if p.name != ".complete")

    def folder_for(self, source: str, versions: Sequence[DatasetVersion]) -> str:
        ids = sorted(v.dataset_version for v in versions)
        selection = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]
        folder = self._root / source / selection
        if (folder / ".complete").exists():
            return str(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{selection}-", dir=folder.parent))
        for version in versions:
            target = tmp / version.dataset_version
            target.mkdir()
            for path in self._cached(source, version):
                os.link(path, target / path.name)
        self._publish(tmp, folder)
        return str(folder)
