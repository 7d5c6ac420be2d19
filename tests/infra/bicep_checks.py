"""What the Bicep compiler and its default linter would reject, checked without them.

No Bicep compiler installs from the package registries this project may use (the CLI ships
only as a downloaded binary or a NuGet tool), so the workflows run ``az bicep build`` and
``az bicep lint`` on every pull request, and these checks catch the same classes of mistake
on every test run. The tree-sitter grammar (``tests/infra/bicep.py``) accepts anything that
*parses*; each check here is a rule of the language on top of it:

- ``duplicate-decorator``   one decorator twice on a declaration (compiler error BCP166)
- ``duplicate-symbol``      two declarations with one name (BCP028)
- ``undeclared-identifier`` a name used but declared nowhere in scope (BCP057)
- ``unknown-function``      a call to a function that is neither built in nor declared (BCP057)
- ``unknown-decorator``     a decorator Bicep does not have
- ``unused-param``          a parameter nothing reads (linter rule no-unused-params)
- ``unused-var``            a variable nothing reads (linter rule no-unused-vars)
- ``module-path``           a module whose file does not exist (BCP091)
- ``module-unknown-param``  an argument the module does not declare (BCP037)
- ``module-missing-param``  a required module parameter left out (BCP035)
- ``module-unknown-output`` ``<module>.outputs.X`` where the module has no output X (BCP053)
- ``paramfile-unknown``     a parameter file naming a parameter the template does not declare
- ``paramfile-missing``     a parameter file leaving a required parameter out
- ``paramfile-type``        a literal value of the wrong type for the declared parameter
- ``paramfile-allowed``     a literal value outside the parameter's ``@allowed`` list

Each check is proven on a small bad snippet in ``tests/infra/test_bicep_checks.py``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tree_sitter

from tests.infra.bicep import parser, value

# Functions of the az and sys namespaces (Bicep's function reference), as called unqualified.
BUILTIN_FUNCTIONS = frozenset(
    """
    any array base64 base64ToJson base64ToString bool buildUri cidrHost cidrSubnet coalesce
    concat contains dataUri dataUriToString dateTimeAdd dateTimeFromEpoch dateTimeToEpoch
    deployer deployment empty endsWith environment extensionResourceId filter first flatten
    format groupBy guid indexOf int intersection items join json last lastIndexOf length
    listAccountSas listKeys listSecrets loadFileAsBase64 loadJsonContent loadTextContent
    loadYamlContent managementGroup managementGroupResourceId map mapValues max min newGuid
    objectKeys padLeft parseCidr parseUri pickZones providers range readEnvironmentVariable
    reduce reference replace resourceGroup resourceId shallowMerge skip sort split
    startsWith string subscription subscriptionResourceId substring take tenant
    tenantResourceId toLower toObject toUpper trim tryGet union uniqueString uri
    uriComponent uriComponentToString utcNow
    """.split()  # noqa: SIM905 (a word list reads better than a literal)
)
BUILTIN_DECORATORS = frozenset(
    """
    allowed batchSize description discriminator export maxLength maxValue metadata
    minLength minValue onlyIfNotExists sealed secure
    """.split()  # noqa: SIM905 (a word list reads better than a literal)
)
NAMESPACES = frozenset({"az", "sys"})
# Parameters of these primitive types take JSON values of these kinds in a parameter file.
_PARAM_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "int": (int,),
    "bool": (bool,),
    "object": (dict,),
    "array": (list,),
}
_DECLARATIONS = {
    "parameter_declaration": "param",
    "variable_declaration": "var",
    "resource_declaration": "resource",
    "module_declaration": "module",
    "output_declaration": "output",
    "user_defined_function": "func",
    "type_declaration": "type",
}


@dataclass(frozen=True)
class Problem:
    path: Path
    line: int
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.path.name}:{self.line}: {self.code}: {self.message}"


@dataclass
class _Symbol:
    kind: str
    name: str
    node: tree_sitter.Node
    decorators: list[tree_sitter.Node] = field(default_factory=list)


def _text(node: tree_sitter.Node) -> str:
    return (node.text or b"").decode()


def _named(node: tree_sitter.Node) -> list[tree_sitter.Node]:
    return [c for c in node.named_children if c.type != "comment"]


def _line(node: tree_sitter.Node) -> int:
    return node.start_point[0] + 1


def _decorator_name(decorator: tree_sitter.Node) -> str:
    call = _named(decorator)[0]
    target = _named(call)[0] if call.type == "call_expression" else call
    return _text(target).removeprefix("sys.")


@dataclass
class BicepSource:
    """One Bicep file's top-level symbols, parsed once."""

    path: Path
    tree: tree_sitter.Tree
    symbols: list[_Symbol]

    @classmethod
    def read(cls, path: Path) -> BicepSource:
        tree = parser().parse(path.read_bytes())
        symbols: list[_Symbol] = []
        pending: list[tree_sitter.Node] = []
        for node in _named(tree.root_node):
            if node.type == "decorators":
                pending = [d for d in _named(node) if d.type == "decorator"]
                continue
            kind = _DECLARATIONS.get(node.type)
            if kind is not None:
                name = _named(node)[0]
                symbols.append(_Symbol(kind, _text(name), node, pending))
            elif node.type == "import_functionality":
                for ident in _named(node):
                    if ident.type == "identifier":
                        symbols.append(_Symbol("import", _text(ident), ident))
            pending = []
        return cls(path, tree, symbols)

    def of_kind(self, kind: str) -> dict[str, _Symbol]:
        return {s.name: s for s in self.symbols if s.kind == kind}

    @property
    def values(self) -> set[str]:
        """Names an expression may refer to (outputs are not readable inside the file)."""
        return {s.name for s in self.symbols if s.kind not in ("output", "func", "type")}

    def problem(self, node: tree_sitter.Node, code: str, message: str) -> Problem:
        return Problem(self.path, _line(node), code, message)


