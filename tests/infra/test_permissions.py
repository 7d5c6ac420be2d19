"""docs/permissions.md against the Bicep: every role it cites is assigned as it says, and every
role assignment in the Bicep is cited (a role nothing uses fails like an ungranted operation).

The checks are one function, ``problems``, proven here on a matrix with a row too many and one
too few as well as on the real one.
"""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from tests.infra.bicep import INFRA
from tests.infra.permissions import (
    MATRIX,
    NO_ROLE,
    Assignment,
    Matrix,
    Permission,
    matrix,
    role_assignments,
)

ACTION = re.compile(r"^Microsoft\.[A-Za-z]+/[A-Za-z/*]+$")


def problems(table: Matrix, assignments: list[Assignment]) -> list[str]:
    """What disagrees between the matrix and the Bicep's role assignments."""
    found: list[str] = []
    by_key = {a.key: a for a in assignments}
    cited: set[tuple[str, str]] = set()
    for row in table.rows:
        where = f"{row.operation!r}"
        if row.identity not in table.identities:
            found.append(f"{where}: identity {row.identity!r} is not in Identities")
        if row.scope not in table.scopes:
            found.append(f"{where}: scope {row.scope!r} is not in Scopes")
        if row.role == NO_ROLE:
            if row.bicep in by_key or row.rbac_actions != ("-",):
                found.append(f"{where}: no role, yet it cites an RBAC action or an assignment")
            continue
        if row.role not in table.roles:
            found.append(f"{where}: role {row.role!r} is not in Roles")
            continue
        bad = [a for a in row.rbac_actions if not ACTION.match(a)]
        if not row.rbac_actions or bad:
            found.append(f"{where}: RBAC actions {bad or 'missing'}")
        assignment = by_key.get(row.bicep)
        if assignment is None:
            found.append(f"{where}: {row.bicep} is no role assignment in infra/")
            continue
        role_id = table.roles[row.role]
        if role_id not in assignment.role_ids:
            found.append(f"{where}: {row.bicep} does not grant {row.role}")
        principal = table.identities.get(row.identity)
        if principal is not None and assignment.principal != principal:
            found.append(f"{where}: {row.bicep} grants {assignment.principal}, not {row.identity}")
        scope = table.scopes.get(row.scope)
        if scope is not None and (assignment.scope_type, assignment.scope_path) != scope:
            found.append(
                f"{where}: {row.bicep} is on {assignment.scope_type} {assignment.scope_path}, "
                f"not {row.scope}"
            )
        cited.add((assignment.key, role_id))
    roles = {v: k for k, v in table.roles.items()}
    for assignment in assignments:
        for role_id in assignment.role_ids:
            if (assignment.key, role_id) not in cited:
                found.append(
                    f"{assignment.key} assigns {roles.get(role_id, role_id)} and no row of the "
                    "matrix uses it"
                )
    return found


@pytest.fixture(scope="module")
def table() -> Matrix:
    return matrix()


@pytest.fixture(scope="module")
def assignments() -> list[Assignment]:
    return role_assignments()


def test_the_matrix_and_the_bicep_agree(table: Matrix, assignments: list[Assignment]) -> None:
    assert problems(table, assignments) == []


def test_every_role_assignment_is_found(assignments: list[Assignment]) -> None:
    """The Bicep's role assignments, counted from the files themselves."""
    declared = sum(
        len(re.findall(r"'Microsoft\.Authorization/roleAssignments@", p.read_text()))
        for p in INFRA.rglob("*.bicep")
    )
    assert len(assignments) == declared >= 12


def test_a_role_nothing_uses_fails(table: Matrix, assignments: list[Assignment]) -> None:
    without = [r for r in table.rows if r.bicep != "modules/rbac.bicep#operatorOnDataLake"]
    found = problems(replace(table, rows=tuple(without)), assignments)
    assert found == [
        "modules/rbac.bicep#operatorOnDataLake assigns Storage Blob Data Contributor and no "
        "row of the matrix uses it"
    ]


def test_an_operation_without_a_granting_role_fails(
    table: Matrix, assignments: list[Assignment]
) -> None:
    read_vault = Permission(
        operation="Read an SMTP password",
        caller="app settings",
        rbac_actions=("Microsoft.KeyVault/vaults/secrets/getSecret/action",),
        identity="app",
        role="Key Vault Secrets User",
        scope="key-vault",
        bicep="modules/rbac.bicep#dataFactoryOnKeyVault",
    )
    found = problems(replace(table, rows=(*table.rows, read_vault)), assignments)
    assert found == [
        "'Read an SMTP password': modules/rbac.bicep#dataFactoryOnKeyVault grants "
        "modules/data-factory.bicep: factory.identity.principalId, not app"
    ]
    elsewhere = replace(read_vault, identity="adf", scope="data-lake")
    found = problems(replace(table, rows=(*table.rows, elsewhere)), assignments)
    assert found and "not data-lake" in found[0]


def test_the_format_is_the_one_the_file_describes(table: Matrix) -> None:
    text = MATRIX.read_text(encoding="utf-8")
    assert "operation | caller | rbac_action | identity | role | scope | bicep" in text
    assert {r.identity for r in table.rows} == set(table.identities)
    assert len(table.rows) >= 25
