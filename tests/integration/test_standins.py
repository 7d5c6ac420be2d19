"""The stand-ins the rehearsal adds, each against the real client that talks to it.

The managed identity endpoint is driven by azure-identity's own ``ManagedIdentityCredential``
(the App Service protocol it implements); the storage front door by azure-storage-blob against
Azurite in its OAuth mode; Event Grid's filters and delivery rules against the documented
behaviour (CONTRACTS.md: retries 10 s, 30 s, 1 min, 5 min … then hourly, 400/413 not retried,
dead-letter when the attempts run out).
"""

from __future__ import annotations

import base64
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.storage.blob import BlobServiceClient

from local.hosting.azurite import ACCOUNT, ACCOUNT_KEY, Azurite, AzuriteError
from tests.integration.azure_standin.eventgrid import RETRY_SCHEDULE, Subscription, SystemTopic
from tests.integration.azure_standin.http import StandInServer
from tests.integration.azure_standin.identity import ManagedIdentityEndpoint
from tests.integration.azure_standin.storage import StorageFront
from tests.integration.azure_standin.tls import StandInCertificate, make_certificate
from tests.support import wait_until

pytestmark = pytest.mark.integration
LAKE = "stlakestandin"


@dataclass
class Storage:
    front: StorageFront
    queues: StorageFront
    identities: ManagedIdentityEndpoint
    certificate: StandInCertificate
    azurite: Azurite


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Storage]:
    certificate = make_certificate(tmp_path_factory.mktemp("tls"))
    azurite = Azurite(
        certificate=(certificate.cert_file, certificate.key_file),
        oauth=True,
        accounts={ACCOUNT: ACCOUNT_KEY, LAKE: ACCOUNT_KEY},
    ).start()
    identities = ManagedIdentityEndpoint()
    identity_server = StandInServer(identities).start()
    identities.url = identity_server.url
    trust = ssl.create_default_context(cafile=str(certificate.cert_file))
    front = StorageFront("blob", azurite.ports["blob"], trust, keyless=frozenset({LAKE}))
    server = StandInServer(front, context=certificate.server_context()).start()
    front.url = server.url
    queues = StorageFront("queue", azurite.ports["queue"], trust, keyless=frozenset({LAKE}))
    queue_server = StandInServer(queues, context=certificate.server_context()).start()
    queues.url = queue_server.url
    try:
        yield Storage(front, queues, identities, certificate, azurite)
    finally:
        queue_server.stop()
        server.stop()
        identity_server.stop()
        azurite.stop()


