"""The whole local runtime in one object: Azurite + the function app on the local host.

``LocalRuntime`` is what ``python -m local`` and the end-to-end tests use. It plays the part of
Core Tools: it reads ``local.settings.json`` (``Values``) when present, points every storage
connection at Azurite, sets the process environment the app's settings module reads, creates
the app's containers, imports ``function_app`` and serves it.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local.azurite import REPO_ROOT, Azurite
from local.host import HostConfig, LocalFunctionsHost

log = logging.getLogger("local.runtime")

DEFAULT_STATE_DIR = REPO_ROOT / ".local"
APP_CONTAINERS = ("MLOPS_RAW_CONTAINER", "MLOPS_CONDITIONED_CONTAINER",
                  "MLOPS_QUARANTINE_CONTAINER", "MLOPS_FORECASTS_CONTAINER")  # fmt: skip


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
    host: LocalFunctionsHost | None = None
    environ: dict[str, str] = field(default_factory=dict)

    def start(self) -> LocalRuntime:
        from adapters.services import use_services
        from adapters.settings import load_settings

        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            location = self.state_dir / "azurite" if self.persist_storage else None
            self.azurite = Azurite(location=location).start()
            env = self._environment(self.azurite)
            os.environ.update(env)
            self.environ = env
            settings = load_settings(os.environ)  # fails listing every bad key
            use_services(None)  # services are built lazily from the new environment
            self._ensure_containers(env)

            import function_app

            config = HostConfig(
                state_dir=self.state_dir,
                environ=os.environ,
                task_hub=settings.task_hub,
                port=self.port,
                blob_poll_interval=self.blob_poll_interval,
            )
            self.host = LocalFunctionsHost(function_app.app.get_functions(), config).start()
        except BaseException:
            self.stop()
            raise
        return self

    def _environment(self, azurite: Azurite) -> dict[str, str]:
        env = {
            "MLOPS_ENVIRONMENT": "local",
            "MLOPS_LOCAL_DIR": str(self.state_dir),
            "FUNCTIONS_WORKER_RUNTIME": "python",
        }
        env.update(read_local_settings(REPO_ROOT / "local.settings.json"))
        env.update(self.overrides)
        # Storage always points at this Azurite, whatever the settings file says.
        env["AzureWebJobsStorage"] = azurite.connection_string
        env["MLOPS_DATALAKE"] = azurite.connection_string
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
            "azurite": {
                "blob": self.azurite.blob_endpoint,
                "queue": self.azurite.queue_endpoint,
                "pid": self.azurite.pid,
                "connection_string": self.azurite.connection_string,
            },
            "durable_management": f"{host.base_url}/runtime/webhooks/durabletask/instances/"
            if host.durable is not None
            else None,
        }
