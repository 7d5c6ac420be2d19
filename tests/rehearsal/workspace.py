"""The Azure ML workspace stand-in, extended so that a submitted pipeline job really runs.

``AzureMLStandIn`` (tests/integration/azure_standin/azureml.py) answers azure-ai-ml's REST calls
and scripts each job's outcome. ``RunningWorkspace`` keeps its REST surface and replaces the
script with a run:

- **The job is rebuilt from what the SDK sent**, never from the repository's YAML: the code
  snapshot the SDK uploaded through ``startPendingUpload`` (read back from the workspace's blob
  store), each anonymous component's ``componentSpec`` (PUT body), each anonymous environment
  (its conda file and image), and the pipeline job's PUT body (nodes, bindings, inputs,
  outputs, settings). A file the upload left out, or a binding the SDK serialised in a way the
  YAML did not mean, fails here as it would in Azure ML.
- **Inputs are resolved as the workspace would**: a data asset by its ARM id to its
  ``azureml://datastores/<ds>/paths/<p>`` URI, a datastore URI through the workspace's
  datastores. A datastore over another storage account (the data lake) is read with the
  compute's identity, through that account's front door, so the read is authorised and
  recorded like any other. A datastore the workspace does not have fails the job.
- **It runs on the local executor** (``local.aml``), in its own process, under the name the
  SDK chose; ``GET jobs/{id}``, the child runs and the error of a failed step are the
  executor's. The executor publishes the job's and its steps' ``RunStatusChanged`` /
  ``RunCompleted`` events and ``ModelRegistered`` to ``events_url`` (the workspace's Event
  Grid system topic).
- **The model registry is the MLflow registry the steps register into** (Azure ML's MLflow
  registry and its REST model registry are one store): ``models/*`` REST calls read and tag
  the MLflow model versions.
- A completed job's outputs are copied to the workspace blob store, where ``jobs.download``
  finds them.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.integration.azure_standin.azureml import (
    TERMINAL,
    AssetVersion,
    AzureMLStandIn,
    ChildRun,
    JobState,
    Plan,
)
from tests.integration.azure_standin.http import Request, Response

ARM_AUDIENCE = "https://management.azure.com"


@dataclass(frozen=True)
class Datastore:
    """A workspace datastore over a container of another storage account."""

    name: str
    account_url: str  # the account's blob endpoint (its front door)
    container: str


Reader = Callable[[Datastore, str, Path], int]
"""Copies ``datastore``'s blobs under ``prefix`` into a folder; returns how many files."""


class JobRefused(Exception):
    """The job cannot run as submitted (a missing datastore, an input type not served)."""


def arm_tail(arm_id: str, kind: str) -> tuple[str, str]:
    """``(name, version)`` of ``.../{kind}/{name}/versions/{version}`` (an ``azureml:`` prefix
    is allowed)."""
    parts = arm_id.removeprefix("azureml:").strip("/").split("/")
    try:
        at = parts.index(kind)
        return parts[at + 1], parts[at + 3]
    except (ValueError, IndexError):
        raise JobRefused(f"{arm_id!r} is not a {kind} version id") from None


def datastore_target(uri: str) -> tuple[str, str]:
    """``(datastore, path)`` of a short or long ``azureml://...datastores/<ds>/paths/<p>``."""
    marker = "/datastores/"
    if not uri.startswith("azureml://") or marker not in uri:
        raise JobRefused(f"{uri!r} is not a datastore URI")
    rest = uri.split(marker, 1)[1]
    name, _, path = rest.partition("/paths/")
    return name, path


