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
from pathlib import Path
from typing import Any

from adapters.errors import SettingsError

PREFIX = "MLOPS_"
STORAGE_CONNECTION = "AzureWebJobsStorage"
DATALAKE_CONNECTION = "MLOPS_DATALAKE"

_TASK_HUB = re.compile(r"^[A-Za-z][A-Za-z0-9]{2,44}$")
_MODEL_PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_CONTAINER = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_COMPUTE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{1,15}$")


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
class AutomationSettings:
    """How orchestrations poll, time out, debounce and run on schedule (see SETTINGS)."""

    poll_first_seconds: float = 60.0
    poll_min_seconds: float = 120.0
    poll_max_seconds: float = 1800.0
    poll_growth: float = 0.11
    job_timeout_minutes: float = 720.0
    retrain_window_hours: float = 24.0
    start_dedupe_seconds: float = 120.0
    weekly_retrain_schedule: str = "0 0 6 * * 1"
    staleness_schedule: str = "0 30 5 * * *"
    stale_after_days: float = 60.0
    drift_psi_threshold: float = 0.2
    training_sources: tuple[str, ...] = ("shipments", "stores", "weather", "events")
    regions: tuple[str, ...] = ()
    train_on_arrival: bool = False

    def orchestration_options(self) -> dict[str, Any]:
        """What an orchestration needs to know of these, as JSON (orchestrators read no env)."""
        return {
            "polling": {
                "first_seconds": self.poll_first_seconds,
                "min_seconds": self.poll_min_seconds,
                "max_seconds": max(self.poll_max_seconds, self.poll_min_seconds),
                "growth": min(self.poll_growth, 1.0),
                "ending_seconds": min(30.0, self.poll_min_seconds),
            },
            "job_timeout_minutes": self.job_timeout_minutes,
            "stale_after_days": self.stale_after_days,
        }


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
    automation: AutomationSettings = field(default_factory=AutomationSettings)
    local_dir: str = ".local"
    mlflow_tracking_uri: str = ""
    aml_events_url: str = ""
    aml_subscription_id: str = ""
    aml_resource_group: str = ""
    aml_workspace: str = ""
    aml_max_parallel: int = 2
    aml_max_jobs: int = 2
    aml_step_environments: str = "declared"
    aml_datastore: str = "datalake"
    aml_compute: str = ""
    model_name_prefix: str = "forecast-"

    @property
    def local_root(self) -> Path:
        """``local_dir`` as an absolute path (relative paths are relative to the repo root)."""
        path = Path(self.local_dir)
        return path if path.is_absolute() else Path(__file__).resolve().parent.parent / path

    @property
    def tracking_uri(self) -> str:
        """MLflow tracking URI: the setting, else the sqlite store under ``local_dir``."""
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{self.local_root / 'mlflow' / 'mlflow.db'}"


def _parse_choice(*choices: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        v = value.strip().lower()
        if v not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return v

    return parse


def _parse_text(value: str) -> str:
    return value


def _parse_url(value: str) -> str:
    if value and not value.startswith(("http://", "https://")):
        raise ValueError("must be an http(s) URL")
    return value


def _parse_positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError("must be a positive integer")
    return number


def _parse_positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError("must be a number") from None
    if not number > 0:
        raise ValueError("must be positive")
    return number


def _csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip().lower() for part in value.split(",") if part.strip())


def _parse_emails(value: str) -> tuple[str, ...]:
    addresses = tuple(part.strip() for part in value.split(",") if part.strip())
    if not addresses or any(not re.match(r"^[^@\s,]+@[^@\s,]+$", a) for a in addresses):
        raise ValueError("must be one or more email addresses, comma-separated")
    return addresses


def _parse_email(value: str) -> str:
    addresses = _parse_emails(value)
    if len(addresses) != 1:
        raise ValueError("must be exactly one email address")
    return addresses[0]


def _parse_bool(value: str) -> bool:
    v = value.strip().lower()
    if v not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError("must be true or false")
    return v in ("true", "1", "yes")


def _parse_task_hub(value: str) -> str:
    if not _TASK_HUB.match(value):
        raise ValueError("must be 3-45 letters or digits, starting with a letter")
    return value


def _parse_model_prefix(value: str) -> str:
    if not _MODEL_PREFIX.match(value):
        raise ValueError(
            "must start a model name: 1-64 letters, digits, '.', '_' or '-', "
            "beginning with a letter or digit"
        )
    return value