# -- walking expressions ------------------------------------------------------------------


@dataclass(frozen=True)
class _Use:
    node: tree_sitter.Node
    kind: str  # value | function | type
    bound: bool


def _binders(node: tree_sitter.Node) -> set[str]:
    """Names a loop or lambda header binds: ``x``, ``(x, i)``."""
    if node.type in ("identifier", "loop_variable", "loop_enumerator"):
        return {_text(node)}
    return {name for child in _named(node) for name in _binders(child)}


def _uses(node: tree_sitter.Node, bound: frozenset[str]) -> Iterator[_Use]:
    """Every identifier ``node`` reads, with whether a loop, lambda or function binds it."""
    kind = node.type
    children = _named(node)
    if kind == "identifier":
        yield _Use(node, "value", _text(node) in bound)
        return
    if kind == "for_statement":
        header, iterable, *body = children
        yield from _uses(iterable, bound)
        inner = bound | _binders(header)
        for child in body:
            yield from _uses(child, inner)
        return
    if kind == "lambda_expression":
        header, *body = children
        inner = bound | _binders(header)
        for child in body:
            yield from _uses(child, inner)
        return
    if kind == "object_property":
        for child in children[1:]:  # the first is the key
            yield from _uses(child, bound)
        return
    if kind == "member_expression":
        yield from _uses(children[0], bound)  # the rest is a property name
        return
    if kind == "resource_expression":
        yield from _uses(children[0], bound)  # parent::child names a child
        return
    if kind == "call_expression":
        target, *rest = children
        if target.type == "identifier":
            yield _Use(target, "function", False)
        elif target.type == "member_expression":
            owner = _named(target)[0]
            if not (owner.type == "identifier" and _text(owner) in NAMESPACES):
                yield from _uses(owner, bound)  # a resource method: res.listKeys()
        for child in rest:
            yield from _uses(child, bound)
        return
    if kind in ("type", "union_type", "array_type", "object_type"):
        for child in children:
            if child.type == "identifier":
                yield _Use(child, "type", False)
            else:
                yield from _uses(child, bound)
        return
    for child in children:
        yield from _uses(child, bound)


def _declaration_uses(symbol: _Symbol) -> Iterator[_Use]:
    node = symbol.node
    children = _named(node)
    if symbol.kind == "func":
        _, parameters, *rest = children
        inner = frozenset(_text(_named(p)[0]) for p in _named(parameters) if _named(p))
        for p in _named(parameters):
            for type_node in _named(p)[1:]:
                yield from _uses(type_node, frozenset())
        for child in rest:
            yield from _uses(child, inner)
        return
    for child in children[1:]:  # the first is the declared name
        yield from _uses(child, frozenset())
    for decorator in symbol.decorators:
        call = _named(decorator)[0]
        if call.type == "call_expression":
            for argument in _named(call)[1:]:
                yield from _uses(argument, frozenset())


