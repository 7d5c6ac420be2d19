"""A loopback stand-in of the Azure ML REST surface that azure-ai-ml 1.35.2 drives.

It serves the ARM operations (workspace, code, environments, components, jobs, datastores,
models, data), the workspace's discovery document, run history (child runs, run data) and the
dataset data plane — the operations and api-versions ``../shared/data/azureml-rest/
OPERATIONS.md`` lists for the calls the adapters make. Blob traffic goes to a real Azurite:
code uploads directly (``startPendingUpload`` hands out a SAS URL for an Azurite container),
and downloads through the stand-in's CONNECT proxy, because the SDK derives the download host
(``<account>.blob.<cloud storage suffix>``) from its cloud metadata, not from the datastore.

Jobs run on a script: each ``GET`` of a job moves it one state on (NotStarted, Queued,
Running…, then its outcome). ``plan_next_job`` scripts how the next submission ends (a failed
step with its error message, or a long run); ``output_writer`` produces a completed job's
outputs, which are written to Azurite where the job's datastore paths point.
"""

from __future__ import annotations

import re
import ssl
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from azure.storage.blob import (
    BlobServiceClient,
    ContainerSasPermissions,
    generate_container_sas,
)

from local.hosting.azurite import ACCOUNT, ACCOUNT_KEY, Azurite
from tests.integration.azure_standin.credentials import verify_jwt
from tests.integration.azure_standin.http import App, Request, Response, forward
from tests.integration.azure_standin.shapes import MODEL_RECORDING, PIPELINE_RECORDING, RestShapes

NAME = r"(?P<name>[^/]+)"
VERSION = r"(?P<version>[^/]+)"
AML_AUDIENCE = "https://ml.azure.com"
TERMINAL = ("Completed", "Failed", "Canceled", "NotResponding")
# The RBAC action each operation needs (what ARM names in an AuthorizationFailed error).
ACTIONS = {
    "jobs": "Microsoft.MachineLearningServices/workspaces/jobs",
    "models": "Microsoft.MachineLearningServices/workspaces/models/versions",
    "data": "Microsoft.MachineLearningServices/workspaces/data/versions",
    "codes": "Microsoft.MachineLearningServices/workspaces/codes/versions",
    "components": "Microsoft.MachineLearningServices/workspaces/components/versions",
    "datastores": "Microsoft.MachineLearningServices/workspaces/datastores",
}
OutputWriter = Callable[["JobView"], dict[str, dict[str, bytes]]]


def _now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class Plan:
    """How a submitted job ends: ``Completed``, or ``Failed`` at ``failed_step`` with ``error``.

    ``running_polls`` is how many status reads it stays Running (default: 1 + its ``seconds``
    input, so a pipeline asked to sleep runs longer).
    """

    outcome: str = "Completed"
    failed_step: str = ""
    error: str = ""
    running_polls: int | None = None


@dataclass(frozen=True)
class JobView:
    """What an output writer sees of a completed job."""

    name: str
    inputs: dict[str, str]
    nodes: tuple[str, ...]


@dataclass
class ChildRun:
    run_id: str
    node: str
    status: str
    error: str = ""
    node_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    created: str = field(default_factory=_now)
    modified: str = field(default_factory=_now)


