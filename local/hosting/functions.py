"""Reading a function app the way the Functions host does: from ``app.get_functions()``.

The index is plain data: one ``FunctionSpec`` per function with its trigger, its other bindings
and the callable the worker would invoke. Unsupported bindings fail here, at start-up, with a
message naming the function and the binding, not later at the first invocation.
"""

from __future__ import annotations

import builtins
import dataclasses
import re
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from local.hosting.schedules import Schedule
from local.hosting.templates import BlobPathTemplate, RouteTemplate, TemplateError

TRIGGERS = {
    "httpTrigger",
    "blobTrigger",
    "timerTrigger",
    "eventGridTrigger",
    "orchestrationTrigger",
    "activityTrigger",
}
# Non-trigger bindings the local host knows how to supply.
INPUTS = {"durableClient"}
OUTPUTS = {"http"}
ALL_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


class AppIndexError(ValueError):
    """The app uses something the local host cannot serve."""


def _plain(value: Any) -> Any:
    """Enum members from the decorators become their string values."""
    return getattr(value, "value", value)


@dataclass(frozen=True)
class Binding:
    name: str
    type: str
    direction: str
    attrs: dict[str, Any]
    # The SDK type the parameter is annotated with when the binding is deferred (the worker
    # then receives model binding data and an azurefunctions extension builds the client).
    sdk_type: builtins.type | None = None

    def get(self, key: str, default: Any = None) -> Any:
        return self.attrs.get(key, default)


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    trigger: Binding
    bindings: tuple[Binding, ...]
    func: Callable[..., Any]
    # Parsed trigger details (only the one matching the trigger type is set).
    route: RouteTemplate | None = None
    methods: tuple[str, ...] = ()
    auth_level: str = "function"
    blob_path: BlobPathTemplate | None = None
    blob_connection: str = "AzureWebJobsStorage"
    schedule: Schedule | None = None
    run_on_startup: bool = False
    durable_name: str | None = None
    extra_inputs: tuple[Binding, ...] = field(default_factory=tuple)

    @property
    def trigger_type(self) -> str:
        return self.trigger.type

    @property
    def is_durable(self) -> bool:
        return self.trigger.type in ("orchestrationTrigger", "activityTrigger")

    def describe(self) -> str:
        t = self.trigger.type
        if t == "httpTrigger" and self.route is not None:
            methods = ",".join(self.methods) if self.methods != ALL_METHODS else "ALL"
            return f"http [{methods}] /api/{self.route.template} (auth: {self.auth_level})"
        if t == "blobTrigger" and self.blob_path is not None:
            sdk = f", as {self.trigger.sdk_type.__name__}" if self.trigger.sdk_type else ""
            return f"blob {self.trigger.get('path')} (connection: {self.blob_connection}{sdk})"
        if t == "timerTrigger" and self.schedule is not None:
            return f"timer {self.schedule.expression}"
        if t == "eventGridTrigger":
            return f"eventGrid /runtime/webhooks/eventgrid?functionName={self.name}"
        if t == "orchestrationTrigger":
            return f"orchestration {self.durable_name}"
        return f"activity {self.durable_name}"


_APP_SETTING = re.compile(r"%([A-Za-z0-9_]+)%")


def _resolve(value: Any, environ: Mapping[str, str], missing: list[str]) -> Any:
    """Binding expressions ``%NAME%`` take the app setting ``NAME``, as the host resolves them."""
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in environ:
            missing.append(name)
            return m.group(0)
        return environ[name]

    return _APP_SETTING.sub(sub, value)


def _binding(raw: Any, environ: Mapping[str, str], missing: list[str]) -> Binding:
    d = {k: _resolve(_plain(v), environ, missing) for k, v in raw.get_dict_repr().items()}
    return Binding(
        name=str(d.pop("name")),
        type=str(d.pop("type")),
        direction="out" if d.pop("direction") in (1, "out") else "in",
        attrs=d,
    )


