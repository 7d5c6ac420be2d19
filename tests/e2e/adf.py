"""A small interpreter for the ADF pipeline in infra/adf, to replay its calls locally.

It runs the activity kinds that pipeline uses (AzureFunctionActivity, Until, Wait,
WebActivity, SetVariable, IfCondition, Fail) with their retry policies, and evaluates the
expression functions it uses (concat, equals, not, contains, createArray, pipeline()
.parameters and .RunId, variables, activity().output). Anything else raises, so the test fails
loudly if the pipeline grows a construct the replay does not understand.

One ``replay`` is one pipeline run, with its own run id; an activity retry (``policy.retry``)
repeats the activity inside that run. HTTP goes through a caller-supplied function that gets
each ``Request`` as ADF would send it (an Azure Function activity names a function path; the
linked service adds the base URL and the function key) and returns a ``Response``. Like ADF's
run history, ``Run.history`` keeps every activity's input and output, with the secured ones
(``secureInput`` / ``secureOutput``) masked, so a test can check that no key reaches it.

ADF's asynchronous request-reply pattern: a Web activity that gets ``202 Accepted`` with a
``Location`` header GETs that location (after ``Retry-After``) until the answer is not 202, and
that last answer is the activity's output; it gives up when the activity's ``policy.timeout``
runs out (``turnOffAsync`` switches the pattern off). Whether the Azure Function activity does
the same is not documented, so the replay assumes it does: an endpoint ADF calls must be
correct either way. Each follow-up GET is in ``Run.calls`` like any other call.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

SECURED = "**********"  # what ADF shows for a secured input or output


@dataclass(frozen=True)
class Request:
    """One HTTP call of an activity, before ADF's linked service or network touch it."""

    activity: str
    kind: str  # AzureFunctionActivity | WebActivity
    method: str
    target: str  # a function path (Azure Function activity) or a URL (Web activity)
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    authentication: dict[str, Any] | None = None


@dataclass(frozen=True)
class Response:
    """What came back: the status, the JSON body (``None`` when empty) and the headers."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


Http = Callable[[Request], Response]
DEFAULT_RETRY_AFTER_SECONDS = 10.0


class PipelineFailed(Exception):
    """The pipeline ran a Fail activity (or an activity failed after its retries)."""


class ActivityFailed(Exception):
    """One attempt of an activity failed (an HTTP error, or the call never answered)."""


_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<name>[A-Za-z_]\w*)|(?P<op>[(),.\[\]]))"
)


@dataclass
class Run:
    parameters: dict[str, Any]
    run_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    variables: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)

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
            "pipeline": lambda: {"parameters": self.parameters, "RunId": self.run_id},
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
        if kind not in ("AzureFunctionActivity", "WebActivity"):
            self._run_control(activity, http, speed)
            return
        name = activity["name"]
        policy = activity.get("policy", {})
        retries = int(policy.get("retry", 0))
        for attempt in range(retries + 1):
            self.attempts[name] = self.attempts.get(name, 0) + 1
            request = Request(
                activity=name,
                kind=kind,
                method=props["method"],
                target=str(
                    self.value(props["functionName"] if kind == "AzureFunctionActivity"
                               else props["url"])
                ),
                body=self.value(props.get("body")),
                headers={k: str(self.value(v)) for k, v in props.get("headers", {}).items()},
                authentication=props.get("authentication"),
            )  # fmt: skip
            sent = {"method": request.method, "target": request.target,
                    "headers": request.headers, "body": request.body}  # fmt: skip
            self._log(activity, "input", sent)
            self.calls.append((request.method, request.target))
            try:
                answer = http(request)
                if answer.status == 202 and not props.get("turnOffAsync"):
                    answer = self._follow(activity, request, answer, http, speed)
                status, body = answer.status, answer.body
                if status >= 400 or not isinstance(body, dict):
                    raise ActivityFailed(f"{name}: {status} {body!r} (ADF needs a JSON object)")
            except ActivityFailed as exc:
                if attempt == retries:
                    raise PipelineFailed(
                        f"{name} failed after {attempt + 1} attempts: {exc}"
                    ) from exc
                time.sleep(float(policy.get("retryIntervalInSeconds", 30)) * speed)
                continue
            self._log(activity, "output", body)
            self.outputs[name] = body
            return

    def _follow(
        self,
        activity: dict[str, Any],
        request: Request,
        answer: Response,
        http: Http,
        speed: float,
    ) -> Response:
        """The async pattern: GET ``Location`` until the answer is not a 202 (see above)."""
        name = activity["name"]
        deadline = time.monotonic() + _time_span(activity.get("policy", {}).get("timeout")) * speed
        while answer.status == 202:
            location = answer.header("Location")
            if not location:
                return answer
            if time.monotonic() > deadline:
                raise ActivityFailed(f"{name}: timed out following 202 + Location {location}")
            wait = float(answer.header("Retry-After") or DEFAULT_RETRY_AFTER_SECONDS)
            time.sleep(wait * speed)
            self.calls.append(("GET", location))
            answer = http(Request(activity=name, kind=request.kind, method="GET",
                                  target=location, headers=dict(request.headers),
                                  authentication=request.authentication))  # fmt: skip
        return answer

    def _log(self, activity: dict[str, Any], what: str, value: Any) -> None:
        secured = activity.get("policy", {}).get(f"secure{what.capitalize()}", False)
        self.history.append(
            {"activity": activity["name"], what: SECURED if secured else json.loads(
                json.dumps(value, default=str))}
        )  # fmt: skip

    def _run_control(self, activity: dict[str, Any], http: Http, speed: float) -> None:
        kind, props = activity["type"], activity.get("typeProperties", {})
        name = activity["name"]
        if kind == "Wait":
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


def _time_span(value: Any) -> float:
    """An activity timeout (``d.hh:mm:ss``) in seconds; ADF's default of 12 hours if unset."""
    match = re.fullmatch(r"(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})", str(value or ""))
    if match is None:
        return 12 * 3600.0
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return float(((days * 24 + hours) * 60 + minutes) * 60 + seconds)


def replay(
    pipeline: dict[str, Any],
    parameters: dict[str, Any],
    http: Http,
    speed: float = 0.01,
    run_id: str | None = None,
) -> Run:
    """One pipeline run of ``pipeline`` (the JSON resource) with ``parameters``.

    ``speed`` scales Waits and retry intervals; ``run_id`` is ``pipeline().RunId`` (a new
    GUID by default, as every ADF run gets).
    """
    props = pipeline["properties"]
    defaults = {k: v.get("defaultValue") for k, v in props.get("parameters", {}).items()}
    run = Run(
        parameters={**defaults, **parameters},
        variables={k: v.get("defaultValue") for k, v in props.get("variables", {}).items()},
    )
    if run_id is not None:
        run.run_id = run_id
    run.run_activities(props["activities"], http, speed)
    return run
