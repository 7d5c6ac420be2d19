"""What the rehearsal's stand-ins saw, as permission-matrix rows: who did what, needing which
RBAC action, on which resource.

Every stand-in records the requests it served with the caller's token (``oid``). Here each is
named: the REST operation, its route template, the RBAC action Azure checks for it (data
actions for storage, Key Vault, Application Insights; the resource provider's actions for
Azure ML and Communication Services), the identity (by the name the rehearsal gave it) and
the resource, with the identity and scope names of the repository's permission matrix
(docs/permissions.md, read by ``tests/infra/permissions.py``). ``ungranted`` holds them
against it, so an operation the deployment performs that no row grants fails the rehearsal.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.infra.permissions import Permission
    from tests.rehearsal.harness import Rehearsal

ML = "Microsoft.MachineLearningServices/workspaces"
# Azure ML REST operations (the stand-in's operation ids) → the action Azure RBAC checks
# (Azure resource provider operations, Microsoft.MachineLearningServices).
AML_ACTIONS = {
    "workspaces.get": f"{ML}/read",
    "codes.versions.list": f"{ML}/codes/versions/read",
    "codes.versions.get": f"{ML}/codes/versions/read",
    "codes.versions.startPendingUpload": f"{ML}/codes/versions/write",
    "codes.versions.createOrUpdate": f"{ML}/codes/versions/write",
    "environments.versions.createOrUpdate": f"{ML}/environments/versions/write",
    "components.versions.createOrUpdate": f"{ML}/components/versions/write",
    "jobs.createOrUpdate": f"{ML}/jobs/write",
    "jobs.get": f"{ML}/jobs/read",
    "jobs.cancel": f"{ML}/jobs/cancel/action",
    "jobs.cancel.poll": f"{ML}/jobs/read",
    "datastores.list": f"{ML}/datastores/read",
    "datastores.get": f"{ML}/datastores/read",
    "datastores.listSecrets": f"{ML}/datastores/listsecrets/action",
    "models.versions.list": f"{ML}/models/versions/read",
    "models.versions.get": f"{ML}/models/versions/read",
    "models.versions.createOrUpdate": f"{ML}/models/versions/write",
    "data.containers.get": f"{ML}/data/versions/read",
    "data.versions.get": f"{ML}/data/versions/read",
    "data.versions.createOrUpdate": f"{ML}/data/versions/write",
    "runs.children": f"{ML}/experiments/runs/read",
    "runs.get": f"{ML}/experiments/runs/read",
    "runs.data": f"{ML}/experiments/runs/read",
    "dataversions.batchGetResolvedUris": f"{ML}/data/versions/read",
}
OTHER_ACTIONS = {
    "emails.send": "Microsoft.Communication/CommunicationServices/Write",
    "emails.getSendResult": "Microsoft.Communication/CommunicationServices/Read",
    "telemetry.track": "Microsoft.Insights/Telemetry/Write",
    "livemetrics": "Microsoft.Insights/Telemetry/Write",
    "secrets.get": "Microsoft.KeyVault/vaults/secrets/getSecret/action",
}
# Requests that need no RBAC action: the workspace's discovery document is anonymous, the
# identity endpoint is the platform's, the system topic's publishing side is Azure ML's own.
NOT_AUTHORISED_BY_RBAC = frozenset({"discovery", "identity.token", "topic.publish"})
# main.bicep's storage modules → the matrix's scope names for their accounts.
STORAGE_SCOPES = {"appStorage": "host-storage", "dataLake": "data-lake"}


@dataclass(frozen=True)
class Observed:
    service: str
    operation: str
    method: str
    template: str
    action: str
    identity: str
    scope: str  # the matrix's scope name: ``data-lake``, ``data-lake/conditioned`` …

    def __str__(self) -> str:
        return (
            f"{self.identity}: {self.operation} ({self.method} {self.template}) on "
            f"{self.scope} needs {self.action}"
        )


def observed_operations(rehearsal: Rehearsal) -> list[Observed]:
    """Every authorised operation the stand-ins served, once per (identity, action, what)."""
    r = rehearsal
    app_principals = {i.principal_id for i in r.cloud.app_identities.values()}

    def who(oid: str) -> str:
        if not oid or oid in ("anonymous", "shared key", "sas", "bad token"):
            return oid or "anonymous"
        if oid in app_principals:
            return "app"
        found = r.identities.by_principal(oid)
        return found.name if found else f"unknown principal {oid}"

    accounts = {name: STORAGE_SCOPES[symbol] for symbol, name in r.accounts.items()}
    out: set[Observed] = set()
    for front in (r.blob, r.queue):
        for op in front.observed:
            scope = accounts.get(op.account, op.account)
            out.add(
                Observed(
                    f"storage.{op.service}", op.operation, op.method, op.template, op.action,
                    who(op.caller), f"{scope}/{op.container}" if op.container else scope,
                )
            )  # fmt: skip
    services = (
        ("azureml", r.workspace, AML_ACTIONS, "aml-workspace"),
        ("communication", r.acs, OTHER_ACTIONS, "communication"),
        ("appinsights", r.ingestion, OTHER_ACTIONS, "app-insights"),
        ("keyvault", r.key_vault, OTHER_ACTIONS, "key-vault"),
    )
    for service, app, actions, resource in services:
        template_for = getattr(app, "template_for", lambda t: t)
        for served in list(app.served):
            if served.operation in NOT_AUTHORISED_BY_RBAC:
                continue
            action = actions.get(served.operation, f"(unmapped operation {served.operation})")
            out.add(
                Observed(
                    service, served.operation, served.method, template_for(served.template),
                    action, who(served.caller), resource,
                )
            )  # fmt: skip
    return sorted(out, key=str)


def granted(observed: Observed, rows: Iterable[Permission]) -> bool:
    """Whether a row of the matrix grants ``observed``: the same identity, an action that
    covers it (``*`` wildcards allowed), on the resource's scope or on the account that
    holds it (a role on an account reaches its containers)."""
    scopes = {observed.scope, observed.scope.split("/", 1)[0]}
    return any(
        row.identity == observed.identity
        and row.scope in scopes
        and any(fnmatch.fnmatchcase(observed.action.lower(), a.lower()) for a in row.rbac_actions)
        for row in rows
    )


def ungranted(observed: Iterable[Observed], rows: Iterable[Permission]) -> list[Observed]:
    """Observed operations no row of the permission matrix grants."""
    kept = list(rows)
    return [o for o in observed if not granted(o, kept)]
