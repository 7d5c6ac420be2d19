"""Cold-import cost of the function app against its floor (the SDKs it cannot avoid).

Each sample is a fresh interpreter, so nothing is cached in-process; the two commands are
interleaved so machine noise hits both alike. Goal: median ratio <= 1.5. Also checked, without
timing: importing the app loads none of the heavy libraries that only some functions use
(``HEAVY``); ``--json`` writes the figures and that list.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CASES = {
    # The blob extension is part of the floor: an SDK-type binding's type must be importable
    # when the worker loads the function (it brings azure.storage.blob and azure.identity).
    "floor: azure.functions, azure.durable_functions, blob extension": (
        "import azure.functions, azure.durable_functions, azurefunctions.extensions.bindings.blob"
    ),
    "app: import function_app": "import function_app",
}


# Imported only where used (conditioning, the Azure ML adapters, telemetry export, pipelines);
# each would add seconds to every cold start if the app imported it at load.
HEAVY = ("pandas", "pyarrow", "numpy", "azure.ai.ml", "mlflow", "torch", "sklearn",
         "openpyxl", "azure.monitor.opentelemetry")  # fmt: skip


def heavy_modules_loaded() -> list[str]:
    """The ``HEAVY`` modules a fresh interpreter holds after ``import function_app``."""
    code = (
        "import json, sys, function_app; "
        f"print(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True, text=True
    )
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


def sample(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    times: dict[str, list[float]] = {name: [] for name in CASES}
    for code in CASES.values():  # warm the OS file cache once
        sample(code)
    for _ in range(args.runs):
        for name, code in CASES.items():
            times[name].append(sample(code))
    floor_name, app_name = list(CASES)
    floor = statistics.median(times[floor_name])
    app = statistics.median(times[app_name])
    width = max(len(n) for n in CASES)
    print(f"\nStartup benchmark ({args.runs} interleaved runs, fresh interpreter each)\n")
    print(f"{'case':<{width}}  {'median s':>9}  {'min s':>7}  {'max s':>7}")
    for name in CASES:
        t = times[name]
        print(f"{name:<{width}}  {statistics.median(t):>9.3f}  {min(t):>7.3f}  {max(t):>7.3f}")
    ratio = app / floor
    verdict = "meets" if ratio <= 1.5 else "MISSES"
    print(f"\nratio app/floor = {ratio:.2f}  ({verdict} the goal of <= 1.5)")
    heavy = heavy_modules_loaded()
    print(f"heavy modules loaded by importing the app: {', '.join(heavy) or 'none'}")
    if args.json:
        result = {"runs": args.runs, "median_s": {"floor": floor, "app": app}, "ratio": ratio,
                  "heavy_modules": heavy}  # fmt: skip
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
