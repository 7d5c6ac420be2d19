"""The local Functions host applies Azure's function timeout and Event Grid's size limits.

A small app on the real local host (real HTTP on loopback, the real Durable Task engine): a
function that finishes at once passes, one that is still running at the limit fails with the
host's own message naming the limit and the function. Stuck functions wait on an event the
fixture releases at the end, so nothing depends on how fast this machine is.
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Generator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import azure.durable_functions as df
import azure.functions as func
import pytest

from adapters.errors import BadInputError
from adapters.events import (
    EVENT_GRID_MAX_BATCH_BYTES,
    EVENT_GRID_MAX_EVENT_BYTES,
    EVENT_GRID_MAX_EVENTS_PER_BATCH,
    EventGridWebhookPublisher,
    event_bytes,
)
from local.hosting.host import (
    FLEX_DEFAULT_TIMEOUT,
    HTTP_RESPONSE_LIMIT,
    HostConfig,
    LocalFunctionsHost,
    read_function_timeout,
)

pytestmark = pytest.mark.integration

RELEASE = threading.Event()
DELIVERED: list[str] = []
_lock = threading.Lock()


def _stuck() -> None:
    RELEASE.wait(timeout=60)


def make_app() -> df.DFApp:
    app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="work/{mode}", methods=["GET"])
    def work(req: func.HttpRequest) -> func.HttpResponse:
        if req.route_params["mode"] == "stuck":
            _stuck()
        return func.HttpResponse("done")

    @app.route(route="awork/{mode}", methods=["GET"])
    async def awork(req: func.HttpRequest) -> func.HttpResponse:
        if req.route_params["mode"] == "stuck":
            await asyncio.sleep(60)
        return func.HttpResponse("done")

    @app.event_grid_trigger(arg_name="event")
    def on_event(event: func.EventGridEvent) -> None:
        if (event.get_json() or {}).get("stuck"):
            _stuck()
        with _lock:
            DELIVERED.append(event.id)

    @app.activity_trigger(input_name="mode")
    def step(mode: str) -> str:
        if mode == "stuck":
            _stuck()
        return f"{mode} done"

    @app.orchestration_trigger(context_name="context")
    def run_step(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
        return (yield context.call_activity("step", context.get_input()["mode"]))

    return app


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFunctionsHost]:
    RELEASE.clear()
    config = HostConfig(
        state_dir=tmp_path_factory.mktemp("limits"),
        environ={},
        host_id=f"limits-{uuid.uuid4().hex[:8]}",
        function_timeout=timedelta(seconds=1),
        topics={"aml": {"on_event": ("Test.Event",)}},
    )
    with LocalFunctionsHost(make_app().get_functions(), config) as running:
        try:
            yield running
        finally:
            RELEASE.set()


def call(url: str, body: bytes | None = None, method: str = "GET") -> tuple[int, Any]:
    req = urllib.request.Request(
        url, data=body, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            raw = resp.read()
            return resp.status, raw.decode()
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw else None


# ---------------------------------------------------------------- functionTimeout


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"functionTimeout": "00:10:00"}', timedelta(minutes=10)),
        ('{"functionTimeout": "1.02:03:04"}', timedelta(days=1, hours=2, minutes=3, seconds=4)),
        ('{"functionTimeout": "-1"}', None),
        ('{"version": "2.0"}', FLEX_DEFAULT_TIMEOUT),
    ],
)
def test_function_timeout_is_read_from_host_json(
    tmp_path: Path, text: str, expected: timedelta | None
) -> None:
    path = tmp_path / "host.json"
    path.write_text(text, encoding="utf-8")
    assert read_function_timeout(path) == expected


@pytest.mark.parametrize("value", ["10 minutes", "00:00:00", "25:99"])
def test_a_malformed_function_timeout_stops_the_host(tmp_path: Path, value: str) -> None:
    path = tmp_path / "host.json"
    path.write_text(json.dumps({"functionTimeout": value}), encoding="utf-8")
    with pytest.raises(ValueError, match="functionTimeout"):
        read_function_timeout(path)


def test_the_repository_host_json_is_what_the_host_applies_by_default(tmp_path: Path) -> None:
    repo_host_json = Path(__file__).resolve().parents[2] / "host.json"
    assert HostConfig(state_dir=tmp_path, environ={}).function_timeout == read_function_timeout(
        repo_host_json
    )


def test_an_http_response_is_also_bounded_by_the_230_s_load_balancer_limit(
    tmp_path: Path,
) -> None:
    unbounded = LocalFunctionsHost([], HostConfig(tmp_path, {}, function_timeout=None))
    long = LocalFunctionsHost([], HostConfig(tmp_path, {}, function_timeout=timedelta(hours=1)))
    short = LocalFunctionsHost([], HostConfig(tmp_path, {}, function_timeout=timedelta(minutes=2)))
    assert unbounded._http_deadline()[0] == HTTP_RESPONSE_LIMIT
    assert long._http_deadline()[0] == HTTP_RESPONSE_LIMIT
    assert short._http_deadline() == (timedelta(minutes=2), "host.json functionTimeout")


@pytest.mark.parametrize("route", ["work", "awork"])
def test_an_http_function_within_the_timeout_answers(host: LocalFunctionsHost, route: str) -> None:
    assert call(f"{host.base_url}/api/{route}/quick") == (200, "done")


@pytest.mark.parametrize("route", ["work", "awork"])
def test_an_http_function_past_the_timeout_fails_naming_it(
    host: LocalFunctionsHost, route: str
) -> None:
    status, body = call(f"{host.base_url}/api/{route}/stuck")
    assert status == 500
    assert body["error"]["code"] == "function_timeout"
    assert body["error"]["message"] == (
        f"Timeout value of 00:00:01 was exceeded by function: Functions.{route} "
        "(host.json functionTimeout)"
    )


def test_an_activity_past_the_timeout_fails_its_orchestration(host: LocalFunctionsHost) -> None:
    durable = host.durable
    assert durable is not None
    quick = durable.start_instance("run_step", f"q-{uuid.uuid4().hex[:6]}", {"mode": "quick"})
    stuck = durable.start_instance("run_step", f"s-{uuid.uuid4().hex[:6]}", {"mode": "stuck"})
    done = durable.wait_for_completion(quick, timeout=30)
    failed = durable.wait_for_completion(stuck, timeout=30)
    assert (done.runtime_status, done.output) == ("Completed", "quick done")
    assert failed.runtime_status == "Failed"
    assert "Timeout value of 00:00:01 was exceeded by function: Functions.step" in failed.output


def _event(event_id: str, data: dict[str, Any], event_type: str = "Test.Event") -> dict[str, Any]:
    return {
        "id": event_id,
        "topic": "/local/test",
        "subject": "limits",
        "eventType": event_type,
        "eventTime": "2026-11-23T08:00:00Z",
        "data": data,
        "dataVersion": "1",
        "metadataVersion": "1",
    }


def _webhook(host: LocalFunctionsHost) -> str:
    return host.url_for("on_event")


def test_an_event_grid_function_past_the_timeout_is_a_500_so_event_grid_retries(
    host: LocalFunctionsHost,
) -> None:
    quick = _event(f"q-{uuid.uuid4().hex[:6]}", {})
    assert call(_webhook(host), json.dumps([quick]).encode(), "POST")[0] == 200
    status, body = call(
        _webhook(host), json.dumps([_event("s-1", {"stuck": True})]).encode(), "POST"
    )
    assert status == 500 and body["error"]["event_ids"] == ["s-1"]


# ---------------------------------------------------------------- Event Grid sizes


def _event_of_bytes(event_id: str, size: int) -> dict[str, Any]:
    event = _event(event_id, {"pad": ""})
    event["data"]["pad"] = "p" * (size - event_bytes(event))
    assert event_bytes(event) == size
    return event


def test_an_event_just_under_1_mb_is_delivered(host: LocalFunctionsHost) -> None:
    event = _event_of_bytes(f"big-{uuid.uuid4().hex[:6]}", EVENT_GRID_MAX_BATCH_BYTES - 100)
    body = json.dumps([event], separators=(",", ":")).encode()
    assert len(body) <= EVENT_GRID_MAX_BATCH_BYTES
    assert call(_webhook(host), body, "POST")[0] == 200
    assert event["id"] in DELIVERED


def test_an_event_over_1_mb_is_a_413_naming_the_event(host: LocalFunctionsHost) -> None:
    event = _event_of_bytes("too-big", EVENT_GRID_MAX_EVENT_BYTES + 1)
    status, body = call(_webhook(host), json.dumps(event).encode(), "POST")
    assert status == 413
    assert "'too-big'" in body["error"]["message"] and "1 MB" in body["error"]["message"]
    assert "too-big" not in DELIVERED


def test_a_batch_over_1_mb_is_a_413(host: LocalFunctionsHost) -> None:
    events = [_event_of_bytes(f"half-{i}", 600 * 1024) for i in range(2)]
    status, body = call(_webhook(host), json.dumps(events).encode(), "POST")
    assert status == 413 and "per request" in body["error"]["message"]


def test_a_batch_over_5000_events_is_a_413_and_5000_are_delivered(
    host: LocalFunctionsHost,
) -> None:
    tag = uuid.uuid4().hex[:6]
    events = [
        {"id": f"{tag}-{i}", "eventType": "Test.Event", "data": {}}
        for i in range(EVENT_GRID_MAX_EVENTS_PER_BATCH + 1)
    ]
    status, body = call(_webhook(host), json.dumps(events).encode(), "POST")
    assert status == 413 and "5,001 events" in body["error"]["message"]
    assert call(_webhook(host), json.dumps(events[:-1]).encode(), "POST")[0] == 200
    assert sum(1 for d in DELIVERED if d.startswith(tag)) == EVENT_GRID_MAX_EVENTS_PER_BATCH


def test_a_topic_refuses_what_event_grid_refuses(host: LocalFunctionsHost) -> None:
    event = _event_of_bytes("topic-too-big", EVENT_GRID_MAX_EVENT_BYTES + 1)
    status, body = call(host.topic_url("aml"), json.dumps([event]).encode(), "POST")
    assert status == 413 and "topic aml" in body["error"]["message"]


def test_the_publisher_splits_what_one_request_cannot_carry(host: LocalFunctionsHost) -> None:
    tag = uuid.uuid4().hex[:6]
    big = [_event_of_bytes(f"{tag}-big-{i}", 400 * 1024) for i in range(3)]  # 1.2 MB in all
    many = [_event(f"{tag}-n-{i}", {}) for i in range(EVENT_GRID_MAX_EVENTS_PER_BATCH + 5)]
    publisher = EventGridWebhookPublisher(host.topic_url("aml"))
    try:
        publisher.publish(big + many)
    finally:
        publisher.close()
    assert sum(1 for d in DELIVERED if d.startswith(tag)) == len(big) + len(many)


def test_the_publisher_refuses_an_event_no_request_can_carry(host: LocalFunctionsHost) -> None:
    publisher = EventGridWebhookPublisher(host.topic_url("aml"))
    with pytest.raises(BadInputError, match="1 MB"):
        publisher.publish([_event_of_bytes("huge", EVENT_GRID_MAX_EVENT_BYTES + 10)])
