"""The whole automation loop on the local runtime, for end-to-end tests.

``running_automation`` starts the real function app on the local host with Azurite, the
Durable Task engine, an aiosmtpd server and an MLflow sqlite registry; only the Azure ML
control plane is scripted (``local/aml/scripted.py``). It serves the module fixture of
tests/e2e/test_automation.py and the package run (tests/e2e/package_flow.py), which runs it
with the app imported from the unpacked deployment package.
"""

from __future__ import annotations

import contextlib
import email
import json
import os
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.events import EventGridWebhookPublisher, EventPublisher
from local.aml.scripted import ScriptedPipelineJobs
from local.hosting.azurite import Azurite
from local.hosting.host import HostConfig, LocalFunctionsHost, host_json_settings
from local.hosting.keys import HostKeys
from local.hosting.smtp import LocalSmtpServer
from local.processes import free_port
from tests.e2e.adf import ActivityFailed, Http, Request, Response
from tests.support import wait_until as _wait_until

Register = Callable[[str, str, Mapping[str, str]], str]
JobsFactory = Callable[[EventPublisher, Register, Path], ScriptedPipelineJobs]


def wait_until(predicate: Callable[[], Any], timeout: float = 60.0) -> Any:
    return _wait_until(predicate, timeout, step=0.2)


