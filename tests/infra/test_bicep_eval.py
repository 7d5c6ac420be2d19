"""The Bicep evaluator computes what ARM would, on small templates and on main.bicep."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from adapters.settings import load_settings
from tests.infra.bicep import INFRA
from tests.infra.bicep_eval import (
    BicepEvalError,
    Deployment,
    arm_string,
    fill_azd_parameters,
    unique_string,
)


class Cloud:
    subscription_id = "sub-0001"
    tenant_id = "tenant-0001"

    def __init__(self) -> None:
        self.asked: list[tuple[str, str, tuple[str, ...]]] = []

    def resource_property(self, resource_type: str, name: str, path: tuple[str, ...]) -> Any:
        self.asked.append((resource_type, name, path))
        return f"<{name}:{'.'.join(path)}>"


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_expressions_evaluate_as_arm_does(tmp_path: Path) -> None:
    template = write(
        tmp_path,
        "main.bicep",
        """
param env string
param flag bool = false
param extra object = {}
var token = toLower(uniqueString(subscription().id, env))
var name = 'st${token}'
var picked = !empty(env) ? 'rg-${env}' : 'rg-none'
var merged = union({ a: '1', b: string(flag) }, extra)
var items = [ 'x', take('abcdef', 3), length('four') ]
var nested = { deep: { value: env == 'dev' && !flag } }
var reached = nested.deep.value
var safe = extra.?missing ?? 'default'
""",
    )
    d = Deployment(template, {"env": "dev", "extra": {"b": "over"}}, Cloud())
    token = unique_string("/subscriptions/sub-0001", "dev")
    assert len(token) == 13 and token == token.lower()
    assert d.variable("name") == f"st{token}"
    assert d.variable("picked") == "rg-dev"
    assert d.variable("merged") == {"a": "1", "b": "over"}
    assert d.variable("items") == ["x", "abc", 4]
    assert d.variable("reached") is True
    assert d.variable("safe") == "default"
    assert arm_string(True) == "True" and arm_string(False) == "False"


def test_module_outputs_come_from_resources_the_cloud_plays(tmp_path: Path) -> None:
    write(
        tmp_path,
        "modules/store.bicep",
        """
param name string
resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  properties: {}
}
output blob string = account.properties.primaryEndpoints.blob
output id string = account.id
""",
    )
    template = write(
        tmp_path,
        "main.bicep",
        """
param env string
module store 'modules/store.bicep' = {
  name: 'store'
  params: {
    name: 'st${env}'
  }
}
var settings = {
  BLOB: store.outputs.blob
  LABEL: 'endpoint ${store.outputs.blob}'
}
""",
    )
    cloud = Cloud()
    d = Deployment(template, {"env": "dev"}, cloud)
    assert d.variable("settings") == {
        "BLOB": "<stdev:properties.primaryEndpoints.blob>",
        "LABEL": "endpoint <stdev:properties.primaryEndpoints.blob>",
    }
    assert cloud.asked[0] == (
        "Microsoft.Storage/storageAccounts",
        "stdev",
        ("properties", "primaryEndpoints", "blob"),
    )
    assert d.module("store").evaluate("name") == "stdev"


def test_what_is_not_evaluated_is_refused_by_name(tmp_path: Path) -> None:
    template = write(
        tmp_path,
        "main.bicep",
        """
var looped = [for i in range(0, 2): i]
var unknown = someFunction('x')
""",
    )
    d = Deployment(template, {}, Cloud())
    with pytest.raises(BicepEvalError, match="for_statement"):
        d.variable("looped")
    with pytest.raises(BicepEvalError, match="someFunction"):
        d.variable("unknown")
    with pytest.raises(BicepEvalError, match="not declared"):
        d.variable("nothing")


def test_azd_parameter_files_are_filled_from_the_environment(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "p.json",
        '{"parameters": {"a": {"value": "${NAME}"}, "b": {"value": "${KIND=User}"}, '
        '"c": {"value": "${MISSING}"}, "d": {"value": {"k": "${NAME}-x"}}, "e": {"value": 3}}}',
    )
    assert fill_azd_parameters(path, {"NAME": "dev"}) == {
        "a": "dev",
        "b": "User",
        "c": "",
        "d": {"k": "dev-x"},
        "e": 3,
    }


@pytest.mark.parametrize("environment", ["dev", "prod"])
def test_main_bicep_gives_the_app_settings_the_code_accepts(environment: str) -> None:
    """Every app setting of both parameter files evaluates, and the app's own settings
    module accepts them (with stand-in values for what resources provide)."""

    class Urls(Cloud):
        def resource_property(self, resource_type: str, name: str, path: tuple[str, ...]) -> Any:
            if path[-1] in ("blob", "queue", "table"):
                return f"https://{name}.{path[-1]}.core.windows.net/"
            if path[-1] == "hostName":
                return f"{name}.communication.azure.com"
            if path[-1] == "mailFromSenderDomain":
                return "example.azurecomm.net"
            return f"{name}-{path[-1]}"

    parameters = fill_azd_parameters(
        INFRA / f"main.{environment}.parameters.json",
        {"AZURE_ENV_NAME": environment, "AML_WORKSPACE_NAME": "ws",
         "AML_RESOURCE_GROUP": "rg", "MLOPS_ALERT_TO": "ops@example.com"},
    )  # fmt: skip
    main = Deployment(INFRA / "main.bicep", parameters, Urls())
    settings = main.module("functionApp").resource_properties("settings")
    environ = {k: arm_string(v) for k, v in settings.items()}
    loaded = load_settings(environ)
    assert loaded.environment == "azure"
    assert loaded.storage.uses_identity and loaded.datalake.uses_identity
    assert loaded.task_hub == f"mlops{environment}"
