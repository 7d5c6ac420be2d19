"""One contract suite for the DataLake port, run against the fake and against Azurite."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator

import pytest

from adapters.datalake import AzureBlobDataLake, DataLake, InMemoryDataLake
from adapters.errors import ConflictError, NotFoundError
from adapters.settings import Connection
from local.hosting.azurite import Azurite


@pytest.fixture(params=["in-memory", "azurite"])
def lake(request: pytest.FixtureRequest) -> Iterator[tuple[DataLake, str]]:
    container = f"c{uuid.uuid4().hex[:20]}"
    if request.param == "in-memory":
        impl: DataLake = InMemoryDataLake()
    else:
        request.applymarker(pytest.mark.integration)
        azurite: Azurite = request.getfixturevalue("azurite")
        impl = AzureBlobDataLake.from_connection(
            Connection(name="lake", connection_string=azurite.connection_string)
        )
    impl.ensure_container(container)
    impl.ensure_container(container)  # idempotent
    yield impl, container


def test_write_then_read_round_trips(lake: tuple[DataLake, str]) -> None:
    impl, c = lake
    info = impl.write(c, "a/b.csv", b"x,y\n1,2\n", content_type="text/csv")
    assert info.etag
    assert impl.read(c, "a/b.csv") == b"x,y\n1,2\n"
    assert impl.exists(c, "a/b.csv") and not impl.exists(c, "a/missing.csv")
    assert impl.info(c, "a/b.csv").size == 8


def test_streams_and_chunk_iterables_are_accepted(lake: tuple[DataLake, str]) -> None:
    impl, c = lake
    impl.write(c, "s.bin", io.BytesIO(b"0123456789" * 1000))
    impl.write(c, "g.bin", (bytes([i]) * 100 for i in range(3)))
    with impl.open(c, "s.bin") as fh:
        assert fh.read(5) == b"01234"
        assert len(fh.read()) == 9995
    assert impl.read(c, "g.bin") == b"\x00" * 100 + b"\x01" * 100 + b"\x02" * 100


def test_overwrite_changes_the_etag(lake: tuple[DataLake, str]) -> None:
    impl, c = lake
    first = impl.write(c, "v.txt", b"1")
    second = impl.write(c, "v.txt", b"2")
    assert first.etag != second.etag
    assert impl.read(c, "v.txt") == b"2"


def test_if_absent_lets_the_first_writer_win(lake: tuple[DataLake, str]) -> None:
    impl, c = lake
    impl.write(c, "once.json", b"{}", if_absent=True)
    with pytest.raises(ConflictError):
        impl.write(c, "once.json", b"[]", if_absent=True)
    assert impl.read(c, "once.json") == b"{}"


def test_if_match_detects_a_write_since_the_read(lake: tuple[DataLake, str]) -> None:
    impl, c = lake
    seen = impl.write(c, "doc.json", b"1").etag
    assert impl.info(c, "doc.json").etag == seen
    mine = impl.write(c, "doc.json", b"2", if_match=seen)  # nobody wrote in between
    with pytest.raises(ConflictError):
        impl.write(c, "doc.json", b"3", if_match=seen)  # the etag moved on with our write
    assert impl.read(c, "doc.json") == b"2"
    impl.write(c, "doc.json", b"4", if_match=impl.info(c, "doc.json").etag)
    assert mine.etag != impl.info(c, "doc.json").etag
    with pytest.raises(ConflictError):
        impl.write(c, "gone.json", b"5", if_match=seen)  # a blob that does not exist
    assert not impl.exists(c, "gone.json")


def test_list_by_prefix_is_sorted(lake: tuple[DataLake, str]) -> None:
    impl, c = lake
    for name in ("p/2.csv", "p/1.csv", "q/1.csv"):
        impl.write(c, name, b"x")
    assert [b.name for b in impl.list(c, "p/")] == ["p/1.csv", "p/2.csv"]
    assert len(list(impl.list(c))) == 3


def test_missing_things_raise_not_found(lake: tuple[DataLake, str]) -> None:
    impl, c = lake
    for op in (impl.read, impl.info, impl.delete):
        with pytest.raises(NotFoundError):
            op(c, "nope")
    with pytest.raises(NotFoundError):
        list(impl.list(f"z{uuid.uuid4().hex[:20]}"))


def test_delete_removes(lake: tuple[DataLake, str]) -> None:
    impl, c = lake
    impl.write(c, "d.txt", b"x")
    impl.delete(c, "d.txt")
    assert not impl.exists(c, "d.txt")


def test_a_refused_identity_names_the_role_it_lacks(azurite: Azurite) -> None:
    # Azurite checks the shared-key signature as Azure Storage does: a wrong key is a real
    # 403 AuthenticationFailed from the service, not an exception made up by the test.
    import base64

    from adapters.errors import AccessDeniedError

    good = azurite.connection_string
    key = good.split("AccountKey=", 1)[1].split(";", 1)[0]
    wrong = base64.b64encode(b"not the account key" * 3).decode()
    lake = AzureBlobDataLake.from_connection(
        Connection(name="lake", connection_string=good.replace(key, wrong))
    )
    container = f"c{uuid.uuid4().hex[:20]}"
    for op in (
        lambda: lake.ensure_container(container),
        lambda: lake.write(container, "x.txt", b"x"),
        lambda: lake.read(container, "x.txt"),
        lambda: list(lake.list(container)),
    ):
        with pytest.raises(AccessDeniedError, match="Storage Blob Data Contributor") as caught:
            op()
        assert "403" in str(caught.value)
