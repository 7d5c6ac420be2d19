"""One rehearsal: the app deployed on paper with one parameter file, on stand-ins of Azure.

``Rehearsal.start()`` brings up, on loopback:

- a managed identity endpoint (the App Service protocol) issuing the app's user-assigned
  identity its tokens, and tokens for the platform's other actors (the Data Factory, the
  workspace's Event Grid system topic, Azure ML compute, the operator dropping files);
- Azurite over HTTPS in OAuth mode holding the deployment's storage accounts (named as the
  Bicep names them, containers as the Bicep creates them), behind ``StorageFront`` door
  (shared keys refused, every operation recorded with its caller);
- the Azure ML workspace where jobs really run (``workspace.RunningWorkspace``), with the
  CONNECT proxy azure-ai-ml downloads outputs through;
- the workspace's Event Grid system topic with the subscriptions the Bicep declares;
- Communication Services Email answering at a realistic pace, Application Insights'
  ingestion, Key Vault;

then computes the app settings the Bicep gives the function app for this parameter file
(``cloud.app_settings``) and serves the app with them in a fresh process (``app.AppProcess``).
What the rehearsal adds to the deployment is said where it is added: the polling knobs, given
through the Bicep's own ``appSettingOverrides`` parameter so local jobs of a minute are not
polled every two, and the platform's environment (identity endpoint, trust store, the routes
to the stand-ins).
"""

from __future__ import annotations

import contextlib
import ssl
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azure.core.credentials import AccessToken
from azure.storage.blob import BlobServiceClient

from local.hosting.azurite import ACCOUNT, ACCOUNT_KEY, Azurite
from tests.e2e.adf import ActivityFailed, Http, Request, Response
from tests.infra.bicep import INFRA, load
from tests.infra.bicep_eval import Deployment
from tests.integration.azure_standin.acs import AcsStandIn
from tests.integration.azure_standin.appinsights import IngestionStandIn
from tests.integration.azure_standin.eventgrid import Subscription, SystemTopic, webhook_delivery
from tests.integration.azure_standin.http import App, StandInServer
from tests.integration.azure_standin.identity import Identity, ManagedIdentityEndpoint
from tests.integration.azure_standin.keyvault import KeyVaultStandIn
from tests.integration.azure_standin.shapes import RestShapes
from tests.integration.azure_standin.storage import StorageFront
from tests.integration.azure_standin.tls import StandInCertificate, make_certificate
from tests.rehearsal.app import AppProcess, call
from tests.rehearsal.cloud import StandInCloud, app_settings, main_deployment, storage_account_names
from tests.rehearsal.workspace import Datastore, RunningWorkspace

SUBSCRIPTION_ID = "3f5c2a1e-8b7d-4c6a-9e0f-1a2b3c4d5e6f"
AML_RESOURCE_GROUP = "rg-mlops-aml"
AML_WORKSPACE = "mlw-mlops"
# Local jobs take a minute, not an hour: the polling knobs the Bicep exposes through
# appSettingOverrides, scaled down (added to what the parameter file overrides).
POLLING = {
    "MLOPS_POLL_FIRST_SECONDS": "3",
    "MLOPS_POLL_MIN_SECONDS": "3",
    "MLOPS_POLL_MAX_SECONDS": "10",
}


# The platform's other actors, named as the permission matrix (docs/permissions.md) names them.
ACTORS = ("adf", "aml-topic", "lake-topic", "aml-compute", "operator")


def azd_environment(name: str) -> dict[str, str]:
    """The azd environment ``azd up`` would have for environment ``name``."""
    return {
        "AZURE_ENV_NAME": name,
        "AZURE_LOCATION": "westeurope",
        "AZURE_PRINCIPAL_ID": str(uuid.uuid5(uuid.NAMESPACE_URL, f"operator-{name}")),
        "AML_WORKSPACE_NAME": AML_WORKSPACE,
        "AML_RESOURCE_GROUP": AML_RESOURCE_GROUP,
        "MLOPS_ALERT_TO": "ops@example.com",
        # dev names its regions in its azd environment; prod's parameter file sets "" itself.
        "MLOPS_REGIONS": "r01",
    }