def _parse_compute(value: str) -> str:
    if value and not _COMPUTE.match(value):
        raise ValueError("must be an Azure ML compute name: 2-16 letters, digits or '-'")
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
    # Alerts: who gets them, how they are sent, and how a storm is folded into a digest.
    SettingSpec("MLOPS_ALERT_TO", _parse_emails, "ops@example.com", "alert recipients (a,b)"),
    SettingSpec("MLOPS_ALERT_FROM", _parse_email, "mlops-alerts@example.com", "alert sender"),
    SettingSpec("MLOPS_ALERT_TRANSPORT", _parse_choice("smtp", "acs"), "smtp", "smtp or acs"),
    SettingSpec("MLOPS_SMTP_HOST", _parse_text, "127.0.0.1", "SMTP server host"),
    SettingSpec("MLOPS_SMTP_PORT", _parse_positive_int, "1025", "SMTP server port"),
    SettingSpec("MLOPS_SMTP_STARTTLS", _parse_bool, "false", "upgrade SMTP with STARTTLS"),
    SettingSpec("MLOPS_SMTP_USERNAME", _parse_text, "", "SMTP login (empty: none)"),
    SettingSpec("MLOPS_SMTP_PASSWORD", _parse_text, "", "SMTP password (Key Vault reference)"),
    SettingSpec("MLOPS_SMTP_TIMEOUT_SECONDS", _parse_positive_int, "10", "SMTP timeout"),
    SettingSpec("MLOPS_ACS_ENDPOINT", _parse_url, "", "Communication Services endpoint (acs)"),
    SettingSpec("MLOPS_ALERT_WINDOW_MINUTES", _parse_positive_int, "60", "alert dedup window"),
    SettingSpec("MLOPS_ALERT_MAX_PER_WINDOW", _parse_positive_int, "10", "alert emails per window"),
    SettingSpec("MLOPS_ALERT_DIGEST_MINUTES", _parse_positive_int, "15", "digest batching delay"),
    SettingSpec("MLOPS_ALERTS_CONTAINER", _parse_container, "ops", "alert outbox (alerts/...)"),
    # Automation: how orchestrations poll, time out, debounce and run on schedule.
    SettingSpec("MLOPS_POLL_FIRST_SECONDS", _parse_positive_float, "60", "first job status call"),
    SettingSpec("MLOPS_POLL_MIN_SECONDS", _parse_positive_float, "120", "shortest poll interval"),
    SettingSpec("MLOPS_POLL_MAX_SECONDS", _parse_positive_float, "1800", "longest poll interval"),
    SettingSpec("MLOPS_POLL_GROWTH", _parse_positive_float, "0.11", "poll delay / job age"),
    SettingSpec(
        "MLOPS_JOB_TIMEOUT_MINUTES", _parse_positive_float, "720", "cancel a job after this long"
    ),
    SettingSpec(
        "MLOPS_RETRAIN_WINDOW_HOURS", _parse_positive_float, "24", "at most one retrain per segment"
    ),
    SettingSpec(
        "MLOPS_START_DEDUPE_SECONDS",
        _parse_positive_float,
        "120",
        "a start request without idempotencyKey repeated within this many seconds finds the "
        "run the first one started instead of starting another",
    ),
    SettingSpec(
        "MLOPS_WEEKLY_RETRAIN_SCHEDULE",
        _parse_text,
        "0 0 6 * * 1",
        "NCRONTAB of the weekly retrain (UTC; default Mondays 06:00)",
    ),
    SettingSpec(
        "MLOPS_STALENESS_SCHEDULE",
        _parse_text,
        "0 30 5 * * *",
        "NCRONTAB of the daily staleness check (UTC)",
    ),
    SettingSpec(
        "MLOPS_AML_DATASTORE",
        _parse_text,
        "datalake",
        "Azure ML datastore over the data lake (pipeline inputs are read through it)",
    ),
    SettingSpec(
        "MLOPS_AML_COMPUTE",
        _parse_compute,
        "",
        "Azure ML compute cluster the app's jobs run on (empty: the pipeline YAML's own)",
    ),
    SettingSpec("MLOPS_STALE_AFTER_DAYS", _parse_positive_float, "60", "a model older is stale"),
    SettingSpec(
        "MLOPS_DRIFT_SCHEDULE", _parse_text, "0 15 * * * *", "NCRONTAB of the drift check (UTC)"
    ),
    SettingSpec(
        "MLOPS_ALERT_FLUSH_SCHEDULE",
        _parse_text,
        "0 */1 * * * *",
        "NCRONTAB of the alert outbox retry (UTC)",
    ),
    SettingSpec(
        "MLOPS_DRIFT_PSI_THRESHOLD", _parse_positive_float, "0.2", "PSI above this is drift"
    ),
    SettingSpec(
        "MLOPS_TRAINING_SOURCES",
        _parse_text,
        "shipments,stores,weather,events",
        "conditioned sources a training run needs",
    ),
    SettingSpec(
        "MLOPS_REGIONS",
        _parse_text,
        "",
        "regions scheduled work covers (comma-separated); empty: every region the conditioned "
        "store master names",
    ),
    SettingSpec(
        "MLOPS_TRAIN_ON_ARRIVAL",
        _parse_bool,
        "false",
        "start training when a week's required sources are all conditioned",
    ),
    SettingSpec(
        "MLOPS_LOCAL_DIR", _parse_text, ".local", "local runtime state (relative to the repo root)"
    ),
    SettingSpec(
        "MLOPS_MLFLOW_TRACKING_URI",
        _parse_text,
        "",
        "MLflow tracking/registry URI (local default: sqlite store under MLOPS_LOCAL_DIR)",
    ),
    SettingSpec(
        "MLOPS_AML_EVENTS_URL",
        _parse_url,
        "",
        "Event Grid webhook the local Azure ML executor publishes to (empty: no events)",
    ),
    SettingSpec(
        "MLOPS_AML_SUBSCRIPTION_ID", _parse_text, "", "Azure ML workspace subscription (azure)"
    ),
    SettingSpec(
        "MLOPS_AML_RESOURCE_GROUP", _parse_text, "", "Azure ML workspace resource group (azure)"
    ),
    SettingSpec("MLOPS_AML_WORKSPACE", _parse_text, "", "Azure ML workspace name (azure)"),
    SettingSpec(
        "MLOPS_MODEL_NAME_PREFIX",
        _parse_model_prefix,
        "forecast-",
        "the app's models are named with this prefix; Azure ML events about other models "
        "are acknowledged and ignored",
    ),
    SettingSpec(
        "MLOPS_AML_MAX_PARALLEL", _parse_positive_int, "2", "local executor: steps run at once"
    ),
    SettingSpec(
        "MLOPS_AML_MAX_JOBS",
        _parse_positive_int,
        "2",
        "local executor: pipeline jobs running at once (the local compute cluster's size)",
    ),
    SettingSpec(
        "MLOPS_AML_STEP_ENVIRONMENTS",
        _parse_choice("declared", "project"),
        "declared",
        "local executor: declared runs each step in its component's environment under Azure "
        "ML's job contract; project runs every step in the project's virtualenv (quicker)",
    ),
)

