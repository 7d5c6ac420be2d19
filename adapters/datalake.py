"""The data lake port: blobs in containers, read and written whole or streamed.

``DataLake`` is what services depend on. ``AzureBlobDataLake`` talks to Azure Blob Storage
(or Azurite); ``InMemoryDataLake`` is the shipped fake for unit tests. Both pass the same
contract suite (tests/integration/test_datalake_contract.py).
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any, Protocol

from adapters.errors import ConflictError, NotFoundError, TransientError

if TYPE_CHECKING:
    from azure.storage.blob import BlobServiceClient

    from adapters.settings import Connection


@dataclass(frozen=True)
class BlobInfo:
    container: str
    name: str
    etag: str
    size: int
    last_modified: datetime


class DataLake(Protocol):
    """Blob storage as the services see it.

    Writes are atomic per blob: a reader sees the old content or the whole new content,
    never a prefix. ``write`` with ``if_absent=True`` raises ``ConflictError`` when the blob
    exists, which is how callers make "first writer wins" idempotent; with ``if_match=etag`` it
    raises ``ConflictError`` unless the blob still has that etag (also when it is gone), which
    is how read-modify-write callers detect a concurrent writer. Missing blobs raise
    ``NotFoundError``; throttling and network failures raise ``TransientError``.
    """

    def ensure_container(self, container: str) -> None: ...

    def write(
        self,
        container: str,
        name: str,
        data: bytes | IO[bytes] | Iterable[bytes],
        *,
        if_absent: bool = False,
        if_match: str | None = None,
        content_type: str | None = None,
    ) -> BlobInfo: ...

    def read(self, container: str, name: str) -> bytes: ...

    def open(self, container: str, name: str) -> IO[bytes]: ...

    def info(self, container: str, name: str) -> BlobInfo: ...

    def exists(self, container: str, name: str) -> bool: ...

    def list(self, container: str, prefix: str = "") -> Iterator[BlobInfo]: ...

    def delete(self, container: str, name: str) -> None: ...


def _as_bytes(data: bytes | IO[bytes] | Iterable[bytes]) -> bytes:
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    if hasattr(data, "read"):
        return data.read()  # type: ignore[no-any-return]
    return b"".join(data)


class InMemoryDataLake:
    """A thread-safe in-process ``DataLake`` for tests; etags change on every write."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._blobs: dict[tuple[str, str], tuple[bytes, BlobInfo]] = {}
        self._containers: set[str] = set()
        self._counter = 0

    def ensure_container(self, container: str) -> None:
        with self._lock:
            self._containers.add(container)

    def write(
        self,
        container: str,
        name: str,
        data: bytes | IO[bytes] | Iterable[bytes],
        *,
        if_absent: bool = False,
        if_match: str | None = None,
        content_type: str | None = None,
    ) -> BlobInfo:
        payload = _as_bytes(data)
        with self._lock:
            if container not in self._containers:
                raise NotFoundError(f"container {container!r} does not exist")
            if if_absent and (container, name) in self._blobs:
                raise ConflictError(f"blob {container}/{name} exists already")
            if if_match is not None:
                current = self._blobs.get((container, name))
                if current is None or current[1].etag != if_match:
                    raise ConflictError(f"blob {container}/{name} changed since it was read")
            self._counter += 1
            digest = hashlib.md5(payload + str(self._counter).encode(), usedforsecurity=False)
            info = BlobInfo(
                container=container,
                name=name,
                etag=f'"0x{digest.hexdigest()[:16].upper()}"',
                size=len(payload),
                last_modified=datetime.now(UTC),
            )
            self._blobs[(container, name)] = (payload, info)
            return info

    def _get(self, container: str, name: str) -> tuple[bytes, BlobInfo]:
        with self._lock:
            try:
                return self._blobs[(container, name)]
            except KeyError:
                raise NotFoundError(f"blob {container}/{name} does not exist") from None

    def read(self, container: str, name: str) -> bytes:
        return self._get(container, name)[0]

    def open(self, container: str, name: str) -> IO[bytes]:
        return io.BytesIO(self._get(container, name)[0])

    def info(self, container: str, name: str) -> BlobInfo:
        return self._get(container, name)[1]

    def exists(self, container: str, name: str) -> bool:
        with self._lock:
            return (container, name) in self._blobs

    def list(self, container: str, prefix: str = "") -> Iterator[BlobInfo]:
        with self._lock:
            if container not in self._containers:
                raise NotFoundError(f"container {container!r} does not exist")
            items = [
                info
                for (c, n), (_, info) in sorted(self._blobs.items())
                if c == container and n.startswith(prefix)
            ]
        return iter(items)

    def delete(self, container: str, name: str) -> None:
        with self._lock:
            if self._blobs.pop((container, name), None) is None:
                raise NotFoundError(f"blob {container}/{name} does not exist")