def test_the_app_s_identity_reaches_storage_through_the_real_credential(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azure.identity import ManagedIdentityCredential

    app = storage.identities.add("app", assigned_to_app=True)
    for key, value in storage.identities.environment().items():
        monkeypatch.setenv(key, value)
    verify = str(storage.certificate.cert_file)
    lake = BlobServiceClient(
        storage.front.endpoint(LAKE),
        credential=ManagedIdentityCredential(client_id=app.client_id),
        connection_verify=verify,
    )
    lake.create_container("raw")
    lake.get_blob_client("raw", "shipments/a.csv").upload_blob(b"x" * 5000)
    assert lake.get_blob_client("raw", "shipments/a.csv").get_blob_properties().size == 5000
    seen = [(o.operation, o.action.rsplit("/", 2)[-2:], o.caller) for o in storage.front.observed]
    assert seen == [
        ("Create Container", ["containers", "write"], app.principal_id),
        ("Put Blob", ["blobs", "write"], app.principal_id),
        ("Get Blob Properties", ["blobs", "read"], app.principal_id),
    ]
    issued = storage.identities.issued[-1]
    assert (issued.identity, issued.resource) == ("app", "https://storage.azure.com")

    # An account with shared keys disabled refuses the key, as Azure does.
    keyed = BlobServiceClient(
        storage.front.endpoint(LAKE),
        credential={"account_name": LAKE, "account_key": ACCOUNT_KEY},
        connection_verify=verify,
    )
    with pytest.raises(HttpResponseError) as refused:
        keyed.get_container_client("raw").get_container_properties()
    assert refused.value.error_code == "KeyBasedAuthenticationNotPermitted"

    # An identity the app was not given gets no token.
    stranger = storage.identities.add("someone else")
    credential = ManagedIdentityCredential(client_id=stranger.client_id)
    with pytest.raises(ClientAuthenticationError):
        credential.get_token("https://storage.azure.com/.default")
    assert any("not assigned" in r for r in storage.identities.refused)


def test_the_local_host_poisons_a_failing_blob_with_identity_based_host_storage(
    storage: Storage, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """As the Bicep configures it: AzureWebJobsStorage is an identity, not a connection string."""
    from azure.storage.queue import QueueClient

    from local.hosting.host import POISON_QUEUE, HostConfig, LocalFunctionsHost
    from tests.integration.apps import every_binding

    identity = storage.identities.add("host", assigned_to_app=True)
    for key, value in storage.identities.environment().items():
        monkeypatch.setenv(key, value)
    verify = str(storage.certificate.cert_file)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", verify)
    connection = {
        "blobServiceUri": storage.front.endpoint(LAKE),
        "queueServiceUri": storage.queues.endpoint(LAKE),
        "credential": "managedidentity",
        "clientId": identity.client_id,
    }
    environ = {f"{name}__{k}": v for name in ("AzureWebJobsStorage", "DropStorage")
               for k, v in connection.items()}  # fmt: skip
    ports = storage.azurite.ports
    key = {"account_name": LAKE, "account_key": ACCOUNT_KEY}
    direct = BlobServiceClient(f"https://127.0.0.1:{ports['blob']}/{LAKE}", credential=key,
                               connection_verify=verify)  # fmt: skip
    for container in ("broken", "drops", "clientdrops"):
        if not direct.get_container_client(container).exists():
            direct.create_container(container)
    name = f"bad-{time.monotonic_ns()}.csv"
    direct.get_blob_client("broken", name).upload_blob(b"x")
    poison = QueueClient(f"https://127.0.0.1:{ports['queue']}/{LAKE}", POISON_QUEUE,
                         credential=key, connection_verify=verify)  # fmt: skip
    config = HostConfig(state_dir=tmp_path, environ=environ, host_id="poison-test",
                        blob_poll_interval=0.2)  # fmt: skip
    with LocalFunctionsHost(every_binding.make_app().get_functions(), config):

        def poisoned() -> bool:
            try:
                messages = poison.peek_messages(max_messages=32)
            except HttpResponseError:
                return False
            return any(name.encode() in base64.b64decode(m.content) for m in messages)

        wait_until(poisoned, timeout=60)
    sent = [o for o in storage.queues.observed if o.operation == "Put Message"]
    assert sent and all(o.caller == identity.principal_id for o in sent)


def deliveries(statuses: list[int]) -> tuple[list[int], Any]:
    """A delivery function answering ``statuses`` in turn (then the last one forever)."""
    seen: list[int] = []

    def deliver(sub: Subscription, events: list[dict[str, Any]], headers: dict[str, str],
                timeout: float) -> int:  # fmt: skip
        status = statuses[min(len(seen), len(statuses) - 1)]
        seen.append(status)
        return status

    return seen, deliver


def topic(deliver: Any, dead: list[tuple[str, bytes]], compression: float) -> SystemTopic:
    subscription = Subscription(
        "runs-failed",
        "on_run_status_changed",
        ("Microsoft.MachineLearningServices.RunStatusChanged",),
        advanced_filters=(
            {"operatorType": "StringIn", "key": "data.runStatus", "values": ["Failed", "Canceled"]},
        ),
        max_delivery_attempts=30,
    )
    return SystemTopic("topic", "/workspaces/w", [subscription], deliver,
                       lambda name, body: dead.append((name, body)),
                       compression=compression)  # fmt: skip


def event(status: str) -> dict[str, Any]:
    return {
        "id": f"e-{status}-{time.monotonic_ns()}",
        "subject": "experiments/x/runs/y",
        "eventType": "Microsoft.MachineLearningServices.RunStatusChanged",
        "data": {"runStatus": status},
    }


def test_event_grid_filters_and_retries_as_documented() -> None:
    dead: list[tuple[str, bytes]] = []
    seen, deliver = deliveries([500, 503, 200])
    grid = topic(deliver, dead, compression=1e-3)
    grid.publish(event("Running"))  # filtered out by the advanced filter
    grid.publish(event("failed"))  # string comparisons ignore case
    grid.wait_idle(10)
    assert seen == [500, 503, 200]
    waits = [b.started - a.started for a, b in zip(grid.attempts, grid.attempts[1:], strict=False)]
    assert waits[0] >= RETRY_SCHEDULE[0] * 1e-3 and waits[1] >= RETRY_SCHEDULE[1] * 1e-3
    assert dead == []
    assert grid.published[0]["topic"] == "/workspaces/w"


def test_event_grid_dead_letters_what_it_cannot_deliver() -> None:
    dead: list[tuple[str, bytes]] = []
    seen, deliver = deliveries([0])  # never answers
    grid = topic(deliver, dead, compression=1e-5)
    grid.publish(event("Failed"))
    grid.wait_idle(30)
    assert len(seen) == 30
    assert len(dead) == 1 and b"MaxDeliveryAttemptsExceeded" in dead[0][1]

    seen, deliver = deliveries([400])  # a bad request is not retried
    grid = topic(deliver, dead, compression=1e-5)
    grid.publish(event("Failed"))
    grid.wait_idle(10)
    assert seen == [400] and len(dead) == 2


def test_azurite_s_oauth_mode_needs_https() -> None:
    with pytest.raises(AzuriteError, match="needs HTTPS"):
        Azurite(oauth=True).start()
