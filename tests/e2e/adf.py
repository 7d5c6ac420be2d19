"""A small interpreter for the ADF pipeline in infra/adf, to replay its calls locally.

It runs the activity kinds that pipeline uses (AzureFunctionActivity, Until, Wait,
WebActivity, SetVariable, IfCondition, Fail) and evaluates the expression functions it uses
(concat, equals, not, contains, createArray, pipeline().parameters, variables, activity()
.output). Anything else raises, so the test fails loudly if the pipeline grows a construct the
replay does not understand. HTTP goes through a caller-supplied function, as ADF's linked
service would (function key, base URL).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Http = Callable[[str, str, Any], tuple[int, Any]]  # (method, url or function path, body)


class PipelineFailed(Exception):
    """The pipeline ran a Fail activity (or an activity failed)."""


_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<name>[A-Za-z_]\w*)|(?P<op>[(),.\[\]]))"
)


@dataclass
class Run:
    parameters: dict[str, Any]
    variables: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)

    # -- expressions ------------------------------------------------------------------

    def value(self, spec: Any) -> Any:
        if isinstance(spec, dict) and spec.get("type") == "Expression":
            return self.evaluate(spec["value"])
        if isinstance(spec, str) and spec.startswith("@"):
            return self.evaluate(spec)
        return spec

    def evaluate(self, text: str) -> Any:
        tokens = [m for m in _TOKEN.finditer(text.lstrip("@")) if m.group(0).strip()]
        result, pos = self._expr(tokens, 0)
        if pos != len(tokens):
            raise ValueError(f"unparsed tail in {text!r}")
        return result

    def _expr(self, toks: list[re.Match[str]], pos: int) -> tuple[Any, int]:
        tok = toks[pos]
        if tok.group("str") is not None:
            return tok.group("str")[1:-1].replace("''", "'"), pos + 1
        if tok.group("num") is not None:
            return float(tok.group("num")), pos + 1
        name = tok.group("name")
        if name is None or toks[pos + 1].group("op") != "(":
            raise ValueError(f"unexpected token {tok.group(0)!r}")
        args: list[Any] = []
        pos += 2
        while toks[pos].group("op") != ")":
            arg, pos = self._expr(toks, pos)
            args.append(arg)
            if toks[pos].group("op") == ",":
                pos += 1
        pos += 1
        value = self._call(name, args)
        while pos < len(toks) and toks[pos].group("op") == ".":
            value = value[toks[pos + 1].group("name")]
            pos += 2
        return value, pos

    def _call(self, name: str, args: list[Any]) -> Any:
        functions: dict[str, Callable[..., Any]] = {
            "concat": lambda *a: "".join(str(x) for x in a),
            "equals": lambda a, b: a == b,
            "not": lambda a: not a,
            "contains": lambda haystack, needle: needle in haystack,
            "createArray": lambda *a: list(a),
            "pipeline": lambda: {"parameters": self.parameters},
            "variables": lambda n: self.variables[n],
            "activity": lambda n: {"output": self.outputs[n]},
        }
        if name not in functions:
            raise ValueError(f"the replay does not know the expression function {name}()")
        return functions[name](*args)

    # -- activities --------------------------------------------------------------------

    def run_activities(self, activities: list[dict[str, Any]], http: Http, speed: float) -> None:
        done: set[str] = set()
        pending = list(activities)
        while pending:
            ready = [a for a in pending
                     if all(d["activity"] in done for d in a.get("dependsOn", []))]  # fmt: skip
            if not ready:
                raise ValueError("activities with unmet dependencies")
            for activity in ready:
                self.run_activity(activity, http, speed)
                done.add(activity["name"])
                pending.remove(activity)

    def run_activity(self, activity: dict[str, Any], http: Http, speed: float) -> None:
        kind, props = activity["type"], activity.get("typeProperties", {})
        name = activity["name"]
        if kind == "AzureFunctionActivity":
            path = self.value(props["functionName"])
            status, body = http(props["method"], path, self.value(props.get("body")))
            self.calls.append((props["method"], path))
            if status >= 400 or not isinstance(body, dict):
                raise PipelineFailed(f"{name}: {status} {body!r} (ADF needs a JSON object)")
            self.outputs[name] = body
        elif kind == "WebActivity":
            url = self.value(props["url"])
            status, body = http(props["method"], url, None)
            self.calls.append((props["method"], url))
            if status >= 400 or not isinstance(body, dict):
                raise PipelineFailed(f"{name}: {status} {body!r}")
            self.outputs[name] = body
        elif kind == "Wait":
            time.sleep(float(self.value(props["waitTimeInSeconds"])) * speed)
        elif kind == "SetVariable":
            self.variables[props["variableName"]] = self.value(props["value"])
        elif kind == "Until":
            deadline = time.monotonic() + 600
            while True:
                self.run_activities(props["activities"], http, speed)
                if self.value(props["expression"]):
                    break
                if time.monotonic() > deadline:
                    raise PipelineFailed(f"{name}: timed out")
        elif kind == "IfCondition":
            branch = "ifTrueActivities" if self.value(props["expression"]) else "ifFalseActivities"
            self.run_activities(props.get(branch, []), http, speed)
        elif kind == "Fail":
            raise PipelineFailed(str(self.value(props.get("message", "failed"))))
        else:
            raise ValueError(f"the replay does not run {kind} activities")


def replay(
    pipeline: dict[str, Any], parameters: dict[str, Any], http: Http, speed: float = 0.01
) -> Run:
    """Run ``pipeline`` (the JSON resource) with ``parameters``; ``speed`` scales Waits."""
    props = pipeline["properties"]
    defaults = {k: v.get("defaultValue") for k, v in props.get("parameters", {}).items()}
    run = Run(
        parameters={**defaults, **parameters},
        variables={k: v.get("defaultValue") for k, v in props.get("variables", {}).items()},
    )
    run.run_activities(props["activities"], http, speed)
    return run
