from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from adapters.datalake import InMemoryDataLake
from adapters.datasets import DatasetVersion
from adapters.locator import AzureMLDatastoreLocator, LocalDatasetLocator, data_files


def _version(name: str, files: tuple[str, ...]) -> DatasetVersion:
    return DatasetVersion(
        source="shipments", dataset_version=name, status="conditioned", input_name="x",
        input_etag="e", input_sha256="s", manifest="m", files=files,
    )  # fmt: skip


def test_only_csv_parts_of_the_conditioned_container_are_data() -> None:
    files = ("cond/shipments/v1/part-0.csv", "cond/shipments/v1/manifest.json",
             "quarantine/shipments/v1/rejects.csv")  # fmt: skip
    assert data_files("cond", files) == ["shipments/v1/part-0.csv"]


def test_local_folders_hold_exactly_the_chosen_versions_even_when_built_concurrently(
    tmp_path: Path,
) -> None:
    lake = InMemoryDataLake()
    lake.ensure_container("cond")
    versions = []
    for name in ("v1", "v2"):
        lake.write("cond", f"shipments/{name}/part-0.csv", f"week_start\n{name}\n".encode())
        versions.append(_version(name, (f"cond/shipments/{name}/part-0.csv",)))
    locator = LocalDatasetLocator(lake, "cond", tmp_path)
    with ThreadPoolExecutor(8) as pool:
        folders = list(pool.map(lambda _: locator.folder_for("shipments", versions), range(16)))
    assert len(set(folders)) == 1
    parts = sorted(p.relative_to(folders[0]).as_posix() for p in Path(folders[0]).rglob("*.csv"))
    assert parts == ["v1/part-0.csv", "v2/part-0.csv"]
    only_v1 = locator.folder_for("shipments", versions[:1])
    assert only_v1 != folders[0]
    assert [p.name for p in Path(only_v1).rglob("*.csv")] == ["part-0.csv"]


def test_azure_inputs_are_datastore_uris() -> None:
    uri = AzureMLDatastoreLocator("datalake").folder_for("weather", [])
    assert uri == "azureml://datastores/datalake/paths/weather/"
