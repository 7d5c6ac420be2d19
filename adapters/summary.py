"""The summary store port: small JSON documents the app keeps current as things happen.

The model-health dashboard renders from these documents instead of scanning the model
registry, the job history and the dataset registry on every request. Whoever observes an
event (an activity that gates a model, the monitor that sees a job finish, the conditioning
trigger) folds it into the document of its concern with ``update``; pages ``read`` them.

``SummaryStore`` is the port; ``DataLakeSummaryStore`` keeps each document as one blob
(``{prefix}{name}.json`` in the ops container, through the ``DataLake`` port) and
``InMemorySummaryStore`` is the fake. Both pass tests/integration/test_summary_store.py.

Contract:
- ``read(name)`` → the document, or ``None`` when it was never written.
- ``update(name, change)`` applies ``change`` (a pure function of the current document, ``{}``
  when there is none, returning the new document) atomically: two processes updating the
  same document concurrently both land, because a write made since our read sends us back to
  read again (optimistic concurrency on the blob's etag). ``change`` may therefore run more
  than once and must not have side effects. After ``MAX_ATTEMPTS`` lost races the update
  raises ``TransientError``.
- Names are short words (``[a-z0-9_-]``); anything else is ``BadInputError``.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from adapters.errors import BadInputError, ConflictError, NotFoundError, TransientError

if TYPE_CHECKING:
    from adapters.datalake import DataLake

Document = dict[str, Any]
Change = Callable[[Document], Document]
MAX_ATTEMPTS = 25
_NAME = re.compile(r"^[a-z0-9_-]{1,64}$")


def _check_name(name: str) -> str:
    if not _NAME.match(name):
        raise BadInputError(f"summary document name {name!r} is not a short [a-z0-9_-] word")
    return name


def _copy(document: Mapping[str, Any]) -> Document:
    """A deep, JSON-clean copy (what a reader of the stored document would get)."""
    copied: Document = json.loads(json.dumps(document, sort_keys=True, default=str))
    return copied


class SummaryStore(Protocol):
    """Named JSON documents with atomic read-modify-write (see the module docstring)."""

    def read(self, name: str) -> Document | None: ...

    def update(self, name: str, change: Change) -> Document: ...


class InMemorySummaryStore:
    """A ``SummaryStore`` in a dict, serialised by a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._documents: dict[str, Document] = {}

    def read(self, name: str) -> Document | None:
        with self._lock:
            found = self._documents.get(_check_name(name))
            return None if found is None else _copy(found)

    def update(self, name: str, change: Change) -> Document:
        _check_name(name)
        with self._lock:
            updated = _copy(change(_copy(self._documents.get(name, {}))))
            self._documents[name] = updated
            return _copy(updated)


class DataLakeSummaryStore:
    """A ``SummaryStore`` of blobs ``{prefix}{name}.json`` in ``container``.

    Each update reads the blob's etag, then its content, and writes back on condition that
    the etag is unchanged (or that the blob is still absent); a lost race waits a few
    jittered milliseconds and starts over.
    """

    def __init__(self, lake: DataLake, container: str, prefix: str = "dashboard/") -> None:
        self._lake = lake
        self._container = container
        self._prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self._ready = False

    def _blob(self, name: str) -> str:
        return f"{self._prefix}{_check_name(name)}.json"

    def _ensure(self) -> None:
        if not self._ready:
            self._lake.ensure_container(self._container)
            self._ready = True

    def _load(self, blob: str) -> tuple[Document, str | None]:
        """The document and the etag it was read at (``None``: there is no blob)."""
        try:
            etag = self._lake.info(self._container, blob).etag
            raw = self._lake.read(self._container, blob)
        except NotFoundError:
            return {}, None
        try:
            document = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            # A damaged summary is rebuilt from the next events rather than blocking them.
            return {}, etag
        return (document if isinstance(document, dict) else {}), etag

    def read(self, name: str) -> Document | None:
        blob = self._blob(name)
        try:
            # One request: a reader needs no etag (pages read, only ``update`` writes).
            raw = self._lake.read(self._container, blob)
        except NotFoundError:
            return None
        try:
            document = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return {}
        return document if isinstance(document, dict) else {}

    def update(self, name: str, change: Change) -> Document:
        blob = self._blob(name)
        self._ensure()
        for attempt in range(MAX_ATTEMPTS):
            current, etag = self._load(blob)
            updated = _copy(change(current))
            data = json.dumps(updated, sort_keys=True, separators=(",", ":")).encode()
            try:
                if etag is None:
                    self._lake.write(
                        self._container, blob, data, if_absent=True,
                        content_type="application/json",
                    )  # fmt: skip
                else:
                    self._lake.write(
                        self._container, blob, data, if_match=etag,
                        content_type="application/json",
                    )  # fmt: skip
            except ConflictError:
                # Someone wrote since our read: back off a little (jittered, growing) and redo.
                time.sleep(random.uniform(0.0, 0.005 * (attempt + 1)))  # noqa: S311
                continue
            return updated
        raise TransientError(
            f"summary {name}: {MAX_ATTEMPTS} concurrent writers in a row; try again later"
        )
