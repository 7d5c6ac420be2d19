"""The whole local runtime in one object: Azurite + the function app on the local host.

``LocalRuntime`` is what ``python -m local`` and the end-to-end tests use. It plays the part of
Core Tools: it reads ``local.settings.json`` (``Values``) when present, points every storage
connection at Azurite, sets the process environment the app's settings module reads, creates
the app's containers, imports ``function_app`` and serves it.

``serve_with_settings`` plays the part of the Azure Functions host instead: it serves the app
with exactly the app settings it is given (a deployment's), starting nothing else and
pointing nothing anywhere, as ``python -m local serve --settings FILE`` does.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from local.hosting.azurite import REPO_ROOT, Azurite
from local.hosting.host import HostConfig, LocalFunctionsHost, host_json_settings
from local.hosting.keys import HostKeys
from local.hosting.smtp import LocalSmtpServer
from local.processes import free_port

log = logging.getLogger("local.hosting.runtime")

DEFAULT_STATE_DIR = REPO_ROOT / ".local"
# The dashboard's own key: it opens the dashboard function and nothing else (as the
# function key ``dashboard`` that infra/scripts/postdeploy.sh creates in Azure).
DASHBOARD_FUNCTION = "on_dashboard_get"
DASHBOARD_KEY_NAME = "dashboard"
AML_TOPIC = "aml"
LOCAL_POLLING = {
    "MLOPS_POLL_FIRST_SECONDS": "2",
    "MLOPS_POLL_MIN_SECONDS": "2",
    "MLOPS_POLL_MAX_SECONDS": "20",
    "MLOPS_POLL_GROWTH": "0.1",
    "MLOPS_JOB_TIMEOUT_MINUTES": "30",
}
APP_CONTAINERS = ("MLOPS_RAW_CONTAINER", "MLOPS_CONDITIONED_CONTAINER",
                  "MLOPS_QUARANTINE_CONTAINER", "MLOPS_FORECASTS_CONTAINER")  # fmt: skip


def isolated_environment(
    state_dir: Path, storage: str, overrides: Mapping[str, str] | None = None
) -> dict[str, str]:
    """App settings for a local app that ignores this shell's ``MLOPS_*`` variables (tests,
    benchmarks): every setting's default, storage and the data lake on ``storage`` (an
    Azurite connection string), state and the MLflow store in ``state_dir``, then
    ``overrides``."""
    from adapters.settings import SETTINGS

    env = {s.key: s.default for s in SETTINGS if s.default is not None}
    env.update(
        {
            "AzureWebJobsStorage": storage,
            "MLOPS_DATALAKE": storage,
            "MLOPS_ENVIRONMENT": "local",
            "MLOPS_LOCAL_DIR": str(state_dir),
            "MLOPS_MLFLOW_TRACKING_URI": f"sqlite:///{state_dir / 'mlflow.db'}",
        }
    )
    env.update(overrides or {})
    return env


def read_local_settings(path: Path) -> dict[str, str]:
    """``Values`` of a Core Tools ``local.settings.json``; missing file means no values."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SystemExit(f"{path.name} is not valid JSON: {exc}") from exc
    values = data.get("Values", {}) if isinstance(data, dict) else {}
    if not isinstance(values, dict):
        raise SystemExit(f"{path.name}: 'Values' must be an object")
    return {str(k): str(v) for k, v in values.items()}