class RunningWorkspace(AzureMLStandIn):
    """A workspace whose jobs run on ``executor`` (a ``local.aml.LocalExecutor``).

    ``datastores`` are the workspace's datastores besides its default blob store and
    ``computes`` its compute clusters (a job on any other compute fails);
    ``read_datastore`` fetches their data with the compute's identity; ``events_url`` is the
    system topic the executor publishes to; ``tracking_uri`` the MLflow store the steps
    register models in (the workspace's registry).
    """

    def __init__(
        self,
        *args: Any,
        work: Path,
        executor: Any,
        tracking_uri: str,
        events_url: str,
        datastores: dict[str, Datastore],
        computes: set[str],
        read_datastore: Reader,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.work = work
        self.executor = executor
        self.tracking_uri = tracking_uri
        self.events_url = events_url
        self.datastores = datastores
        self.computes = computes
        self.read_datastore = read_datastore
        self.runners: list[Any] = []
        self.refused: list[str] = []
        self._materialised: dict[str, Path] = {}
        self._code_folders: dict[tuple[str, str], Path] = {}
        self._prepare_lock = threading.Lock()

    def _authorised(self, request: Request) -> bool:
        """Azure Resource Manager's audience: the SDK asks for management.azure.com tokens."""
        from tests.integration.azure_standin.credentials import verify_jwt

        header = request.header("Authorization")
        token = header.removeprefix("Bearer ") if header.startswith("Bearer ") else ""
        claims = verify_jwt(token) if token else None
        audience = str((claims or {}).get("aud", "")).rstrip("/")
        if claims is None or audience not in (ARM_AUDIENCE, self.url):
            self.auth_failures.append(f"{request.method} {request.path}: {claims}")
            return False
        return True

    # -- templates as the permission matrix names them -------------------------------------

    def template_for(self, template: str) -> str:
        return template.replace(
            self.ws_path.replace("resourceGroups", "resourcegroups"),
            "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}"
            "/providers/Microsoft.MachineLearningServices/workspaces/{workspaceName}",
        )

    # -- rebuilding the job ----------------------------------------------------------------

    def _code_folder(self, code_ref: str) -> Path:
        """The code snapshot ``code_ref`` names, downloaded from the workspace blob store."""
        name, version = arm_tail(code_ref, "codes")
        if (name, version) in self._code_folders:
            return self._code_folders[(name, version)]
        props = next((p for n, v, p in self.codes.values() if (n, v) == (name, version)), None)
        if props is None:
            raise JobRefused(f"code {name}:{version} was never created")
        uri = str(props.get("codeUri", ""))
        container_url = f"{self.azurite.blob_endpoint}/{self.code_container}/"
        if not uri.startswith(container_url):
            raise JobRefused(f"code {name}:{version} points outside the workspace: {uri}")
        prefix = uri[len(container_url) :].strip("/") + "/"
        folder = self.work / "code" / name
        container = self._blob.get_container_client(self.code_container)
        count = 0
        for blob in container.list_blobs(name_starts_with=prefix):
            target = folder / blob.name[len(prefix) :]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(container.download_blob(blob.name).readall())
            count += 1
        if count == 0:
            raise JobRefused(f"code {name}:{version} has no files under {uri}")
        self._code_folders[(name, version)] = folder
        return folder

    def _environment(self, env_ref: str, folder: Path) -> Any:
        """An anonymous environment as inline YAML (its conda file written beside it)."""
        if not env_ref.startswith("azureml:/"):
            return env_ref  # a curated or registered environment, by reference
        name, version = arm_tail(env_ref, "environments")
        props = self.environments.get((name, version))
        if props is None:
            raise JobRefused(f"environment {name}:{version} was never created")
        inline: dict[str, Any] = {"image": props.get("image")}
        if props.get("condaFile"):
            conda = folder / f"conda-{version[:12]}.yml"
            conda.write_text(str(props["condaFile"]), encoding="utf-8")
            inline["conda_file"] = str(conda)
        return inline

    def _component(self, component_id: str, folder: Path, node: str) -> Path:
        name, version = arm_tail(component_id, "components")
        props = self.components.get((name, version))
        if props is None:
            raise JobRefused(f"component {name}:{version} was never created")
        spec = {k: v for k, v in props["componentSpec"].items() if not k.startswith("_")}
        spec["code"] = str(self._code_folder(str(spec["code"])))
        spec["environment"] = self._environment(str(spec["environment"]), folder)
        path = folder / f"{node}.yml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
        return path

    def _data_folder(self, uri: str) -> Path:
        """A local copy of what a data input names (a data asset id or a datastore URI)."""
        if "/data/" in uri and not uri.startswith("azureml://"):
            name, version = arm_tail(uri, "data")
            asset: AssetVersion | None = (self.data.get(name) or {}).get(version)
            if asset is None:
                raise JobRefused(f"data asset {name}:{version} does not exist")
            uri = str(asset.properties.get("dataUri", ""))
        store, path = datastore_target(uri)
        key = f"{store}/{path}"
        if key in self._materialised:
            return self._materialised[key]
        datastore = self.datastores.get(store)
        if datastore is None:
            raise JobRefused(f"datastore {store!r} does not exist in workspace {self.workspace}")
        folder = self.work / "data" / store / uuid.uuid4().hex[:8]
        folder.mkdir(parents=True)
        if self.read_datastore(datastore, path.strip("/"), folder) == 0:
            raise JobRefused(f"{uri} holds no data")
        self._materialised[key] = folder
        return folder

    def _pipeline_yaml(self, name: str, props: dict[str, Any]) -> Path:
        folder = self.work / "jobs" / name
        components = folder / "components"
        components.mkdir(parents=True)
        inputs: dict[str, Any] = {}
        for key, value in (props.get("inputs") or {}).items():
            kind = str(value.get("jobInputType", "literal"))
            if kind == "literal":
                inputs[key] = value.get("value")
            elif kind in ("uri_folder", "uri_file"):
                inputs[key] = {"type": kind, "path": str(self._data_folder(str(value["uri"])))}
            else:
                raise JobRefused(f"input {key} of type {kind} is not served")
        jobs: dict[str, Any] = {}
        for node, body in (props.get("jobs") or {}).items():
            if body.get("type") != "command":
                raise JobRefused(f"node {node} of type {body.get('type')} is not served")
            jobs[node] = {
                "type": "command",
                "component": str(self._component(str(body["componentId"]), components, node)),
                "inputs": {k: _binding(v) for k, v in (body.get("inputs") or {}).items()},
                "outputs": {k: _binding(v) for k, v in (body.get("outputs") or {}).items()},
            }
        settings = {k: v for k, v in (props.get("settings") or {}).items() if not k.startswith("_")}
        if "default_compute" in settings:
            settings["default_compute"] = (
                "azureml:" + str(settings["default_compute"]).split("/")[-1]
            )
        pipeline = {
            "$schema": "https://azuremlschemas.azureedge.net/latest/pipelineJob.schema.json",
            "type": "pipeline",
            "display_name": props.get("displayName") or name,
            "experiment_name": props.get("experimentName") or "Default",
            "settings": settings,
            "inputs": inputs,
            "outputs": {
                k: {"type": str(v.get("jobOutputType", "uri_folder"))}
                for k, v in (props.get("outputs") or {}).items()
            },
            "jobs": jobs,
        }
        path = folder / "pipeline.yml"
        path.write_text(yaml.safe_dump(pipeline, sort_keys=False), encoding="utf-8")
        return path

    # -- jobs --------------------------------------------------------------------------------

    def _job_put(self, request: Request) -> Response:
        name = request.params["name"]
        props = dict(request.json()["properties"])
        job = JobState(name, props, Plan(), [], dict(request.headers))
        with self.lock:
            self.jobs[name] = job
        try:
            with self._prepare_lock:
                pipeline = self._pipeline_yaml(name, props)
            self.executor.submit(
                pipeline,
                {},
                experiment_name=props.get("experimentName") or "Default",
                display_name=props.get("displayName") or name,
                tags={str(k): str(v) for k, v in (props.get("tags") or {}).items()},
                name=name,
            )
            self.runners.append(self.executor.start_detached(name, events_url=self.events_url))
        except Exception as exc:  # a job that cannot run fails, as in Azure ML
            with self.lock:
                self.refused.append(f"{name}: {exc}")
                job.status = "Failed"
                job.children = [ChildRun(str(uuid.uuid4()), "(submission)", "Failed", str(exc))]
        return Response(201, self._job_body(job))

    def _advance(self, job: JobState) -> None:
        """The job's state from its executor record (the base class's script is not used)."""
        if job.status in TERMINAL and (job.children or job.status != "Completed"):
            return
        try:
            record = self.executor.status(job.name)
        except Exception:  # a refused job has no record; its state is set already
            return
        job.status = record.status
        job.children = [
            ChildRun(
                step.run_id or f"{job.name}_{step_name}",
                step_name,
                step.status,
                step.error,
                node_id=step_name,
            )
            for step_name, step in record.steps.items()
            if step.status != "NotStarted"
        ]
        if record.status == "Failed" and not any(c.status == "Failed" for c in job.children):
            job.children.append(ChildRun(f"{job.name}_job", "(job)", "Failed", record.error))
        if record.status == "Completed":
            self._publish_outputs(job, record.outputs)

    def _publish_outputs(self, job: JobState, outputs: dict[str, str]) -> None:
        container = self._blob.get_container_client(self.blobstore)
        for output, folder in outputs.items():
            prefix = f"azureml/{job.name}/{output}/"
            job.outputs[output] = prefix
            root = Path(folder)
            files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
            for path in files:
                relative = path.name if root.is_file() else path.relative_to(root).as_posix()
                with path.open("rb") as data:
                    container.upload_blob(prefix + relative, data, overwrite=True)

    def _job_cancel(self, request: Request) -> Response:
        job = self._job(request)
        if job is not None and job.status not in TERMINAL:
            self.executor.cancel(job.name)
        return super()._job_cancel(request)

    def _run_children(self, request: Request) -> Response:
        job = self._job(request)
        if job is not None:
            with self.lock:
                self._advance(job)
        return super()._run_children(request)

    def _run_data(self, request: Request) -> Response:
        job = self.jobs.get(str((request.json() or {}).get("runId", "")))
        if job is not None:
            with self.lock:
                self._advance(job)
        return super()._run_data(request)

    # -- datastores --------------------------------------------------------------------------

    def _datastore_get(self, request: Request) -> Response:
        store = self.datastores.get(request.params["name"])
        if store is None:
            return super()._datastore_get(request)
        body = self._datastore_body(store.name)
        body["properties"].update(
            {
                "isDefault": False,
                "credentials": {"credentialsType": "None"},
                "accountName": store.account_url.rstrip("/").rsplit("/", 1)[-1],
                "containerName": store.container,
            }
        )
        return Response(200, body)

    # -- the model registry is MLflow's ----------------------------------------------------

    def _mlflow(self) -> Any:
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def _as_asset(self, version: Any) -> AssetVersion:
        created = _iso(version.creation_timestamp)
        return AssetVersion(
            version.name,
            str(version.version),
            {
                "description": version.description or None,
                "tags": dict(version.tags or {}),
                "properties": {},
                "isArchived": False,
                "isAnonymous": False,
                "flavors": {"python_function": {"data": {"loader_module": "mlflow.pyfunc"}}},
                "modelType": "mlflow_model",
                "modelUri": self.datastore_uri(f"azureml/models/{version.name}/{version.version}/"),
                "jobName": version.run_id or None,
                "stage": "Development",
            },
            created,
        )

    def _model_versions(self, name: str) -> list[AssetVersion]:
        from mlflow.exceptions import MlflowException

        try:
            found = self._mlflow().search_model_versions(f"name = '{name}'")
        except MlflowException:
            return []
        return [self._as_asset(v) for v in found]

    def _model_list(self, request: Request) -> Response:
        with self.lock:
            self.models[request.params["name"]] = {
                v.version: v for v in self._model_versions(request.params["name"])
            }
        return super()._model_list(request)

    def _model_get(self, request: Request) -> Response:
        with self.lock:
            self.models[request.params["name"]] = {
                v.version: v for v in self._model_versions(request.params["name"])
            }
        return super()._model_get(request)

    def _model_put(self, request: Request) -> Response:
        name, version = request.params["name"], request.params["version"]
        props = dict(request.json()["properties"])
        client = self._mlflow()
        current = {v.version: v for v in self._model_versions(name)}
        if version not in current:
            return self._not_found(f"model {name}:{version} (register it through MLflow)")
        wanted = {str(k): str(v) for k, v in (props.get("tags") or {}).items()}
        for key in set(current[version].properties["tags"]) - set(wanted):
            client.delete_model_version_tag(name, version, key)
        for key, value in wanted.items():
            client.set_model_version_tag(name, version, key, value)
        with self.lock:
            self.models[name] = {v.version: v for v in self._model_versions(name)}
            model = self.models[name][version]
        return Response(200, self._model_body(model))


def _binding(value: Any) -> Any:
    """A node input/output of the REST body as the YAML writes it."""
    if isinstance(value, dict) and "value" in value:
        return value["value"]
    if isinstance(value, dict) and value.get("job_input_type", "literal") != "literal":
        raise JobRefused(f"node binding {value} is not served")
    return value


def _iso(millis: int | None) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp((millis or 0) / 1000, UTC).isoformat()
