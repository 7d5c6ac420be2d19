"""The event publishing port: Azure ML–shaped Event Grid events sent to a webhook.

``EventPublisher`` is what the local Azure ML executor depends on. ``EventGridWebhookPublisher``
sends with the real ``azure-eventgrid`` client (``EventGridPublisherClient``) to a URL such as
the local host's ``/runtime/webhooks/eventgrid?functionName=X``; ``RecordingEventPublisher``
keeps events in memory for tests; ``NullEventPublisher`` drops them (no URL configured).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any, Protocol

from adapters.errors import TransientError


class AzureMLEventType(StrEnum):
    """Event Grid event types an Azure ML workspace emits."""

    MODEL_REGISTERED = "Microsoft.MachineLearningServices.ModelRegistered"
    MODEL_DEPLOYED = "Microsoft.MachineLearningServices.ModelDeployed"
    RUN_COMPLETED = "Microsoft.MachineLearningServices.RunCompleted"
    RUN_STATUS_CHANGED = "Microsoft.MachineLearningServices.RunStatusChanged"
    DATASET_DRIFT_DETECTED = "Microsoft.MachineLearningServices.DatasetDriftDetected"


class EventPublisher(Protocol):
    """Publishes Event Grid–schema events (dicts with id, topic, subject, eventType, …).

    ``publish`` sends one batch; it raises ``TransientError`` when the receiver is unreachable
    or answers with an error, so the caller decides whether a lost event matters.
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
        if not events:
            return
        from azure.core.exceptions import AzureError, HttpResponseError

        try:
            self._get_client().send([dict(e) for e in events], read_timeout=self._timeout)
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
