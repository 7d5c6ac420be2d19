"""The Bicep agrees with the code: settings, connections, containers, Event Grid targets, ADF."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import pytest
import yaml

from adapters.settings import DATALAKE_CONNECTION, SETTINGS, STORAGE_CONNECTION
from tests.infra.app_index import AppIndex, index_app
from tests.infra.bicep import INFRA, REPO_ROOT, BicepFile, Expr, load, walk_values

# Settings the code reads that the Azure deployment deliberately leaves to their defaults.
NOT_SET_IN_AZURE = {
    "MLOPS_LOCAL_DIR": "state folder of the local runtime; unused in Azure",
    "MLOPS_MLFLOW_TRACKING_URI": "local MLflow store; Azure ML tracks runs itself",
    "MLOPS_AML_EVENTS_URL": "local executor webhook; Azure ML publishes to Event Grid",
    "MLOPS_AML_MAX_PARALLEL": "parallel steps of the local executor; Azure ML schedules its own",
    "MLOPS_AML_MAX_JOBS": "concurrent jobs of the local executor; Azure ML compute scales",
    "MLOPS_AML_STEP_ENVIRONMENTS": "how the local executor runs steps; Azure ML builds images",
    **{
        key: "Azure sends alert email through Communication Services (MLOPS_ALERT_TRANSPORT=acs)"
        for key in (
            "MLOPS_SMTP_HOST",
            "MLOPS_SMTP_PORT",
            "MLOPS_SMTP_STARTTLS",
            "MLOPS_SMTP_USERNAME",
            "MLOPS_SMTP_PASSWORD",
            "MLOPS_SMTP_TIMEOUT_SECONDS",
        )
    },
    "MLOPS_POLL_FIRST_SECONDS": "polling back-off tuned in code; override with appSettingOverrides",
    "MLOPS_POLL_MIN_SECONDS": "polling back-off tuned in code; override with appSettingOverrides",
    "MLOPS_POLL_MAX_SECONDS": "polling back-off tuned in code; override with appSettingOverrides",
    "MLOPS_POLL_GROWTH": "polling back-off tuned in code; override with appSettingOverrides",
}
# App settings the app itself does not read: who reads each, and why it must be set.
READ_BY_THE_PLATFORM = {
    "AZURE_CLIENT_ID": "azure-identity's DefaultAzureCredential (Azure ML, Communication "
    "Services email) picks the user-assigned identity from it",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "the Functions host and the Azure Monitor "
    "exporter authenticate to Application Insights with Entra ID (local auth is disabled)",
    "PYTHON_ENABLE_OPENTELEMETRY": "the Python worker tells the host it exports its own "
    "OpenTelemetry logs and traces, so the host (telemetryMode OpenTelemetry) does not ship "
    "them a second time",
}
# Identity-based connection settings (``<connection>__<suffix>``) that only the Functions host
# and its extensions read; the app's settings module reads the others (see _app_connection_keys).
READ_BY_THE_HOST = {
    "__credential": "identity-based connections: the host and the blob/queue extensions build a "
    "managed-identity credential from it",
    "__tableServiceUri": "Durable Functions' Azure Storage backend keeps instances and history "
    "in tables of the host storage",
}
AML_EVENT = "Microsoft.MachineLearningServices."
# DatasetDriftDetected came from v1 dataset monitors, retired on 2025-09-01; drift arrives as a
# RunStatusChanged with the model-monitor tag.
F4_EVENT_TYPES = {
    AML_EVENT + "ModelRegistered",
    AML_EVENT + "RunStatusChanged",
    AML_EVENT + "RunCompleted",
}


@pytest.fixture(scope="module")
def main() -> BicepFile:
    return load(INFRA / "main.bicep")


@pytest.fixture(scope="module")
def app_settings(main: BicepFile) -> dict[str, Any]:
    """The function app's settings in main.bicep, references to vars/params resolved."""
    settings = main.variables["appSettings"]
    assert isinstance(settings, dict)
    return {k: main.resolve(v) for k, v in settings.items()}


