"""The permission matrix (docs/permissions.md) as data, and the Bicep's role assignments.

``matrix()`` reads the document's tables (their format is described at the top of the file);
``role_assignments()`` finds every ``Microsoft.Authorization/roleAssignments`` resource under
infra/ and works out, for each, the role definition ids it grants, the principal and the scope
it grants them on. Names are followed through the deployment the way ARM would: a module
parameter to the argument its one caller passes, a variable to its value, a module output to
the module's own expression, until an expression is reached that is none of those (a resource
property, a parameter of main.bicep, a computed value). Those roots are what the document's
legend tables name, as ``<file under infra/>: <expression>``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from tests.infra.bicep import INFRA, REPO_ROOT, BicepFile, Declaration, Expr, load

MATRIX = REPO_ROOT / "docs" / "permissions.md"
MATRIX_COLUMNS = ("operation", "caller", "rbac_action", "identity", "role", "scope", "bicep")
NO_ROLE = "none"
ROLE_ASSIGNMENT = "Microsoft.Authorization/roleAssignments"


@dataclass(frozen=True)
class Permission:
    """One row of the matrix."""

    operation: str
    caller: str
    rbac_actions: tuple[str, ...]
    identity: str
    role: str
    scope: str
    bicep: str  # "<file under infra/>#<symbol>", or how it is authorised when role is none


@dataclass(frozen=True)
class Matrix:
    rows: tuple[Permission, ...]
    identities: dict[str, str]  # identity -> its principal, as a Bicep root
    roles: dict[str, str]  # role name -> role definition id
    scopes: dict[str, tuple[str, str]]  # scope -> (resource type, name path as Bicep roots)


@dataclass(frozen=True)
class Assignment:
    """One role assignment resource; a loop over role ids grants several roles."""

    file: str
    symbol: str
    role_ids: tuple[str, ...]
    principal: str
    scope_type: str
    scope_path: str
    condition: str | None

    @property
    def key(self) -> str:
        return f"{self.file}#{self.symbol}"


# -- the document ---------------------------------------------------------------------------


def _cells(line: str) -> list[str]:
    return [c.strip().strip("`").strip() for c in line.strip().strip("|").split("|")]


def _tables(text: str) -> dict[str, list[dict[str, str]]]:
    """Every Markdown table under a ``## heading``, as rows keyed by the header cells."""
    tables: dict[str, list[dict[str, str]]] = {}
    heading = ""
    header: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("## "):
            heading, header = line[3:].strip(), None
            continue
        if not line.startswith("|"):
            header = None
            continue
        cells = _cells(line)
        if header is None:
            header = cells
            tables.setdefault(heading, [])
        elif not all(set(c) <= set(":-") for c in cells):
            if len(cells) != len(header):
                raise ValueError(f"{heading}: {line!r} has {len(cells)} cells, not {len(header)}")
            tables[heading].append(dict(zip(header, cells, strict=True)))
    return tables


def matrix(path: Path = MATRIX) -> Matrix:
    tables = _tables(path.read_text(encoding="utf-8"))
    rows = []
    for row in tables["Matrix"]:
        if tuple(row) != MATRIX_COLUMNS:
            raise ValueError(f"the matrix columns are {tuple(row)}, not {MATRIX_COLUMNS}")
        actions = tuple(
            a.strip().strip("`") for a in row["rbac_action"].split(",") if a.strip().strip("`")
        )
        rows.append(
            Permission(
                operation=row["operation"],
                caller=row["caller"],
                rbac_actions=actions,
                identity=row["identity"],
                role=row["role"],
                scope=row["scope"],
                bicep=row["bicep"],
            )
        )
    return Matrix(
        rows=tuple(rows),
        identities={r["identity"]: r["principal"] for r in tables["Identities"]},
        roles={r["role"]: r["id"] for r in tables["Roles"]},
        scopes={r["scope"]: (r["type"], r["resource"]) for r in tables["Scopes"]},
    )


# -- the Bicep ------------------------------------------------------------------------------


@cache
def _file(relative: str) -> BicepFile:
    return load(INFRA / relative)


def _relative(path: Path) -> str:
    return path.resolve().relative_to(INFRA.resolve()).as_posix()


@cache
def _callers() -> dict[str, list[tuple[str, Declaration]]]:
    """For each module file, the module declarations that deploy it."""
    found: dict[str, list[tuple[str, Declaration]]] = {}
    for path in sorted(INFRA.rglob("*.bicep")):
        relative = _relative(path)
        for module in _file(relative).declarations:
            if module.kind == "module" and ":" not in module.target:
                target = _relative(path.parent / module.target)
                found.setdefault(target, []).append((relative, module))
    return found