_AZURE_ONLY = ("MLOPS_AML_SUBSCRIPTION_ID", "MLOPS_AML_RESOURCE_GROUP", "MLOPS_AML_WORKSPACE")


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
        automation=AutomationSettings(
            poll_first_seconds=values["MLOPS_POLL_FIRST_SECONDS"],
            poll_min_seconds=values["MLOPS_POLL_MIN_SECONDS"],
            poll_max_seconds=values["MLOPS_POLL_MAX_SECONDS"],
            poll_growth=values["MLOPS_POLL_GROWTH"],
            job_timeout_minutes=values["MLOPS_JOB_TIMEOUT_MINUTES"],
            retrain_window_hours=values["MLOPS_RETRAIN_WINDOW_HOURS"],
            start_dedupe_seconds=values["MLOPS_START_DEDUPE_SECONDS"],
            weekly_retrain_schedule=values["MLOPS_WEEKLY_RETRAIN_SCHEDULE"],
            staleness_schedule=values["MLOPS_STALENESS_SCHEDULE"],
            stale_after_days=values["MLOPS_STALE_AFTER_DAYS"],
            drift_psi_threshold=values["MLOPS_DRIFT_PSI_THRESHOLD"],
            training_sources=_csv(values["MLOPS_TRAINING_SOURCES"]),
            regions=_csv(values["MLOPS_REGIONS"]),
            train_on_arrival=values["MLOPS_TRAIN_ON_ARRIVAL"],
        ),
        local_dir=values["MLOPS_LOCAL_DIR"],
        mlflow_tracking_uri=values["MLOPS_MLFLOW_TRACKING_URI"],
        aml_events_url=values["MLOPS_AML_EVENTS_URL"],
        aml_subscription_id=values["MLOPS_AML_SUBSCRIPTION_ID"],
        aml_resource_group=values["MLOPS_AML_RESOURCE_GROUP"],
        aml_workspace=values["MLOPS_AML_WORKSPACE"],
        aml_max_parallel=values["MLOPS_AML_MAX_PARALLEL"],
        aml_max_jobs=values["MLOPS_AML_MAX_JOBS"],
        aml_step_environments=values["MLOPS_AML_STEP_ENVIRONMENTS"],
        aml_datastore=values["MLOPS_AML_DATASTORE"],
        aml_compute=values["MLOPS_AML_COMPUTE"],
        model_name_prefix=values["MLOPS_MODEL_NAME_PREFIX"],
    )
