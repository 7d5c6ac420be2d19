"""``python -m dashboard build --out DIR`` — write the model-health pages as HTML files.

Reads the MLflow registry (``MLOPS_MLFLOW_TRACKING_URI`` or the sqlite store under the local
directory), the local Azure ML job records, and — when ``MLOPS_DATALAKE`` is set, or with
``--azurite`` — the conditioning registry, manifests and forecasts in the data lake.
``--azurite`` starts a private Azurite over the local runtime's saved storage for the build;
use it only while the local runtime is stopped (while it runs, open ``/dashboard`` on it).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from adapters.errors import SettingsError

LAKE_KEYS = ("MLOPS_DATALAKE", "MLOPS_DATALAKE__blobServiceUri", "MLOPS_DATALAKE__serviceUri",
             "MLOPS_DATALAKE__accountName")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboard", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="write index/training/monitoring/scoring .html")
    build.add_argument("--out", type=Path, required=True, help="directory to write the pages to")
    build.add_argument(
        "--azurite", action="store_true", help="read the local runtime's saved storage"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from adapters.datalake import AzureBlobDataLake
    from adapters.settings import load_settings
    from dashboard import collect, render_dashboard, write_dashboard
    from dashboard.collect import Sources

    env = dict(os.environ)
    has_lake = any(env.get(k) for k in LAKE_KEYS)
    # Only the data lake connection is used here; the host storage setting is not.
    env.setdefault("AzureWebJobsStorage", "UseDevelopmentStorage=true")
    env.setdefault("MLOPS_DATALAKE", "UseDevelopmentStorage=true")
    azurite = None
    try:
        if args.azurite:
            from local.azurite import Azurite

            probe = load_settings(env)
            azurite = Azurite(location=probe.local_root / "azurite").start()
            env["MLOPS_DATALAKE"] = azurite.connection_string
            has_lake = True
        settings = load_settings(env)
        lake = AzureBlobDataLake.from_connection(settings.datalake) if has_lake else None
        data = collect(Sources.from_settings(settings, lake))
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    finally:
        if azurite is not None:
            azurite.stop()
    for path in write_dashboard(render_dashboard(data), args.out):
        print(path)
    for problem in data.problems:
        print(f"note: {problem}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