@pytest.fixture(scope="module")
def app_environ(app_settings: Mapping[str, Any]) -> dict[str, str]:
    """What the host would see, as far as it is known before deployment."""
    env = {spec.key: spec.default for spec in SETTINGS if spec.default is not None}
    env.update(
        {k: str(v) for k, v in app_settings.items() if not isinstance(v, Expr) and v is not None}
    )
    return env


@pytest.fixture(scope="module")
def app(app_environ: Mapping[str, str]) -> AppIndex:
    return index_app(app_environ)


def test_every_setting_the_code_reads_is_set(app_settings: Mapping[str, Any]) -> None:
    missing = [
        spec.key
        for spec in SETTINGS
        if spec.key not in app_settings and spec.key not in NOT_SET_IN_AZURE
    ]
    assert missing == [], "set them in main.bicep (var appSettings) or explain in NOT_SET_IN_AZURE"


def test_settings_left_unset_have_defaults() -> None:
    by_key = {spec.key: spec for spec in SETTINGS}
    without_default = [k for k in NOT_SET_IN_AZURE if k in by_key and by_key[k].default is None]
    assert without_default == []


def _app_environment_keys() -> tuple[set[str], set[str]]:
    """What adapters/settings.py reads besides SETTINGS: literal keys, and connection suffixes."""
    source = (REPO_ROOT / "adapters" / "settings.py").read_text(encoding="utf-8")
    literals = set(re.findall(r'env\.get\("([A-Za-z_][A-Za-z0-9_]*)"', source))
    suffixes = set(re.findall(r'env\.get\(f"\{name\}(__[A-Za-z]+)"', source))
    assert suffixes, "read_connection no longer reads identity-based connection settings?"
    return literals, suffixes


def test_the_settings_module_is_the_only_reader_of_the_environment() -> None:
    """Otherwise the cross-checks below would not see every setting the app reads."""
    readers = [
        path.relative_to(REPO_ROOT).as_posix()
        for package in ("adapters", "conditioning", "orchestrators", "triggers")
        for path in sorted((REPO_ROOT / package).rglob("*.py"))
        if re.search(r"os\.environ|os\.getenv|getenv\(", path.read_text(encoding="utf-8"))
    ]
    assert readers == ["adapters/settings.py"]


def test_every_other_variable_the_app_reads_is_set(app_settings: Mapping[str, Any]) -> None:
    literals, _ = _app_environment_keys()
    assert literals, "the settings module reads no environment variable by name?"
    assert sorted(literals - set(app_settings)) == []


def test_bicep_sets_only_settings_something_reads(app_settings: Mapping[str, Any]) -> None:
    literals, suffixes = _app_environment_keys()
    read_by_app = {spec.key for spec in SETTINGS} | literals
    connections = {STORAGE_CONNECTION, DATALAKE_CONNECTION}
    unread = []
    for key in app_settings:
        connection, sep, suffix = key.partition("__")
        if sep:
            if connection in connections and f"__{suffix}" in suffixes | set(READ_BY_THE_HOST):
                continue
        elif key in read_by_app or key in READ_BY_THE_PLATFORM:
            continue
        unread.append(key)
    assert unread == [], "typo, a setting adapters/settings.py should declare, or a reason"
    # The allow-lists carry no stale entries.
    assert set(READ_BY_THE_PLATFORM) <= set(app_settings)
    assert all(any(k.endswith(s) for k in app_settings) for s in READ_BY_THE_HOST)
    assert not set(READ_BY_THE_PLATFORM) & read_by_app


def test_literal_setting_values_pass_the_code_s_own_validation(
    app_settings: Mapping[str, Any],
) -> None:
    problems = []
    for spec in SETTINGS:
        value = app_settings.get(spec.key)
        if isinstance(value, str):
            try:
                spec.parse(value)
            except ValueError as exc:
                problems.append(f"{spec.key}={value!r}: {exc}")
    assert problems == []
    assert app_settings["MLOPS_ENVIRONMENT"] == "azure"


