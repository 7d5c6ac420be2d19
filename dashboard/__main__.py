"""``python -m dashboard`` — the model-health pages outside the running app.

    python -m dashboard build --out DIR     write the pages as HTML files, from the summary
    python -m dashboard backfill            scan the registry, job records, dataset registry
                                            and forecasts once, and fold them into the summary

Both read the data lake named by ``MLOPS_DATALAKE`` (the summary lives in its ops container,
``MLOPS_ALERTS_CONTAINER``), or with ``--azurite`` the local runtime's saved storage through
a private Azurite (only while the local runtime is stopped; while it runs, open the
dashboard function it serves). ``backfill`` also reads the MLflow registry
(``MLOPS_MLFLOW_TRACKING_URI`` or the sqlite store under the local directory) and the local
Azure ML job records: it is how a history that predates the summary gets onto the pages.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from adapters.errors import MlopsError

if TYPE_CHECKING:
    from adapters.datalake import DataLake
    from adapters.settings import Settings
    from dashboard.collect import Sources

LAKE_KEYS = ("MLOPS_DATALAKE", "MLOPS_DATALAKE__blobServiceUri", "MLOPS_DATALAKE__serviceUri",
             "MLOPS_DATALAKE__accountName")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboard", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="write index/training/monitoring/scoring .html")
    build.add_argument("--out", type=Path, required=True, help="directory to write the pages to")
    backfill = commands.add_parser("backfill", help="fold the existing history into the summary")
    for command in (build, backfill):
        command.add_argument(
            "--azurite", action="store_true", help="read the local runtime's saved storage"
        )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from adapters.datalake import AzureBlobDataLake
    from adapters.settings import load_settings
    from composition import build_summary_store
    from dashboard import render_dashboard, write_dashboard
    from dashboard.collect import collect
    from dashboard.summary import backfill as fold_history
    from dashboard.summary import load_dashboard

    env = dict(os.environ)
    # Only the data lake connection is used here; the host storage setting is not.
    env.setdefault("AzureWebJobsStorage", "UseDevelopmentStorage=true")
    if not args.azurite and not any(env.get(k) for k in LAKE_KEYS):
        print("no data lake: set MLOPS_DATALAKE (or use --azurite)", file=sys.stderr)
        return 2
    azurite = None
    try:
        if args.azurite:
            from local.hosting.azurite import Azurite

            env.setdefault("MLOPS_DATALAKE", "UseDevelopmentStorage=true")
            probe = load_settings(env)
            azurite = Azurite(location=probe.local_root / "azurite").start()
            env["MLOPS_DATALAKE"] = azurite.connection_string
        settings = load_settings(env)
        lake = AzureBlobDataLake.from_connection(settings.datalake)
        store = build_summary_store(settings, lake)
        if args.command == "backfill":
            data = collect(_local_sources(settings, lake))
            counts = fold_history(store, data)
            print(", ".join(f"{n} {what}" for what, n in counts.items()) + " folded in")
            for problem in data.problems:
                print(f"note: {problem}", file=sys.stderr)
            return 0
        data = load_dashboard(store, stale_after_days=settings.automation.stale_after_days)
    except MlopsError as exc:
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


def _local_sources(settings: Settings, lake: DataLake) -> Sources:
    """The local runtime's history: the MLflow registry at ``settings.tracking_uri``, the
    executor's job records under ``<local dir>/aml``, and ``lake``."""
    from dashboard.collect import Sources, mlflow_model_names
    from local.aml.registry import MLflowModelRegistry

    tracking_uri = settings.tracking_uri
    return Sources(
        lake=lake,
        conditioned_container=settings.conditioned_container,
        forecasts_container=settings.forecasts_container,
        registry=MLflowModelRegistry(tracking_uri),
        model_names=lambda: mlflow_model_names(tracking_uri),
        jobs_root=settings.local_root / "aml",
        stale_after_days=settings.automation.stale_after_days,
    )


if __name__ == "__main__":
    sys.exit(main())
