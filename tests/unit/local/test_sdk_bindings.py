"""SDK-type bindings: the local host indexes and decodes them as the Python worker does.

The worker (azure-functions-python-worker, ``bindings/meta.py``) marks a binding as deferred when
the parameter's resolved annotation is an azurefunctions extension ``SdkType``, receives
``model_binding_data`` (version, source, content type, JSON content naming Connection,
ContainerName and BlobName) and hands it to the extension's converter, which builds the client
from the process environment. These tests run the real extension on that same data.
"""

from __future__ import annotations

import json
from pathlib import Path

import azure.functions as func
import azurefunctions.extensions.bindings.blob as blob_sdk
import pytest
from azure.identity import ManagedIdentityCredential
from azure.storage.blob import BlobClient

from local.hosting.functions import AppIndexError, index_functions
from local.hosting.host import HostConfig, LocalFunctionsHost
from local.hosting.invoke import (
    BLOB_BINDING_SOURCE,
    Invocation,
    blob_binding_datum,
    build_arguments,
)

AZURITE_STYLE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey="
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "BlobEndpoint=http://127.0.0.1:10999/devstoreaccount1;"
)


def _app() -> func.FunctionApp:
    app = func.FunctionApp()

    @app.blob_trigger(arg_name="blob", path="raw/{name}", connection="LAKE")
    def as_client(blob: blob_sdk.BlobClient) -> str:
        return str(blob.url)

    @app.blob_trigger(arg_name="blob", path="old/{name}", connection="LAKE")
    def as_stream(blob: func.InputStream) -> None:
        return None

    return app


def test_only_sdk_annotated_parameters_are_deferred() -> None:
    specs = {s.name: s for s in index_functions(_app().get_functions())}
    assert specs["as_client"].trigger.sdk_type is blob_sdk.BlobClient
    assert specs["as_stream"].trigger.sdk_type is None
    assert "as BlobClient" in specs["as_client"].describe()


def test_an_annotation_the_worker_cannot_resolve_fails_indexing() -> None:
    app = func.FunctionApp()

    @app.blob_trigger(arg_name="blob", path="raw/{name}", connection="LAKE")
    def unresolvable(blob: NoSuchType) -> None:  # type: ignore[name-defined]  # noqa: F821
        return None

    with pytest.raises(AppIndexError, match="unresolvable: a parameter's type annotation"):
        index_functions(app.get_functions())


def test_the_binding_data_is_what_the_host_sends() -> None:
    datum = blob_binding_datum("LAKE", "raw", "shipments/w1/a.csv")
    assert datum.type == "model_binding_data"
    assert (datum.value.version, datum.value.source, datum.value.content_type) == (
        "1.0",
        BLOB_BINDING_SOURCE,
        "application/json",
    )
    assert json.loads(datum.value.content) == {
        "Connection": "LAKE",
        "ContainerName": "raw",
        "BlobName": "shipments/w1/a.csv",
    }


def test_a_connection_string_gives_a_client_on_that_endpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LAKE", AZURITE_STYLE)
    (spec,) = [s for s in index_functions(_app().get_functions()) if s.name == "as_client"]
    cache: dict[tuple[object, ...], object] = {}
    inv = Invocation(
        trigger=blob_binding_datum("LAKE", "raw", "a/b.csv"),
        sdk_objects=cache,
    )
    (client,) = build_arguments(spec, inv).values()
    assert type(client) is BlobClient
    assert client.url == "http://127.0.0.1:10999/devstoreaccount1/raw/a/b.csv"
    assert (client.container_name, client.blob_name) == ("raw", "a/b.csv")
    # Like the worker, the same binding data gives the same (cached) client.
    assert build_arguments(spec, inv)["blob"] is client
    other = Invocation(trigger=blob_binding_datum("LAKE", "raw", "a/c.csv"), sdk_objects=cache)
    assert build_arguments(spec, other)["blob"] is not client


def test_identity_based_settings_give_a_managed_identity_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Azure's shape: X__blobServiceUri (or X__serviceUri) + X__credential + X__clientId.
    monkeypatch.delenv("LAKE", raising=False)
    monkeypatch.setenv("LAKE__blobServiceUri", "https://lake.blob.core.windows.net")
    monkeypatch.setenv("LAKE__credential", "managedidentity")
    monkeypatch.setenv("LAKE__clientId", "00000000-0000-0000-0000-000000000001")
    client = blob_sdk.BlobClientConverter.decode(
        blob_binding_datum("LAKE", "raw", "a.csv"), trigger_metadata={}, pytype=blob_sdk.BlobClient
    )
    assert client.url == "https://lake.blob.core.windows.net/raw/a.csv"
    assert isinstance(client.credential, ManagedIdentityCredential)


def test_a_missing_connection_is_the_extension_s_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key in ("NOPE", "NOPE__serviceUri", "NOPE__blobServiceUri"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(ValueError, match="NOPE does not exist"):
        blob_sdk.BlobClientConverter.decode(
            blob_binding_datum("NOPE", "raw", "a.csv"),
            trigger_metadata={},
            pytype=blob_sdk.BlobClient,
        )


def test_the_host_exports_the_binding_connection_and_refuses_a_conflict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAKE", "UseDevelopmentStorage=true")
    host = LocalFunctionsHost(
        _app().get_functions(), HostConfig(state_dir=tmp_path, environ={"LAKE": AZURITE_STYLE})
    )
    with pytest.raises(RuntimeError, match="LAKE differs between the host's settings"):
        host.start()
    monkeypatch.delenv("LAKE")
    missing = LocalFunctionsHost(_app().get_functions(), HostConfig(state_dir=tmp_path, environ={}))
    with pytest.raises(RuntimeError, match="connection setting LAKE"):
        missing.start()
