"""The deployment's app settings, computed from the Bicep, with its resources played by stand-ins.

``app_settings(parameter_file, azd_environment, cloud)`` deploys ``infra/main.bicep`` on paper
(``tests/infra/bicep_eval.py``) with an azd parameter file and returns the ``appsettings`` the
function-app module gives the site. Every value that only exists once a resource is deployed
is asked of ``StandInCloud``, which answers with the stand-in playing that resource: a storage
account's endpoints are its account on the storage front door, the user-assigned identity's
client id is one the identity endpoint issues tokens for, Application Insights' connection
string names the ingestion stand-in, and so on. A resource property it does not know raises,
so a new setting derived from a resource fails the rehearsal until a stand-in answers for it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.infra.bicep import INFRA, load
from tests.infra.bicep_eval import Deployment, arm_string, fill_azd_parameters
from tests.integration.azure_standin.identity import Identity, ManagedIdentityEndpoint

STORAGE_MODULE = "modules/storage-account.bicep"


@dataclass
class StandInCloud:
    """Answers ``resource_property`` for the resources a deployment creates."""

    subscription_id: str
    tenant_id: str
    identities: ManagedIdentityEndpoint
    blob_url: str = ""  # the storage front door (blob service)
    queue_url: str = ""
    table_url: str = ""
    ingestion_connection_string: str = ""
    acs_host: str = ""  # host:port of the Communication Services stand-in
    key_vault_url: str = ""
    function_app_host: str = ""
    email_domain: str = field(default_factory=lambda: f"{uuid.uuid4()}.azurecomm.net")
    app_identities: dict[str, Identity] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    def identity(self, name: str) -> Identity:
        """The user-assigned identity ``name`` (created, and given to the app, on first use)."""
        if name not in self.app_identities:
            self.app_identities[name] = self.identities.add(name, assigned_to_app=True)
        return self.app_identities[name]

    def resource_property(self, resource_type: str, name: str, path: tuple[str, ...]) -> Any:
        key = f"{resource_type}/{name}.{'.'.join(path)}"
        self.asked.append(key)
        kind = resource_type.lower()
        if path == ("id",):
            return f"/subscriptions/{self.subscription_id}/providers/{resource_type}/{name}"
        endpoints = {"blob": self.blob_url, "queue": self.queue_url, "table": self.table_url}
        if kind == "microsoft.storage/storageaccounts" and path[:2] == (
            "properties",
            "primaryEndpoints",
        ):
            base = endpoints.get(path[2])
            if base:
                return f"{base}/{name}/"
        if kind == "microsoft.managedidentity/userassignedidentities":
            if path == ("properties", "clientId"):
                return self.identity(name).client_id
            if path == ("properties", "principalId"):
                return self.identity(name).principal_id
        if kind == "microsoft.insights/components" and path == ("properties", "ConnectionString"):
            return self.ingestion_connection_string
        if kind == "microsoft.communication/communicationservices" and path == (
            "properties",
            "hostName",
        ):
            return self.acs_host
        if kind == "microsoft.communication/emailservices/domains" and path == (
            "properties",
            "mailFromSenderDomain",
        ):
            return self.email_domain
        if kind == "microsoft.keyvault/vaults" and path == ("properties", "vaultUri"):
            return f"{self.key_vault_url}/"
        if kind == "microsoft.web/sites" and path == ("properties", "defaultHostName"):
            return self.function_app_host
        raise KeyError(f"no stand-in answers {key}: teach StandInCloud what plays it")


def main_deployment(
    parameter_file: Path,
    azd_environment: Mapping[str, str],
    cloud: StandInCloud,
    overrides: Mapping[str, str] | None = None,
) -> Deployment:
    """main.bicep deployed with ``parameter_file``; ``overrides`` are added to the file's
    ``appSettingOverrides`` (the Bicep's own way of tuning app settings)."""
    parameters = fill_azd_parameters(parameter_file, azd_environment)
    if overrides:
        parameters["appSettingOverrides"] = {
            **(parameters.get("appSettingOverrides") or {}),
            **overrides,
        }
    return Deployment(INFRA / "main.bicep", parameters, cloud)


def storage_account_names(deployment: Deployment) -> dict[str, str]:
    """Module symbol → storage account name, for every storage account main.bicep creates."""
    main = load(INFRA / "main.bicep")
    return {
        m.symbol: str(deployment.module(m.symbol).evaluate("name"))
        for m in main.modules(STORAGE_MODULE)
    }


def app_settings(deployment: Deployment) -> dict[str, str]:
    """The function app's ``appsettings`` as the deployment sets them (all strings)."""
    properties = deployment.module("functionApp").resource_properties("settings")
    if not isinstance(properties, dict):
        raise TypeError("the function app's settings are not an object")
    return {str(k): arm_string(v) for k, v in properties.items()}