def test_connections_are_identity_based(app_settings: Mapping[str, Any]) -> None:
    for conn in (STORAGE_CONNECTION, DATALAKE_CONNECTION):
        assert conn not in app_settings, f"{conn} must not be a connection string"
        assert app_settings[f"{conn}__credential"] == "managedidentity"
        assert app_settings[f"{conn}__clientId"] == Expr("identity.outputs.clientId")
        # The Event Grid blob trigger and Durable need the queue endpoint, not only blob.
        assert f"{conn}__blobServiceUri" in app_settings
        assert f"{conn}__queueServiceUri" in app_settings
    # Durable Functions keeps its history and instances in tables of the host storage.
    assert f"{STORAGE_CONNECTION}__tableServiceUri" in app_settings
    assert app_settings["AZURE_CLIENT_ID"] == Expr("identity.outputs.clientId")
    auth = app_settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]
    assert isinstance(auth, Expr)
    assert "Authorization=AAD" in auth.text


def test_telemetry_is_exported_once(app_settings: Mapping[str, Any]) -> None:
    """The Functions OpenTelemetry guidance: the host in OpenTelemetry mode, the Python worker
    streaming its own telemetry, the app configuring the Azure Monitor exporter once."""
    host = json.loads((REPO_ROOT / "host.json").read_text(encoding="utf-8"))
    assert host.get("telemetryMode") == "OpenTelemetry"
    assert app_settings.get("PYTHON_ENABLE_OPENTELEMETRY") == "true"
    # This one makes the worker call configure_azure_monitor itself, without the app's
    # credential (Application Insights refuses keyless ingestion) and on top of the app's own.
    assert "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY" not in app_settings
    configurers = [
        path.relative_to(REPO_ROOT).as_posix()
        for package in ("adapters", "conditioning", "orchestrators", "triggers", "dashboard")
        for path in sorted((REPO_ROOT / package).rglob("*.py"))
        if "configure_azure_monitor(" in path.read_text(encoding="utf-8")
    ]
    root = (REPO_ROOT / "function_app.py").read_text(encoding="utf-8")
    assert configurers == ["adapters/telemetry.py"] and "configure_azure_monitor" not in root


def test_flex_consumption_runtime_is_not_in_app_settings(
    app_settings: Mapping[str, Any],
) -> None:
    forbidden = {"FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION"}
    assert forbidden.isdisjoint(app_settings)
    module = load(INFRA / "modules" / "function-app.bicep")
    assert module.param_defaults["pythonVersion"] == "3.11"
    (app_resource,) = module.resources("Microsoft.Web/sites")
    config = app_resource.body["properties"]["functionAppConfig"]
    assert config["runtime"]["name"] == "python"
    assert config["deployment"]["storage"]["authentication"]["type"] == "UserAssignedIdentity"


def test_storage_accounts_disable_shared_keys_and_old_tls() -> None:
    module = load(INFRA / "modules" / "storage-account.bicep")
    (account,) = module.resources("Microsoft.Storage/storageAccounts")
    props = account.body["properties"]
    assert props["allowSharedKeyAccess"] is False
    assert props["minimumTlsVersion"] == "TLS1_2"
    assert props["allowBlobPublicAccess"] is False


def test_application_insights_disables_local_auth() -> None:
    module = load(INFRA / "modules" / "monitoring.bicep")
    (component,) = module.resources("Microsoft.Insights/components")
    assert component.body["properties"]["DisableLocalAuth"] is True


def test_every_container_the_code_uses_is_created(
    main: BicepFile, app_settings: Mapping[str, Any]
) -> None:
    (lake,) = main.modules("modules/storage-account.bicep")[1:2]
    assert lake.symbol == "dataLake"
    created = {main.resolve(c) for c in lake.body["params"]["containers"]}
    used = {
        spec.key: app_settings.get(spec.key, spec.default)
        for spec in SETTINGS
        if spec.key.endswith("_CONTAINER")
    }
    assert used, "adapters.settings declares no containers"
    not_created = {k: v for k, v in used.items() if v not in created}
    assert not_created == {}