@dataclass
class LocalRuntime:
    """Start with ``start()``, stop with ``stop()`` (idempotent; stops everything it started)."""

    state_dir: Path = DEFAULT_STATE_DIR
    persist_storage: bool = True
    port: int = 0
    blob_poll_interval: float = 1.0
    overrides: Mapping[str, str] = field(default_factory=dict)
    azurite: Azurite | None = None
    smtp: LocalSmtpServer | None = None
    host: LocalFunctionsHost | None = None
    environ: dict[str, str] = field(default_factory=dict)

    def start(self) -> LocalRuntime:
        from adapters.settings import load_settings
        from composition import use_services

        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            location = self.state_dir / "azurite" if self.persist_storage else None
            self.azurite = Azurite(location=location).start()
            self.smtp = LocalSmtpServer(self.state_dir).start()
            port = self.port or free_port()
            keys = HostKeys.load_or_create(self.state_dir / "host-keys.json")
            env = self._environment(self.azurite, self.smtp, port, keys)
            os.environ.update(env)
            self.environ = env
            settings = load_settings(os.environ)  # fails listing every bad key
            use_services(None)  # services are built lazily from the new environment
            self._ensure_containers(env)

            import function_app
            from triggers.aml_events import SUBSCRIPTIONS

            config = HostConfig(
                state_dir=self.state_dir,
                environ=os.environ,
                task_hub=settings.task_hub,
                port=port,
                blob_poll_interval=self.blob_poll_interval,
                topics={AML_TOPIC: {f: tuple(map(str, t)) for f, t in SUBSCRIPTIONS.items()}},
                # The limits of the app being served: its own host.json, as in Azure.
                **host_json_settings(Path(function_app.__file__).with_name("host.json")),
            )
            self.host = LocalFunctionsHost(function_app.app.get_functions(), config).start()
        except BaseException:
            self.stop()
            raise
        return self

    def _environment(
        self, azurite: Azurite, smtp: LocalSmtpServer, port: int, keys: HostKeys
    ) -> dict[str, str]:
        env = {
            "MLOPS_ENVIRONMENT": "local",
            "MLOPS_LOCAL_DIR": str(self.state_dir),
            "FUNCTIONS_WORKER_RUNTIME": "python",
            # Local jobs take seconds to minutes, not hours: poll them accordingly.
            **{k: v for k, v in LOCAL_POLLING.items() if k not in os.environ},
        }
        env.update(read_local_settings(REPO_ROOT / "local.settings.json"))
        env.update(self.overrides)
        # Binding expressions (%NAME%) need every setting present, defaults included, as an
        # app setting would be in Azure.
        from adapters.settings import SETTINGS

        for spec in SETTINGS:
            if spec.default is not None:
                env.setdefault(spec.key, os.environ.get(spec.key) or spec.default)
        # Storage, mail and Azure ML events always point at the parts this runtime started.
        env["AzureWebJobsStorage"] = azurite.connection_string
        env["MLOPS_DATALAKE"] = azurite.connection_string
        env["MLOPS_ALERT_TRANSPORT"] = "smtp"
        env["MLOPS_SMTP_HOST"] = "127.0.0.1"
        env["MLOPS_SMTP_PORT"] = str(smtp.port)
        env["MLOPS_AML_EVENTS_URL"] = (
            f"http://127.0.0.1:{port}/runtime/local/topics/{AML_TOPIC}"
            f"?code={keys.system_keys['eventgrid_extension']}"
        )
        return env

    def _ensure_containers(self, env: Mapping[str, str]) -> None:
        from adapters.datalake import AzureBlobDataLake
        from adapters.settings import Connection

        lake = AzureBlobDataLake.from_connection(
            Connection(name="MLOPS_DATALAKE", connection_string=env["MLOPS_DATALAKE"])
        )
        defaults = {"MLOPS_RAW_CONTAINER": "raw", "MLOPS_CONDITIONED_CONTAINER": "conditioned",
                    "MLOPS_QUARANTINE_CONTAINER": "quarantine",
                    "MLOPS_FORECASTS_CONTAINER": "forecasts"}  # fmt: skip
        for key in APP_CONTAINERS:
            lake.ensure_container(env.get(key) or defaults[key])

    def stop(self) -> None:
        if self.host is not None:
            self.host.stop()
            self.host = None
        from composition import get_services_if_built

        services = get_services_if_built()
        close = getattr(services.pipeline_jobs, "close", None) if services else None
        if close is not None:
            close(timeout=10)
        if self.smtp is not None:
            self.smtp.stop()
            self.smtp = None
        if self.azurite is not None:
            self.azurite.stop()
            self.azurite = None

    def __enter__(self) -> LocalRuntime:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def describe(self) -> dict[str, Any]:
        """Where everything is, for people (``make run``) and scripts (``--json``)."""
        assert self.host is not None and self.azurite is not None
        host = self.host
        dashboard_key = host.function_key(DASHBOARD_FUNCTION, DASHBOARD_KEY_NAME)
        functions = [
            {
                "name": s.name,
                "trigger": s.trigger_type,
                "binding": s.describe(),
                "url": host.url_for(s.name)
                if s.trigger_type in ("httpTrigger", "eventGridTrigger", "timerTrigger")
                else None,
            }
            for s in host.specs
        ]
        return {
            "base_url": host.base_url,
            "functions": functions,
            "keys_file": str(self.state_dir / "host-keys.json"),
            "master_key": host.keys.master,
            "function_key": host.keys.default_function_key,
            "mail_dir": str(self.smtp.mail_dir) if self.smtp else None,
            "smtp_port": self.smtp.port if self.smtp else None,
            "azurite": {
                "blob": self.azurite.blob_endpoint,
                "queue": self.azurite.queue_endpoint,
                "pid": self.azurite.pid,
                "connection_string": self.azurite.connection_string,
            },
            # The dashboard is one of the app's HTTP functions, as in Azure; its link carries a
            # key of that function alone, so sharing it starts nothing.
            "dashboard": f"{host.base_url}/api/dashboard/?code={quote(dashboard_key, safe='')}",
            "dashboard_key": dashboard_key,
            "durable_management": f"{host.base_url}/runtime/webhooks/durabletask/instances/"
            if host.durable is not None
            else None,
        }


def serve_with_settings(
    settings: Mapping[str, str],
    state_dir: Path,
    *,
    port: int = 0,
    blob_poll_interval: float = 1.0,
) -> LocalFunctionsHost:
    """Serve ``function_app`` with the app settings ``settings`` and nothing else of ours.

    The settings become the process environment the worker sees (over what the platform
    set, e.g. the managed identity endpoint), as the Functions host does with a deployment's
    app settings; every connection, endpoint and transport is whatever they say. A bad
    configuration stops start-up with the settings module's message listing every problem.
    Event Grid deliveries come from outside (no local topics); keys are in
    ``state_dir/host-keys.json``.
    """
    from adapters.settings import load_settings
    from composition import use_services

    os.environ.update(settings)
    os.environ.setdefault("FUNCTIONS_WORKER_RUNTIME", "python")
    loaded = load_settings(os.environ)
    use_services(None)
    state_dir.mkdir(parents=True, exist_ok=True)
    import function_app

    config = HostConfig(
        state_dir=state_dir,
        environ=os.environ,
        task_hub=loaded.task_hub,
        port=port,
        blob_poll_interval=blob_poll_interval,
        # host.json of the app being served (timeout, blob parallelism), as in Azure.
        **host_json_settings(Path(function_app.__file__).with_name("host.json")),
    )
    return LocalFunctionsHost(function_app.app.get_functions(), config).start()