def _sdk_types(func: Callable[..., Any], bindings: tuple[Binding, ...]) -> dict[str, type]:
    """Parameters the worker would bind as SDK types, as it decides it at function load.

    The worker resolves the function's annotations and asks the azurefunctions extension
    registry whether the binding type has a converter and the annotation is an ``SdkType``;
    only input bindings qualify. A ``NameError`` here means an annotation the worker could not
    resolve either.
    """
    try:
        from azurefunctions.extensions.base import meta as sdk_meta
    except ImportError:  # pragma: no cover - the extension ships with requirements.txt
        return {}
    hints = typing.get_type_hints(func)
    registry = sdk_meta.get_binding_registry()
    found: dict[str, type] = {}
    for b in bindings:
        annotation = hints.get(b.name)
        if (
            b.direction == "in"
            and registry.get(b.type) is not None
            and registry.check_supported_type(annotation)
        ):
            found[b.name] = typing.cast(type, annotation)
    return found


def _trigger_details(trigger: Binding, name: str) -> dict[str, Any]:
    """The parsed, trigger-specific fields of a ``FunctionSpec``; ``TemplateError`` if bad."""
    if trigger.type == "httpTrigger":
        methods = trigger.get("methods")
        return {
            "route": RouteTemplate.parse(trigger.get("route") or name),
            "methods": tuple(str(_plain(m)).upper() for m in methods) if methods else ALL_METHODS,
            "auth_level": str(trigger.get("authLevel") or "function").lower(),
        }
    if trigger.type == "blobTrigger":
        return {
            "blob_path": BlobPathTemplate.parse(str(trigger.get("path"))),
            "blob_connection": trigger.get("connection") or "AzureWebJobsStorage",
        }
    if trigger.type == "timerTrigger":
        return {
            "schedule": Schedule.parse(str(trigger.get("schedule"))),
            "run_on_startup": bool(trigger.get("runOnStartup", False)),
        }
    if trigger.type == "orchestrationTrigger":
        return {"durable_name": trigger.get("orchestration") or name}
    return {"durable_name": trigger.get("activity") or name}


def index_functions(
    functions: Iterable[Any], environ: Mapping[str, str] | None = None
) -> list[FunctionSpec]:
    """Turn ``app.get_functions()`` into specs; raise ``AppIndexError`` listing every problem.

    ``%NAME%`` in binding attributes is replaced by the app setting ``NAME`` from ``environ``.
    """
    env: Mapping[str, str] = environ if environ is not None else {}
    specs: list[FunctionSpec] = []
    problems: list[str] = []
    for fn in functions:
        name = fn.get_function_name()
        missing: list[str] = []
        bindings = tuple(_binding(b, env, missing) for b in fn.get_bindings())
        if missing:
            problems.append(
                f"{name}: app setting(s) {', '.join(sorted(set(missing)))} used as %NAME% "
                "in its bindings are not set"
            )
            continue
        try:
            sdk_types = _sdk_types(fn.get_user_function(), bindings)
        except NameError as exc:
            problems.append(f"{name}: a parameter's type annotation cannot be resolved: {exc}")
            continue
        bindings = tuple(
            dataclasses.replace(b, sdk_type=sdk_types[b.name]) if b.name in sdk_types else b
            for b in bindings
        )
        triggers = [b for b in bindings if b.type.endswith("Trigger")]
        if len(triggers) != 1:
            problems.append(f"{name}: expected exactly one trigger, found {len(triggers)}")
            continue
        trigger = triggers[0]
        if trigger.type not in TRIGGERS:
            problems.append(
                f"{name}: trigger type {trigger.type!r} is not supported by the local host "
                f"(supported: {', '.join(sorted(TRIGGERS))})"
            )
            continue
        others = [b for b in bindings if b is not trigger]
        unsupported = [
            b
            for b in others
            if not (b.type in INPUTS and b.direction == "in")
            and not (b.type in OUTPUTS and b.direction == "out")
        ]
        if unsupported:
            kinds = ", ".join(f"{b.type} ({b.direction})" for b in unsupported)
            problems.append(f"{name}: binding(s) {kinds} are not supported by the local host")
            continue
        try:
            kwargs = _trigger_details(trigger, name)
        except TemplateError as exc:
            problems.append(f"{name}: {exc}")
            continue
        specs.append(
            FunctionSpec(
                name=name,
                trigger=trigger,
                bindings=bindings,
                func=fn.get_user_function(),
                extra_inputs=tuple(b for b in others if b.direction == "in"),
                **kwargs,
            )
        )
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        problems.append(f"duplicate function names: {', '.join(dupes)}")
    if problems:
        raise AppIndexError(
            "the function app cannot be served locally:\n  - " + "\n  - ".join(problems)
        )
    return specs