def _root(file: str, text: str, seen: frozenset[tuple[str, str]] = frozenset()) -> Any:
    """The value or root expression ``text`` in ``file`` stands for (see the module doc).

    A literal comes back as its Python value; a root expression as ``"<file>: <text>"``.
    """
    text = " ".join(text.split())
    if (file, text) in seen:
        raise ValueError(f"{file}: {text} refers to itself")
    seen = seen | {(file, text)}
    bicep = _file(file)
    if text in bicep.variables:
        value = bicep.variables[text]
        return _root(file, value.text, seen) if isinstance(value, Expr) else value
    if text in bicep.params:
        callers = _callers().get(file, [])
        if len(callers) == 1:
            caller_file, module = callers[0]
            argument = module.body.get("params", {}).get(text)
            if argument is not None:
                if isinstance(argument, Expr):
                    return _root(caller_file, argument.text, seen)
                return argument
        if not callers and text in bicep.param_defaults:
            default = bicep.param_defaults[text]
            if not isinstance(default, Expr) and file != "main.bicep":
                return default
        return f"{file}: {text}"
    match = re.fullmatch(r"(\w+)\.outputs\.(\w+)", text)
    if match:
        module = next((d for d in bicep.declarations if d.symbol == match[1]), None)
        if module is not None and module.kind == "module":
            target = _relative((INFRA / file).parent / module.target)
            output = _file(target).outputs.get(match[2])
            if len(_callers().get(target, [])) == 1 and isinstance(output, Expr):
                return _root(target, output.text, seen)
    match = re.fullmatch(r"(\w+)\.(\w+)", text)
    if match and isinstance(bicep.variables.get(match[1]), dict):
        value = bicep.variables[match[1]].get(match[2])
        return _root(file, value.text, seen) if isinstance(value, Expr) else value
    return f"{file}: {text}"


def _role_argument(declaration: Declaration) -> str:
    text = declaration.body["properties"]["roleDefinitionId"]
    assert isinstance(text, Expr), f"{declaration.symbol}: a literal role definition id"
    match = re.fullmatch(
        r"subscriptionResourceId\('Microsoft\.Authorization/roleDefinitions',\s*(.+)\)", text.text
    )
    assert match, f"{declaration.symbol}: roleDefinitionId is not a built-in role reference"
    return match[1]


def _role_ids(file: str, declaration: Declaration) -> tuple[str, ...]:
    argument = _role_argument(declaration)
    if declaration.loop_variable and argument == declaration.loop_variable:
        assert declaration.loop_source is not None
        items = _root(file, declaration.loop_source)
        assert isinstance(items, list), f"{declaration.symbol}: loops over {items!r}"
        values = [_root(file, i.text) if isinstance(i, Expr) else i for i in items]
    else:
        values = [_root(file, argument)]
    assert all(isinstance(v, str) and re.fullmatch(r"[0-9a-f-]{36}", v) for v in values), values
    return tuple(values)


def _resource(bicep: BicepFile, symbol: str) -> Declaration:
    found = [d for d in bicep.declarations if d.symbol == symbol and d.kind == "resource"]
    assert len(found) == 1, f"no resource {symbol}"
    return found[0]


def _scope(file: str, declaration: Declaration) -> tuple[str, str]:
    """The type of the resource a role assignment is scoped to, and its name path."""
    scope = declaration.body["scope"]
    assert isinstance(scope, Expr), f"{declaration.symbol}: no scope"
    bicep = _file(file)
    target = _resource(bicep, scope.text)
    names: list[str] = []
    current: Declaration | None = target
    while current is not None:
        name = current.body["name"]
        names.append(str(_root(file, name.text) if isinstance(name, Expr) else name))
        parent = current.body.get("parent")
        current = _resource(bicep, parent.text) if isinstance(parent, Expr) else None
    return target.target.split("@", 1)[0], "/".join(reversed(names))


def role_assignments() -> list[Assignment]:
    """Every role assignment the Bicep under infra/ deploys."""
    found = []
    for path in sorted(INFRA.rglob("*.bicep")):
        file = _relative(path)
        for declaration in _file(file).resources(ROLE_ASSIGNMENT):
            principal = declaration.body["properties"]["principalId"]
            assert isinstance(principal, Expr)
            scope_type, scope_path = _scope(file, declaration)
            found.append(
                Assignment(
                    file=file,
                    symbol=declaration.symbol,
                    role_ids=_role_ids(file, declaration),
                    principal=str(_root(file, principal.text)),
                    scope_type=scope_type,
                    scope_path=scope_path,
                    condition=declaration.condition,
                )
            )
    return found
