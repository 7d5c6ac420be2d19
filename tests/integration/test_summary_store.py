"""One contract for every ``SummaryStore``: the fake, and the data lake store over the
in-memory lake and over Azurite (the real Blob API's If-Match / If-None-Match)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from adapters.datalake import AzureBlobDataLake, InMemoryDataLake
from adapters.errors import BadInputError, TransientError
from adapters.settings import Connection
from adapters.summary import DataLakeSummaryStore, InMemorySummaryStore, SummaryStore
from local.hosting.azurite import Azurite


@pytest.fixture(params=["fake", "lake-in-memory", "lake-azurite"])
def store(request: pytest.FixtureRequest) -> Iterator[SummaryStore]:
    container = f"ops{uuid.uuid4().hex[:12]}"
    if request.param == "fake":
        yield InMemorySummaryStore()
    elif request.param == "lake-in-memory":
        yield DataLakeSummaryStore(InMemoryDataLake(), container)
    else:
        request.applymarker(pytest.mark.integration)
        azurite: Azurite = request.getfixturevalue("azurite")
        lake = AzureBlobDataLake.from_connection(
            Connection(name="lake", connection_string=azurite.connection_string)
        )
        yield DataLakeSummaryStore(lake, container)


def _add(key: str) -> Any:
    def change(document: dict[str, Any]) -> dict[str, Any]:
        document.setdefault("seen", []).append(key)
        return document

    return change


def test_a_document_is_absent_until_written_then_reads_back(store: SummaryStore) -> None:
    assert store.read("jobs") is None
    written = store.update("jobs", _add("a"))
    assert written == {"seen": ["a"]}
    assert store.read("jobs") == {"seen": ["a"]}
    store.update("jobs", _add("b"))
    assert store.read("jobs") == {"seen": ["a", "b"]}
    assert store.read("models") is None


def test_a_reader_gets_a_copy_not_the_stored_document(store: SummaryStore) -> None:
    store.update("models", lambda d: {"n": 1})
    held = store.read("models")
    assert held is not None
    held["n"] = 2
    assert store.read("models") == {"n": 1}


def test_concurrent_updates_all_land(store: SummaryStore) -> None:
    keys = [f"k{i}" for i in range(24)]
    errors: list[BaseException] = []

    def work(key: str) -> None:
        try:
            store.update("conditioning", _add(key))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in keys]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    document = store.read("conditioning") or {}
    assert sorted(document["seen"]) == sorted(keys), "no update was lost to a concurrent writer"


@pytest.mark.parametrize("name", ["", "../x", "Jobs", "a/b", "x" * 65, "jobs.json"])
def test_names_that_are_not_short_words_are_rejected(store: SummaryStore, name: str) -> None:
    with pytest.raises(BadInputError):
        store.read(name)
    with pytest.raises(BadInputError):
        store.update(name, _add("a"))


def test_a_damaged_blob_is_rebuilt_by_the_next_update() -> None:
    lake = InMemoryDataLake()
    store = DataLakeSummaryStore(lake, "ops")
    store.update("jobs", _add("a"))
    lake.write("ops", "dashboard/jobs.json", b"{not json")
    assert store.read("jobs") == {}
    assert store.update("jobs", _add("b")) == {"seen": ["b"]}


class _AlwaysRacing(InMemoryDataLake):
    """Every conditional write loses, as if another writer always got there first."""

    def write(self, container: str, name: str, data: Any, **kwargs: Any) -> Any:
        if kwargs.get("if_match") or kwargs.get("if_absent"):
            from adapters.errors import ConflictError

            raise ConflictError("someone else wrote")
        return super().write(container, name, data, **kwargs)


def test_an_update_that_always_loses_the_race_gives_up_transiently() -> None:
    store = DataLakeSummaryStore(_AlwaysRacing(), "ops")
    with pytest.raises(TransientError, match="concurrent writers"):
        store.update("jobs", _add("a"))