def test_binding_expressions_resolve_from_app_settings(
    app: AppIndex, app_settings: Mapping[str, Any]
) -> None:
    """The host resolves %NAME% from app settings only: a code default does not help it."""
    referenced: dict[str, set[str]] = {}
    for fn in app.functions.values():
        for item in walk_values(list(fn.bindings)):
            if isinstance(item, str):
                for name in re.findall(r"%([A-Za-z0-9_]+)%", item):
                    referenced.setdefault(name, set()).add(fn.name)
    unset = {name: sorted(fns) for name, fns in referenced.items() if name not in app_settings}
    assert unset == {}


def test_the_app_indexes_with_the_azure_settings(app: AppIndex) -> None:
    assert app.index_error is None, app.index_error


def _aml_subscriptions() -> list[dict[str, Any]]:
    module = load(INFRA / "modules" / "aml-event-subscriptions.bicep")
    subs = module.variables["subscriptions"]
    assert isinstance(subs, list)
    return subs


@pytest.mark.parametrize("sub", _aml_subscriptions(), ids=lambda s: s["name"])
def test_workspace_subscription_targets_an_event_grid_function(
    sub: Mapping[str, Any], app: AppIndex
) -> None:
    fn = app.functions.get(sub["functionName"])
    assert fn is not None, f"the app has no function {sub['functionName']}"
    assert fn.trigger["type"] == "eventGridTrigger"
    assert set(sub["eventTypes"]) <= F4_EVENT_TYPES


def test_workspace_subscriptions_cover_every_f4_event_type() -> None:
    covered = {t for sub in _aml_subscriptions() for t in sub["eventTypes"]}
    assert covered == F4_EVENT_TYPES


def test_run_status_changed_is_filtered_to_failures_and_monitor_breaches() -> None:
    module = load(INFRA / "modules" / "aml-event-subscriptions.bicep")
    filters = [
        module.resolve(f)
        for sub in _aml_subscriptions()
        if sub["eventTypes"] == [AML_EVENT + "RunStatusChanged"]
        for f in sub["advancedFilters"]
    ]
    status = [f for f in filters if f["key"] == "data.runStatus"]
    breach = [f for f in filters if "azureml_modelmonitor_threshold_breached" in f["key"]]
    assert len(status) == 1
    assert status[0]["operatorType"] == "StringIn"
    assert set(status[0]["values"]) == {"Failed", "Canceled", "NotResponding"}
    assert len(breach) == 1
    assert breach[0]["operatorType"] == "StringContains"


def test_raw_blob_subscription_targets_the_event_grid_blob_trigger(
    main: BicepFile, app: AppIndex, app_settings: Mapping[str, Any]
) -> None:
    module = load(INFRA / "modules" / "blob-event-subscription.bicep")
    fn = app.functions.get(module.param_defaults["functionName"])
    assert fn is not None, f"the app has no function {module.param_defaults['functionName']}"
    trigger = fn.trigger
    assert trigger["type"] == "blobTrigger"
    assert str(trigger.get("source")).lower() == "eventgrid"
    assert trigger.get("connection") == DATALAKE_CONNECTION
    # The path's container, with %NAME% resolved as the host would.
    container = re.sub(
        r"%([A-Za-z0-9_]+)%",
        lambda m: str(app_settings[m.group(1)]),
        str(trigger["path"]).split("/", 1)[0],
    )
    assert container == main.resolve(main.outputs["AZURE_RAW_CONTAINER_NAME"])
    (sub,) = module.resources("Microsoft.EventGrid/systemTopics/eventSubscriptions")
    url = sub.body["properties"]["destination"]["properties"]["endpointUrl"]
    assert "/runtime/webhooks/blobs?functionName=Host.Functions.${functionName}" in url.text
    assert sub.body["properties"]["filter"]["includedEventTypes"] == [
        "Microsoft.Storage.BlobCreated"
    ]
    # The topic the subscription hangs off is the data lake's, not the host storage's.
    (topic,) = main.modules("modules/storage-system-topic.bicep")
    assert topic.body["params"]["storageAccountName"] == Expr("dataLake.outputs.name")


