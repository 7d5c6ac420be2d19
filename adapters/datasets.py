"""Dataset versions and the "data conditioned" signal: ports and their blob-backed adapters.

``DatasetRegistry`` records every version the conditioning service produced (or quarantined)
and which input blob (name + etag) it came from, so a redelivered blob is recognised without
reading it. ``ConditionedSignals`` is how later flows learn that a source has new usable data
for a period (e.g. to start training once a week's required sources are all in).

``BlobDatasetRegistry`` and ``BlobConditionedSignals`` keep small JSON records in a container
of the ``DataLake`` (the conditioned container by default, under ``_registry/`` and
``_signals/``, names no source can take). They are the local implementation and work on Azure
Storage too; conditioned versions are also registered as data assets (``adapters/data_assets.py``).

Both are idempotent: registering or publishing the same version twice is a no-op that returns
``False``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from adapters.datalake import DataLake
from adapters.errors import ConflictError, NotFoundError

REGISTRY_PREFIX = "_registry"
SIGNALS_PREFIX = "_signals"


@dataclass(frozen=True)
class DatasetVersion:
    """One conditioned (or quarantined) version of a source, as registered."""

    source: str
    dataset_version: str
    status: str
    input_name: str
    input_etag: str | None
    input_sha256: str
    manifest: str
    files: tuple[str, ...] = ()
    rows_in: int = 0
    rows_out: int = 0
    rows_rejected: int = 0
    period_start: str | None = None
    period_end: str | None = None
    reason_code: str | None = None
    registered_at: str = ""

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> DatasetVersion:
        raw: dict[str, Any] = json.loads(data)
        raw["files"] = tuple(raw.get("files", ()))
        return cls(**raw)


@dataclass(frozen=True)
class DataConditioned:
    """The signal: ``source`` has a new usable ``dataset_version`` covering a period."""

    source: str
    dataset_version: str
    manifest: str
    rows_out: int
    period_start: str | None
    period_end: str | None
    occurred_at: str
    files: tuple[str, ...] = field(default=())

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> DataConditioned:
        raw: dict[str, Any] = json.loads(data)
        raw["files"] = tuple(raw.get("files", ()))
        return cls(**raw)


class DatasetRegistry(Protocol):
    """Versions of each source. Registration is idempotent (first writer wins)."""

    def get(self, source: str, version: str) -> DatasetVersion | None: ...

    def find_input(self, source: str, input_name: str, etag: str | None) -> DatasetVersion | None:
        """The version already made from this exact blob (name + etag), if any."""
        ...

    def register(self, entry: DatasetVersion) -> bool:
        """Record ``entry`` and its input; ``False`` when the version was registered before."""
        ...

    def remember_input(self, entry: DatasetVersion, input_name: str, etag: str | None) -> None:
        """Point another delivery (name + etag) of the same content at ``entry``."""
        ...

    def versions(self, source: str) -> list[DatasetVersion]: ...


class ConditionedSignals(Protocol):
    """Where "data conditioned" signals go. Publishing is idempotent per source + version."""

    def publish(self, signal: DataConditioned) -> bool: ...

    def signals(self, source: str | None = None) -> list[DataConditioned]: ...


def _input_key(input_name: str, etag: str | None) -> str:
    return hashlib.sha256(f"{input_name}\n{etag or ''}".encode()).hexdigest()[:32]


class BlobDatasetRegistry:
    """``DatasetRegistry`` as JSON blobs: ``_registry/{source}/versions/{version}.json`` and
    ``_registry/{source}/inputs/{hash of name + etag}.json``."""

    def __init__(self, lake: DataLake, container: str) -> None:
        self._lake = lake
        self._container = container

    def _version_name(self, source: str, version: str) -> str:
        return f"{REGISTRY_PREFIX}/{source}/versions/{version}.json"

    def _input_name(self, source: str, input_name: str, etag: str | None) -> str:
        return f"{REGISTRY_PREFIX}/{source}/inputs/{_input_key(input_name, etag)}.json"

    def get(self, source: str, version: str) -> DatasetVersion | None:
        try:
            return DatasetVersion.from_json(
                self._lake.read(self._container, self._version_name(source, version))
            )
        except NotFoundError:
            return None

    def find_input(self, source: str, input_name: str, etag: str | None) -> DatasetVersion | None:
        if not etag:
            return None
        try:
            pointer = json.loads(
                self._lake.read(self._container, self._input_name(source, input_name, etag))
            )
        except NotFoundError:
            return None
        return self.get(source, str(pointer["dataset_version"]))

    def register(self, entry: DatasetVersion) -> bool:
        self._lake.ensure_container(self._container)
        try:
            self._lake.write(
                self._container,
                self._version_name(entry.source, entry.dataset_version),
                entry.to_json(),
                if_absent=True,
                content_type="application/json",
            )
            created = True
        except ConflictError:
            created = False
        self.remember_input(entry, entry.input_name, entry.input_etag)
        return created

    def remember_input(self, entry: DatasetVersion, input_name: str, etag: str | None) -> None:
        if not etag:
            return
        pointer = json.dumps({"dataset_version": entry.dataset_version}).encode()
        self._lake.write(
            self._container,
            self._input_name(entry.source, input_name, etag),
            pointer,
            content_type="application/json",
        )

    def versions(self, source: str) -> list[DatasetVersion]:
        prefix = f"{REGISTRY_PREFIX}/{source}/versions/"
        try:
            infos = list(self._lake.list(self._container, prefix))
        except NotFoundError:
            return []
        out = [DatasetVersion.from_json(self._lake.read(self._container, i.name)) for i in infos]
        return sorted(out, key=lambda v: (v.registered_at, v.dataset_version))


class BlobConditionedSignals:
    """``ConditionedSignals`` as JSON blobs ``_signals/{source}/{version}.json``."""

    def __init__(self, lake: DataLake, container: str) -> None:
        self._lake = lake
        self._container = container

    def publish(self, signal: DataConditioned) -> bool:
        self._lake.ensure_container(self._container)
        try:
            self._lake.write(
                self._container,
                f"{SIGNALS_PREFIX}/{signal.source}/{signal.dataset_version}.json",
                signal.to_json(),
                if_absent=True,
                content_type="application/json",
            )
        except ConflictError:
            return False
        return True

    def signals(self, source: str | None = None) -> list[DataConditioned]:
        prefix = f"{SIGNALS_PREFIX}/{source}/" if source else f"{SIGNALS_PREFIX}/"
        try:
            infos = list(self._lake.list(self._container, prefix))
        except NotFoundError:
            return []
        out = [DataConditioned.from_json(self._lake.read(self._container, i.name)) for i in infos]
        return sorted(out, key=lambda s: (s.occurred_at, s.source, s.dataset_version))


def blob_dataset_ports(
    lake: DataLake, container: str
) -> tuple[BlobDatasetRegistry, BlobConditionedSignals]:
    """The local (blob-backed) registry and signal publisher over ``container``."""
    return BlobDatasetRegistry(lake, container), BlobConditionedSignals(lake, container)
