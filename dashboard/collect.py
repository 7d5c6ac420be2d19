"""A full scan of the system's state into ``DashboardData``: the dashboard's backfill.

Pages never scan: they render from the summary the app keeps (``dashboard.summary``). This
module reads everything once, for ``python -m dashboard backfill``, which folds a history
that predates the summary into it. Sources, each optional (a missing one leaves its section
empty and adds a line to ``DashboardData.problems`` instead of failing the whole build):

- model versions: a ``ModelRegistry`` plus the model names to show (for MLflow, every
  registered model: ``mlflow_model_names``);
- pipeline jobs: the local Azure ML executor's job records (``<local dir>/aml/jobs/*/job.json``);
- conditioning: the dataset registry and manifests in the data lake's conditioned container;
- forecasts: ``<forecasts container>/<scoring_date>/<segment>.csv`` of the latest scoring date,
  with actuals from the conditioned ``shipments`` versions.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adapters.errors import MlopsError, NotFoundError
from adapters.times import parse_utc
from dashboard.model import (
    ConditioningRun,
    DashboardData,
    ForecastSeries,
    JobRun,
    ModelPoint,
    StepRun,
)
from dashboard.summary import model_point

if TYPE_CHECKING:
    from adapters.datalake import DataLake
    from adapters.registry import ModelRegistry

log = logging.getLogger(__name__)
TARGET_SOURCE = "shipments"
MAX_VERSIONS_PER_SOURCE = 200


@dataclass
class Sources:
    """Where ``collect`` reads from; ``None`` skips that part."""

    lake: DataLake | None = None
    conditioned_container: str = "conditioned"
    forecasts_container: str = "forecasts"
    registry: ModelRegistry | None = None
    model_names: Callable[[], Iterable[str]] | None = None
    jobs_root: Path | None = None
    stale_after_days: float = 60.0
    max_mape: float = 0.45


def mlflow_model_names(tracking_uri: str) -> list[str]:
    """Every registered model's name in the MLflow registry at ``tracking_uri``.

    A sqlite store that does not exist yet has no models (and is not created by reading).
    """
    if (
        tracking_uri.startswith("sqlite:///")
        and not Path(tracking_uri.removeprefix("sqlite:///")).exists()
    ):
        return []
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    return sorted(str(m.name) for m in client.search_registered_models(max_results=1000))


def collect(sources: Sources, now: datetime | None = None) -> DashboardData:
    """Read every source into one ``DashboardData``; failures become ``problems`` lines."""
    problems: list[str] = []

    def guarded(what: str, read: Callable[[], Any], default: Any) -> Any:
        try:
            return read()
        # MLflow and the storage SDK raise their own types; one unreadable source must not
        # take the other pages down, and the page says what failed.
        except Exception as exc:  # noqa: BLE001
            log.warning("dashboard: cannot read %s: %s", what, exc)
            kind = "" if isinstance(exc, MlopsError) else f"{type(exc).__name__}: "
            problems.append(f"{what}: {kind}{exc}")
            return default

    models: tuple[ModelPoint, ...] = ()
    if sources.registry is not None and sources.model_names is not None:
        registry, names = sources.registry, sources.model_names
        models = guarded("model registry", lambda: read_models(registry, names()), ())
    jobs: tuple[JobRun, ...] = ()
    if sources.jobs_root is not None:
        root = sources.jobs_root
        jobs = guarded("pipeline job records", lambda: read_jobs(root), ())
    conditioning: tuple[ConditioningRun, ...] = ()
    forecasts: tuple[ForecastSeries, ...] = ()
    if sources.lake is None:
        problems.append("data lake: not configured (conditioning and forecasts are not shown)")
    else:
        lake = sources.lake
        conditioning = guarded(
            "conditioning registry",
            lambda: read_conditioning(lake, sources.conditioned_container),
            (),
        )
        forecasts = guarded(
            "forecasts",
            lambda: read_forecasts(
                lake, sources.forecasts_container, sources.conditioned_container
            ),
            (),
        )
    return DashboardData(
        generated_at=now or datetime.now(UTC),
        models=models,
        jobs=jobs,
        conditioning=conditioning,
        forecasts=forecasts,
        stale_after_days=sources.stale_after_days,
        max_mape=sources.max_mape,
        problems=tuple(problems),
    )


def read_models(registry: ModelRegistry, names: Iterable[str]) -> tuple[ModelPoint, ...]:
    return tuple(model_point(v) for name in names for v in registry.list_versions(name))


def read_jobs(root: Path) -> tuple[JobRun, ...]:
    """Job records under ``root/jobs``; an unreadable record is skipped with a warning."""
    jobs_dir = root / "jobs"
    if not jobs_dir.is_dir():
        return ()
    out: list[JobRun] = []
    for path in sorted(jobs_dir.glob("*/job.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            log.warning("dashboard: skipping job record %s: %s", path.parent.name, exc)
            continue
        steps = tuple(
            StepRun(
                name=str(s.get("name", key)),
                status=str(s.get("status", "")),
                started_at=parse_utc(s.get("started_at")),
                ended_at=parse_utc(s.get("ended_at")),
                error=str(s.get("error", "")),
            )
            for key, s in record.get("steps", {}).items()
        )
        steps = tuple(
            sorted(steps, key=lambda s: (s.started_at is None, s.started_at or 0, s.name))
        )
        pipeline = Path(str(record.get("pipeline_path", ""))).stem or str(
            record.get("experiment_name", "")
        )
        out.append(
            JobRun(
                name=str(record.get("name", path.parent.name)),
                pipeline=pipeline,
                status=str(record.get("status", "")),
                created_at=parse_utc(record.get("created_at")),
                steps=steps,
                failed_step=str(record.get("failed_step", "")),
                error=str(record.get("error", "")),
            )
        )
    return tuple(out)


def _split(blob: str) -> tuple[str, str]:
    container, _, name = blob.partition("/")
    return container, name


def read_conditioning(lake: DataLake, container: str) -> tuple[ConditioningRun, ...]:
    """Every registered dataset version with its manifest's reject counts."""
    from adapters.datasets import REGISTRY_PREFIX, BlobDatasetRegistry

    try:
        infos = list(lake.list(container, f"{REGISTRY_PREFIX}/"))
    except NotFoundError:
        return ()
    sources = sorted({i.name.split("/")[1] for i in infos if i.name.count("/") >= 3})
    registry = BlobDatasetRegistry(lake, container)
    out: list[ConditioningRun] = []
    for source in sources:
        for entry in registry.versions(source)[-MAX_VERSIONS_PER_SOURCE:]:
            counts: dict[str, int] = {}
            if entry.manifest:
                try:
                    manifest = json.loads(lake.read(*_split(entry.manifest)))
                    counts = {str(k): int(v) for k, v in manifest.get("reject_counts", {}).items()}
                except NotFoundError:
                    log.warning("dashboard: manifest %s is missing", entry.manifest)
            out.append(
                ConditioningRun(
                    source=entry.source,
                    dataset_version=entry.dataset_version,
                    status=entry.status,
                    rows_in=entry.rows_in,
                    rows_out=entry.rows_out,
                    rows_rejected=entry.rows_rejected,
                    reject_counts=counts,
                    registered_at=parse_utc(entry.registered_at),
                    reason_code=entry.reason_code or "",
                )
            )
    return tuple(out)


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("true", "1", "yes")