def test_postdeploy_waits_for_every_function_a_subscription_targets() -> None:
    script = (INFRA / "scripts" / "postdeploy.sh").read_text()
    match = re.search(r"expected_functions=\(([^)]*)\)", script)
    assert match is not None
    waited = set(match.group(1).split())
    blob = load(INFRA / "modules" / "blob-event-subscription.bicep")
    targets = {s["functionName"] for s in _aml_subscriptions()}
    targets.add(blob.param_defaults["functionName"])
    assert waited == targets


@pytest.mark.parametrize("script", ["postdeploy.sh", "predown.sh"])
def test_hooks_read_only_outputs_main_bicep_declares(main: BicepFile, script: str) -> None:
    text = (INFRA / "scripts" / script).read_text()
    used = set(re.findall(r"\bAZURE_[A-Z_]+", text))
    assert used and used <= set(main.outputs)


def test_only_the_function_app_carries_the_azd_service_tag(main: BicepFile) -> None:
    """azd deploys to the one resource tagged azd-service-name; the plan must not carry it."""
    (call,) = main.modules("modules/function-app.bicep")
    assert call.body["params"]["tags"] == Expr("tags")
    assert "azd-service-name" not in main.variables["tags"]
    module = load(INFRA / "modules" / "function-app.bicep")
    (plan,) = module.resources("Microsoft.Web/serverfarms")
    (site,) = module.resources("Microsoft.Web/sites")
    assert plan.body["tags"] == Expr("tags")
    assert site.body["tags"] == Expr("union(tags, { 'azd-service-name': serviceName })")
    project = yaml.safe_load((REPO_ROOT / "azure.yaml").read_text())
    assert call.body["params"]["serviceName"] in project["services"]


def test_the_conditioned_datastore_is_created_identity_based_under_the_name_the_code_reads(
    main: BicepFile, app_settings: Mapping[str, Any]
) -> None:
    from adapters.settings import load_settings
    from composition import build_services
    from tests.infra.permissions import _root

    aml = load(INFRA / "modules" / "aml-access.bicep")
    (store,) = aml.resources("Microsoft.MachineLearningServices/workspaces/datastores")
    props = store.body["properties"]
    # No key, no SAS: the lake has shared keys disabled; jobs read with their compute identity.
    assert props["credentials"] == {"credentialsType": "None"}
    assert props["serviceDataAccessAuthIdentity"] == "None"
    assert _root("modules/aml-access.bicep", props["containerName"].text) == "conditioned"
    assert main.resolve(main.variables["conditionedContainerName"]) == "conditioned"
    assert app_settings["MLOPS_CONDITIONED_CONTAINER"] == "conditioned"
    # One name: what the Bicep creates is what the app setting says.
    assert _root("modules/aml-access.bicep", store.body["name"].text) == _root(
        "main.bicep", app_settings["MLOPS_AML_DATASTORE"].text
    )
    # ... and what the app's Azure adapters put in every job input.
    env = {
        "MLOPS_ENVIRONMENT": "azure",
        "MLOPS_AML_DATASTORE": "mlops_abc123",
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "MLOPS_DATALAKE": "UseDevelopmentStorage=true",
    }
    services = build_services(load_settings(env))
    assert services.locator is not None
    assert services.locator.folder_for("shipments", []) == (
        "azureml://datastores/mlops_abc123/paths/shipments/"
    )


