"""Evaluating a Bicep deployment's values with parameter values, as ARM would at deployment.

``tests/infra/bicep.py`` reads Bicep literally and keeps whatever is computed as text. This
module computes it: ``Deployment(template, parameters, cloud)`` evaluates variables, module
parameters, resource properties and outputs from the parameter values, the template defaults
and the functions ARM provides. What only exists once a resource is deployed (an endpoint, a
client id, a connection string) is asked of ``cloud``, an object that plays the resources:
``cloud.resource_property(type, name, path)`` answers ``account.properties.primaryEndpoints.blob``
with the endpoint of whatever stands in for that account. So a test gets the app settings a
deployment produces without typing any of them again.

Parameter files are azd's: ``"${NAME}"`` and ``"${NAME=default}"`` are filled in from an azd
environment (a mapping) the way azd does before it deploys.

Supported: literals, interpolated strings, parameters, variables, ``a.b`` / ``a[b]`` / ``a.?b``,
``!``, ``-``, comparisons, ``&&``, ``||``, ``??``, ternaries, module outputs, resource
``name``/``id``/properties, and the functions listed in ``FUNCTIONS``. Anything else (loops,
lambdas, user functions) raises ``BicepEvalError`` naming it, so a template that grows a
construct fails a test loudly rather than evaluating wrongly. ``uniqueString`` is not ARM's
hash: it is a stable 13-character lowercase token of the same shape, which is all names need.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import tree_sitter

from tests.infra.bicep import parser
from tests.infra.bicep import value as literal

_AZD_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:=([^}]*))?\}")


class BicepEvalError(Exception):
    """The template uses something this evaluator does not compute, or refers to nothing."""


class Cloud(Protocol):
    """What a deployment needs from the world it deploys into."""

    subscription_id: str
    tenant_id: str

    def resource_property(self, resource_type: str, name: str, path: tuple[str, ...]) -> Any:
        """The value at ``path`` (e.g. ``("properties", "clientId")``) of resource ``name``."""
        ...


def fill_azd_parameters(path: Path, environment: Mapping[str, str]) -> dict[str, Any]:
    """The ``parameters`` of an azd parameter file, ``${NAME=default}`` filled from
    ``environment`` (an unset variable without a default becomes "", as azd does)."""

    def fill(value: Any) -> Any:
        if isinstance(value, str):
            return _AZD_VARIABLE.sub(lambda m: environment.get(m.group(1), m.group(2) or ""), value)
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v) for v in value]
        return value

    data = json.loads(path.read_text(encoding="utf-8"))
    return {name: fill(entry["value"]) for name, entry in data["parameters"].items()}


def unique_string(*parts: str) -> str:
    """A stable 13-character token of ``parts`` (ARM's ``uniqueString`` has this shape)."""
    digest = hashlib.sha256("|".join(parts).encode()).digest()
    return base64.b32encode(digest).decode().lower()[:13]


def arm_string(value: Any) -> str:
    """ARM's ``string()``: booleans as True/False, objects and arrays as JSON."""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return "" if value is None else str(value)


def _union(*items: Any) -> Any:
    if all(isinstance(i, dict) for i in items):
        merged: dict[str, Any] = {}
        for item in items:
            merged.update(item)
        return merged
    if all(isinstance(i, list) for i in items):
        out: list[Any] = []
        for item in items:
            out.extend(x for x in item if x not in out)
        return out
    raise BicepEvalError("union() of mixed objects and arrays")


def _guid(*parts: Any) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "|".join(arm_string(p) for p in parts)))


# ``environment()``: the Azure public cloud's endpoints and suffixes.
AZURE_CLOUD = {
    "name": "AzureCloud",
    "resourceManager": "https://management.azure.com/",
    "authentication": {"loginEndpoint": "https://login.microsoftonline.com/"},
    "suffixes": {
        "storage": "core.windows.net",
        "keyvaultDns": ".vault.azure.net",
        "acrLoginServer": ".azurecr.io",
    },
}