def read_forecasts(
    lake: DataLake, forecasts_container: str, conditioned_container: str
) -> tuple[ForecastSeries, ...]:
    """The latest scoring date's forecasts per segment, with actual shipments where known."""
    try:
        infos = [i for i in lake.list(forecasts_container) if i.name.endswith(".csv")]
    except NotFoundError:
        return ()
    dated = [i for i in infos if "/" in i.name]
    if not dated:
        return ()
    latest = max(i.name.split("/", 1)[0] for i in dated)
    per_segment: dict[str, dict[str, Any]] = {}
    keys: dict[tuple[str, str], set[str]] = defaultdict(set)
    for info in sorted((i for i in dated if i.name.startswith(f"{latest}/")), key=lambda i: i.name):
        segment = info.name.split("/", 1)[1].removesuffix(".csv")
        text = lake.read(forecasts_container, info.name).decode("utf-8")
        weekly: dict[date, float] = defaultdict(float)
        meta: dict[str, Any] = {"model_name": "", "model_version": "", "stale": False, "rows": 0}
        for row in csv.DictReader(io.StringIO(text)):
            week = date.fromisoformat(row["week_start"][:10])
            weekly[week] += float(row["forecast"] or 0.0)
            keys[(row["store_id"], row["product_id"])].add(segment)
            meta["model_name"] = row.get("model_name", "") or meta["model_name"]
            meta["model_version"] = row.get("model_version", "") or meta["model_version"]
            meta["stale"] = meta["stale"] or _truthy(row.get("stale", ""))
            meta["rows"] += 1
        per_segment[segment] = {"forecast": dict(weekly), **meta}
    actuals = _actuals(lake, conditioned_container, keys)
    return tuple(
        ForecastSeries(
            segment=segment,
            scoring_date=latest,
            model_name=str(v["model_name"]),
            model_version=str(v["model_version"]),
            stale=bool(v["stale"]),
            forecast=v["forecast"],
            actual=actuals.get(segment, {}),
            rows=int(v["rows"]),
        )
        for segment, v in sorted(per_segment.items())
    )


def _actuals(
    lake: DataLake, container: str, keys: dict[tuple[str, str], set[str]]
) -> dict[str, dict[date, float]]:
    """Weekly actual totals per segment over the (store, product) pairs each segment scores.

    A later version's row replaces an earlier one for the same store, product and week, so a
    redelivered week is not counted twice.
    """
    from adapters.datasets import BlobDatasetRegistry

    if not keys:
        return {}
    rows: dict[tuple[str, str, date], float] = {}
    for entry in BlobDatasetRegistry(lake, container).versions(TARGET_SOURCE):
        if entry.status != "conditioned":
            continue
        for blob in entry.files:
            blob_container, name = _split(blob)
            if blob_container != container or "/part-" not in name or not name.endswith(".csv"):
                continue
            with lake.open(container, name) as handle:
                reader = csv.DictReader(io.TextIOWrapper(handle, encoding="utf-8", newline=""))
                for row in reader:
                    pair = (row["store_id"], row["product_id"])
                    if pair not in keys or not row.get("quantity"):
                        continue
                    week = date.fromisoformat(row["week_start"][:10])
                    rows[(pair[0], pair[1], week)] = float(row["quantity"])
    out: dict[str, dict[date, float]] = defaultdict(lambda: defaultdict(float))
    for (store, product, week), quantity in rows.items():
        for segment in keys[(store, product)]:
            out[segment][week] += quantity
    return {s: dict(w) for s, w in out.items()}
