"""The blob trigger's SDK-type binding works with the identity-based settings main.bicep sets.

In Azure the blob extension (azurefunctions-extensions-bindings-blob) builds the trigger's
``BlobClient`` from the app settings of the ``MLOPS_DATALAKE`` connection. Its rules (read from
its source): ``X__serviceUri`` or ``X__blobServiceUri`` names the endpoint; with
``X__credential`` and ``X__clientId`` it uses that user-assigned managed identity. Here the
extension runs on the settings from main.bicep (deployment outputs filled with sample values),
and the credential asks a loopback stand-in of the App Service identity endpoint for a token,
so the test sees which identity it asks for.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import azurefunctions.extensions.bindings.blob as blob_sdk
import pytest

from adapters.settings import DATALAKE_CONNECTION
from local.hosting.invoke import blob_binding_datum
from tests.infra.bicep import INFRA, Expr, load

SAMPLE_OUTPUTS = {
    "dataLake.outputs.blobEndpoint": "https://lakesample.blob.core.windows.net/",
    "dataLake.outputs.queueEndpoint": "https://lakesample.queue.core.windows.net/",
    "identity.outputs.clientId": "5a1f3c8e-0000-4000-8000-00000000abcd",
}


@pytest.fixture
def identity_endpoint() -> Iterator[tuple[str, list[dict[str, list[str]]]]]:
    seen: list[dict[str, list[str]]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(parse_qs(urlparse(self.path).query))
            body = json.dumps(
                {
                    "access_token": "token-for-test",
                    "expires_on": "4102444800",
                    "resource": "https://storage.azure.com",
                    "token_type": "Bearer",
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/msi/token", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_the_extension_builds_the_trigger_client_with_the_app_s_identity(
    monkeypatch: pytest.MonkeyPatch,
    identity_endpoint: tuple[str, list[dict[str, list[str]]]],
) -> None:
    main = load(INFRA / "main.bicep")
    settings = main.variables["appSettings"]
    assert isinstance(settings, dict)
    prefix = f"{DATALAKE_CONNECTION}__"
    connection = {}
    for key, raw in settings.items():
        if key == DATALAKE_CONNECTION or key.startswith(prefix):
            value = main.resolve(raw)
            connection[key] = SAMPLE_OUTPUTS[value.text] if isinstance(value, Expr) else value
    assert DATALAKE_CONNECTION not in connection, "no connection string in Azure"
    for key, value in connection.items():
        monkeypatch.setenv(key, str(value))
    url, seen = identity_endpoint
    # The App Service managed identity protocol (what Flex Consumption offers the worker).
    monkeypatch.setenv("IDENTITY_ENDPOINT", url)
    monkeypatch.setenv("IDENTITY_HEADER", "header-for-test")

    client = blob_sdk.BlobClientConverter.decode(
        blob_binding_datum(DATALAKE_CONNECTION, "raw", "shipments/w1/a.csv"),
        trigger_metadata={},
        pytype=blob_sdk.BlobClient,
    )
    assert client.url == "https://lakesample.blob.core.windows.net/raw/shipments/w1/a.csv"
    token = client.credential.get_token("https://storage.azure.com/.default")
    assert token.token == "token-for-test"
    (query,) = seen
    assert query["client_id"] == [SAMPLE_OUTPUTS["identity.outputs.clientId"]]
    assert query["resource"] == ["https://storage.azure.com"]
