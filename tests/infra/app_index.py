"""The real function app, indexed in a fresh process (``get_functions()`` works once per app)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from tests.infra.bicep import REPO_ROOT

_SCRIPT = r"""
import json, sys
import function_app
from local.hosting.functions import AppIndexError, index_functions

environ = json.load(sys.stdin)
functions = function_app.app.get_functions()
raw = []
for fn in functions:
    bindings = []
    for b in fn.get_bindings():
        d = {k: getattr(v, "value", v) for k, v in b.get_dict_repr().items()}
        bindings.append(d)
    raw.append({"name": fn.get_function_name(), "bindings": bindings})
try:
    specs = index_functions(functions, environ)
    error = None
    routes = {s.name: {"route": s.route.template if s.route else None,
                       "methods": list(s.methods), "auth_level": s.auth_level} for s in specs}
except AppIndexError as exc:
    error = str(exc)
    routes = {}
json.dump({"functions": raw, "index_error": error, "http": routes}, sys.stdout, default=str)
"""


@dataclass(frozen=True)
class AppFunction:
    name: str
    bindings: tuple[Mapping[str, Any], ...]

    @property
    def trigger(self) -> Mapping[str, Any]:
        return next(b for b in self.bindings if str(b.get("type", "")).endswith("Trigger"))


@dataclass(frozen=True)
class AppIndex:
    functions: dict[str, AppFunction]
    index_error: str | None
    http: dict[str, dict[str, Any]]


@cache
def _run(environ_json: str) -> AppIndex:
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT],
        input=environ_json,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise AssertionError(f"importing function_app failed:\n{proc.stderr}")
    data = json.loads(proc.stdout)
    functions = {f["name"]: AppFunction(f["name"], tuple(f["bindings"])) for f in data["functions"]}
    return AppIndex(functions, data["index_error"], data["http"])


def index_app(environ: Mapping[str, str]) -> AppIndex:
    """Import ``function_app`` in a subprocess and index it with ``environ`` as app settings."""
    return _run(json.dumps(dict(sorted(environ.items()))))