FUNCTIONS: dict[str, Callable[..., Any]] = {
    "toLower": lambda s: str(s).lower(),
    "toUpper": lambda s: str(s).upper(),
    "string": arm_string,
    "int": int,
    "bool": lambda v: v if isinstance(v, bool) else str(v).lower() == "true",
    "empty": lambda v: v is None or len(v) == 0,
    "length": len,
    "take": lambda v, n: v[: int(n)],
    "skip": lambda v, n: v[int(n) :],
    "first": lambda v: v[0] if v else None,
    "last": lambda v: v[-1] if v else None,
    "concat": lambda *a: (
        [x for item in a for x in item]
        if a and all(isinstance(i, list) for i in a)
        else "".join(arm_string(x) for x in a)
    ),
    "contains": lambda haystack, needle: needle in haystack,
    "startsWith": lambda s, p: str(s).lower().startswith(str(p).lower()),
    "endsWith": lambda s, p: str(s).lower().endswith(str(p).lower()),
    "replace": lambda s, old, new: str(s).replace(str(old), str(new)),
    "split": lambda s, sep: (
        str(s).split(sep)
        if isinstance(sep, str)
        else re.split("|".join(map(re.escape, sep)), str(s))
    ),
    "join": lambda items, sep: str(sep).join(arm_string(i) for i in items),
    "trim": lambda s: str(s).strip(),
    "format": lambda fmt, *a: re.sub(
        r"\{(\d+)\}", lambda m: arm_string(a[int(m.group(1))]), str(fmt)
    ),
    "union": _union,
    "coalesce": lambda *a: next((x for x in a if x is not None), None),
    "uniqueString": lambda *a: unique_string(*map(arm_string, a)),
    "guid": _guid,
}


@dataclass(frozen=True)
class ResourcePath:
    """A resource's value not known before deployment: asked of the cloud when it is used."""

    resource_type: str
    name: str
    path: tuple[str, ...] = ()


@dataclass(frozen=True)
class _ModuleOutputs:
    deployment: Deployment


@dataclass(frozen=True)
class _Lazy:
    """A module parameter: its expression in the calling template, computed when read."""

    caller: Deployment
    node: tree_sitter.Node

    def compute(self) -> Any:
        return self.caller._materialize(self.caller._eval(self.node))


@dataclass(frozen=True)
class _OutputsOf:
    deployment: Deployment


@dataclass(frozen=True)
class _Resource:
    resource_type: str
    name: str