def blob_service_client(connection: Connection) -> BlobServiceClient:
    """Build a ``BlobServiceClient`` from a connection string or a managed identity."""
    from azure.storage.blob import BlobServiceClient

    if connection.connection_string:
        return BlobServiceClient.from_connection_string(connection.connection_string)
    from azure.identity import DefaultAzureCredential

    credential = DefaultAzureCredential(managed_identity_client_id=connection.client_id)
    assert connection.blob_service_uri is not None
    return BlobServiceClient(connection.blob_service_uri, credential=credential)


class AzureBlobDataLake:
    """``DataLake`` over Azure Blob Storage (or Azurite).

    Uploads go through staged blocks committed at the end, which is what makes a write atomic.
    """

    def __init__(self, client: BlobServiceClient) -> None:
        self._client = client

    @classmethod
    def from_connection(cls, connection: Connection) -> AzureBlobDataLake:
        return cls(blob_service_client(connection))

    def _translate(self, exc: Exception, what: str) -> Exception:
        from azure.core.exceptions import (
            ResourceExistsError,
            ResourceModifiedError,
            ResourceNotFoundError,
            ServiceRequestError,
            ServiceResponseError,
        )

        if isinstance(exc, ResourceNotFoundError):
            return NotFoundError(f"{what} does not exist")
        if isinstance(exc, ResourceExistsError | ResourceModifiedError):
            return ConflictError(f"{what} exists already")
        if isinstance(exc, ServiceRequestError | ServiceResponseError):
            return TransientError(f"storage unreachable while accessing {what}: {exc}")
        status = getattr(exc, "status_code", None)
        if status in (408, 429, 500, 502, 503, 504):
            return TransientError(f"storage answered {status} for {what}")
        return exc

    def ensure_container(self, container: str) -> None:
        from azure.core.exceptions import ResourceExistsError

        try:
            self._client.create_container(container)
        except ResourceExistsError:
            pass
        except Exception as exc:
            raise self._translate(exc, f"container {container}") from exc

    def write(
        self,
        container: str,
        name: str,
        data: bytes | IO[bytes] | Iterable[bytes],
        *,
        if_absent: bool = False,
        if_match: str | None = None,
        content_type: str | None = None,
    ) -> BlobInfo:
        from azure.core import MatchConditions
        from azure.storage.blob import ContentSettings

        blob = self._client.get_blob_client(container, name)
        settings = ContentSettings(content_type=content_type) if content_type else None
        conditions: dict[str, Any] = {}
        if if_match is not None:
            # If-Match: the write fails with 412 when someone else wrote since our read.
            conditions = {"etag": if_match, "match_condition": MatchConditions.IfNotModified}
        try:
            # overwrite=False sends If-None-Match: *, so a concurrent second writer loses.
            result = blob.upload_blob(
                data, overwrite=not if_absent, content_settings=settings, **conditions
            )
        except Exception as exc:
            raise self._translate(exc, f"blob {container}/{name}") from exc
        return BlobInfo(
            container=container,
            name=name,
            etag=str(result["etag"]),
            size=-1,
            last_modified=result["last_modified"],
        )

    def read(self, container: str, name: str) -> bytes:
        try:
            return self._client.get_blob_client(container, name).download_blob().readall()
        except Exception as exc:
            raise self._translate(exc, f"blob {container}/{name}") from exc

    def open(self, container: str, name: str) -> IO[bytes]:
        try:
            downloader = self._client.get_blob_client(container, name).download_blob()
        except Exception as exc:
            raise self._translate(exc, f"blob {container}/{name}") from exc
        return io.BufferedReader(_ChunkStream(downloader.chunks()), buffer_size=1024 * 1024)

    def info(self, container: str, name: str) -> BlobInfo:
        try:
            props = self._client.get_blob_client(container, name).get_blob_properties()
        except Exception as exc:
            raise self._translate(exc, f"blob {container}/{name}") from exc
        return BlobInfo(container, name, str(props.etag), int(props.size), props.last_modified)

    def exists(self, container: str, name: str) -> bool:
        try:
            return bool(self._client.get_blob_client(container, name).exists())
        except Exception as exc:
            raise self._translate(exc, f"blob {container}/{name}") from exc

    def list(self, container: str, prefix: str = "") -> Iterator[BlobInfo]:
        try:
            items = list(
                self._client.get_container_client(container).list_blobs(
                    name_starts_with=prefix or None
                )
            )
        except Exception as exc:
            raise self._translate(exc, f"container {container}") from exc
        for p in items:
            yield BlobInfo(container, p.name, str(p.etag), int(p.size), p.last_modified)

    def delete(self, container: str, name: str) -> None:
        try:
            self._client.get_blob_client(container, name).delete_blob()
        except Exception as exc:
            raise self._translate(exc, f"blob {container}/{name}") from exc


class _ChunkStream(io.RawIOBase):
    """A read-only file object over an iterator of byte chunks (bounded memory)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._buffer:
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(b), len(self._buffer))
        b[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n
