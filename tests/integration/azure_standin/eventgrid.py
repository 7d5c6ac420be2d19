"""A loopback stand-in of an Event Grid system topic: subscriptions, filters, push delivery.

The source (a workspace, here the local executor through ``EventGridWebhookPublisher``)
publishes to ``POST /events``; the topic stamps its ``topic`` on each event, matches it
against every subscription's filter (``includedEventTypes``, ``subjectBeginsWith`` /
``subjectEndsWith``, advanced filters) and delivers it to the subscription's function as
Event Grid does (learn.microsoft.com, "Event Grid message delivery and retry"; CONTRACTS.md):

- one event per request (``maxEventsPerBatch: 1``) in the Event Grid schema, ``aeg-*`` headers;
- success is 200-204 within **30 seconds**; anything else, or no answer in time, is retried
  on the documented schedule: 10 s, 30 s, 1 min, 5 min, 10 min, 30 min, 1 h, then every hour,
  until ``maxDeliveryAttempts`` or the event's time to live runs out; 400 and 413 are not
  retried;
- an event that cannot be delivered is dead-lettered: written as a blob (the event plus
  ``deadLetterReason``, ``deliveryAttempts``, ``lastDeliveryOutcome``…) into the dead-letter
  container, with the topic's own identity (``dead_letter`` decides how).

``compression`` scales the waits between attempts (never the 30 s timeout) so a test runs the
whole sequence in seconds. Every attempt is recorded with its duration, status and whether it
was the first delivery to that function (the cold one).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.integration.azure_standin.http import App, Request, Response

DELIVERY_TIMEOUT = 30.0
# Waits before attempts 2, 3, … (seconds); after the listed ones, every hour.
RETRY_SCHEDULE = (10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0)
NOT_RETRIED = (400, 413)


@dataclass(frozen=True)
class Subscription:
    """One event subscription with an Azure Function destination."""

    name: str
    function: str
    event_types: tuple[str, ...]
    subject_begins_with: str = ""
    subject_ends_with: str = ""
    advanced_filters: tuple[Mapping[str, Any], ...] = ()
    max_delivery_attempts: int = 30
    event_ttl_minutes: int = 1440

    def matches(self, event: Mapping[str, Any]) -> bool:
        if self.event_types and event.get("eventType") not in self.event_types:
            return False
        subject = str(event.get("subject", "")).lower()
        if not subject.startswith(self.subject_begins_with.lower()):
            return False
        if not subject.endswith(self.subject_ends_with.lower()):
            return False
        return all(_advanced(f, event) for f in self.advanced_filters)


def _value_at(event: Mapping[str, Any], key: str) -> Any:
    current: Any = event
    for part in key.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return None
        current = current[part]
    return current


def _advanced(spec: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    """One advanced filter (string comparisons are case-insensitive, as Event Grid's)."""
    operator = str(spec["operatorType"])
    actual = _value_at(event, str(spec["key"]))
    values = list(spec.get("values") or ([spec["value"]] if "value" in spec else []))
    if operator == "IsNotNull":
        return actual is not None
    if operator == "IsNullOrUndefined":
        return actual is None
    if operator == "BoolEquals":
        return actual is spec.get("value")
    if operator.startswith("Number"):
        if not isinstance(actual, int | float):
            return False
        checks: dict[str, Callable[[float], bool]] = {
            "NumberIn": lambda a: a in values,
            "NumberNotIn": lambda a: a not in values,
            "NumberLessThan": lambda a: a < values[0],
            "NumberGreaterThan": lambda a: a > values[0],
            "NumberLessThanOrEquals": lambda a: a <= values[0],
            "NumberGreaterThanOrEquals": lambda a: a >= values[0],
        }
        return checks[operator](float(actual))
    negated = operator.startswith("StringNot")
    if actual is None:
        return negated
    text = str(actual).lower()
    wanted = [str(v).lower() for v in values]
    tests: dict[str, Callable[[str], bool]] = {
        "StringIn": lambda v: text == v,
        "StringContains": lambda v: v in text,
        "StringBeginsWith": text.startswith,
        "StringEndsWith": text.endswith,
    }
    base = operator.replace("StringNot", "String")
    if base not in tests:
        raise ValueError(f"advanced filter {operator} is not evaluated")
    hit = any(tests[base](v) for v in wanted)
    return not hit if negated else hit


@dataclass
class Attempt:
    subscription: str
    function: str
    event_id: str
    event_type: str
    number: int
    status: int  # 0: no answer (timeout or refused connection)
    seconds: float
    first_to_function: bool
    started: float = field(default_factory=time.monotonic)


@dataclass
class DeadLetter:
    subscription: str
    event: dict[str, Any]
    reason: str
    attempts: int


Deliver = Callable[[Subscription, list[dict[str, Any]], dict[str, str], float], int]
"""Posts one delivery to the subscription's function; returns the HTTP status (0: none)."""
StoreDeadLetter = Callable[[str, bytes], None]
"""Writes one dead-letter blob (name, body) into the dead-letter container."""


class SystemTopic(App):
    """A system topic whose source is ``source`` (an ARM id), delivering through ``deliver``."""

    def __init__(
        self,
        name: str,
        source: str,
        subscriptions: Sequence[Subscription],
        deliver: Deliver,
        dead_letter: StoreDeadLetter,
        *,
        compression: float = 1.0,
        timeout: float = DELIVERY_TIMEOUT,
    ) -> None:
        super().__init__()
        self.name = name
        self.source = source
        self.subscriptions = list(subscriptions)
        self._deliver = deliver
        self._dead_letter = dead_letter
        self.compression = compression
        self.timeout = timeout
        self.url = ""
        self.published: list[dict[str, Any]] = []
        self.attempts: list[Attempt] = []
        self.dead_letters: list[DeadLetter] = []
        self.delivered: list[tuple[str, dict[str, Any]]] = []  # (function, event)
        self._functions_seen: set[str] = set()
        self._threads: list[threading.Thread] = []
        self.route("POST", "/events", "topic.publish", self._publish)

    def _publish(self, request: Request) -> Response:
        try:
            payload = request.json()
        except ValueError:
            return Response(400, {"error": {"code": "BadRequest", "message": "not JSON"}})
        events = payload if isinstance(payload, list) else [payload]
        for event in events:
            self.publish(dict(event))
        return Response(200, None)

    def publish(self, event: dict[str, Any]) -> None:
        """Accept one event from the source and start its deliveries."""
        event = {**event, "topic": self.source}
        with self.lock:
            self.published.append(event)
        for subscription in self.subscriptions:
            if subscription.matches(event):
                thread = threading.Thread(
                    target=self._run, args=(subscription, event), daemon=True,
                    name=f"eventgrid-{subscription.name}",
                )  # fmt: skip
                with self.lock:
                    self._threads.append(thread)
                thread.start()

    def wait_idle(self, timeout: float = 120.0) -> None:
        """Until every delivery started so far has succeeded or been dead-lettered."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                threads = [t for t in self._threads if t.is_alive()]
            if not threads:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(threads)} Event Grid deliveries still running")
            threads[0].join(timeout=0.2)

    def _run(self, subscription: Subscription, event: dict[str, Any]) -> None:
        # The event's age on Event Grid's own clock: the schedule's waits, uncompressed.
        age = 0.0
        last = "no attempt"
        for number in range(1, subscription.max_delivery_attempts + 1):
            headers = {
                "aeg-event-type": "Notification",
                "aeg-subscription-name": subscription.name.upper(),
                "aeg-delivery-count": str(number - 1),
                "aeg-data-version": str(event.get("dataVersion", "")),
                "aeg-metadata-version": str(event.get("metadataVersion", "1")),
            }
            with self.lock:
                first = subscription.function not in self._functions_seen
                self._functions_seen.add(subscription.function)
            started = time.monotonic()
            status = self._deliver(subscription, [event], headers, self.timeout)
            took = time.monotonic() - started
            if took > self.timeout:
                status = 0  # Event Grid stopped waiting: the answer does not count
            with self.lock:
                self.attempts.append(
                    Attempt(
                        subscription.name, subscription.function, str(event.get("id")),
                        str(event.get("eventType")), number, status, took, first, started,
                    )
                )  # fmt: skip
            if 200 <= status <= 204:
                with self.lock:
                    self.delivered.append((subscription.function, event))
                return
            last = f"answered {status}" if status else "no answer within the timeout"
            if status in NOT_RETRIED:
                self._dead(subscription, event, f"the endpoint {last}", number, last)
                return
            wait = RETRY_SCHEDULE[min(number - 1, len(RETRY_SCHEDULE) - 1)]
            age += wait
            if age > subscription.event_ttl_minutes * 60:
                break
            time.sleep(wait * self.compression)
        self._dead(
            subscription, event, "MaxDeliveryAttemptsExceeded or TimeToLiveExceeded",
            subscription.max_delivery_attempts, last,
        )  # fmt: skip

    def _dead(
        self, subscription: Subscription, event: dict[str, Any], reason: str, attempts: int,
        outcome: str,
    ) -> None:  # fmt: skip
        now = datetime.now(UTC)
        body = {
            **event,
            "deadLetterReason": reason,
            "deliveryAttempts": attempts,
            "lastDeliveryOutcome": outcome,
            "publishTime": now.isoformat(),
            "lastDeliveryAttemptTime": now.isoformat(),
        }
        blob = f"{self.name}/{subscription.name.upper()}/{now:%Y/%m/%d/%H}/{uuid.uuid4()}.json"
        self._dead_letter(blob, json.dumps([body]).encode())
        with self.lock:
            self.dead_letters.append(DeadLetter(subscription.name, event, reason, attempts))


def webhook_delivery(url_for: Callable[[str], str]) -> Deliver:
    """Deliveries over HTTP to ``url_for(function)`` (a function app's Event Grid webhook)."""

    def deliver(
        subscription: Subscription, events: list[dict[str, Any]], headers: dict[str, str],
        timeout: float,
    ) -> int:  # fmt: skip
        request = urllib.request.Request(
            url_for(subscription.function),
            data=json.dumps(events).encode(),
            method="POST",
            headers={"Content-Type": "application/json", **headers},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                answer.read()
                return int(answer.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except (OSError, TimeoutError):
            return 0

    return deliver
