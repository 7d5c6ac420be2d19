"""The local Functions host on real Azurite and the real Durable Task engine, on loopback."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient

from local.hosting.azurite import Azurite
from local.hosting.host import POISON_QUEUE, HostConfig, LocalFunctionsHost
from tests.integration.apps import every_binding as app_module
from tests.support import wait_until

pytestmark = pytest.mark.integration


def call(
    url: str,
    body: bytes | None = None,
    method: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@pytest.fixture(scope="module")
def host(
    azurite: Azurite, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalFunctionsHost]:
    app_module.CALLS.clear()
    app = app_module.make_app()
    config = HostConfig(
        state_dir=tmp_path_factory.mktemp("host"),
        environ={
            "AzureWebJobsStorage": azurite.connection_string,
            "DropStorage": azurite.connection_string,
        },
        host_id=f"test-{uuid.uuid4().hex[:8]}",
        blob_poll_interval=0.2,
    )
    with LocalFunctionsHost(app.get_functions(), config) as running:
        yield running


@pytest.fixture(scope="module")
def blobs(azurite: Azurite) -> BlobServiceClient:
    client = BlobServiceClient.from_connection_string(azurite.connection_string)
    for name in ("drops", "broken", "clientdrops"):
        if not client.get_container_client(name).exists():
            client.create_container(name)
    return client


def test_binds_only_loopback_and_lists_every_function(host: LocalFunctionsHost) -> None:
    assert host.base_url.startswith("http://127.0.0.1:")
    status, _, body = call(f"{host.base_url}/admin/functions?code={host.keys.master}")
    assert status == 200
    names = {f["name"] for f in json.loads(body)["functions"]}
    assert {"echo", "on_drop", "on_event", "yearly", "pipeline", "double"} <= names


# ---------------------------------------------------------------- HTTP


def test_http_with_key_gets_route_params_query_and_json(host: LocalFunctionsHost) -> None:
    url = f"{host.base_url}/api/echo/widget?q=7&code={host.keys.default_function_key}"
    status, headers, body = call(url, b'{"n": 1}', "POST", {"Content-Type": "application/json"})
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    assert json.loads(body) == {"item": "widget", "body": {"n": 1}, "q": "7"}


def test_http_key_in_header_works_too(host: LocalFunctionsHost) -> None:
    url = f"{host.base_url}/api/echo/x"
    status, _, _ = call(url, b"{}", "POST", {"x-functions-key": host.keys.default_function_key})
    assert status == 200


def test_http_without_or_with_wrong_key_is_401_json(host: LocalFunctionsHost) -> None:
    for suffix in ("", "?code=wrong"):
        status, _, body = call(f"{host.base_url}/api/echo/x{suffix}", b"{}", "POST")
        assert status == 401
        assert json.loads(body)["error"]["code"] == "unauthorized"


def test_anonymous_route_needs_no_key(host: LocalFunctionsHost) -> None:
    status, _, body = call(f"{host.base_url}/api/open")
    assert (status, body) == (200, b"open")


def test_unknown_route_and_wrong_method_are_json_errors(host: LocalFunctionsHost) -> None:
    status, _, body = call(f"{host.base_url}/api/no/such/thing")
    assert status == 404
    assert json.loads(body)["error"]["code"] == "not_found"
    status, _, body = call(f"{host.base_url}/api/open", b"", "POST")
    assert status == 405
    assert "GET" in json.loads(body)["error"]["message"]
    status, _, body = call(f"{host.base_url}/elsewhere")
    assert status == 404 and isinstance(json.loads(body), dict)


def test_function_exception_is_500_json_without_traceback(host: LocalFunctionsHost) -> None:
    status, _, body = call(f"{host.base_url}/api/boom")
    assert status == 500
    text = body.decode()
    assert "secret internal detail" not in text and "Traceback" not in text
    assert json.loads(text)["error"]["code"] == "function_failed"


def test_malformed_json_body_reaches_the_function_as_its_own_400(host: LocalFunctionsHost) -> None:
    url = f"{host.base_url}/api/echo/x?code={host.keys.default_function_key}"
    status, _, body = call(url, b"{not json", "POST")
    assert status == 400
    assert json.loads(body) == {"error": "body must be JSON"}


# ---------------------------------------------------------------- blobs


def test_blob_drop_runs_once_and_again_for_new_content(
    host: LocalFunctionsHost, blobs: BlobServiceClient
) -> None:
    name = f"shipments/{uuid.uuid4().hex}/week.csv"
    blobs.get_blob_client("drops", name).upload_blob(b"v1")
    wait_until(lambda: [c for c in app_module.CALLS["on_drop"] if c["name"] == f"drops/{name}"])
    time.sleep(1.0)  # several more polls: a processed version must not run again
    runs = [c for c in app_module.CALLS["on_drop"] if c["name"] == f"drops/{name}"]
    assert runs == [{"name": f"drops/{name}", "content": "v1", "len": 2}]

    blobs.get_blob_client("drops", name).upload_blob(b"version2", overwrite=True)
    wait_until(
        lambda: len([c for c in app_module.CALLS["on_drop"] if c["name"] == f"drops/{name}"]) == 2
    )
    runs = [c for c in app_module.CALLS["on_drop"] if c["name"] == f"drops/{name}"]
    assert runs[1]["content"] == "version2"


def test_an_sdk_type_blob_binding_gets_a_real_blob_client_on_azurite(
    host: LocalFunctionsHost, blobs: BlobServiceClient, azurite: Azurite
) -> None:
    # The host passes model binding data; the blob extension builds the client from the
    # DropStorage connection string (the host's settings, exported to the environment).
    name = f"{uuid.uuid4().hex}/big.csv"
    blobs.get_blob_client("clientdrops", name).upload_blob(b"a,b\n1,2\n")

    def runs() -> list[dict[str, Any]]:
        return [c for c in app_module.CALLS["on_client_drop"] if c["blob"] == name]

    (run,) = wait_until(runs)
    assert run["type"] == "azure.storage.blob._blob_client.BlobClient"
    assert run["container"] == "clientdrops"
    assert run["content"] == "a,b\n1,2\n"
    assert run["url"].startswith(azurite.blob_endpoint)
    # A new version of the same blob reuses the client the worker cached for it.
    blobs.get_blob_client("clientdrops", name).upload_blob(b"a,b\n3,4\n", overwrite=True)
    wait_until(lambda: len(runs()) == 2)
    assert runs()[1]["content"] == "a,b\n3,4\n"
    assert runs()[1]["client"] == run["client"]


def test_blob_outside_the_template_is_ignored(
    host: LocalFunctionsHost, blobs: BlobServiceClient
) -> None:
    # "drops/{source}/{name}" needs at least one "/" after the container.
    blobs.get_blob_client("drops", f"flat-{uuid.uuid4().hex}.csv").upload_blob(b"x")
    time.sleep(1.0)
    assert not [c for c in app_module.CALLS["on_drop"] if "flat-" in c["name"]]


def test_failing_blob_function_is_tried_five_times_then_poisoned(
    host: LocalFunctionsHost, blobs: BlobServiceClient, azurite: Azurite
) -> None:
    name = f"bad-{uuid.uuid4().hex}.csv"
    blob = blobs.get_blob_client("broken", name).upload_blob(b"x")
    queue = QueueClient.from_connection_string(azurite.connection_string, POISON_QUEUE)

    def poison_message() -> dict[str, Any] | None:
        if not queue.get_queue_properties:
            return None
        try:
            for msg in queue.peek_messages(max_messages=32):
                payload = json.loads(base64.b64decode(msg.content))
                if payload["BlobName"] == name:
                    return dict(payload)
        except Exception:
            return None
        return None

    message = wait_until(poison_message, timeout=30)
    assert message["ContainerName"] == "broken"
    assert message["ETag"] == blob["etag"]
    assert message["FunctionId"].endswith(".always_fails")
    time.sleep(1.0)
    attempts = [c for c in app_module.CALLS["always_fails"] if c == f"broken/{name}"]
    assert len(attempts) == 5


# ---------------------------------------------------------------- Event Grid


def _eg_url(host: LocalFunctionsHost, function: str = "on_event", key: str | None = None) -> str:
    code = key if key is not None else host.keys.system_keys["eventgrid_extension"]
    return f"{host.base_url}/runtime/webhooks/eventgrid?functionName={function}&code={code}"


def _event(
    event_id: str, event_type: str = "Microsoft.MachineLearningServices.RunCompleted"
) -> dict[str, Any]:
    return {
        "id": event_id,
        "topic": "/subscriptions/x/resourceGroups/rg/providers/"
        "Microsoft.MachineLearningServices/workspaces/w",
        "subject": "experiments/e/runs/r",
        "eventType": event_type,
        "eventTime": "2026-11-26T10:00:00.1234567Z",
        "data": {"runId": "r", "experimentName": "train"},
        "dataVersion": "2",
        "metadataVersion": "1",
    }


def test_event_grid_validation_handshake(host: LocalFunctionsHost) -> None:
    body = [
        {
            "id": "v1",
            "topic": "t",
            "subject": "",
            "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
            "eventTime": "2026-11-26T10:00:00Z",
            "data": {"validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"},
            "dataVersion": "2",
        }
    ]
    status, _, resp = call(
        _eg_url(host),
        json.dumps(body).encode(),
        "POST",
        {"aeg-event-type": "SubscriptionValidation", "Content-Type": "application/json"},
    )
    assert status == 200
    assert json.loads(resp) == {"validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}


def test_cloudevents_options_handshake(host: LocalFunctionsHost) -> None:
    status, headers, _ = call(
        _eg_url(host), None, "OPTIONS", {"WebHook-Request-Origin": "eventgrid.azure.net"}
    )
    assert status == 200
    assert headers["WebHook-Allowed-Origin"] == "eventgrid.azure.net"


def test_event_grid_array_single_object_and_duplicates(host: LocalFunctionsHost) -> None:
    first, second = f"e-{uuid.uuid4().hex}", f"e-{uuid.uuid4().hex}"
    batch = json.dumps([_event(first), _event(second)]).encode()
    assert call(_eg_url(host), batch, "POST", {"aeg-event-type": "Notification"})[0] == 200
    # A single object without the header (what the azure-eventgrid publisher sends) works too.
    assert call(_eg_url(host), json.dumps(_event(first)).encode(), "POST")[0] == 200
    seen = [c["id"] for c in app_module.CALLS["on_event"]]
    # At-least-once: the host delivers duplicates; idempotency is the handler's job.
    assert seen.count(first) == 2 and seen.count(second) == 1
    call_ = next(c for c in app_module.CALLS["on_event"] if c["id"] == second)
    assert call_["type"] == "Microsoft.MachineLearningServices.RunCompleted"
    assert call_["data"]["runId"] == "r"


def test_cloudevents_batch_is_delivered(host: LocalFunctionsHost) -> None:
    event_id = f"ce-{uuid.uuid4().hex}"
    body = [
        {
            "specversion": "1.0",
            "id": event_id,
            "source": "/subscriptions/x/storageAccounts/raw",
            "type": "Microsoft.Storage.BlobCreated",
            "time": "2026-11-26T10:00:00Z",
            "subject": "/blobServices/default/containers/raw/blobs/a.csv",
            "data": {"url": "https://raw.blob.core.windows.net/raw/a.csv"},
        }
    ]
    status, _, _ = call(
        _eg_url(host),
        json.dumps(body).encode(),
        "POST",
        {"Content-Type": "application/cloudevents-batch+json"},
    )
    assert status == 200
    assert event_id in [c["id"] for c in app_module.CALLS["on_event"]]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "bad_json"),
        (b"[]", "bad_payload"),
        (b"42", "bad_payload"),
        (b'[{"eventType": "x"}]', "bad_event"),
        (b'[{"id": "1"}]', "bad_event"),
        (b'["text"]', "bad_event"),
    ],
)
def test_malformed_event_grid_payloads_are_400_json(
    host: LocalFunctionsHost, body: bytes, code: str
) -> None:
    status, _, resp = call(_eg_url(host), body, "POST")
    assert status == 400
    assert json.loads(resp)["error"]["code"] == code


def test_event_grid_webhook_needs_its_key_and_a_real_function(host: LocalFunctionsHost) -> None:
    body = json.dumps([_event("k")]).encode()
    assert call(_eg_url(host, key="nope"), body, "POST")[0] == 401
    status, _, resp = call(_eg_url(host, function="missing"), body, "POST")
    assert status == 404 and json.loads(resp)["error"]["code"] == "not_found"
    assert call(_eg_url(host, function="echo"), body, "POST")[0] == 400


# ---------------------------------------------------------------- timers


def test_timer_runs_on_schedule(host: LocalFunctionsHost) -> None:
    before = len(app_module.CALLS["every_second"])
    wait_until(lambda: len(app_module.CALLS["every_second"]) >= before + 2, timeout=10)


def test_timer_runs_on_demand_through_the_admin_api(host: LocalFunctionsHost) -> None:
    url = f"{host.base_url}/admin/functions/yearly"
    assert call(url, b"{}", "POST")[0] == 401
    status, _, _ = call(f"{url}?code={host.keys.master}", b"{}", "POST")
    assert status == 202
    wait_until(lambda: app_module.CALLS["yearly"] == [False])


# ---------------------------------------------------------------- durable


def test_orchestration_through_the_durable_client_binding(host: LocalFunctionsHost) -> None:
    url = f"{host.base_url}/api/orchestrators/pipeline?code={host.keys.default_function_key}"
    status, headers, body = call(url, b'{"x": 4, "key": "restart-free"}', "POST")
    assert status == 202
    payload = json.loads(body)
    assert set(payload) >= {
        "id",
        "statusQueryGetUri",
        "sendEventPostUri",
        "terminatePostUri",
        "purgeHistoryDeleteUri",
    }
    assert headers["Location"] == payload["statusQueryGetUri"]
    status_url = payload["statusQueryGetUri"]
    assert status_url.startswith(host.base_url + "/runtime/webhooks/durabletask/instances/")

    def waiting() -> bool:
        _, _, raw = call(status_url)
        return json.loads(raw).get("customStatus") == {"stage": "waiting for approval"}

    wait_until(waiting, timeout=30)
    status, _, raw = call(status_url)
    assert status == 202 and json.loads(raw)["runtimeStatus"] == "Running"

    raise_url = payload["sendEventPostUri"].replace("{eventName}", "approval")
    status, _, _ = call(raise_url, b'"granted"', "POST", {"Content-Type": "application/json"})
    assert status == 202

    def finished() -> dict[str, Any] | None:
        code, _, raw = call(status_url)
        return json.loads(raw) if code == 200 else None

    final = wait_until(finished, timeout=30)
    assert final["runtimeStatus"] == "Completed"
    assert final["output"] == {
        "first": 8,
        "flaky": "ok after 3",
        "fan": [0, 2, 4, 6, 8],
        "approval": "granted",
    }


def test_management_api_needs_the_system_key(host: LocalFunctionsHost) -> None:
    status, _, body = call(f"{host.base_url}/runtime/webhooks/durabletask/instances/nope")
    assert status == 401
    assert isinstance(json.loads(body), dict)


def test_the_master_key_opens_the_durable_and_event_grid_webhooks(
    host: LocalFunctionsHost,
) -> None:
    """Azure's host master key is accepted on every endpoint, extension webhooks included."""
    master = host.keys.master
    status, _, body = call(
        f"{host.base_url}/runtime/webhooks/durabletask/instances/nope?code={master}"
    )
    assert status == 404, body  # past the key check: there is no such instance
    status, _, _ = call(
        f"{host.base_url}/runtime/webhooks/durabletask/instances/nope",
        headers={"x-functions-key": master},
    )
    assert status == 404
    body = json.dumps([_event("master-key")]).encode()
    assert call(_eg_url(host, key=master), body, "POST")[0] == 200
    # A function key is not a system key.
    function_key = host.keys.default_function_key
    status, _, _ = call(
        f"{host.base_url}/runtime/webhooks/durabletask/instances/nope?code={function_key}"
    )
    assert status == 401
    assert call(_eg_url(host, key=function_key), body, "POST")[0] == 401


def test_state_dir_holds_generated_keys(host: LocalFunctionsHost) -> None:
    keys = json.loads((Path(host.config.state_dir) / "host-keys.json").read_text())
    assert keys["masterKey"] == host.keys.master
    assert set(keys["systemKeys"]) == {"durabletask_extension", "eventgrid_extension"}