def test_workspace_resources_are_named_per_deployment(main: BicepFile) -> None:
    """Two environments on one workspace must not overwrite each other's datastore, compute
    cluster or event subscriptions (names carry the deployment's token or app name)."""
    datastore = main.variables["amlDatastore"]
    compute = main.variables["amlComputeName"]
    assert isinstance(datastore, Expr) and "resourceToken" in datastore.text
    assert isinstance(compute, Expr) and "resourceToken" in compute.text
    (call,) = main.modules("modules/aml-access.bicep")
    assert call.body["params"]["createSystemTopic"] == Expr("createAmlSystemTopic")
    assert main.variables["createAmlSystemTopic"] == Expr("empty(amlSystemTopicName)")
    aml = load(INFRA / "modules" / "aml-access.bicep")
    (created,) = aml.resources("Microsoft.EventGrid/systemTopics")
    assert created.condition == "(createSystemTopic)"
    (shared,) = [
        d
        for d in aml.resources("Microsoft.EventGrid/systemTopics", include_existing=True)
        if d.existing
    ]
    assert shared.condition == "(!createSystemTopic)"
    subscriptions = load(INFRA / "event-subscriptions.bicep")
    (aml_subs,) = subscriptions.modules("modules/aml-event-subscriptions.bicep")
    assert aml_subs.body["params"]["namePrefix"] == Expr("functionAppName")


def test_the_app_and_its_jobs_may_use_the_workspace_storage() -> None:
    """Job submission uploads step code and reading an output downloads it, in the default
    datastore's container of the workspace storage; the jobs write their outputs there."""
    from tests.infra.permissions import role_assignments

    contributor = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
    on_container = [
        a
        for a in role_assignments()
        if a.file == "modules/storage-container-roles.bicep" and contributor in a.role_ids
    ]
    assert {a.principal for a in on_container} == {
        "modules/identity.bicep: identity.properties.principalId",
        "modules/aml-access.bicep: compute.identity.principalId",
    }
    aml = load(INFRA / "modules" / "aml-access.bicep")
    (relay,) = aml.modules("aml-workspace-storage.bicep")
    assert relay.body["params"]["storageAccountId"] == Expr("workspace.properties.storageAccount")


def _adf(relative: str) -> dict[str, Any]:
    data = json.loads((INFRA / "adf" / relative).read_text())
    assert isinstance(data, dict)
    return data