def _all_uses(source: BicepSource) -> Iterator[tuple[_Symbol, _Use]]:
    for symbol in source.symbols:
        if symbol.kind == "import":
            continue
        for use in _declaration_uses(symbol):
            yield symbol, use


# -- the checks ---------------------------------------------------------------------------


def duplicate_decorators(source: BicepSource) -> list[Problem]:
    problems = []
    for symbol in source.symbols:
        seen: set[str] = set()
        for decorator in symbol.decorators:
            name = _decorator_name(decorator)
            if name in seen:
                problems.append(
                    source.problem(
                        decorator,
                        "duplicate-decorator",
                        f"@{name} appears twice on {symbol.kind} {symbol.name}",
                    )
                )
            seen.add(name)
            if name not in BUILTIN_DECORATORS:
                problems.append(
                    source.problem(decorator, "unknown-decorator", f"no decorator @{name}")
                )
    return problems


def duplicate_symbols(source: BicepSource) -> list[Problem]:
    problems = []
    seen: dict[str, _Symbol] = {}
    for symbol in source.symbols:
        # Outputs live in their own namespace; everything else shares one.
        key = f"output:{symbol.name}" if symbol.kind == "output" else symbol.name
        if key in seen:
            first = seen[key]
            problems.append(
                source.problem(
                    symbol.node,
                    "duplicate-symbol",
                    f"{symbol.kind} {symbol.name} is already declared as a {first.kind} "
                    f"on line {_line(first.node)}",
                )
            )
        seen.setdefault(key, symbol)
    return problems


def undeclared_identifiers(source: BicepSource) -> list[Problem]:
    values = source.values
    functions = set(source.of_kind("func")) | {s.name for s in source.symbols if s.kind == "import"}
    types = set(source.of_kind("type")) | {s.name for s in source.symbols if s.kind == "import"}
    problems = []
    for _, use in _all_uses(source):
        name = _text(use.node)
        if use.kind == "function":
            if name not in BUILTIN_FUNCTIONS and name not in functions:
                problems.append(
                    source.problem(use.node, "unknown-function", f"no function {name}()")
                )
        elif use.kind == "type":
            if name not in types:
                problems.append(
                    source.problem(use.node, "undeclared-identifier", f"no type {name}")
                )
        elif not use.bound and name not in values and name not in NAMESPACES:
            problems.append(
                source.problem(use.node, "undeclared-identifier", f"{name} is not declared")
            )
    return problems


def unused_symbols(source: BicepSource) -> list[Problem]:
    read: set[str] = set()
    for symbol, use in _all_uses(source):
        if use.kind == "value" and not use.bound and _text(use.node) != symbol.name:
            read.add(_text(use.node))
    problems = []
    for kind, code in (("param", "unused-param"), ("var", "unused-var")):
        for name, symbol in source.of_kind(kind).items():
            if name not in read:
                problems.append(
                    source.problem(symbol.node, code, f"{kind} {name} is declared but not used")
                )
    return problems


def _module_params(path: Path) -> tuple[dict[str, bool], set[str]]:
    """A module file's parameters (name -> required) and outputs."""
    module = BicepSource.read(path)
    params = {
        name: len(_named(symbol.node)) < 3  # name and type only: no default
        for name, symbol in module.of_kind("param").items()
    }
    return params, set(module.of_kind("output"))


def _module_body(node: tree_sitter.Node) -> tree_sitter.Node | None:
    body = _named(node)[-1]
    while body.type in ("for_statement", "if_statement"):
        body = _named(body)[-1]
    return body if body.type == "object" else None