@dataclass
class Deployment:
    """One Bicep file deployed with ``parameters`` into ``cloud``."""

    template: Path
    parameters: Mapping[str, Any]
    cloud: Cloud
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @cached_property
    def _source(self) -> bytes:
        return self.template.read_bytes()

    @cached_property
    def _declarations(self) -> dict[str, tuple[str, tree_sitter.Node]]:
        """symbol → (kind, declaration node)."""
        tree = parser().parse(self._source)
        out: dict[str, tuple[str, tree_sitter.Node]] = {}
        for node in tree.root_node.named_children:
            kind = node.type.removesuffix("_declaration")
            if kind in ("parameter", "variable", "resource", "module", "output"):
                name = _text(_named(node)[0])
                key = f"output:{name}" if kind == "output" else name
                out[key] = (kind, node)
        return out

    # -- public -----------------------------------------------------------------------------

    def variable(self, name: str) -> Any:
        return self._materialize(self._symbol(name))

    def output(self, name: str) -> Any:
        found = self._declarations.get(f"output:{name}")
        if found is None:
            raise BicepEvalError(f"{self.template.name} has no output {name!r}")
        return self._materialize(self._eval(_named(found[1])[-1]))

    def module(self, symbol: str) -> Deployment:
        value = self._symbol(symbol)
        if not isinstance(value, _ModuleOutputs):
            raise BicepEvalError(f"{symbol} is not a module of {self.template.name}")
        return value.deployment

    def resource_properties(self, symbol: str) -> Any:
        """The ``properties`` a resource declaration gives its resource, computed."""
        kind, node = self._declaration(symbol)
        if kind != "resource":
            raise BicepEvalError(f"{symbol} is not a resource of {self.template.name}")
        body = _named(node)[2]
        if body.type != "object":
            raise BicepEvalError(f"{symbol}: conditional or looped resources are not evaluated")
        for prop in body.named_children:
            if prop.type == "object_property" and _text(_named(prop)[0]) == "properties":
                return self._materialize(self._eval(_named(prop)[-1]))
        raise BicepEvalError(f"{symbol} has no properties")

    def evaluate(self, expression: str) -> Any:
        """Any expression in this template's scope (``evaluate("appSettings.MLOPS_REGIONS")``)."""
        tree = parser().parse(f"var __probe = {expression}\n".encode())
        node = tree.root_node.named_children[0]
        return self._materialize(self._eval(_named(node)[-1]))

    # -- symbols ----------------------------------------------------------------------------

    def _declaration(self, name: str) -> tuple[str, tree_sitter.Node]:
        found = self._declarations.get(name)
        if found is None:
            raise BicepEvalError(f"{self.template.name}: {name!r} is not declared")
        return found

    def _symbol(self, name: str) -> Any:
        if name in self._cache:
            return self._cache[name]
        kind, node = self._declaration(name)
        children = _named(node)
        if kind == "parameter":
            if name in self.parameters:
                value = self.parameters[name]
                if isinstance(value, _Lazy):
                    value = value.compute()
            elif len(children) > 2:
                value = self._eval(children[-1])
            else:
                raise BicepEvalError(f"{self.template.name}: parameter {name!r} has no value")
        elif kind == "variable":
            value = self._eval(children[-1])
        elif kind == "resource":
            body = self._object_body(name, children[2])
            resource_type = str(self._eval(children[1])).split("@", 1)[0]
            value = _Resource(resource_type, arm_string(self._materialize(body["name"])))
        elif kind == "module":
            body = self._object_body(name, children[2])
            path = self.template.parent / str(self._eval(children[1]))
            value = _ModuleOutputs(Deployment(path, body.get("params") or {}, self.cloud))
        else:
            raise BicepEvalError(f"{name} cannot be referenced")
        self._cache[name] = value
        return value

    def _object_body(self, name: str, node: tree_sitter.Node) -> dict[str, Any]:
        """A resource's name and a module's params, each computed only when used."""
        if node.type != "object":
            raise BicepEvalError(f"{self.template.name}: {name} is conditional or looped")
        out: dict[str, Any] = {}
        for prop in node.named_children:
            if prop.type != "object_property":
                continue
            key_node, *rest = _named(prop)
            key = _text(key_node).strip("'")
            if key == "name" and rest:
                out[key] = self._eval(rest[-1])
            elif key == "params" and rest and rest[-1].type == "object":
                out[key] = {
                    _text(_named(p)[0]).strip("'"): _Lazy(self, _named(p)[-1])
                    for p in rest[-1].named_children
                    if p.type == "object_property"
                }
        return out

    # -- expressions -----------------------------------------------------------------------

    def _materialize(self, value: Any) -> Any:
        if isinstance(value, ResourcePath):
            return self.cloud.resource_property(value.resource_type, value.name, value.path)
        if isinstance(value, _Resource):
            raise BicepEvalError(f"resource {value.name} used as a value")
        if isinstance(value, dict):
            return {k: self._materialize(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._materialize(v) for v in value]
        return value

    def _eval(self, node: tree_sitter.Node) -> Any:
        t = node.type
        if t == "string":
            return self._string(node)
        if t in ("multiline_string", "number", "boolean", "null"):
            return literal(node)
        if t == "identifier":
            return self._symbol(_text(node))
        if t == "object":
            out: dict[str, Any] = {}
            for prop in node.named_children:
                if prop.type != "object_property":
                    continue
                key_node, *rest = _named(prop)
                key = self._string(key_node) if key_node.type == "string" else _text(key_node)
                out[str(key)] = self._eval(rest[-1]) if rest else None
            return out
        if t == "array":
            return [self._eval(c) for c in _named(node)]
        if t == "parenthesized_expression":
            return self._eval(_named(node)[0])
        if t == "member_expression":
            obj, prop = _named(node)
            safe = any("?" in c.type for c in node.children if not c.is_named)
            return self._member(self._eval(obj), _text(prop), safe)
        if t == "subscript_expression":
            obj, index = _named(node)
            return self._member(self._eval(obj), self._materialize(self._eval(index)), False)
        if t == "call_expression":
            return self._call(node)
        if t == "unary_expression":
            operator = node.children[0].type
            operand = self._materialize(self._eval(_named(node)[0]))
            if operator == "!":
                return not operand
            if operator == "-":
                return -operand
        if t == "binary_expression":
            return self._binary(node)
        if t == "ternary_expression":
            condition = self._materialize(self._eval(node.child_by_field_name("condition")))
            branch = "consequence" if condition else "alternative"
            return self._eval(node.child_by_field_name(branch))
        raise BicepEvalError(
            f"{self.template.name}:{node.start_point[0] + 1}: cannot evaluate {t} "
            f"{_text(node)[:60]!r}"
        )

    def _string(self, node: tree_sitter.Node) -> str:
        parts: list[str] = []
        for child in node.named_children:
            if child.type == "interpolation":
                parts.append(arm_string(self._materialize(self._eval(_named(child)[0]))))
            elif child.type == "escape_sequence":
                parts.append(_ESCAPES.get(_text(child), _text(child)))
            else:
                parts.append(_text(child))
        return "".join(parts)

    def _member(self, obj: Any, prop: Any, safe: bool) -> Any:
        if isinstance(obj, _ModuleOutputs):
            if prop != "outputs":
                raise BicepEvalError(f"module {obj.deployment.template.name}: only outputs")
            return _OutputsOf(obj.deployment)
        if isinstance(obj, _OutputsOf):
            return obj.deployment.output(str(prop))
        if isinstance(obj, _Resource):
            if prop == "name":
                return obj.name
            return ResourcePath(obj.resource_type, obj.name, (str(prop),))
        if isinstance(obj, ResourcePath):
            return ResourcePath(obj.resource_type, obj.name, (*obj.path, str(prop)))
        if obj is None and safe:
            return None
        if isinstance(obj, dict):
            if prop not in obj:
                if safe:
                    return None
                raise BicepEvalError(f"no property {prop!r} in {sorted(obj)}")
            return obj[prop]
        if isinstance(obj, list) and isinstance(prop, int):
            return obj[prop]
        raise BicepEvalError(f"cannot read {prop!r} of {type(obj).__name__}")

    def _call(self, node: tree_sitter.Node) -> Any:
        function = node.child_by_field_name("function")
        arguments = node.child_by_field_name("arguments")
        assert function is not None and arguments is not None
        name = _text(function).removeprefix("sys.").removeprefix("az.")
        args = [self._materialize(self._eval(a)) for a in _named(arguments)]
        if name == "subscription":
            return {
                "id": f"/subscriptions/{self.cloud.subscription_id}",
                "subscriptionId": self.cloud.subscription_id,
                "tenantId": self.cloud.tenant_id,
            }
        if name == "tenant":
            return {"tenantId": self.cloud.tenant_id}
        if name == "environment":
            return AZURE_CLOUD
        if name == "loadJsonContent":
            return json.loads((self.template.parent / str(args[0])).read_text(encoding="utf-8"))
        if name == "loadTextContent":
            return (self.template.parent / str(args[0])).read_text(encoding="utf-8")
        if name not in FUNCTIONS:
            raise BicepEvalError(f"{self.template.name}: function {name}() is not evaluated")
        return FUNCTIONS[name](*args)

    def _binary(self, node: tree_sitter.Node) -> Any:
        left_node = node.child_by_field_name("left")
        right_node = node.child_by_field_name("right")
        assert left_node is not None and right_node is not None
        operator = next(c.type for c in node.children if not c.is_named)
        left = self._materialize(self._eval(left_node))
        if operator == "&&":
            return bool(left) and bool(self._materialize(self._eval(right_node)))
        if operator == "||":
            return bool(left) or bool(self._materialize(self._eval(right_node)))
        if operator == "??":
            return left if left is not None else self._materialize(self._eval(right_node))
        right = self._materialize(self._eval(right_node))
        operations: dict[str, Callable[[Any, Any], Any]] = {
            "==": lambda a, b: a == b,
            "!=": lambda a, b: a != b,
            "=~": lambda a, b: str(a).lower() == str(b).lower(),
            "!~": lambda a, b: str(a).lower() != str(b).lower(),
            "<": lambda a, b: a < b,
            "<=": lambda a, b: a <= b,
            ">": lambda a, b: a > b,
            ">=": lambda a, b: a >= b,
            "+": lambda a, b: a + b,
            "-": lambda a, b: a - b,
            "*": lambda a, b: a * b,
            "/": lambda a, b: a // b,
            "%": lambda a, b: a % b,
        }
        if operator not in operations:
            raise BicepEvalError(f"operator {operator!r} is not evaluated")
        return operations[operator](left, right)


_ESCAPES = {"\\'": "'", "\\\\": "\\", "\\n": "\n", "\\r": "\r", "\\t": "\t", "\\$": "$"}


def _text(node: tree_sitter.Node) -> str:
    return (node.text or b"").decode()


def _named(node: tree_sitter.Node) -> list[tree_sitter.Node]:
    return [c for c in node.named_children if c.type not in ("comment", "decorators")]
