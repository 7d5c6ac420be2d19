"""Settings: the only module that reads the environment.

Every setting is declared once in ``SETTINGS`` with its parser and default. ``load_settings``
reads them all and, when anything is wrong, raises one ``SettingsError`` that lists every
missing or malformed key, so an operator fixes the configuration in one pass.

Connections follow the Azure Functions convention: a connection named ``X`` is either a
connection string in ``X`` or identity-based settings ``X__serviceUri`` / ``X__blobServiceUri``
(+ optional ``X__credential`` and ``X__clientId`` for a user-assigned identity).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from adapters.errors import SettingsError

PREFIX = "MLOPS_"
STORAGE_CONNECTION = "AzureWebJobsStorage"
DATALAKE_CONNECTION = "MLOPS_DATALAKE"

_TASK_HUB = re.compile(r"^[A-Za-z][A-Za-z0-9]{2,44}$")
_CONTAINER = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class Connection:
    """How to reach one storage account: a connection string or an identity-based endpoint."""

    name: str
    connection_string: str | None = None
    blob_service_uri: str | None = None
    queue_service_uri: str | None = None
    client_id: str | None = None

    @property
    def uses_identity(self) -> bool:
        return self.connection_string is None


@dataclass(frozen=True)
class Settings:
    environment: str
    task_hub: str
    storage: Connection
    datalake: Connection
    raw_container: str
    conditioned_container: str
    quarantine_container: str
    forecasts_container: str
    app_insights_connection_string: str | None
    extra: Mapping[str, str] = field(default_factory=dict)


def _parse_choice(*choices: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        v = value.strip().lower()
        if v not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return v

    return parse


def _parse_task_hub(value: str) -> str:
    if not _TASK_HUB.match(value):
        raise ValueError("must be 3-45 letters or digits, starting with a letter")
    return value


def _parse_container(value: str) -> str:
    if not _CONTAINER.match(value):
        raise ValueError("must be a valid blob container name (3-63 chars: a-z, 0-9, '-')")
    return value


@dataclass(frozen=True)
class SettingSpec:
    key: str
    parse: Callable[[str], Any]
    default: str | None
    description: str


SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec(
        "MLOPS_ENVIRONMENT",
        _parse_choice("local", "azure"),
        "local",
        "which adapter set the composition root builds: local runtime or Azure",
    ),
    SettingSpec("MLOPS_TASK_HUB", _parse_task_hub, "mlopshub", "Durable Functions task hub name"),
    SettingSpec("MLOPS_RAW_CONTAINER", _parse_container, "raw", "container raw drops land in"),
    SettingSpec(
        "MLOPS_CONDITIONED_CONTAINER", _parse_container, "conditioned", "standard CSV outputs"
    ),
    SettingSpec(
        "MLOPS_QUARANTINE_CONTAINER", _parse_container, "quarantine", "rejected rows and files"
    ),
    SettingSpec("MLOPS_FORECASTS_CONTAINER", _parse_container, "forecasts", "scoring outputs"),
)


def read_connection(name: str, env: Mapping[str, str], problems: list[str]) -> Connection:
    conn = env.get(name, "").strip()
    blob_uri = env.get(f"{name}__blobServiceUri") or env.get(f"{name}__serviceUri")
    queue_uri = env.get(f"{name}__queueServiceUri")
    account = env.get(f"{name}__accountName")
    if account and not blob_uri:
        blob_uri = f"https://{account}.blob.core.windows.net"
        queue_uri = queue_uri or f"https://{account}.queue.core.windows.net"
    client_id = env.get(f"{name}__clientId")
    if conn:
        if "=" not in conn and conn != "UseDevelopmentStorage=true":
            problems.append(f"{name}: not a storage connection string (expected key=value;...)")
        return Connection(name=name, connection_string=conn)
    if blob_uri:
        if not blob_uri.startswith(("https://", "http://")):
            problems.append(f"{name}__blobServiceUri: must be an http(s) URL")
        return Connection(
            name=name,
            blob_service_uri=blob_uri.rstrip("/"),
            queue_service_uri=(queue_uri or "").rstrip("/") or None,
            client_id=client_id,
        )
    problems.append(
        f"{name}: missing (set a connection string, or {name}__blobServiceUri "
        "for a managed identity)"
    )
    return Connection(name=name)


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting; raise ``SettingsError`` naming all problems at once."""
    env = os.environ if environ is None else environ
    problems: list[str] = []
    values: dict[str, Any] = {}
    for spec in SETTINGS:
        raw = env.get(spec.key)
        if raw is None or raw.strip() == "":
            if spec.default is None:
                problems.append(f"{spec.key}: missing ({spec.description})")
                continue
            raw = spec.default
        try:
            values[spec.key] = spec.parse(raw.strip())
        except ValueError as exc:
            problems.append(f"{spec.key}: {exc} (got {raw!r})")
    storage = read_connection(STORAGE_CONNECTION, env, problems)
    datalake = read_connection(DATALAKE_CONNECTION, env, problems)
    if problems:
        raise SettingsError(problems)
    return Settings(
        environment=values["MLOPS_ENVIRONMENT"],
        task_hub=values["MLOPS_TASK_HUB"],
        storage=storage,
        datalake=datalake,
        raw_container=values["MLOPS_RAW_CONTAINER"],
        conditioned_container=values["MLOPS_CONDITIONED_CONTAINER"],
        quarantine_container=values["MLOPS_QUARANTINE_CONTAINER"],
        forecasts_container=values["MLOPS_FORECASTS_CONTAINER"],
        app_insights_connection_string=env.get("APPLICATIONINSIGHTS_CONNECTION_STRING") or None,
        extra={k: v for k, v in env.items() if k.startswith(PREFIX)},
    )