def module_contracts(source: BicepSource) -> list[Problem]:
    problems = []
    modules: dict[str, set[str]] = {}
    for name, symbol in source.of_kind("module").items():
        target_node = _named(symbol.node)[1]
        target = value(target_node)
        if not isinstance(target, str) or ":" in target:
            continue  # a registry or template-spec reference
        path = (source.path.parent / target).resolve()
        if not path.is_file():
            problems.append(source.problem(target_node, "module-path", f"{target} does not exist"))
            continue
        declared, outputs = _module_params(path)
        modules[name] = outputs
        body = _module_body(symbol.node)
        passed: dict[str, tree_sitter.Node] = {}
        if body is not None:
            for prop in _named(body):
                key, *rest = _named(prop) if prop.type == "object_property" else [prop]
                if _text(key) == "params" and rest and rest[-1].type == "object":
                    for arg in _named(rest[-1]):
                        if arg.type == "object_property":
                            passed[_text(_named(arg)[0]).strip("'")] = arg
        for given, node in passed.items():
            if given not in declared:
                problems.append(
                    source.problem(
                        node, "module-unknown-param", f"{name}: {target} declares no param {given}"
                    )
                )
        missing = sorted(p for p, required in declared.items() if required and p not in passed)
        if missing:
            problems.append(
                source.problem(
                    symbol.node,
                    "module-missing-param",
                    f"{name}: {target} requires {', '.join(missing)}",
                )
            )
    for _, use in _all_uses(source):
        owner = _text(use.node)
        parent = use.node.parent
        if owner not in modules or parent is None or parent.type != "member_expression":
            continue
        outer = parent.parent
        if _text(_named(parent)[-1]) != "outputs" or outer is None:
            continue
        if outer.type == "member_expression":
            output = _text(_named(outer)[-1])
            if output not in modules[owner]:
                problems.append(
                    source.problem(
                        outer, "module-unknown-output", f"module {owner} has no output {output}"
                    )
                )
    return problems


def check_file(path: Path) -> list[Problem]:
    """Every check above on one Bicep file."""
    source = BicepSource.read(path)
    return [
        *duplicate_decorators(source),
        *duplicate_symbols(source),
        *undeclared_identifiers(source),
        *unused_symbols(source),
        *module_contracts(source),
    ]


def _allowed(symbol: _Symbol) -> list[Any] | None:
    for decorator in symbol.decorators:
        if _decorator_name(decorator) == "allowed":
            call = _named(decorator)[0]
            values = value(_named(_named(call)[1])[0])
            return values if isinstance(values, list) else None
    return None


_PLACEHOLDER = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(=[^}]*)?\}$")


def check_parameter_file(parameters: Path, template: Path) -> list[Problem]:
    """A deployment parameters JSON file against the template it is for.

    ``${NAME}`` / ``${NAME=default}`` values are azd placeholders, filled in from the azd
    environment as strings, so they are only allowed for string parameters.
    """
    source = BicepSource.read(template)
    declared = source.of_kind("param")
    data = json.loads(parameters.read_text(encoding="utf-8"))
    values: dict[str, Any] = data.get("parameters", {})
    problems = []

    def problem(code: str, message: str) -> Problem:
        return Problem(parameters, 1, code, message)

    for name, entry in values.items():
        symbol = declared.get(name)
        if symbol is None:
            problems.append(problem("paramfile-unknown", f"{template.name} has no param {name}"))
            continue
        type_node = _named(symbol.node)[1]
        declared_type = _text(type_node)
        given = entry.get("value") if isinstance(entry, dict) else None
        if isinstance(given, str) and _PLACEHOLDER.match(given):
            if declared_type != "string":
                problems.append(
                    problem(
                        "paramfile-type",
                        f"{name}: azd fills {given} in as a string; the param is {declared_type}",
                    )
                )
            continue
        kinds = _PARAM_TYPES.get(declared_type)
        if kinds is not None and given is not None:
            wrong = not isinstance(given, kinds) or (kinds == (int,) and isinstance(given, bool))
            if wrong:
                problems.append(
                    problem(
                        "paramfile-type",
                        f"{name}: {type(given).__name__} given, the param is {declared_type}",
                    )
                )
                continue
        allowed = _allowed(symbol)
        if allowed is not None and given not in allowed:
            problems.append(
                problem("paramfile-allowed", f"{name}: {given!r} is not one of {allowed}")
            )
    required = [
        name
        for name, symbol in declared.items()
        if len(_named(symbol.node)) < 3 and name not in values
    ]
    if required:
        problems.append(problem("paramfile-missing", f"no value for {', '.join(required)}"))
    return problems