@dataclass
class JobState:
    name: str
    properties: dict[str, Any]
    plan: Plan
    steps: list[str]
    headers: dict[str, str]
    polls: int = 0
    status: str = "NotStarted"
    cancel_requested: bool = False
    children: list[ChildRun] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)  # output → datastore path
    created: str = field(default_factory=_now)

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple((self.properties.get("jobs") or {}).keys())

    def literal_inputs(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for key, value in (self.properties.get("inputs") or {}).items():
            if isinstance(value, dict):
                out[key] = str(value.get("value", value.get("uri", "")))
        return out


@dataclass
class AssetVersion:
    """A model or data version as the workspace keeps it."""

    name: str
    version: str
    properties: dict[str, Any]
    created: str = field(default_factory=_now)


class AzureMLStandIn(App):
    """The workspace ``subscription/resource_group/workspace`` behind ``url`` (set by the fixture
    once the server listens), with its blob store in ``azurite``."""

    def __init__(
        self,
        shapes: RestShapes,
        azurite: Azurite,
        *,
        subscription: str,
        resource_group: str,
        workspace: str,
        storage_suffix: str,
        page_size: int = 2,
        azurite_ca: Path | None = None,
    ) -> None:
        super().__init__()
        self.shapes = shapes
        self.azurite = azurite
        self.subscription = subscription
        self.resource_group = resource_group
        self.workspace = workspace
        self.storage_suffix = storage_suffix
        self.page_size = page_size
        self.url = ""  # https://127.0.0.1:<port>, the resource manager and data-plane host
        self.ws_id = str(uuid.uuid4())
        self.blobstore = f"azureml-blobstore-{self.ws_id}"
        self.code_container = f"{self.ws_id}-code"
        self.jobs: dict[str, JobState] = {}
        self.models: dict[str, dict[str, AssetVersion]] = {}
        self.data: dict[str, dict[str, AssetVersion]] = {}
        self.codes: dict[str, tuple[str, str, dict[str, Any]]] = {}  # hash → name, version, props
        self.components: dict[tuple[str, str], dict[str, Any]] = {}
        self.environments: dict[tuple[str, str], dict[str, Any]] = {}
        self.plans: deque[Plan] = deque()
        # How a submission ends when no plan is queued: from the job's properties (its nodes).
        self.planner: Callable[[dict[str, Any]], Plan] | None = None
        self.output_writer: OutputWriter | None = None
        self.auth_failures: list[str] = []
        self.blob_requests: list[str] = []
        # An Azurite serving HTTPS has its certificate in ``azurite_ca``.
        self.azurite_context = (
            ssl.create_default_context(cafile=str(azurite_ca)) if azurite_ca else None
        )
        verify: dict[str, Any] = {"connection_verify": str(azurite_ca)} if azurite_ca else {}
        blob = BlobServiceClient(azurite.blob_endpoint, credential=ACCOUNT_KEY, **verify)
        for container in (self.blobstore, self.code_container):
            blob.create_container(container)
        self._blob = blob
        self._routes()

    # -- set-up -------------------------------------------------------------------------

    @property
    def ws_path(self) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.MachineLearningServices/workspaces/{self.workspace}"
        )

    @property
    def blob_host(self) -> str:
        return f"{ACCOUNT}.blob.{self.storage_suffix}"

    def _routes(self) -> None:
        r = self.route
        # Only this workspace is served: a request for another one is "unrouted" (a failure).
        ws = (
            f"/subscriptions/{re.escape(self.subscription)}/resource[gG]roups/"
            f"(?i:{re.escape(self.resource_group)})/providers/Microsoft\\.MachineLearningServices"
            f"/workspaces/{re.escape(self.workspace)}"
        )
        r("GET", ws, "workspaces.get", self._workspace)
        r("GET", "/discovery", "discovery", self._discovery)
        r("GET", ws + f"/codes/{NAME}/versions", "codes.versions.list", self._code_list)
        r("GET", ws + f"/codes/{NAME}/versions/{VERSION}", "codes.versions.get", self._code_get)
        r(
            "POST",
            ws + f"/codes/{NAME}/versions/{VERSION}/startPendingUpload",
            "codes.versions.startPendingUpload",
            self._pending_upload,
        )
        r(
            "PUT",
            ws + f"/codes/{NAME}/versions/{VERSION}",
            "codes.versions.createOrUpdate",
            self._code_put,
        )
        r(
            "PUT",
            ws + f"/environments/{NAME}/versions/{VERSION}",
            "environments.versions.createOrUpdate",
            self._environment_put,
        )
        r(
            "PUT",
            ws + f"/components/{NAME}/versions/{VERSION}",
            "components.versions.createOrUpdate",
            self._component_put,
        )
        r("PUT", ws + f"/jobs/{NAME}", "jobs.createOrUpdate", self._job_put)
        r("GET", ws + f"/jobs/{NAME}", "jobs.get", self._job_get)
        r("POST", ws + f"/jobs/{NAME}/cancel", "jobs.cancel", self._job_cancel)
        r("GET", f"/standin/operations/{NAME}", "jobs.cancel.poll", self._operation)
        r("GET", ws + "/datastores", "datastores.list", self._datastore_list)
        r("GET", ws + f"/datastores/{NAME}", "datastores.get", self._datastore_get)
        r(
            "POST",
            ws + f"/datastores/{NAME}/listSecrets",
            "datastores.listSecrets",
            self._datastore_secrets,
        )
        r("GET", ws + f"/models/{NAME}/versions", "models.versions.list", self._model_list)
        r("GET", ws + f"/models/{NAME}/versions/{VERSION}", "models.versions.get", self._model_get)
        r(
            "PUT",
            ws + f"/models/{NAME}/versions/{VERSION}",
            "models.versions.createOrUpdate",
            self._model_put,
        )
        r("GET", ws + f"/data/{NAME}", "data.containers.get", self._data_container)
        r("GET", ws + f"/data/{NAME}/versions/{VERSION}", "data.versions.get", self._data_get)
        r(
            "PUT",
            ws + f"/data/{NAME}/versions/{VERSION}",
            "data.versions.createOrUpdate",
            self._data_put,
        )
        r(
            "GET",
            "/history/v1.0" + ws + f"/runs/{NAME}/children",
            "runs.children",
            self._run_children,
        )
        r("GET", "/history/v1.0" + ws + f"/runs/{NAME}", "runs.get", self._run_get)
        r("POST", "/history/v1.0" + ws + "/rundata", "runs.data", self._run_data)
        r(
            "POST",
            "/data/v1.0" + ws + "/dataversion/batchGetResolvedUris",
            "dataversions.batchGetResolvedUris",
            self._resolve_uris,
        )

    # -- scenario control ---------------------------------------------------------------

    def plan_next_job(self, plan: Plan) -> None:
        self.plans.append(plan)

    def add_model(self, name: str, tags: dict[str, str], *, version: str | None = None) -> str:
        """Register a model version directly (as a pipeline's register step would)."""
        with self.lock:
            versions = self.models.setdefault(name, {})
            version = version or str(max((int(v) for v in versions), default=0) + 1)
            versions[version] = AssetVersion(
                name,
                version,
                {
                    "description": None,
                    "tags": dict(tags),
                    "properties": {},
                    "isArchived": False,
                    "isAnonymous": False,
                    "flavors": {"python_function": {"data": {"loader_module": "mlflow.sklearn"}}},
                    "modelType": "mlflow_model",
                    "modelUri": self.datastore_uri(f"azureml/models/{name}/{version}/"),
                    "jobName": None,
                    "stage": "Development",
                },
            )
        return version

    def datastore_uri(self, path: str) -> str:
        return (
            f"azureml://subscriptions/{self.subscription}/resourcegroups/{self.resource_group}"
            f"/workspaces/{self.workspace}/datastores/workspaceblobstore/paths/{path}"
        )

    # -- the plumbing every operation shares ----------------------------------------------

    def dispatch(self, request: Request) -> Response:
        if request.path != "/discovery" and not self._authorised(request):
            return Response(
                401,
                self._error(
                    401, "InvalidAuthenticationToken", "The access token is missing or invalid."
                ),
            )
        return super().dispatch(request)

    def _authorised(self, request: Request) -> bool:
        header = request.header("Authorization")
        claims = (
            verify_jwt(header.removeprefix("Bearer ")) if header.startswith("Bearer ") else None
        )
        if claims is None or claims.get("aud") != self.url:
            self.auth_failures.append(f"{request.method} {request.path}: {claims}")
            return False
        return True

    def _error(self, status: int, code: str, message: str) -> Any:
        body = self.shapes.recorded(MODEL_RECORDING, "GET", "/versions?", 404)
        return self.shapes.shaped(
            body,
            {"error": {"code": code, "message": message, "details": [], "additionalInfo": []}},
            f"error {status}",
        )

    def error_body(self, status: int, request: Request) -> Any:
        if status == 403:
            kind = next((k for k in ACTIONS if f"/{k}" in request.path), "jobs")
            verb = {"GET": "read", "DELETE": "delete"}.get(request.method, "write")
            return self._error(
                403,
                "AuthorizationFailed",
                "The client '11111111-2222-3333-4444-555555555555' with object id "
                "'11111111-2222-3333-4444-555555555555' does not have authorization to perform "
                f"action '{ACTIONS[kind]}/{verb}' over scope '{self.ws_path}' or the scope is "
                "invalid. If access was recently granted, please refresh your credentials.",
            )
        codes = {
            401: "InvalidAuthenticationToken",
            404: "UserError",
            429: "TooManyRequests",
            500: "InternalServerError",
            503: "ServiceUnavailable",
        }
        return self._error(status, codes.get(status, "Error"), f"The service answered {status}.")

    def _not_found(self, what: str) -> Response:
        return Response(404, self._error(404, "UserError", f"{what} not found."))

    def _arm_id(self, *parts: str) -> str:
        return "/".join((self.ws_path, *parts))

    # -- workspace and discovery ----------------------------------------------------------

    def _workspace(self, request: Request) -> Response:
        body = self.shapes.example("2024-10-01-preview/Workspace/get.json")
        return Response(
            200,
            self.shapes.shaped(
                body,
                {
                    "id": self.ws_path,
                    "name": self.workspace,
                    "type": "Microsoft.MachineLearningServices/workspaces",
                    "location": "westeurope",
                    "properties": {
                        "friendlyName": self.workspace,
                        "description": "stand-in workspace",
                        "storageAccount": f"/subscriptions/{self.subscription}/resourceGroups/"
                        f"{self.resource_group}/providers/Microsoft.Storage/storageAccounts/{ACCOUNT}",
                        "discoveryUrl": f"{self.url}/discovery",
                        "hbiWorkspace": False,
                        "publicNetworkAccess": "Enabled",
                    },
                },
                "workspace",
                keep_rest=False,
            ),
        )

    def _discovery(self, request: Request) -> Response:
        # The same keys a real workspace's discovery document has; every service is this host.
        services = (
            "api",
            "catalog",
            "experimentation",
            "gallery",
            "history",
            "hyperdrive",
            "labeling",
            "modelmanagement",
            "pipelines",
            "studio",
        )
        return Response(200, {key: self.url for key in services})

    # -- code, environments, components --------------------------------------------------

    def _code_body(self, name: str, version: str, props: dict[str, Any]) -> Any:
        body = self.shapes.recorded(PIPELINE_RECORDING, "PUT", "/codes/", 201)
        return self.shapes.shaped(
            body,
            {
                "id": self._arm_id("codes", name, "versions", version),
                "name": version,
                "properties": {
                    **props,
                    "isAnonymous": bool(props.get("isAnonymous")),
                    "provisioningState": "Succeeded",
                },
            },
            "code version",
        )

    def _code_list(self, request: Request) -> Response:
        found = self.codes.get(request.query.get("hash", ""))
        if found is None:
            body = self.shapes.recorded(PIPELINE_RECORDING, "GET", "hashVersion=", 200)
            return Response(200, body)
        name, version, props = found
        return Response(200, {"value": [self._code_body(name, version, props)]})

    def _code_get(self, request: Request) -> Response:
        name, version = request.params["name"], request.params["version"]
        for code_name, code_version, props in self.codes.values():
            if (code_name, code_version) == (name, version):
                return Response(200, self._code_body(name, version, props))
        return self._not_found(f"code {name}:{version}")

    def _pending_upload(self, request: Request) -> Response:
        sas = generate_container_sas(
            ACCOUNT,
            self.code_container,
            account_key=ACCOUNT_KEY,
            permission=ContainerSasPermissions(read=True, create=True, write=True, list=True),
            expiry=datetime.now(UTC) + timedelta(hours=1),
        )
        container_url = f"{self.azurite.blob_endpoint}/{self.code_container}"
        body = self.shapes.recorded(PIPELINE_RECORDING, "POST", "startPendingUpload", 200)
        return Response(
            200,
            self.shapes.shaped(
                body,
                {
                    "blobReferenceForConsumption": {
                        "blobUri": container_url,
                        "storageAccountArmId": f"/subscriptions/{self.subscription}/resourceGroups/"
                        f"{self.resource_group}/providers/Microsoft.Storage/storageAccounts/{ACCOUNT}",
                        "credential": {"credentialType": "SAS", "sasUri": f"{container_url}?{sas}"},
                    },
                    "pendingUploadId": str(uuid.uuid4()),
                    "pendingUploadType": "None",
                },
                "pending upload",
            ),
        )

    def _code_put(self, request: Request) -> Response:
        name, version = request.params["name"], request.params["version"]
        props = dict(request.json()["properties"])
        digest = str((props.get("properties") or {}).get("hash_sha256", ""))
        with self.lock:
            self.codes[digest] = (name, version, props)
        return Response(201, self._code_body(name, version, props))

    def _environment_put(self, request: Request) -> Response:
        name, version = request.params["name"], request.params["version"]
        props = dict(request.json()["properties"])
        with self.lock:
            self.environments[(name, version)] = props
        body = self.shapes.example(
            "2023-04-01-preview/Workspace/EnvironmentVersion/createOrUpdate.json", "201"
        )
        # The example answers with the keys it documents; echo the request's within those.
        echoed = {k: v for k, v in props.items() if k in body["properties"]}
        return Response(
            201,
            self.shapes.shaped(
                body,
                {
                    "id": self._arm_id("environments", name, "versions", version),
                    "name": version,
                    "type": "Microsoft.MachineLearningServices/workspaces/environments/versions",
                    "properties": {**echoed, "environmentType": "UserCreated"},
                },
                "environment version",
                keep_rest=False,
            ),
        )

    def _component_put(self, request: Request) -> Response:
        name, version = request.params["name"], request.params["version"]
        props = dict(request.json()["properties"])
        with self.lock:
            self.components[(name, version)] = props
        body = self.shapes.recorded(
            PIPELINE_RECORDING, "PUT", "/components/azureml_anonymous/", 201
        )
        return Response(
            201,
            self.shapes.shaped(
                body,
                {
                    "id": self._arm_id("components", name, "versions", version),
                    "name": version,
                    "properties": {**props, "provisioningState": "Succeeded"},
                },
                "component version",
            ),
        )

    # -- jobs ---------------------------------------------------------------------------

    def _job_body(self, job: JobState) -> Any:
        body = self.shapes.recorded(PIPELINE_RECORDING, "PUT", "/jobs/", 201)
        studio = f"https://ml.azure.com/runs/{job.name}?wsid={self.ws_path}"
        services = {
            "Tracking": {
                "jobServiceType": "Tracking",
                "port": None,
                "status": None,
                "endpoint": f"azureml://{self.url}/mlflow/v1.0{self.ws_path}?",
                "errorMessage": None,
                "properties": None,
                "nodes": None,
            },
            "Studio": {
                "jobServiceType": "Studio",
                "port": None,
                "status": None,
                "endpoint": studio,
                "errorMessage": None,
                "properties": None,
                "nodes": None,
            },
        }
        return self.shapes.shaped(
            body,
            {
                "id": self._arm_id("jobs", job.name),
                "name": job.name,
                "properties": {**job.properties, "status": job.status, "services": services},
            },
            "job",
        )

    def _job_put(self, request: Request) -> Response:
        name = request.params["name"]
        props = dict(request.json()["properties"])
        if self.plans:
            plan = self.plans.popleft()
        else:
            plan = self.planner(props) if self.planner is not None else Plan()
        job = JobState(name, props, plan, [], dict(request.headers))
        running = plan.running_polls
        if running is None:
            seconds = job.literal_inputs().get("seconds", "0")
            running = 1 + int(float(seconds or 0))
        job.steps = ["NotStarted", "Queued", *(["Running"] * running), plan.outcome]
        with self.lock:
            self.jobs[name] = job
        return Response(201, self._job_body(job))

    def _advance(self, job: JobState) -> None:
        if job.status in TERMINAL:
            return
        if job.cancel_requested:
            job.status = "Canceled" if job.status == "CancelRequested" else "CancelRequested"
            if job.status == "Canceled":
                for child in job.children:
                    if child.status not in TERMINAL:
                        child.status = "Canceled"
            return
        job.polls += 1
        job.status = job.steps[min(job.polls, len(job.steps) - 1)]
        nodes = job.nodes
        if job.status == "Running" and not job.children and nodes:
            job.children.append(ChildRun(str(uuid.uuid4()), nodes[0], "Running"))
        if job.status == "Completed":
            job.children = [ChildRun(str(uuid.uuid4()), n, "Completed") for n in nodes]
            self._write_outputs(job)
        if job.status == "Failed":
            failed = job.plan.failed_step or (nodes[0] if nodes else "")
            done = nodes[: nodes.index(failed)] if failed in nodes else ()
            job.children = [ChildRun(str(uuid.uuid4()), n, "Completed") for n in done]
            job.children.append(ChildRun(str(uuid.uuid4()), failed, "Failed", job.plan.error))

    def _write_outputs(self, job: JobState) -> None:
        for output in job.properties.get("outputs") or {}:
            job.outputs[output] = f"azureml/{job.name}/{output}/"
        if self.output_writer is None:
            return
        view = JobView(job.name, job.literal_inputs(), job.nodes)
        container = self._blob.get_container_client(self.blobstore)
        for output, files in self.output_writer(view).items():
            prefix = job.outputs.setdefault(output, f"azureml/{job.name}/{output}/")
            for relative, data in files.items():
                container.upload_blob(prefix + relative, data, overwrite=True)

    def _job(self, request: Request) -> JobState | None:
        with self.lock:
            return self.jobs.get(request.params["name"])

    def _job_get(self, request: Request) -> Response:
        job = self._job(request)
        if job is None:
            return self._not_found(f"job {request.params['name']}")
        with self.lock:
            self._advance(job)
            return Response(200, self._job_body(job))

    def _job_cancel(self, request: Request) -> Response:
        job = self._job(request)
        if job is None:
            return self._not_found(f"job {request.params['name']}")
        with self.lock:
            if job.status not in TERMINAL:
                job.cancel_requested = True
        location = f"{self.url}/standin/operations/cancel-{job.name}"
        return Response(202, None, {"Location": location})

    def _operation(self, request: Request) -> Response:
        return Response(200, None)

    # -- run history and the dataset data plane --------------------------------------------

    def _run_body(self, job: JobState, child: ChildRun) -> dict[str, Any]:
        # Shaped like the runs of GET .../runs/{id}/children that azure-ai-ml's own recorded
        # tests received (runhistory's Run model); no recording of it is kept in shared data.
        ended = child.status in TERMINAL
        return {
            "runId": child.run_id,
            "runUuid": child.run_id,
            "parentRunId": job.name,
            "rootRunId": job.name,
            "experimentId": str(
                uuid.uuid5(uuid.NAMESPACE_URL, job.properties.get("experimentName", ""))
            ),
            "status": child.status,
            "displayName": child.node,
            "name": "azureml_anonymous",
            "runType": "azureml.StepRun",
            "createdUtc": child.created,
            "startTimeUtc": child.created,
            "endTimeUtc": child.modified if ended else None,
            "lastModifiedUtc": child.modified,
            "dataContainerId": f"dcid.{child.run_id}",
            "hidden": False,
            "error": {"error": {"code": "UserError", "message": child.error}}
            if child.error
            else None,
            "tags": {},
            "properties": {
                "azureml.nodeid": child.node_id,
                "azureml.runsource": "azureml.StepRun",
                "azureml.pipelinerunid": job.name,
                "azureml.pipeline": job.name,
                "StepType": "PythonScriptStep",
                "ComputeTargetType": "AmlCompute",
            },
        }

    def _run_children(self, request: Request) -> Response:
        job = self._job(request)
        if job is None:
            return self._not_found(f"run {request.params['name']}")
        with self.lock:
            runs = [self._run_body(job, c) for c in job.children]
        return Response(200, {"value": runs, "continuationToken": None, "nextLink": None})

    def _run_get(self, request: Request) -> Response:
        with self.lock:
            for job in self.jobs.values():
                for child in job.children:
                    if child.run_id == request.params["name"]:
                        return Response(200, self._run_body(job, child))
        return self._not_found(f"run {request.params['name']}")

    def _asset_id(self, job: str, output: str) -> str:
        return (
            f"azureml://locations/westeurope/workspaces/{self.ws_id}/data/"
            f"azureml_{job}_output_data_{output}/versions/1"
        )

    def _run_data(self, request: Request) -> Response:
        run_id = str(request.json().get("runId", ""))
        with self.lock:
            job = self.jobs.get(run_id)
            if job is None:
                return self._not_found(f"run {run_id}")
            outputs = {
                name: {"assetId": self._asset_id(job.name, name), "type": "uri_folder"}
                for name in job.outputs
            }
        return Response(
            200,
            {
                "runMetadata": {"runId": job.name, "status": job.status, "outputs": outputs},
                "runDefinition": {},
                "jobSpecification": {},
            },
        )

    def _resolve_uris(self, request: Request) -> Response:
        wanted = [str(v) for v in request.json().get("values", [])]
        resolved: dict[str, Any] = {}
        with self.lock:
            for job in self.jobs.values():
                for output, path in job.outputs.items():
                    asset = self._asset_id(job.name, output)
                    if asset in wanted:
                        resolved[asset] = {"uri": self.datastore_uri(path), "type": "uri_folder"}
        return Response(200, {"values": resolved})

    # -- datastores and blob downloads ---------------------------------------------------

    def _datastore_body(self, name: str) -> Any:
        body = self.shapes.recorded(MODEL_RECORDING, "GET", "/datastores/workspaceblobstore", 200)
        return self.shapes.shaped(
            body,
            {
                "id": self._arm_id("datastores", name),
                "name": name,
                "properties": {
                    "isDefault": True,
                    "credentials": {"credentialsType": "AccountKey"},
                    "subscriptionId": self.subscription,
                    "resourceGroup": self.resource_group,
                    "datastoreType": "AzureBlob",
                    "accountName": ACCOUNT,
                    "containerName": self.blobstore,
                    "endpoint": self.storage_suffix,
                    "protocol": "https",
                },
            },
            "datastore",
        )

    def _datastore_list(self, request: Request) -> Response:
        body = self.shapes.example("2024-10-01-preview/Datastore/list.json")
        return Response(
            200,
            self.shapes.shaped(
                body,
                {
                    "value": [self._datastore_body("workspaceblobstore")],
                },
                "datastore list",
                keep_rest=False,
            ),
        )

    def _datastore_get(self, request: Request) -> Response:
        name = request.params["name"]
        if name != "workspaceblobstore":
            return self._not_found(f"datastore {name}")
        return Response(200, self._datastore_body(name))

    def _datastore_secrets(self, request: Request) -> Response:
        sas = generate_container_sas(
            ACCOUNT,
            self.blobstore,
            account_key=ACCOUNT_KEY,
            permission=ContainerSasPermissions(read=True, list=True),
            expiry=datetime.now(UTC) + timedelta(hours=1),
        )
        body = self.shapes.recorded(MODEL_RECORDING, "POST", "/listSecrets", 200)
        return Response(
            200,
            self.shapes.shaped(
                body, {"secretsType": "Sas", "sasToken": f"?{sas}"}, "datastore secrets"
            ),
        )

    def tunnel(self, host: str, request: Request) -> Response:
        """Blob requests for ``<account>.blob.<suffix>`` go to Azurite (path-style)."""
        if host != self.blob_host:
            return super().tunnel(host, request)
        query = urlencode(request.query)
        path = f"/{ACCOUNT}{quote(request.path)}" + (f"?{query}" if query else "")
        with self.lock:
            self.blob_requests.append(f"{request.method} {request.path}?{query}")
        return forward(request, self.azurite.ports["blob"], path, self.azurite_context)

    # -- models ----------------------------------------------------------------------------

    def _model_body(self, model: AssetVersion) -> Any:
        body = self.shapes.recorded(MODEL_RECORDING, "GET", "/versions/3?", 200)
        return self.shapes.shaped(
            body,
            {
                "id": self._arm_id("models", model.name, "versions", model.version),
                "name": model.version,
                "properties": {**model.properties, "provisioningState": "Succeeded"},
                "systemData": {"createdAt": model.created, "lastModifiedAt": model.created},
            },
            "model version",
        )

    def _page(self, request: Request, items: list[Any], what: str) -> Response:
        """One page of ``items`` (``page_size`` per page, ``$skipToken`` = offset)."""
        start = int(request.query.get("$skipToken") or 0)
        page = items[start : start + self.page_size]
        body: dict[str, Any] = {"value": page}
        if start + self.page_size < len(items):
            query = {k: v for k, v in request.query.items() if k != "$skipToken"}
            query["$skipToken"] = str(start + self.page_size)
            body["nextLink"] = f"{self.url}{request.path}?{urlencode(query)}"
        return Response(200, body)

    def _model_list(self, request: Request) -> Response:
        name = request.params["name"]
        with self.lock:
            versions = list((self.models.get(name) or {}).values())
        if not versions:
            body = self.shapes.recorded(MODEL_RECORDING, "GET", "/versions?", 404)
            return Response(404, self.shapes.shaped(body, {}, "model not found"))
        if request.query.get("$orderBy", "").startswith("createdtime"):
            latest = sorted(versions, key=lambda v: (v.created, int(v.version)))[-1:]
            return Response(200, {"value": [self._model_body(v) for v in latest]})
        ordered = sorted(versions, key=lambda v: int(v.version) if v.version.isdigit() else 0)
        return self._page(request, [self._model_body(v) for v in ordered], name)

    def _model_get(self, request: Request) -> Response:
        name, version = request.params["name"], request.params["version"]
        with self.lock:
            model = (self.models.get(name) or {}).get(version)
        if model is None:
            return self._not_found(f"model {name}:{version}")
        return Response(200, self._model_body(model))

    def _model_put(self, request: Request) -> Response:
        name, version = request.params["name"], request.params["version"]
        props = dict(request.json()["properties"])
        with self.lock:
            versions = self.models.setdefault(name, {})
            existing = versions.get(version)
            model = AssetVersion(name, version, props, existing.created if existing else _now())
            versions[version] = model
        return Response(200 if existing else 201, self._model_body(model))

    # -- data assets ------------------------------------------------------------------------

    def _data_body(self, data: AssetVersion) -> dict[str, Any]:
        # No data-version example or recording is kept in shared data; the layout follows the
        # DataVersionBase resource of the same api-version (2023-04-01-preview).
        return {
            "id": self._arm_id("data", data.name, "versions", data.version),
            "name": data.version,
            "type": "Microsoft.MachineLearningServices/workspaces/data/versions",
            "properties": {**data.properties, "isArchived": False},
            "systemData": {
                "createdAt": data.created,
                "createdBy": "stand-in",
                "createdByType": "Application",
                "lastModifiedAt": data.created,
            },
        }

    def _data_container(self, request: Request) -> Response:
        """The data container (what ``@latest`` reads): its newest version by creation."""
        name = request.params["name"]
        with self.lock:
            versions = list((self.data.get(name) or {}).values())
        if not versions:
            return self._not_found(f"data {name}")
        latest = max(versions, key=lambda v: v.created)
        return Response(
            200,
            {
                "id": self._arm_id("data", name),
                "name": name,
                "type": "Microsoft.MachineLearningServices/workspaces/data",
                "properties": {
                    "dataType": "uri_folder",
                    "latestVersion": latest.version,
                    "nextVersion": None,
                    "isArchived": False,
                    "description": None,
                    "tags": {},
                    "properties": {},
                },
                "systemData": {"createdAt": latest.created, "lastModifiedAt": latest.created},
            },
        )

    def _data_get(self, request: Request) -> Response:
        name, version = request.params["name"], request.params["version"]
        with self.lock:
            data = (self.data.get(name) or {}).get(version)
        if data is None:
            return self._not_found(f"data {name}:{version}")
        return Response(200, self._data_body(data))

    def _data_put(self, request: Request) -> Response:
        name, version = request.params["name"], request.params["version"]
        props = dict(request.json()["properties"])
        with self.lock:
            versions = self.data.setdefault(name, {})
            existing = versions.get(version)
            if existing is not None and existing.properties.get("dataUri") != props.get("dataUri"):
                # Azure ML versions are immutable: the same version with other data is a conflict.
                return Response(
                    409,
                    self._error(409, "UserError", f"data {name}:{version} exists with other data"),
                )
            data = AssetVersion(name, version, props, existing.created if existing else _now())
            versions[version] = data
        return Response(200 if existing else 201, self._data_body(data))
