"""What the rehearsal's stand-ins saw, as permission-matrix rows: who did what, needing which
RBAC action, on which resource.

Every stand-in records the requests it served with the caller's token (``oid``). Here each is
named: the REST operation, its route template, the RBAC action Azure checks for it (data
actions for storage, Key Vault, Application Insights; the resource provider's actions for
Azure ML and Communication Services), the identity (by the name the rehearsal gave it) and
the resource. ``ungranted`` then holds them against the repository's permission matrix
(a Markdown table with at least the columns ``operation``, ``rbac_action`` and ``identity``),
so an operation the deployment performs that no row grants fails the rehearsal.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.rehearsal.harness import Rehearsal

REPO = Path(__file__).resolve().parents[2]
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


@dataclass(frozen=True)
class Observed:
    service: str
    operation: str
    method: str
    template: str
    action: str
    identity: str
    resource: str

    def __str__(self) -> str:
        return (
            f"{self.identity}: {self.operation} ({self.method} {self.template}) on "
            f"{self.resource} needs {self.action}"
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

    out: set[Observed] = set()
    for front in (r.blob, r.queue):
        for op in front.observed:
            out.add(
                Observed(
                    f"storage.{op.service}", op.operation, op.method, op.template, op.action,
                    who(op.caller), f"{op.account}/{op.container}" if op.container else op.account,
                )
            )  # fmt: skip
    services = (
        ("azureml", r.workspace, AML_ACTIONS, f"workspace {r.workspace.workspace}"),
        ("communication", r.acs, OTHER_ACTIONS, "communication service"),
        ("appinsights", r.ingestion, OTHER_ACTIONS, "application insights"),
        ("keyvault", r.key_vault, OTHER_ACTIONS, "key vault"),
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


@dataclass(frozen=True)
class MatrixRow:
    operation: str
    action: str
    identity: str
    cells: dict[str, str]


_ACTION_COLUMNS = ("rbac_action", "rbac action", "action", "data action")


def _split(line: str) -> list[str]:
    return [c.strip().strip("`").strip() for c in line.strip().strip("|").split("|")]


def find_matrix(roots: Iterable[Path] = (REPO / "docs", REPO / "infra")) -> Path | None:
    """The Markdown file holding the permission matrix (a table with an RBAC action and an
    identity column), if the repository has one."""
    for root in roots:
        for path in sorted(root.rglob("*.md")):
            if read_matrix(path):
                return path
    return None


def read_matrix(path: Path) -> list[MatrixRow]:
    """Rows of the first table in ``path`` with operation, RBAC action and identity columns."""
    rows: list[MatrixRow] = []
    header: list[str] | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip().startswith("|"):
            if rows:
                break
            header = None
            continue
        cells = _split(line)
        if header is None:
            lowered = [c.lower() for c in cells]
            if "identity" in lowered and any(c in lowered for c in _ACTION_COLUMNS):
                header = lowered
            continue
        if all(re.fullmatch(r":?-{2,}:?", c) for c in cells if c):
            continue
        values = dict(zip(header, cells, strict=False))
        action_key = next(c for c in _ACTION_COLUMNS if c in header)
        rows.append(
            MatrixRow(
                values.get("operation", ""),
                values.get(action_key, ""),
                values.get("identity", ""),
                values,
            )
        )
    return rows


def _identity_matches(cell: str, identity: str, aliases: dict[str, tuple[str, ...]]) -> bool:
    text = cell.lower()
    return any(alias in text for alias in aliases.get(identity, (identity,)))


def _action_matches(cell: str, action: str) -> bool:
    """An action cell (``a``, ``a; b``, wildcards ``*``) granting ``action``."""
    for part in re.split(r"[;,<>\n]|<br\s*/?>|\s+", cell):
        candidate = part.strip().strip("`")
        if candidate and fnmatch.fnmatchcase(action.lower(), candidate.lower()):
            return True
    return False


def ungranted(
    observed: Iterable[Observed], rows: list[MatrixRow], aliases: dict[str, tuple[str, ...]]
) -> list[Observed]:
    """Observed operations no row grants (same identity and an action cell covering it)."""
    return [
        o
        for o in observed
        if not any(
            _identity_matches(row.identity, o.identity, aliases)
            and _action_matches(row.action, o.action)
            for row in rows
        )
    ]
