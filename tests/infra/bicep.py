"""Reading Bicep the way the tests need it: parsed by the tree-sitter Bicep grammar.

Literal values (strings without interpolation, numbers, booleans, null, objects, arrays) become
Python values; anything computed at deployment time (references, calls, interpolated strings,
ternaries) becomes an ``Expr`` holding its source text, so a test can still look at it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import tree_sitter
import tree_sitter_bicep

REPO_ROOT = Path(__file__).resolve().parents[2]
INFRA = REPO_ROOT / "infra"

_ESCAPES = {"\\'": "'", "\\\\": "\\", "\\n": "\n", "\\r": "\r", "\\t": "\t", "\\$": "$"}


@dataclass(frozen=True)
class Expr:
    """A value only known at deployment time, kept as its Bicep source."""

    text: str


@dataclass(frozen=True)
class Declaration:
    kind: str  # resource | module
    symbol: str
    target: str  # resource type@api-version, or module path
    body: dict[str, Any]
    existing: bool = False
    loop: bool = False
    condition: str | None = None
    loop_variable: str | None = None  # [for <loop_variable> in <loop_source>: ...]
    loop_source: str | None = None


@dataclass
class BicepFile:
    path: Path
    params: dict[str, bool] = field(default_factory=dict)  # name -> has a default
    param_defaults: dict[str, Any] = field(default_factory=dict)
    variables: dict[str, Any] = field(default_factory=dict)
    declarations: list[Declaration] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    target_scope: str = "resourceGroup"

    def resources(self, type_prefix: str, *, include_existing: bool = False) -> list[Declaration]:
        """Resource declarations whose type (without API version) equals ``type_prefix``."""
        return [
            d
            for d in self.declarations
            if d.kind == "resource"
            and d.target.split("@", 1)[0].lower() == type_prefix.lower()
            and (include_existing or not d.existing)
        ]

    def resolve(self, item: Any) -> Any:
        """A bare reference to a variable or a defaulted parameter replaced by its value."""
        if isinstance(item, Expr):
            if item.text in self.variables:
                return self.resolve(self.variables[item.text])
            if item.text in self.param_defaults:
                return self.resolve(self.param_defaults[item.text])
        return item

    def modules(self, path: str) -> list[Declaration]:
        return [d for d in self.declarations if d.kind == "module" and d.target == path]


@cache
def parser() -> tree_sitter.Parser:
    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_bicep.language()))


def syntax_problems(path: Path) -> list[str]:
    """Every ERROR or MISSING node in ``path``, as ``line:column: text``; empty when it parses."""
    tree = parser().parse(path.read_bytes())
    problems: list[str] = []

    def walk(node: tree_sitter.Node) -> None:
        if node.type == "ERROR" or node.is_missing:
            row, col = node.start_point
            kind = "missing" if node.is_missing else "syntax error"
            snippet = (node.text or b"").decode(errors="replace")[:60]
            problems.append(f"{row + 1}:{col + 1}: {kind} {node.type} {snippet!r}")
        for child in node.children:
            walk(child)

    walk(tree.root_node)
    return problems


def _text(node: tree_sitter.Node) -> str:
    return (node.text or b"").decode()


def _string(node: tree_sitter.Node) -> str | Expr:
    parts: list[str] = []
    for child in node.named_children:
        if child.type == "interpolation":
            return Expr(_text(node))
        if child.type == "escape_sequence":
            parts.append(_ESCAPES.get(_text(child), _text(child)))
        else:
            parts.append(_text(child))
    return "".join(parts)


def value(node: tree_sitter.Node) -> Any:
    """The Python value of a Bicep expression node (``Expr`` when not a literal)."""
    t = node.type
    if t == "string":
        return _string(node)
    if t == "multiline_string":
        return _text(node)[3:-3]
    if t == "number":
        return int(_text(node))
    if t == "boolean":
        return _text(node) == "true"
    if t == "null":
        return None
    if t == "array":
        return [value(c) for c in node.named_children if c.type != "comment"]
    if t == "object":
        result: dict[str, Any] = {}
        for prop in node.named_children:
            if prop.type != "object_property":
                continue
            key_node, *rest = [c for c in prop.named_children if c.type != "comment"]
            key = _string(key_node) if key_node.type == "string" else _text(key_node)
            result[str(key) if not isinstance(key, Expr) else key.text] = (
                value(rest[-1]) if rest else None
            )
        return result
    return Expr(_text(node))


def _named(node: tree_sitter.Node) -> list[tree_sitter.Node]:
    return [c for c in node.named_children if c.type != "comment"]


def _declaration(kind: str, node: tree_sitter.Node) -> Declaration:
    symbol, target, body = _named(node)[:3]
    existing = any(c.type == "existing" for c in node.children)
    loop = False
    condition: str | None = None
    loop_variable: str | None = None
    loop_source: str | None = None
    if body.type == "for_statement":
        loop = True
        header = _named(body)
        if len(header) >= 3 and header[0].type == "identifier":
            loop_variable, loop_source = _text(header[0]), _text(header[1])
        body = [c for c in header if c.type in ("object", "if_statement")][-1]
    if body.type == "if_statement":
        condition = _text(_named(body)[0])
        body = _named(body)[-1]
    parsed = value(body)
    return Declaration(
        kind=kind,
        symbol=_text(symbol),
        target=str(value(target)),
        body=parsed if isinstance(parsed, dict) else {},
        existing=existing,
        loop=loop,
        condition=condition,
        loop_variable=loop_variable,
        loop_source=loop_source,
    )


def load(path: Path) -> BicepFile:
    """Parse ``path`` (which must have no syntax problems) into a ``BicepFile``."""
    tree = parser().parse(path.read_bytes())
    result = BicepFile(path=path)
    for node in _named(tree.root_node):
        children = _named(node)
        if node.type == "parameter_declaration":
            result.params[_text(children[0])] = len(children) > 2
            if len(children) > 2:
                result.param_defaults[_text(children[0])] = value(children[-1])
        elif node.type == "variable_declaration":
            result.variables[_text(children[0])] = value(children[-1])
        elif node.type == "resource_declaration":
            result.declarations.append(_declaration("resource", node))
        elif node.type == "module_declaration":
            result.declarations.append(_declaration("module", node))
        elif node.type == "output_declaration":
            result.outputs[_text(children[0])] = value(children[-1])
        elif node.type == "target_scope_assignment":
            result.target_scope = str(value(children[0]))
    return result


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


def walk_values(data: Any) -> Iterator[Any]:
    """Every value nested in ``data`` (dicts and lists flattened)."""
    yield data
    if isinstance(data, dict):
        for item in data.values():
            yield from walk_values(item)
    elif isinstance(data, list):
        for item in data:
            yield from walk_values(item)