def exchange(
    url: str, body: Any = None, method: str | None = None, headers: Mapping[str, str] | None = None
) -> Response:
    """One HTTP call; the answer with its status, JSON body and headers."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw = resp.read()
            return Response(resp.status, json.loads(raw) if raw else None, dict(resp.headers))
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return Response(exc.code, json.loads(raw) if raw else None, dict(exc.headers))


def call(
    url: str, body: Any = None, method: str | None = None, headers: Mapping[str, str] | None = None
) -> tuple[int, Any]:
    answer = exchange(url, body, method, headers)
    return answer.status, answer.body


@dataclass
class Automation:
    host: LocalFunctionsHost
    jobs: ScriptedPipelineJobs
    smtp: LocalSmtpServer
    state: Path
    tracking_uri: str
    register: Callable[[str, str, Mapping[str, str]], str]

    def url(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.host.base_url}/api/{path}{sep}code={self.host.keys.default_function_key}"

    def start(self, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        answer = exchange(self.url(f"orchestrations/{name}"), body, "POST")
        # 200 and no Location: ADF's async pattern would follow a 202 + Location to the end.
        assert answer.status == 200, answer.body
        assert answer.header("Location") is None
        return dict(answer.body)

    def wait_done(self, status_url: str, timeout: float = 90) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            _, body = call(status_url)
            if body and body.get("runtimeStatus") in ("Completed", "Failed", "Terminated"):
                return dict(body)
            return None

        return dict(wait_until(done, timeout))

    def emails(self) -> list[email.message.Message]:
        return [email.message_from_bytes(p.read_bytes()) for p in self.smtp.messages()]

    def settled_email_count(self) -> int:
        """How many emails were sent, once the alert outbox has nothing left to send (the
        outbox timer sends alerts after the handlers and activities recorded them)."""
        from composition import get_services

        store = get_services().alert_store
        assert store is not None
        wait_until(lambda: not store.pending(), timeout=60)
        return len(self.emails())

    def publish(self, events: list[dict[str, Any]]) -> None:
        EventGridWebhookPublisher(self.host.topic_url("aml")).publish(events)

    def deliver(self, function: str, events: list[dict[str, Any]]) -> int:
        status, _ = call(self.host.url_for(function), events, "POST")
        return status


@contextlib.contextmanager
def running_automation(
    azurite: Azurite, state: Path, jobs_factory: JobsFactory = ScriptedPipelineJobs
) -> Iterator[Automation]:
    """The app on the local host against ``azurite``, with its state in ``state``."""
    from adapters.settings import load_settings
    from composition import build_services, use_services
    from local.hosting.runtime import isolated_environment
    from triggers.aml_events import SUBSCRIPTIONS

    smtp = LocalSmtpServer(state).start()
    keys = HostKeys.load_or_create(state / "host-keys.json")
    port = free_port()
    env = isolated_environment(
        state,
        azurite.connection_string,
        {
            "MLOPS_TASK_HUB": "e2ehub",
            "MLOPS_CONDITIONED_CONTAINER": f"cond{uuid.uuid4().hex[:8]}",
            "MLOPS_RAW_CONTAINER": f"raw{uuid.uuid4().hex[:8]}",
            "MLOPS_QUARANTINE_CONTAINER": f"quar{uuid.uuid4().hex[:8]}",
            "MLOPS_TRAIN_ON_ARRIVAL": "true",
            "MLOPS_ALERTS_CONTAINER": f"ops{uuid.uuid4().hex[:8]}",
            "MLOPS_SMTP_HOST": "127.0.0.1",
            "MLOPS_SMTP_PORT": str(smtp.port),
            "MLOPS_SMTP_TIMEOUT_SECONDS": "2",
            "MLOPS_POLL_FIRST_SECONDS": "0.5",
            "MLOPS_POLL_MIN_SECONDS": "0.5",
            "MLOPS_POLL_MAX_SECONDS": "2",
            "MLOPS_REGIONS": "r01,r02",
            "MLOPS_ALERT_MAX_PER_WINDOW": "10",
            # Handlers only record alerts; the outbox timer sends them (every minute in Azure).
            "MLOPS_ALERT_FLUSH_SCHEDULE": "*/2 * * * * *",
        },
    )
    tracking_uri = env["MLOPS_MLFLOW_TRACKING_URI"]
    saved = dict(os.environ)
    os.environ.update(env)
    settings = load_settings()
    services = build_services(settings)

    def register(model: str, job: str, tags: Mapping[str, str]) -> str:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        with contextlib.suppress(MlflowException):  # registered before
            client.create_registered_model(model)
        folder = state / "models" / job
        folder.mkdir(parents=True, exist_ok=True)
        return str(client.create_model_version(model, str(folder), tags=dict(tags)).version)

    jobs = jobs_factory(
        EventGridWebhookPublisher(
            f"http://127.0.0.1:{port}/runtime/local/topics/aml"
            f"?code={keys.system_keys['eventgrid_extension']}"
        ),
        register,
        state / "jobs",
    )
    services.pipeline_jobs = jobs
    use_services(services)
    import function_app

    config = HostConfig(
        state_dir=state,
        environ=os.environ,
        task_hub=settings.task_hub,
        port=port,
        blob_poll_interval=0.3,
        topics={"aml": {f: tuple(map(str, t)) for f, t in SUBSCRIPTIONS.items()}},
        # The limits of the app being served: its own host.json, as in Azure.
        **host_json_settings(Path(function_app.__file__).with_name("host.json")),
    )
    host = LocalFunctionsHost(function_app.app.get_functions(), config).start()
    try:
        running = Automation(host, jobs, smtp, state, tracking_uri, register)
        _seed_conditioned_data()
        yield running
    finally:
        host.stop()
        smtp.stop()
        use_services(None)
        os.environ.clear()
        os.environ.update(saved)


def _seed_conditioned_data() -> None:
    """Register one conditioned version of every training source, as conditioning would."""
    from adapters.datasets import DatasetVersion
    from composition import get_services

    services = get_services()
    assert services.datasets is not None
    lake = services.data_lake
    container = services.settings.conditioned_container
    lake.ensure_container(container)
    for source in services.settings.automation.training_sources:
        blob = f"{source}/v1/part-00000.csv"
        lake.write(container, blob, b"store_id,value\n1,2\n")
        # Conditioning writes the manifest last; its sha256 tags the version's data asset.
        lake.write(container, f"{source}/v1/manifest.json", b'{"rows_out": 1}')
        services.datasets.register(
            DatasetVersion(
                source=source, dataset_version="v1", status="conditioned", input_name=source,
                input_etag="e", input_sha256="x",
                manifest=f"{container}/{source}/v1/manifest.json",
                files=(f"{container}/{blob}",), rows_in=1, rows_out=1, period_end="2026-11-23",
                registered_at="2026-11-24T00:00:00+00:00",
            )
        )  # fmt: skip


ADF_PIPELINE = Path(__file__).resolve().parents[2] / "infra/adf/pipeline/pl_run_orchestration.json"
# Key Vault cannot run here: the stand-in answers a Get Secret call the way the Key Vault REST API
# documents it ({"value", "id", "attributes"}), and only to a managed-identity caller.
KEY_VAULT = "https://kv-e2e.vault.azure.net/"


def adf_http(automation: Automation, lose_answers: int = 0) -> Http:
    """HTTP as the factory sends it; ``lose_answers`` Start calls reach the app but time out."""
    key = automation.host.keys.default_function_key
    lost = {"left": lose_answers}

    def http(request: Request) -> Response:
        if request.kind == "AzureFunctionActivity" and "://" not in request.target:
            # The linked service: <functionAppUrl>/api/<functionName>, its key in a header.
            url = f"{automation.host.base_url}/api/{request.target}"
            answer = exchange(url, request.body, request.method, {"x-functions-key": key})
            if lost["left"] > 0:
                lost["left"] -= 1
                raise ActivityFailed("the call reached the app but its answer never came back")
            return answer
        if request.target.startswith(KEY_VAULT):
            assert request.authentication == {"type": "MSI", "resource": "https://vault.azure.net"}
            assert request.target == f"{KEY_VAULT}secrets/function-app-key?api-version=7.4"
            secret = {"value": key, "id": request.target.split("?")[0], "attributes": {}}
            return Response(200, secret)
        # A Web activity's URL, or a Location the async pattern follows.
        return exchange(request.target, None, request.method, request.headers)

    return http


def adf_parameters(automation: Automation, orchestration_input: dict[str, Any]) -> dict[str, Any]:
    return {
        "orchestration": "train",
        "input": orchestration_input,
        "pollIntervalSeconds": 50,
        # data-factory.bicep fills these two in per environment.
        "functionAppUrl": automation.host.base_url,
        "keyVaultUrl": KEY_VAULT,
    }