class IdentityCredential:
    """A ``TokenCredential`` for a platform actor, from the identity endpoint's issuer."""

    def __init__(self, endpoint: ManagedIdentityEndpoint, identity: Identity) -> None:
        self._endpoint = endpoint
        self._identity = identity

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        resource = scopes[0].removesuffix("/.default") if scopes else ""
        token = self._endpoint.token_for(self._identity, resource)
        return AccessToken(token, int(time.time()) + 3600)

    def close(self) -> None:
        pass


@dataclass
class Rehearsal:
    environment: str  # dev | prod
    work: Path
    rest_shapes: Path  # ../shared/data/azureml-rest
    compression: float = 1e-4  # Event Grid's retry schedule, 24 h in ~9 s
    acs_latency: float = 20.0
    started: dict[str, float] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)
    # Activity → [first request, last answer] (monotonic) of the latest pipeline run.
    adf_spans: dict[str, list[float]] = field(default_factory=dict)
    _servers: list[StandInServer] = field(default_factory=list)
    _stops: list[Callable[[], None]] = field(default_factory=list)

    @property
    def parameter_file(self) -> Path:
        return INFRA / f"main.{self.environment}.parameters.json"

    # -- start and stop ---------------------------------------------------------------------

    def _serve(self, app: App, tls: bool = True, **kwargs: Any) -> StandInServer:
        context = self.certificate.server_context() if tls else None
        server = StandInServer(app, context=context, **kwargs).start()
        self._servers.append(server)
        return server

    def start(self) -> Rehearsal:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        self.certificate: StandInCertificate = make_certificate(
            self.work / "tls", ("*.blob.core.windows.net",)
        )
        self.trust = ssl.create_default_context(cafile=str(self.certificate.cert_file))
        self.identities = ManagedIdentityEndpoint()
        self.identities.url = self._serve(self.identities, tls=False).url
        self.cloud = StandInCloud(SUBSCRIPTION_ID, self.identities.tenant_id, self.identities)
        self.deployment = main_deployment(
            self.parameter_file, azd_environment(self.environment), self.cloud, POLLING
        )
        self.accounts = storage_account_names(self.deployment)
        self.azurite = Azurite(
            certificate=(self.certificate.cert_file, self.certificate.key_file),
            oauth=True,
            accounts={ACCOUNT: ACCOUNT_KEY, **{n: ACCOUNT_KEY for n in self.accounts.values()}},
        ).start()
        self._stops.append(self.azurite.stop)
        keyless = frozenset(self.accounts.values())
        self.blob = StorageFront("blob", self.azurite.ports["blob"], self.trust, keyless=keyless)
        self.blob.url = self._serve(self.blob).url
        self.queue = StorageFront("queue", self.azurite.ports["queue"], self.trust, keyless=keyless)
        self.queue.url = self._serve(self.queue).url
        self.cloud.blob_url, self.cloud.queue_url = self.blob.url, self.queue.url
        self.cloud.table_url = f"https://127.0.0.1:{self.azurite.ports['table']}"
        self._create_containers()

        self.ingestion = IngestionStandIn()
        self.ingestion.url = self._serve(self.ingestion).url
        self.cloud.ingestion_connection_string = self.ingestion.connection_string
        self.acs = AcsStandIn(latency_seconds=self.acs_latency, retry_after=5)
        self.acs.url = self._serve(self.acs).url
        self.cloud.acs_host = self.acs.url.removeprefix("https://")
        self.key_vault = KeyVaultStandIn()
        self.key_vault.url = self._serve(self.key_vault).url
        self.cloud.key_vault_url = self.key_vault.url

        self.actors = {name: self.identities.add(name) for name in ACTORS}
        self.settings = app_settings(self.deployment)
        self._start_workspace()
        self._start_app()

    def _create_containers(self) -> None:
        """The containers the Bicep creates in each account (as ARM does: not the app)."""
        for symbol, account in self.accounts.items():
            containers = self.deployment.module(symbol).evaluate("containers")
            client = self.account_client(account)
            for container in containers or []:
                client.create_container(str(container))

    def account_client(self, account: str) -> BlobServiceClient:
        """Azurite directly, with the account key: the test's own view, never recorded."""
        return BlobServiceClient(
            f"https://127.0.0.1:{self.azurite.ports['blob']}/{account}",
            credential={"account_name": account, "account_key": ACCOUNT_KEY},
            connection_verify=str(self.certificate.cert_file),
        )

    def actor_client(self, actor: str, account: str) -> BlobServiceClient:
        """``account`` through its front door as platform actor ``actor`` (recorded)."""
        return BlobServiceClient(
            self.blob.endpoint(account),
            credential=IdentityCredential(self.identities, self.actors[actor]),
            connection_verify=str(self.certificate.cert_file),
        )

    def _start_workspace(self) -> None:
        from local.aml import LocalExecutor

        shapes = RestShapes(self.rest_shapes)
        self.rest_shape_deviations = shapes.deviations
        tracking = f"sqlite:///{self.work / 'aml' / 'mlflow.db'}"
        (self.work / "aml").mkdir(parents=True, exist_ok=True)
        executor = LocalExecutor(self.work / "aml" / "executor", tracking_uri=tracking)
        self.topic = SystemTopic(
            self.system_topic_name(),
            f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{AML_RESOURCE_GROUP}/providers/"
            f"Microsoft.MachineLearningServices/workspaces/{AML_WORKSPACE}",
            self.subscriptions(),
            webhook_delivery(self._webhook),
            self._dead_letter,
            compression=self.compression,
        )
        self.topic.url = self._serve(self.topic, tls=False).url
        self.workspace = RunningWorkspace(
            shapes,
            self.azurite,
            subscription=SUBSCRIPTION_ID,
            resource_group=AML_RESOURCE_GROUP,
            workspace=AML_WORKSPACE,
            storage_suffix="core.windows.net",
            azurite_ca=self.certificate.cert_file,
            work=self.work / "aml" / "workspace",
            executor=executor,
            tracking_uri=tracking,
            events_url=f"{self.topic.url}/events",
            datastores=self.datastores(),
            computes=self.computes(),
            read_datastore=self._read_datastore,
        )
        arm = self._serve(self.workspace)
        self.workspace.url = arm.url
        self.proxy = self._serve(
            self.workspace,
            tls=False,
            tunnel_context=self.certificate.server_context(),
            tunnel_hosts=(r"[a-z0-9]+\.blob\.core\.windows\.net",),
        )

        def stop_jobs() -> None:
            from local.processes import stop_process

            for name in list(self.workspace.jobs):
                if executor.store.exists(name):
                    executor.cancel(name)
            for runner in self.workspace.runners:
                stop_process(runner, grace=15)

        self._stops.append(stop_jobs)

    def _webhook(self, function: str) -> str:
        """Where the system topic delivers to a function (the app starts after the topic)."""
        return self.app.eventgrid_url(function)

    def _start_app(self) -> None:
        platform = {
            **self.identities.environment(),
            # The platform's trust store, which here holds the stand-ins' certificate.
            "REQUESTS_CA_BUNDLE": str(self.certificate.cert_file),
            "SSL_CERT_FILE": str(self.certificate.cert_file),
            # Fixed Azure hosts routed to the stand-ins: Azure Resource Manager (azure-ai-ml's
            # own override) and the workspace storage's blob host (a CONNECT proxy).
            "AZUREML_DEV_URL_MFE": self.workspace.url,
            "HTTPS_PROXY": self.proxy.url,
            "NO_PROXY": "127.0.0.1,localhost",
        }
        self.app = AppProcess(self.settings, platform, self.work / "app")
        self.app.start()
        self._stops.append(self.app.stop)
        self.cloud.function_app_host = self.app.base_url.removeprefix("http://")
        # infra/scripts/postdeploy.sh stores the app's function key for the Data Factory.
        assert self.app.keys is not None
        self.key_vault.secrets["function-app-key"] = self.app.keys.default_function_key

    def stop(self) -> None:
        for stop in reversed(self._stops):
            with contextlib.suppress(Exception):  # every part stops, whatever one does
                stop()
        self._stops.clear()
        for server in reversed(self._servers):
            server.stop()
        self._servers.clear()

    # -- what the Bicep says ----------------------------------------------------------------

    def system_topic_name(self) -> str:
        return str(self.deployment.output("AZURE_AML_SYSTEM_TOPIC_NAME"))

    def subscriptions(self) -> list[Subscription]:
        """The workspace event subscriptions as the post-deploy step deploys them."""
        main = self.deployment
        deployment = Deployment(
            INFRA / "event-subscriptions.bicep",
            {
                "functionAppName": main.output("AZURE_FUNCTION_APP_NAME"),
                "blobsExtensionKey": "(read by the post-deploy script)",
                "dataLakeSystemTopicName": main.output("AZURE_DATALAKE_SYSTEM_TOPIC_NAME"),
                "rawContainerName": main.output("AZURE_RAW_CONTAINER_NAME"),
                "amlResourceGroupName": main.output("AZURE_AML_RESOURCE_GROUP"),
                "amlSystemTopicName": main.output("AZURE_AML_SYSTEM_TOPIC_NAME"),
                "deadLetterStorageId": main.output("AZURE_STORAGE_ACCOUNT_ID"),
                "deadLetterContainerName": main.output("AZURE_DEADLETTER_CONTAINER_NAME"),
                "modelNamePrefix": main.output("AZURE_MODEL_NAME_PREFIX"),
            },
            self.cloud,
        )
        module = deployment.module("amlSubscriptions")
        self.dead_letter_container = str(module.evaluate("deadLetterContainerName"))
        (resource,) = load(module.template).resources(
            "Microsoft.EventGrid/systemTopics/eventSubscriptions"
        )
        retry = resource.body["properties"]["retryPolicy"]
        out = []
        for sub in module.variable("subscriptions"):
            out.append(
                Subscription(
                    name=str(sub["name"]),
                    function=str(sub["functionName"]),
                    event_types=tuple(sub.get("eventTypes") or ()),
                    subject_begins_with=str(sub.get("subjectBeginsWith") or ""),
                    subject_ends_with=str(sub.get("subjectEndsWith") or ""),
                    advanced_filters=tuple(sub.get("advancedFilters") or ()),
                    max_delivery_attempts=int(retry["maxDeliveryAttempts"]),
                    event_ttl_minutes=int(retry["eventTimeToLiveInMinutes"]),
                )
            )
        return out

    def _workspace_resources(self, resource_type: str) -> list[tuple[Deployment, str]]:
        """(module deployment, resource symbol) of every resource of ``resource_type`` the
        modules of main.bicep declare (not conditional, not looped)."""
        found = []
        for module in load(INFRA / "main.bicep").declarations:
            if module.kind != "module" or module.loop or module.condition:
                continue
            for resource in load(INFRA / module.target).resources(resource_type):
                if not (resource.loop or resource.condition):
                    found.append((self.deployment.module(module.symbol), resource.symbol))
        return found

    def datastores(self) -> dict[str, Datastore]:
        """The workspace datastores the deployment provisions over the data lake."""
        found: dict[str, Datastore] = {}
        for module, symbol in self._workspace_resources(
            "Microsoft.MachineLearningServices/workspaces/datastores"
        ):
            props = module.resource_properties(symbol)
            name = str(module.evaluate(f"{symbol}.name")).rsplit("/", 1)[-1]
            account = str(props.get("accountName", ""))
            found[name] = Datastore(
                name, self.blob.endpoint(account), str(props.get("containerName", ""))
            )
        return found

    def computes(self) -> set[str]:
        """The compute clusters the deployment creates in the workspace."""
        return {
            str(module.evaluate(f"{symbol}.name")).rsplit("/", 1)[-1]
            for module, symbol in self._workspace_resources(
                "Microsoft.MachineLearningServices/workspaces/computes"
            )
        }

    # -- platform actors -------------------------------------------------------------------

    def _read_datastore(self, datastore: Datastore, prefix: str, folder: Path) -> int:
        """Azure ML compute reading a datastore with its identity (through the front door)."""
        account = datastore.account_url.rstrip("/").rsplit("/", 1)[-1]
        container = self.actor_client("aml-compute", account).get_container_client(
            datastore.container
        )
        count = 0
        for blob in container.list_blobs(name_starts_with=prefix + "/" if prefix else None):
            target = folder / blob.name[len(prefix) :].lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(container.download_blob(blob.name).readall())
            count += 1
        return count

    def _dead_letter(self, name: str, body: bytes) -> None:
        """The system topic writes an undeliverable event with its own identity."""
        account = self.accounts["appStorage"]
        client = self.actor_client("aml-topic", account)
        client.get_blob_client(self.dead_letter_container, name).upload_blob(body)

    def upload_raw(self, files: Mapping[str, Path], batch: str) -> dict[str, str]:
        """The operator drops ``{source: file}`` into the raw container; returns the blobs."""
        raw = self.settings["MLOPS_RAW_CONTAINER"]
        lake = self.actor_client("operator", self.accounts["dataLake"])
        blobs = {}
        for source, path in files.items():
            blob = f"{source}/{batch}/{path.name}"
            lake.get_blob_client(raw, blob).upload_blob(path.read_bytes(), overwrite=True)
            blobs[source] = blob
        return blobs

    # -- Azure Data Factory ------------------------------------------------------------------

    def adf_parameters(self, orchestration: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """The pipeline's parameters: the run's, and the defaults data-factory.bicep sets
        (the Key Vault's URI; the app's URL is the local host's: it serves plain HTTP)."""
        return {
            "orchestration": orchestration,
            "input": dict(body),
            "pollIntervalSeconds": 50,
            "functionAppUrl": self.app.base_url,
            "keyVaultUrl": str(self.deployment.module("keyVault").output("uri")),
        }

    def adf_http(self) -> Http:
        """HTTP as the factory sends it, with its managed identity where the pipeline says MSI.

        The Azure Function linked service reads the function key from Key Vault (its
        ``functionKey`` is a Key Vault secret) and sends it as ``x-functions-key``. How long
        each activity's calls took, from its first request to its last answer (202 follow-ups
        included), is kept in ``adf_seconds``.
        """
        factory = IdentityCredential(self.identities, self.actors["adf"])
        vault = str(self.deployment.module("keyVault").output("uri"))

        def with_token(resource: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {factory.get_token(resource + '/.default').token}"}

        def send(request: Request) -> tuple[int, Any, dict[str, str]]:
            headers = dict(request.headers)
            if request.kind == "AzureFunctionActivity":
                status, secret, _ = call(
                    f"{vault}secrets/function-app-key?api-version=7.4", None, "GET",
                    with_token("https://vault.azure.net"), context=self.trust,
                )  # fmt: skip
                if status != 200:
                    raise ActivityFailed(f"the linked service cannot read the key: {status}")
                headers["x-functions-key"] = str(secret["value"])
                target = request.target
                if not target.startswith(("http://", "https://")):
                    target = f"{self.app.base_url}/api/{target}"
                return call(target, request.body, request.method, headers)
            if (request.authentication or {}).get("type") == "MSI":
                assert request.authentication is not None
                headers.update(with_token(str(request.authentication["resource"])))
            return call(request.target, request.body, request.method, headers,
                        context=self.trust)  # fmt: skip

        def http(request: Request) -> Response:
            started = time.monotonic()
            status, body, headers = send(request)
            span = self.adf_spans.setdefault(request.activity, [started, started])
            span[1] = time.monotonic()
            return Response(status, body, headers)

        return http

    def lake_blobs(self, container: str, prefix: str = "") -> list[str]:
        client = self.account_client(self.accounts["dataLake"]).get_container_client(container)
        return [b.name for b in client.list_blobs(name_starts_with=prefix or None)]

    def read_lake(self, container: str, name: str) -> bytes:
        client = self.account_client(self.accounts["dataLake"])
        return client.get_blob_client(container, name).download_blob().readall()


@contextmanager
def rehearsal(environment: str, work: Path, rest_shapes: Path) -> Iterator[Rehearsal]:
    running = Rehearsal(environment, work, rest_shapes).start()
    try:
        yield running
    finally:
        running.stop()


def wait_for(what: str, predicate: Callable[[], Any], timeout: float, step: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s")
        time.sleep(step)
