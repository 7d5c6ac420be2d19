"""Fixtures for the Azure adapters over their real SDKs against loopback stand-ins.

``azureml`` is an Azure ML workspace stand-in (HTTPS on 127.0.0.1) with its blob storage in
the session's Azurite; ``azureml.client()`` is the adapters' ``LazyMLClient`` pointed at it the
way the SDK allows: a custom cloud (``cloud`` + ``cloud_metadata``) whose resource manager is
the stand-in and whose storage suffix is a name only the stand-in's CONNECT proxy serves. The
certificate is made per session and trusted through ``connection_verify`` (the SDK's clients)
and ``REQUESTS_CA_BUNDLE`` (the blob clients azure-ai-ml creates itself, which take no
transport options).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from adapters.azure_calls import RetrySettings
from adapters.jobs import LazyMLClient
from local.hosting.azurite import Azurite
from tests.integration.azure_standin.azureml import AzureMLStandIn
from tests.integration.azure_standin.credentials import StaticTokenCredential
from tests.integration.azure_standin.http import StandInServer
from tests.integration.azure_standin.shapes import RestShapes
from tests.integration.azure_standin.tls import StandInCertificate, make_certificate

STORAGE_SUFFIX = "mlops-standin.test"
# Small, so a throttled call retries in milliseconds instead of sleeping its Retry-After.
FAST_RETRY = RetrySettings(total=2, backoff_factor=0.01, backoff_max=0.02, retry_after_max=0.02)


@pytest.fixture(scope="session")
def standin_certificate(tmp_path_factory: pytest.TempPathFactory) -> StandInCertificate:
    return make_certificate(tmp_path_factory.mktemp("tls"), (f"*.blob.{STORAGE_SUFFIX}",))


@pytest.fixture
def rest_shapes(shared_data: Path) -> RestShapes:
    root = shared_data / "azureml-rest"
    if not (root / "OPERATIONS.md").is_file():
        pytest.skip(f"the Azure ML REST shapes are not at {root}; these tests read them")
    return RestShapes(root)


@dataclass
class AzureMLWorkspace:
    """A running stand-in and how to reach it."""

    app: AzureMLStandIn
    arm: StandInServer
    proxy: StandInServer
    certificate: StandInCertificate
    credential: StaticTokenCredential

    def cloud_options(self) -> dict[str, Any]:
        # A cloud name per stand-in: azure-ai-ml keeps the first metadata given for a name.
        return {
            "cloud": f"MlopsStandIn{self.arm.port}",
            "cloud_metadata": {
                "azure_portal": "https://portal.azure.com/",
                "resource_manager": f"{self.arm.url}/",
                "active_directory": "https://login.microsoftonline.com/",
                "aml_resource_id": "https://ml.azure.com/",
                "storage_endpoint": STORAGE_SUFFIX,
                "registry_discovery_endpoint": f"{self.arm.url}/",
            },
        }

    def client(self, retry: RetrySettings = FAST_RETRY) -> LazyMLClient:
        app = self.app
        return LazyMLClient(
            app.subscription,
            app.resource_group,
            app.workspace,
            None,
            credential=self.credential,
            retry=retry,
            connection_verify=str(self.certificate.cert_file),
            polling_interval=0.05,
            **self.cloud_options(),
        )


@pytest.fixture
def azureml(
    rest_shapes: RestShapes,
    azurite: Azurite,
    standin_certificate: StandInCertificate,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[AzureMLWorkspace]:
    """A fresh workspace per test; fails the test if the SDK asked for anything the stand-in
    does not serve, sent a bad token, or got a body that is not the service's shape."""
    app = AzureMLStandIn(
        rest_shapes,
        azurite,
        subscription="3f5c2a1e-8b7d-4c6a-9e0f-1a2b3c4d5e6f",
        resource_group="mlops-rg",
        workspace="mlops-ws",
        storage_suffix=STORAGE_SUFFIX,
    )
    context = standin_certificate.server_context()
    blob_hosts = (r"[a-z0-9]+\.blob\." + STORAGE_SUFFIX.replace(".", r"\."),)
    arm = StandInServer(app, context=context).start()
    proxy = StandInServer(app, tunnel_context=context, tunnel_hosts=blob_hosts).start()
    app.url = arm.url
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(standin_certificate.cert_file))
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    # MLClient records its cloud in this process-wide variable (and the local executor's
    # subprocesses inherit it): set through monkeypatch, it is restored after the test.
    monkeypatch.setenv("AZUREML_CURRENT_CLOUD", "AzureCloud")
    try:
        yield AzureMLWorkspace(app, arm, proxy, standin_certificate, StaticTokenCredential())
    finally:
        arm.stop()
        proxy.stop()
    problems = app.unrouted + app.auth_failures + rest_shapes.deviations
    assert not problems, "the stand-in saw requests it does not serve:\n" + "\n".join(problems)
