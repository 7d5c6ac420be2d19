"""The data lake port: blobs in containers, read and written whole or streamed.

``DataLake`` is what services depend on. ``AzureBlobDataLake`` talks to Azure Blob Storage
(or Azurite); ``InMemoryDataLake`` is the shipped fake for unit tests. Both pass the same
contract suite (tests/integration/test_datalake_contract.py).

``RawBlob`` is one blob handed over by a trigger: ``BoundBlob`` wraps the ``BlobClient`` the
Functions blob binding builds (the SDK-type binding), ``LakeBlob`` a blob named in a
``DataLake`` (the CLI, tests). Both stream; neither holds the blob in memory.
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any, Protocol

from adapters.azure_calls import AzureService, access_denied
from adapters.errors import ConflictError, NotFoundError, SettingsError, TransientError

if TYPE_CHECKING:
    from azure.storage.blob import BlobClient, BlobServiceClient

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


class RawBlob(Protocol):
    """One blob as a trigger hands it over: where it is, which version, and its bytes.

    ``etag()`` names the version to read (the first call fixes it); ``open()`` streams exactly
    that version with bounded memory. A blob deleted meanwhile raises ``NotFoundError``, one
    overwritten since ``etag()`` raises ``ConflictError`` (from ``open`` or while reading);
    other storage failures raise ``TransientError``.
    """

    @property
    def container(self) -> str: ...

    @property
    def name(self) -> str: ...

    def etag(self) -> str | None: ...

    def open(self) -> IO[bytes]: ...


class LakeBlob:
    """``RawBlob`` over a blob named in a ``DataLake``."""

    def __init__(self, lake: DataLake, container: str, name: str) -> None:
        self._lake = lake
        self._container = container
        self._name = name
        self._etag: str | None = None

    @property
    def container(self) -> str:
        return self._container

    @property
    def name(self) -> str:
        return self._name

    def etag(self) -> str | None:
        if self._etag is None:
            self._etag = self._lake.info(self._container, self._name).etag
        return self._etag

    def open(self) -> IO[bytes]:
        expected = self.etag()
        stream = self._lake.open(self._container, self._name)
        # The port has no conditional read; a changed etag after opening is the best check.
        if self._lake.info(self._container, self._name).etag != expected:
            stream.close()
            raise ConflictError(f"blob {self._container}/{self._name} changed since {expected}")
        return stream


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


# Transfer sizes: the SDK's defaults send a blob of up to 64 MB in one request (read whole
# into memory first) and fetch the first 32 MB of a download at once; a conditioned part of a
# large drop is that big, and the blob trigger's memory budget cannot hold it. Blocks of
# 4 MiB keep every upload and download in bounded memory (uploads stay atomic: staged blocks
# are committed at the end).
TRANSFER_BYTES = 4 << 20
_TRANSFER: dict[str, Any] = {
    "max_single_put_size": TRANSFER_BYTES,
    "max_block_size": TRANSFER_BYTES,
    "max_single_get_size": TRANSFER_BYTES,
    "max_chunk_get_size": TRANSFER_BYTES,
}


def blob_service_client(connection: Connection) -> BlobServiceClient:
    """Build a ``BlobServiceClient`` from a connection string or a managed identity."""
    from azure.storage.blob import BlobServiceClient

    if connection.connection_string:
        return BlobServiceClient.from_connection_string(connection.connection_string, **_TRANSFER)
    from azure.identity import DefaultAzureCredential

    credential = DefaultAzureCredential(managed_identity_client_id=connection.client_id)
    assert connection.blob_service_uri is not None
    return BlobServiceClient(connection.blob_service_uri, credential=credential, **_TRANSFER)


STORAGE = AzureService(
    "the data lake storage account",
    role="Storage Blob Data Contributor",
    grant="infra/modules/rbac.bicep assigns it to the app's managed identity",
)


class AzureBlobDataLake:
    """``DataLake`` over Azure Blob Storage (or Azurite).

    Uploads go through staged blocks committed at the end, which is what makes a write atomic.
    """

    def __init__(self, client: BlobServiceClient) -> None:
        self._client = client

    @classmethod
    def from_connection(cls, connection: Connection) -> AzureBlobDataLake:
        return cls(blob_service_client(connection))

    @staticmethod
    def _translate(exc: Exception, what: str) -> Exception:
        from azure.core.exceptions import (
            ClientAuthenticationError,
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
        if isinstance(exc, ClientAuthenticationError) or status in (401, 403):
            # A missing role assignment: say which, as the other Azure adapters do.
            return access_denied(STORAGE, f"access {what}", exc)
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


class BoundBlob:
    """``RawBlob`` over the ``BlobClient`` a blob trigger's SDK-type binding passes.

    The client comes from the Functions blob extension (a connection string locally, a
    managed identity in Azure); this adapter only reads through it. The read is pinned to the
    etag from ``etag()`` (If-Match), so a blob overwritten mid-read fails instead of mixing two
    versions. It asks for one range of ``chunk_bytes`` at a time: the SDK's own downloader
    starts with a 32 MB request, which the memory budget of a large drop cannot spare.
    """

    def __init__(self, client: BlobClient, *, chunk_bytes: int = 4 << 20) -> None:
        self._client = client
        self._chunk = chunk_bytes
        self._etag: str | None = None
        self._size = 0

    @property
    def container(self) -> str:
        return str(self._client.container_name)

    @property
    def name(self) -> str:
        return str(self._client.blob_name)

    def _what(self) -> str:
        return f"blob {self.container}/{self.name}"

    def etag(self) -> str | None:
        if self._etag is None:
            try:
                props = self._client.get_blob_properties()
            except Exception as exc:
                raise _translate_read(exc, self._what()) from exc
            self._etag = str(props.etag)
            self._size = int(props.size)
        return self._etag

    def open(self) -> IO[bytes]:
        etag = self.etag()
        return io.BufferedReader(_ChunkStream(self._ranges(etag)), buffer_size=1024 * 1024)

    def _ranges(self, etag: str | None) -> Iterator[bytes]:
        from azure.core import MatchConditions

        offset = 0
        while offset < self._size:
            length = min(self._chunk, self._size - offset)
            try:
                data = self._client.download_blob(
                    offset=offset,
                    length=length,
                    etag=etag,
                    match_condition=MatchConditions.IfNotModified,
                ).readall()
            except Exception as exc:
                raise _translate_read(exc, self._what()) from exc
            if not data:  # pragma: no cover - storage answered a short range
                raise TransientError(f"{self._what()}: empty range at {offset}")
            yield data
            offset += len(data)


def _translate_read(exc: Exception, what: str) -> Exception:
    """SDK errors of a read as ours; an etag mismatch means the blob changed meanwhile."""
    from azure.core.exceptions import ResourceModifiedError

    if isinstance(exc, ResourceModifiedError):
        return ConflictError(f"{what} changed while it was being read")
    if getattr(exc, "status_code", None) in (401, 403):
        return SettingsError(
            [
                f"the blob binding's connection may not read {what} "
                f"(HTTP {getattr(exc, 'status_code', '?')}): give the app's identity "
                "Storage Blob Data Reader (or Contributor) on the account"
            ]
        )
    return AzureBlobDataLake._translate(exc, what)


class _ChunkStream(io.RawIOBase):
    """A read-only file object over an iterator of byte chunks (bounded memory).

    It walks each chunk with a memoryview: slicing the rest of a chunk off after every read
    would copy it again and again.
    """

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = memoryview(b"")
        self._pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        while self._pos >= len(self._buffer):
            try:
                self._buffer = memoryview(next(self._chunks))
            except StopIteration:
                return 0
            self._pos = 0
        n = min(len(b), len(self._buffer) - self._pos)
        b[:n] = self._buffer[self._pos : self._pos + n]
        self._pos += n
        return n
