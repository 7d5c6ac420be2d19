"""The local host as an attacker meets it: keys on every system route, loopback names only,
JSON where JSON is expected, bodies sized before they are parsed, and one bad blob never
stalling the others.

A small app (``tests/integration/apps/every_binding.py``) on the real local host, real HTTP on
loopback, real Azurite; the host's loop runs in asyncio debug mode, so a request that holds the
loop logs asyncio's "Executing <...> took X seconds" warning, which fails a test.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient

from local.hosting.azurite import Azurite
from local.hosting.host import HostConfig, LocalFunctionsHost
from tests.integration.apps import every_binding as app_module
from tests.support import logs_at_info, stalls, wait_until

pytestmark = pytest.mark.integration

SLOW_SECONDS = 0.5


def call(
    url: str,
    body: bytes | None = None,
    method: str = "GET",
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """(status, JSON body) of a request; a body is sent as JSON unless a type is given."""
    headers = dict(headers or {})
    if body is not None:
        headers.setdefault("Content-Type", "application/json")
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


@pytest.fixture(scope="module")
def host(
    azurite: Azurite, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalFunctionsHost]:
    config = HostConfig(
        state_dir=tmp_path_factory.mktemp("defended"),
        environ={
            "AzureWebJobsStorage": azurite.connection_string,
            "DropStorage": azurite.connection_string,
        },
        host_id=f"defended-{uuid.uuid4().hex[:8]}",
        blob_poll_interval=0.2,
        slow_callback_seconds=SLOW_SECONDS,
    )
    with LocalFunctionsHost(app_module.make_app().get_functions(), config) as running:
        yield running


@pytest.fixture(autouse=True)
def _capture(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    with logs_at_info(caplog):
        yield


def handler_stalls(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Stalls inside a request handler: parsing or sizing a body on the loop shows up here
    (the connection's own bookkeeping can be slow on a loaded machine and is not the host's)."""
    return [s for s in stalls(caplog) if "_handle_request" in s]


def _eg_url(host: LocalFunctionsHost, function: str = "on_event", key: str | None = "eg") -> str:
    url = f"{host.base_url}/runtime/webhooks/eventgrid?functionName={function}"
    if key == "eg":
        key = host.keys.system_keys["eventgrid_extension"]
    return url + (f"&code={key}" if key else "")


def _event(event_id: str, data: Any = None) -> dict[str, Any]:
    return {
        "id": event_id,
        "eventType": "Microsoft.MachineLearningServices.RunCompleted",
        "subject": "experiments/e/runs/r",
        "eventTime": "2026-11-26T10:00:00Z",
        "data": data or {},
        "dataVersion": "2",
    }


# ---------------------------------------------------------------- finding 4: keyless routes


def test_the_durable_rpc_routes_need_the_system_or_master_key(host: LocalFunctionsHost) -> None:
    start = f"{host.base_url}/durabletask/orchestrators/pipeline"
    listing = f"{host.base_url}/durabletask/instances/?showInput=true"
    assert call(start, b'{"x": 1, "key": "k"}', "POST")[0] == 401
    assert call(listing)[0] == 401
    assert call(f"{listing}&code={host.keys.default_function_key}")[0] == 401
    system = host.keys.system_keys["durabletask_extension"]
    assert call(f"{listing}&code={system}")[0] == 200
    assert call(listing, headers={"x-functions-key": host.keys.master})[0] == 200
    # The durable client binding reaches them with the key as URL credentials (Basic).
    basic = base64.b64encode(f"durabletask:{system}".encode()).decode()
    assert call(listing, headers={"Authorization": f"Basic {basic}"})[0] == 200


def test_the_public_durable_webhooks_take_the_master_key_too(host: LocalFunctionsHost) -> None:
    base = f"{host.base_url}/runtime/webhooks/durabletask/instances/nope"
    assert call(base)[0] == 401
    assert call(f"{base}?code={host.keys.master}")[0] == 404


def test_a_durable_body_must_be_declared_json(host: LocalFunctionsHost) -> None:
    key = host.keys.system_keys["durabletask_extension"]
    url = f"{host.base_url}/durabletask/orchestrators/pipeline?code={key}"
    status, body = call(url, b'{"x": 1}', "POST", {"Content-Type": "text/plain"})
    assert status == 415 and "application/json" in body["Message"]


def test_a_start_through_the_durable_client_still_works(host: LocalFunctionsHost) -> None:
    url = f"{host.base_url}/api/orchestrators/pipeline?code={host.keys.default_function_key}"
    status, payload = call(url, b'{"x": 1, "key": "defended"}', "POST")
    assert status == 202 and payload["id"]
    assert "durabletask:" not in json.dumps(payload), "the RPC credentials stay in the binding"


def test_a_request_naming_another_host_is_refused(host: LocalFunctionsHost) -> None:
    # A DNS-rebinding page reaches 127.0.0.1 under its own name.
    port = host.base_url.rsplit(":", 1)[1]
    url = f"{host.base_url}/api/open"
    assert call(url)[0] == 200
    for name in (f"evil.example:{port}", "127.0.0.1", f"127.0.0.1.nip.io:{port}"):
        status, body = call(url, headers={"Host": name})
        assert status == 421 and body["error"]["code"] == "misdirected_request", name
    assert call(url, headers={"Host": f"localhost:{port}"})[0] == 200
    assert call(url, headers={"Host": f"[::1]:{port}"})[0] == 200