def _activities(activities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for activity in activities:
        found.append(activity)
        props = activity.get("typeProperties", {})
        for key in ("activities", "ifTrueActivities", "ifFalseActivities"):
            found.extend(_activities(props.get(key, [])))
    return found


def test_adf_pipeline_starts_polls_and_fails_unless_completed(app: AppIndex) -> None:
    pipeline = _adf("pipeline/pl_run_orchestration.json")
    activities = {a["name"]: a for a in _activities(pipeline["properties"]["activities"])}
    by_type: dict[str, list[dict[str, Any]]] = {}
    for a in activities.values():
        by_type.setdefault(a["type"], []).append(a)

    (start,) = by_type["AzureFunctionActivity"]
    assert start["typeProperties"]["method"] == "POST"
    function = start["typeProperties"]["functionName"]["value"]
    assert "'orchestrations/'" in function
    # The pipeline run id is the idempotency key: a retry finds its run, a new run starts one.
    assert "'?idempotencyKey='" in function and "pipeline().RunId" in function
    # The start's payload carries Durable URIs with a system key: never into run history.
    assert start["policy"]["secureOutput"] is True

    (until,) = by_type["Until"]
    key, poll = sorted(by_type["WebActivity"], key=lambda a: a["name"] in {
        x["name"] for x in until["typeProperties"]["activities"]})  # fmt: skip
    assert poll["name"] in {a["name"] for a in until["typeProperties"]["activities"]}
    assert poll["typeProperties"]["url"]["value"] == (
        "@concat(pipeline().parameters.functionAppUrl, '/api/orchestrations/', "
        f"activity('{start['name']}').output.id)"
    )
    assert poll["typeProperties"]["headers"]["x-functions-key"]["value"] == (
        f"@activity('{key['name']}').output.value"
    )
    assert poll["policy"]["secureInput"] is True  # a header carries the function key
    expressions = [
        item["value"]
        for item in walk_values(pipeline)
        if isinstance(item, dict) and item.get("type") == "Expression"
    ]
    assert expressions and not [e for e in expressions if "statusQueryGetUri" in e]
    assert key["typeProperties"]["method"] == "GET"
    assert "secrets/function-app-key" in key["typeProperties"]["url"]["value"]
    assert key["typeProperties"]["authentication"] == {
        "type": "MSI",
        "resource": "https://vault.azure.net",
    }
    assert key["policy"]["secureOutput"] is True

    (check,) = by_type["IfCondition"]
    assert "'Completed'" in check["typeProperties"]["expression"]["value"]
    assert [a["type"] for a in check["typeProperties"]["ifFalseActivities"]] == ["Fail"]

    # The routes the pipeline calls exist, with the methods it uses, behind the function key.
    routes = {
        http["route"]: http
        for http in app.http.values()
        if http["route"] and re.fullmatch(r"orchestrations/\{[^}]+\}", http["route"])
    }
    methods = {m for http in routes.values() for m in http["methods"]}
    assert {"POST", "GET"} <= methods, "the app lacks POST or GET orchestrations/{...}"
    assert all(http["auth_level"] == "function" for http in routes.values())


def test_data_factory_fills_in_every_environment_parameter_of_the_pipeline() -> None:
    pipeline = _adf("pipeline/pl_run_orchestration.json")
    blank = {
        name
        for name, spec in pipeline["properties"]["parameters"].items()
        if spec.get("defaultValue") == ""
    }
    assert blank == {"functionAppUrl", "keyVaultUrl"}
    module = (INFRA / "modules" / "data-factory.bicep").read_text()
    filled = set(re.findall(r"(\w+): union\(pipelineParameters\.\1, \{ defaultValue: ", module))
    assert filled == blank


def test_adf_references_resolve_and_bicep_deploys_every_adf_file() -> None:
    linked = {
        p.stem: _adf(f"linkedService/{p.name}")
        for p in (INFRA / "adf").glob("linkedService/*.json")
    }
    assert all(doc["name"] == stem for stem, doc in linked.items())
    pipeline = _adf("pipeline/pl_run_orchestration.json")
    references = {
        item["referenceName"]
        for item in walk_values([pipeline, *linked.values()])
        if isinstance(item, dict) and item.get("type") == "LinkedServiceReference"
    }
    assert references <= set(linked)
    module = (INFRA / "modules" / "data-factory.bicep").read_text()
    loaded = set(re.findall(r"loadJsonContent\('\.\./adf/([^']+)'\)", module))
    on_disk = {p.relative_to(INFRA / "adf").as_posix() for p in (INFRA / "adf").rglob("*.json")}
    assert loaded == on_disk


def test_rbac_grants_the_app_identity_data_roles_only_where_needed() -> None:
    rbac = load(INFRA / "modules" / "rbac.bicep")
    scopes = {
        d.body["scope"].text
        for d in rbac.resources("Microsoft.Authorization/roleAssignments")
        if d.body["properties"]["principalId"] == Expr("appPrincipalId")
    }
    # Nothing the app runs reads the vault (only Data Factory and the deployer do).
    assert scopes == {"appStorage", "dataLake", "applicationInsights", "communicationService"}
    aml = load(INFRA / "modules" / "aml-access.bicep")
    (workspace_role,) = aml.resources("Microsoft.Authorization/roleAssignments")
    assert workspace_role.body["scope"] == Expr("workspace")
    assert "azureMlDataScientist" in workspace_role.body["properties"]["roleDefinitionId"].text
    # AzureML Data Scientist, a built-in role with the same id in every tenant.
    assert aml.variables["azureMlDataScientist"] == "f6c7c914-8db3-469d-8ca1-694a8f32e121"


def test_repo_root_has_azd_project_for_the_function_app() -> None:
    import yaml

    project = yaml.safe_load((REPO_ROOT / "azure.yaml").read_text())
    api = project["services"]["api"]
    assert (api["language"], api["host"], api["project"]) == ("python", "function", ".")
    assert project["infra"]["module"] == "main"
    for hook in ("preprovision", "postdeploy", "predown"):
        run = project["hooks"][hook]["posix"]["run"]
        script = run.split()[-1]
        assert (REPO_ROOT / script).is_file(), f"{hook}: {script} does not exist"
