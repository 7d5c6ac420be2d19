"""The event publishing port: Azure ML–shaped Event Grid events sent to a webhook.

``EventPublisher`` is what the local Azure ML executor depends on. ``EventGridWebhookPublisher``
sends with the real ``azure-eventgrid`` client (``EventGridPublisherClient``) to a URL such as
the local host's ``/runtime/webhooks/eventgrid?functionName=X``; ``RecordingEventPublisher``
keeps events in memory for tests; ``NullEventPublisher`` drops them (no URL configured).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from enum import StrEnum
from typing import Any, Protocol

from adapters.errors import BadInputError, TransientError

# Event Grid quotas (learn.microsoft.com/azure/event-grid/quotas-limits, custom and system
# topics): an event is at most 1 MB and a publish request at most 5,000 events; the event
# schema page adds that the array may total at most 1 MB and that Event Grid answers 413 to
# anything larger. Deliveries to a webhook stay within the same bounds (a subscription's
# batching is capped at 5,000 events and 1,024 KB). "MB" is read as 1,048,576 bytes of the
# UTF-8 JSON.
EVENT_GRID_MAX_EVENT_BYTES = 1024 * 1024
EVENT_GRID_MAX_BATCH_BYTES = 1024 * 1024
EVENT_GRID_MAX_EVENTS_PER_BATCH = 5000


def event_bytes(event: Any) -> int:
    """UTF-8 size of one event as compact JSON (a lower bound of any sender's encoding)."""
    return len(json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def _sent_bytes(event: Any) -> int:
    # The SDK sends json.dumps' default layout (spaces after separators, ASCII escapes).
    return len(json.dumps(event).encode("utf-8"))


def event_grid_batch_problem(body_bytes: int, events: Sequence[Any]) -> str | None:
    """Why Event Grid would refuse this batch (it answers 413), or ``None``.

    The count is checked before any event is measured, so a huge batch costs nothing more.
    """
    if len(events) > EVENT_GRID_MAX_EVENTS_PER_BATCH:
        return (
            f"the batch has {len(events):,} events; Event Grid takes at most "
            f"{EVENT_GRID_MAX_EVENTS_PER_BATCH:,} per request"
        )
    for index, event in enumerate(events):
        size = event_bytes(event)
        if size > EVENT_GRID_MAX_EVENT_BYTES:
            event_id = event.get("id") if isinstance(event, Mapping) else None
            return (
                f"event {index} (id {event_id!r}) is {size:,} bytes; Event Grid accepts events of "
                f"at most {EVENT_GRID_MAX_EVENT_BYTES:,} bytes (1 MB)"
            )
    if body_bytes > EVENT_GRID_MAX_BATCH_BYTES:
        return (
            f"the batch is {body_bytes:,} bytes; Event Grid takes at most "
            f"{EVENT_GRID_MAX_BATCH_BYTES:,} bytes (1 MB) per request"
        )
    return None


def event_grid_batches(events: Sequence[Mapping[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Split ``events`` into requests Event Grid accepts (in order).

    Raises ``BadInputError`` for a single event over 1 MB: no split can send it.
    """
    batch: list[dict[str, Any]] = []
    size = 2  # the array's brackets
    for event in events:
        one = _sent_bytes(event)
        if one > EVENT_GRID_MAX_EVENT_BYTES:
            raise BadInputError(
                f"event {event.get('id')!r} is {one:,} bytes; Event Grid accepts events of at "
                f"most {EVENT_GRID_MAX_EVENT_BYTES:,} bytes (1 MB)",
                code="event_too_large",
            )
        if batch and (
            len(batch) == EVENT_GRID_MAX_EVENTS_PER_BATCH
            or size + 2 + one > EVENT_GRID_MAX_BATCH_BYTES
        ):
            yield batch
            batch, size = [], 2
        batch.append(dict(event))
        size += one + (2 if len(batch) > 1 else 0)  # ", " between events
    if batch:
        yield batch


class AzureMLEventType(StrEnum):
    """Event Grid event types an Azure ML workspace emits."""

    MODEL_REGISTERED = "Microsoft.MachineLearningServices.ModelRegistered"
    MODEL_DEPLOYED = "Microsoft.MachineLearningServices.ModelDeployed"
    RUN_COMPLETED = "Microsoft.MachineLearningServices.RunCompleted"
    RUN_STATUS_CHANGED = "Microsoft.MachineLearningServices.RunStatusChanged"
    DATASET_DRIFT_DETECTED = "Microsoft.MachineLearningServices.DatasetDriftDetected"


class EventPublisher(Protocol):
    """Publishes Event Grid–schema events (dicts with id, topic, subject, eventType, …).

    ``publish`` sends the events (in as many requests as Event Grid's batch limits need); it
    raises ``TransientError`` when the receiver is unreachable or answers with an error, so
    the caller decides whether a lost event matters, and ``BadInputError`` for an event over
    Event Grid's 1 MB.
    """

    def publish(self, events: Sequence[Mapping[str, Any]]) -> None: ...


class NullEventPublisher:
    """Drops every event (no webhook configured)."""

    def publish(self, events: Sequence[Mapping[str, Any]]) -> None:
        return None


class RecordingEventPublisher:
    """Keeps every published event, in order; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[dict[str, Any]] = []

    def publish(self, events: Sequence[Mapping[str, Any]]) -> None:
        with self._lock:
            self._events.extend(dict(e) for e in events)

    @property
    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._events)


class EventGridWebhookPublisher:
    """Sends events with ``EventGridPublisherClient`` to ``url`` (an Event Grid webhook).

    The client insists on a key credential; a local webhook ignores it, and a real topic
    gets its access key from ``key``.
    """

    def __init__(self, url: str, key: str = "local", timeout: float = 10.0) -> None:
        self.url = url
        self._key = key
        self._timeout = timeout
        self._client: Any = None
        self._lock = threading.Lock()

    def _get_client(self) -> Any:
        with self._lock:
            if self._client is None:
                from azure.core.credentials import AzureKeyCredential
                from azure.eventgrid import EventGridPublisherClient

                self._client = EventGridPublisherClient(
                    self.url, AzureKeyCredential(self._key), connection_timeout=self._timeout
                )
            return self._client

    def publish(self, events: Sequence[Mapping[str, Any]]) -> None:
        for batch in list(event_grid_batches(events)):
            self._send(batch)

    def _send(self, batch: list[dict[str, Any]]) -> None:
        from azure.core.exceptions import AzureError, HttpResponseError

        try:
            self._get_client().send(batch, read_timeout=self._timeout)
        except HttpResponseError as exc:
            # The SDK accepts only 200; Event Grid webhooks may answer any 2xx.
            if exc.status_code is not None and 200 <= exc.status_code < 300:
                return
            raise TransientError(
                f"event webhook {self.url} answered {exc.status_code}: {exc.reason}"
            ) from exc
        except AzureError as exc:
            raise TransientError(f"event webhook {self.url} unreachable: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
