"""The real function app: what it registers, and what importing it costs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from local.functions import index_functions

REPO = Path(__file__).resolve().parents[2]

# name -> trigger kind. Every function the app registers is listed here on purpose: adding one
# means saying what it is.
EXPECTED = {
    "on_health_get": "httpTrigger",
}


def _indexed() -> dict[str, str]:
    # get_functions() may be called once per app object, so read it in a fresh process.
    code = (
        "import json, function_app\n"
        "from local.functions import index_functions\n"
        "print(json.dumps({s.name: s.trigger_type "
        "for s in index_functions(function_app.app.get_functions())}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_the_app_indexes_with_the_expected_functions_and_triggers() -> None:
    assert _indexed() == EXPECTED


def test_importing_the_app_does_not_import_heavy_libraries() -> None:
    code = (
        "import sys, function_app\n"
        "heavy = [m for m in ('azure.ai.ml', 'pandas', 'torch', 'pyarrow', 'mlflow', "
        "'sklearn', 'azure.storage.blob') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == ""


def test_index_functions_accepts_the_app() -> None:
    import function_app

    # A fresh DFApp per test process; index it through the local host's reader.
    specs = index_functions(function_app.app.get_functions())
    assert {s.name for s in specs} == set(EXPECTED)