def test_a_request_from_another_origin_is_refused(host: LocalFunctionsHost) -> None:
    url = f"{host.base_url}/api/open"
    assert call(url, headers={"Origin": "https://evil.example"})[0] == 403
    assert call(url, headers={"Origin": "null"})[0] == 403
    assert call(url, headers={"Origin": host.base_url})[0] == 200


def test_a_function_specific_key_opens_only_its_function(host: LocalFunctionsHost) -> None:
    only_echo = host.function_key("echo", "reader")
    assert call(f"{host.base_url}/api/echo/a?code={only_echo}", b"{}", "POST")[0] == 200
    start = f"{host.base_url}/api/orchestrators/pipeline?code={only_echo}"
    assert call(start, b'{"x": 1, "key": "k2"}', "POST")[0] == 401
    assert host.function_key("echo", "reader") == only_echo, "created once, then reused"


def test_a_key_with_any_characters_is_just_a_wrong_key(host: LocalFunctionsHost) -> None:
    url = f"{host.base_url}/api/echo/a"
    assert call(url, b"{}", "POST", {"x-functions-key": "cl\u00e9"})[0] == 401


# ---------------------------------------------------------------- findings 3, 6, 7: Event Grid


def test_the_event_grid_webhook_checks_the_key_before_the_function_name(
    host: LocalFunctionsHost,
) -> None:
    body = json.dumps([_event("k")]).encode()
    assert call(_eg_url(host, "missing", key=None), body, "POST")[0] == 401
    assert call(_eg_url(host, "on_event", key=None), body, "POST")[0] == 401
    assert call(_eg_url(host, "missing"), body, "POST")[0] == 404
    assert call(_eg_url(host, "on_event", key=host.keys.master), body, "POST")[0] == 200


def test_deeply_nested_json_to_the_event_grid_webhook_is_a_400(host: LocalFunctionsHost) -> None:
    status, body = call(_eg_url(host), b"[" * 10_000 + b"]" * 10_000, "POST")
    assert status == 400 and body["error"]["code"] == "bad_json"


def test_an_event_grid_body_that_is_not_json_is_a_415(host: LocalFunctionsHost) -> None:
    body = json.dumps([_event("t")]).encode()
    status, answer = call(_eg_url(host), body, "POST", {"Content-Type": "text/plain"})
    assert status == 415 and answer["error"]["code"] == "unsupported_media_type"
    cloud = {"Content-Type": "application/cloudevents-batch+json; charset=utf-8"}
    assert call(_eg_url(host), body, "POST", cloud)[0] == 200


def test_a_20_mb_event_grid_body_is_refused_unread_without_holding_the_loop(
    host: LocalFunctionsHost, caplog: pytest.LogCaptureFixture
) -> None:
    events = [_event(f"big-{i}", {"pad": "p" * 1000}) for i in range(20_000)]
    body = json.dumps(events).encode()
    assert len(body) > 20_000_000
    status, answer = call(_eg_url(host), body, "POST")
    assert status == 413 and "per request" in answer["error"]["message"]
    # The same body without a length (chunked) is refused as soon as it passes the bound.
    chunks = iter([body[i : i + 65536] for i in range(0, len(body), 65536)])
    request = urllib.request.Request(
        _eg_url(host),
        data=chunks,
        method="POST",
        headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=60)
    assert refused.value.code == 413
    assert call(f"{host.base_url}/api/open")[0] == 200
    assert handler_stalls(caplog) == []


def test_an_event_grid_body_just_over_the_cap_is_parsed_off_the_loop_and_named(
    host: LocalFunctionsHost, caplog: pytest.LogCaptureFixture
) -> None:
    events = [_event(f"many-{i}", {"pad": "q" * 50}) for i in range(6000)]
    status, answer = call(_eg_url(host), json.dumps(events).encode(), "POST")
    assert status == 413 and "6,000 events" in answer["error"]["message"]
    assert handler_stalls(caplog) == []


# ---------------------------------------------------------------- finding 5: odd blob names


@pytest.fixture(scope="module")
def drops(azurite: Azurite) -> BlobServiceClient:
    client = BlobServiceClient.from_connection_string(azurite.connection_string)
    if not client.get_container_client("drops").exists():
        client.create_container("drops")
    return client


def _processed(name: str) -> bool:
    return any(c["name"] == f"drops/{name}" for c in app_module.CALLS["on_drop"])


@pytest.mark.parametrize(
    "odd", ["\x01control.csv", "..\\..\\escape.csv", "sub/\x1fdeeper.csv", "n" * 1000 + ".csv"]
)
def test_a_badly_named_blob_does_not_stall_the_others(
    host: LocalFunctionsHost, drops: BlobServiceClient, odd: str
) -> None:
    folder = f"events{uuid.uuid4().hex[:8]}"
    bad = f"{folder}/b/{odd}"
    good = [f"{folder}/b/good.csv", f"{folder}/c/other.csv", f"{folder}/b/zz-after.csv"]
    container = drops.get_container_client("drops")
    container.upload_blob(bad, b"bad")
    try:
        for name in good:
            container.upload_blob(name, name.encode())
        for name in good:
            wait_until(lambda name=name: _processed(name), timeout=30)
    finally:
        container.delete_blob(bad)
