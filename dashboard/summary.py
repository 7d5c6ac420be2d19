"""The dashboard's summary: what the app records as things happen, and the pages read.

One JSON document per concern in a ``SummaryStore`` (the data lake's ops container):

=================  ===========================================  ==================================
document           holds (bounded)                              written by
=================  ===========================================  ==================================
``models``         per segment, the latest ``KEEP_VERSIONS``    ``apply_gate_verdict``, the model
                   versions with metrics, role, gate, test      test verdict, a backfill
``jobs``           the latest ``KEEP_JOBS`` pipeline jobs with  ``record_job_outcome`` (every
                   their steps, and the latest failures         monitored job)
``conditioning``   per source, the latest ``KEEP_DATASETS``     the conditioning trigger
                   dataset versions with reject counts
``forecasts``      the latest scoring date: weekly forecast     projected from ``forecast_keys``
                   and actual totals per segment
``forecast_keys``  the same plus what later actuals need: each  ``collect_forecasts``; the
                   segment's (store, product) pairs and the     conditioning trigger as
                   rows of its forecast weeks                   shipments arrive
=================  ===========================================  ==================================

Every fold is a pure upsert keyed by the thing's own id (job name, model version, dataset
version), so recording the same event twice changes nothing, and every document has a fixed
upper size, so a page costs the same whatever the length of the history.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from adapters.times import parse_utc
from dashboard.model import (
    ConditioningRun,
    DashboardData,
    ForecastSeries,
    JobRun,
    ModelPoint,
    StepRun,
)

if TYPE_CHECKING:
    from adapters.datalake import DataLake
    from adapters.datasets import DatasetVersion
    from adapters.registry import ModelVersion
    from adapters.summary import Document, SummaryStore

MODELS, JOBS, CONDITIONING, FORECASTS, FORECAST_KEYS = (
    "models", "jobs", "conditioning", "forecasts", "forecast_keys",
)  # fmt: skip
DOCUMENTS = (MODELS, JOBS, CONDITIONING, FORECASTS)
KEEP_VERSIONS = 26  # half a year of weekly retraining per segment
KEEP_JOBS = 50
KEEP_FAILURES = 20
KEEP_DATASETS = 200
HISTORY_WEEKS = 26  # actuals shown before the first forecast week
TARGET_SOURCE = "shipments"


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), version) if version.isdigit() else (-1, version)


# ---------------------------------------------------------------- models


def model_point(version: ModelVersion, *, role: str | None = None) -> ModelPoint:
    """A registry version as the dashboard sees it (role from tag ``role`` or its aliases)."""
    found = version.tags.get("role", "")
    if not found:
        found = next((a for a in ("champion", "challenger") if a in version.aliases), "")
    test = version.tags.get("test_passed", "")
    return ModelPoint(
        min_actual=_positive(version.tags.get("min_actual")),
        model_name=version.name,
        version=version.version,
        segment=version.tags.get("segment", version.name),
        trained_at=version.trained_at,
        metrics={k: v for k, v in version.metrics.items() if math.isfinite(v)},
        role=found if role is None else role,
        gate=version.tags.get("gate", ""),
        test={"true": "pass", "false": "fail"}.get(test.lower(), test),
    )


def _positive(value: Any) -> float | None:
    """A recorded MAPE row filter, or ``None`` when missing or not a positive number."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def fold_model(document: Document, point: ModelPoint, *, keep: int = KEEP_VERSIONS) -> Document:
    """Upsert one model version; empty fields never overwrite known ones.

    A version recorded as champion (or challenger) takes the role from every other version
    of its segment, as moving the registry alias does. Only the newest ``keep`` versions of
    a segment are kept, plus its champion.
    """
    segments: dict[str, Any] = document.setdefault("segments", {})
    segment = segments.setdefault(point.segment, {"versions": {}})
    versions: dict[str, Any] = segment["versions"]
    entry = versions.get(point.version, {})
    new = {
        "model_name": point.model_name,
        "version": point.version,
        "trained_at": _iso(point.trained_at),
        # NaN (e.g. RMSE 0 without zero actuals) is no JSON; a missing metric means the same.
        "metrics": {k: v for k, v in point.metrics.items() if math.isfinite(v)},
        "role": point.role,
        "gate": point.gate,
        "test": point.test,
        "min_actual": point.min_actual,
    }
    entry.update({k: v for k, v in new.items() if v not in ("", None, {})})
    entry.setdefault("model_name", point.model_name)
    entry.setdefault("version", point.version)
    versions[point.version] = entry
    if point.role in ("champion", "challenger"):
        for other, held in versions.items():
            if other != point.version and held.get("role") == point.role:
                held["role"] = ""
    ordered = sorted(versions, key=_version_key)
    kept = set(ordered[-keep:]) | {v for v, e in versions.items() if e.get("role") == "champion"}
    segment["versions"] = {v: versions[v] for v in ordered if v in kept}
    return document


def models_from(document: Mapping[str, Any]) -> tuple[ModelPoint, ...]:
    out: list[ModelPoint] = []
    for segment, held in sorted((document.get("segments") or {}).items()):
        for entry in (held.get("versions") or {}).values():
            out.append(
                ModelPoint(
                    model_name=str(entry.get("model_name", "")),
                    version=str(entry.get("version", "")),
                    segment=segment,
                    trained_at=parse_utc(entry.get("trained_at")),
                    metrics={str(k): float(v) for k, v in (entry.get("metrics") or {}).items()},
                    role=str(entry.get("role", "")),
                    gate=str(entry.get("gate", "")),
                    test=str(entry.get("test", "")),
                    min_actual=_positive(entry.get("min_actual")),
                )
            )
    return tuple(out)


# ---------------------------------------------------------------- jobs


def job_entry(job: JobRun, segment: str = "", duration_seconds: float | None = None) -> Document:
    return {
        "name": job.name,
        "pipeline": job.pipeline,
        "segment": segment,
        "status": job.status,
        "created_at": _iso(job.created_at),
        "duration_seconds": duration_seconds,
        "failed_step": job.failed_step,
        "error": job.error[:500],
        "steps": [
            {
                "name": s.name,
                "status": s.status,
                "started_at": _iso(s.started_at),
                "ended_at": _iso(s.ended_at),
                "error": s.error[:300],
            }
            for s in job.steps
        ],
    }


def _newest(entries: dict[str, Any], keep: int) -> dict[str, Any]:
    ordered = sorted(entries.items(), key=lambda kv: (kv[1].get("created_at") or "", kv[0]))
    return dict(ordered[-keep:])


def fold_job(
    document: Document, entry: Mapping[str, Any], *, keep: int = KEEP_JOBS,
    keep_failures: int = KEEP_FAILURES,
) -> Document:  # fmt: skip
    """Upsert one finished job into the latest jobs (and the latest failures, if it failed)."""
    recent: dict[str, Any] = document.setdefault("recent", {})
    recent[str(entry["name"])] = dict(entry)
    document["recent"] = _newest(recent, keep)
    if JobRun(name="", pipeline="", status=str(entry.get("status", "")), created_at=None).failed:
        failures: dict[str, Any] = document.setdefault("failures", {})
        failures[str(entry["name"])] = dict(entry)
        document["failures"] = _newest(failures, keep_failures)
    return document


def _job(entry: Mapping[str, Any]) -> JobRun:
    steps = tuple(
        StepRun(
            name=str(s.get("name", "")),
            status=str(s.get("status", "")),
            started_at=parse_utc(s.get("started_at")),
            ended_at=parse_utc(s.get("ended_at")),
            error=str(s.get("error", "")),
        )
        for s in entry.get("steps") or []
    )
    return JobRun(
        name=str(entry.get("name", "")),
        pipeline=str(entry.get("pipeline", "")),
        status=str(entry.get("status", "")),
        created_at=parse_utc(entry.get("created_at")),
        steps=steps,
        failed_step=str(entry.get("failed_step", "")),
        error=str(entry.get("error", "")),
    )


def jobs_from(document: Mapping[str, Any]) -> tuple[tuple[JobRun, ...], tuple[JobRun, ...]]:
    """(latest jobs, latest failures), each oldest first."""
    recent = _newest(dict(document.get("recent") or {}), KEEP_JOBS)
    failures = _newest(dict(document.get("failures") or {}), KEEP_FAILURES)
    return tuple(_job(e) for e in recent.values()), tuple(_job(e) for e in failures.values())


# ---------------------------------------------------------------- conditioning


def conditioning_entry(
    version: DatasetVersion, reject_counts: Mapping[str, int] | None = None
) -> Document:
    return {
        "source": version.source,
        "dataset_version": version.dataset_version,
        "status": version.status,
        "rows_in": version.rows_in,
        "rows_out": version.rows_out,
        "rows_rejected": version.rows_rejected,
        "reject_counts": {str(k): int(v) for k, v in (reject_counts or {}).items()},
        "registered_at": version.registered_at,
        "reason_code": version.reason_code or "",
    }


def fold_conditioning(
    document: Document, entry: Mapping[str, Any], *, keep: int = KEEP_DATASETS
) -> Document:
    """Upsert one dataset version of its source; the newest ``keep`` per source are kept."""
    sources: dict[str, Any] = document.setdefault("sources", {})
    versions: dict[str, Any] = sources.setdefault(str(entry["source"]), {})
    versions[str(entry["dataset_version"])] = dict(entry)
    ordered = sorted(versions.items(), key=lambda kv: (kv[1].get("registered_at") or "", kv[0]))
    sources[str(entry["source"])] = dict(ordered[-keep:])
    when = str(entry.get("registered_at") or "")
    if entry.get("status") == "conditioned" and when > str(document.get("last_conditioned_at", "")):
        document["last_conditioned_at"] = when
    return document


def conditioning_from(document: Mapping[str, Any]) -> tuple[ConditioningRun, ...]:
    out: list[ConditioningRun] = []
    for _, versions in sorted((document.get("sources") or {}).items()):
        for e in versions.values():
            out.append(
                ConditioningRun(
                    source=str(e.get("source", "")),
                    dataset_version=str(e.get("dataset_version", "")),
                    status=str(e.get("status", "")),
                    rows_in=int(e.get("rows_in", 0)),
                    rows_out=int(e.get("rows_out", 0)),
                    rows_rejected=int(e.get("rows_rejected", 0)),
                    reject_counts={
                        str(k): int(v) for k, v in (e.get("reject_counts") or {}).items()
                    },
                    registered_at=parse_utc(e.get("registered_at")),
                    reason_code=str(e.get("reason_code", "")),
                )
            )
    return tuple(out)


def hours_since_conditioning(document: Mapping[str, Any] | None, now: datetime) -> float | None:
    """Hours since the newest usable dataset version was registered; ``None`` if never."""
    last = parse_utc((document or {}).get("last_conditioned_at"))
    if last is None:
        return None
    return max(0.0, (now - last).total_seconds() / 3600.0)


# ---------------------------------------------------------------- forecasts


@dataclass(frozen=True)
class ScoredSegment:
    """One segment's forecasts of a scoring run, as rows of the forecasts CSV."""

    segment: str
    rows: tuple[Mapping[str, str], ...]


def _week(text: str) -> date:
    return date.fromisoformat(text[:10])


def fold_forecasts(
    keys: Document, scoring_date: str, scored: Iterable[ScoredSegment],
    actual_rows: Mapping[tuple[str, str, date], float],
) -> Document:  # fmt: skip
    """Record a scoring run in the ``forecast_keys`` document (the source of ``forecasts``).

    Per segment: weekly forecast totals, the actual totals of the ``HISTORY_WEEKS`` before
    the first forecast week, the (store, product) pairs it scores, and the actual rows of
    the forecast weeks known so far (``actual_rows``: quantity by store, product, week).
    A later scoring date starts the document afresh; the same date adds or replaces segments.
    """
    before = json.dumps([keys.get("scoring_date"), keys.get("segments")], sort_keys=True)
    if str(keys.get("scoring_date", "")) < scoring_date:
        keys = {"revision": int(keys.get("revision", 0))}
    keys["scoring_date"] = scoring_date
    segments: dict[str, Any] = keys.setdefault("segments", {})
    for item in scored:
        weekly: dict[date, float] = defaultdict(float)
        pairs: set[tuple[str, str]] = set()
        meta: dict[str, Any] = {"model_name": "", "model_version": "", "stale": False}
        for row in item.rows:
            weekly[_week(row["week_start"])] += float(row.get("forecast") or 0.0)
            pairs.add((str(row["store_id"]), str(row["product_id"])))
            meta["model_name"] = row.get("model_name") or meta["model_name"]
            meta["model_version"] = row.get("model_version") or meta["model_version"]
            stale = str(row.get("stale", "")).strip().lower() in ("true", "1", "yes")
            meta["stale"] = bool(meta["stale"]) or stale
        if not weekly:
            continue
        first = min(weekly)
        since = first - timedelta(weeks=HISTORY_WEEKS)
        history: dict[date, float] = defaultdict(float)
        ahead: dict[str, float] = {}
        for (store, product, week), quantity in actual_rows.items():
            if (store, product) not in pairs or week < since:
                continue
            if week < first:
                history[week] += quantity
            else:
                ahead[f"{store}|{product}|{week.isoformat()}"] = quantity
        segments[item.segment] = {
            **meta,
            "rows": len(item.rows),
            "first_week": first.isoformat(),
            "forecast": {w.isoformat(): round(v, 6) for w, v in sorted(weekly.items())},
            "history": {w.isoformat(): round(v, 6) for w, v in sorted(history.items())},
            "pairs": sorted([s, p] for s, p in pairs),
            "horizon": ahead,
        }
    after = json.dumps([keys.get("scoring_date"), keys.get("segments")], sort_keys=True)
    if after != before:
        keys["revision"] = int(keys.get("revision", 0)) + 1
    return keys


def fold_actuals(keys: Document, rows: Mapping[tuple[str, str, date], float]) -> Document:
    """Fold newly conditioned actual rows into the forecast weeks of the latest scoring run.

    Only weeks from each segment's first forecast week on are taken; a row for a (store,
    product, week) seen before replaces it, so a redelivered week is not counted twice.
    """
    changed = False
    for held in (keys.get("segments") or {}).values():
        first = str(held.get("first_week") or "")
        pairs = {(str(s), str(p)) for s, p in held.get("pairs") or []}
        ahead: dict[str, float] = held.setdefault("horizon", {})
        for (store, product, week), quantity in rows.items():
            if first and (store, product) in pairs and week.isoformat() >= first:
                key = f"{store}|{product}|{week.isoformat()}"
                changed = changed or ahead.get(key) != quantity
                ahead[key] = quantity
    if changed:
        keys["revision"] = int(keys.get("revision", 0)) + 1
    return keys


def project_forecasts(keys: Mapping[str, Any]) -> Document:
    """The ``forecasts`` page document: per segment its forecast and actual weekly totals."""
    segments: dict[str, Any] = {}
    for segment, held in (keys.get("segments") or {}).items():
        actual: dict[str, float] = defaultdict(float)
        actual.update(held.get("history") or {})
        for key, quantity in (held.get("horizon") or {}).items():
            actual[key.rsplit("|", 1)[1]] += float(quantity)
        segments[segment] = {
            "model_name": held.get("model_name", ""),
            "model_version": held.get("model_version", ""),
            "stale": bool(held.get("stale", False)),
            "rows": int(held.get("rows", 0)),
            "forecast": held.get("forecast") or {},
            "actual": {w: round(v, 6) for w, v in sorted(actual.items())},
        }
    return {
        "scoring_date": keys.get("scoring_date", ""),
        "revision": int(keys.get("revision", 0)),
        "segments": segments,
    }


def _newer_projection(document: Document, keys: Mapping[str, Any]) -> Document:
    """Replace the page document unless it already shows a later revision (racing writers)."""
    projected = project_forecasts(keys)
    newer = (str(document.get("scoring_date", "")), int(document.get("revision", 0))) > (
        str(projected["scoring_date"]), int(projected["revision"])
    )  # fmt: skip
    return document if newer else projected


def forecasts_from(document: Mapping[str, Any]) -> tuple[ForecastSeries, ...]:
    scoring_date = str(document.get("scoring_date", ""))
    return tuple(
        ForecastSeries(
            segment=segment,
            scoring_date=scoring_date,
            model_name=str(held.get("model_name", "")),
            model_version=str(held.get("model_version", "")),
            stale=bool(held.get("stale", False)),
            forecast={_week(w): float(v) for w, v in (held.get("forecast") or {}).items()},
            actual={_week(w): float(v) for w, v in (held.get("actual") or {}).items()},
            rows=int(held.get("rows", 0)),
        )
        for segment, held in sorted((document.get("segments") or {}).items())
    )


def wanted_actuals(keys: Mapping[str, Any]) -> dict[tuple[str, str], date]:
    """What the latest forecasts (a ``forecast_keys`` document) still take actuals for:
    each scored (store, product) pair and the first forecast week of its segment."""
    wanted: dict[tuple[str, str], date] = {}
    for held in (keys.get("segments") or {}).values():
        first = str(held.get("first_week") or "")
        if not first:
            continue
        week = _week(first)
        for store, product in held.get("pairs") or []:
            pair = (str(store), str(product))
            wanted[pair] = min(week, wanted.get(pair, week))
    return wanted


ACTUAL_COLUMNS = ("store_id", "product_id", "week_start", "quantity")


def read_actual_rows(
    lake: DataLake, files: Iterable[str], container: str, wanted: Mapping[tuple[str, str], date]
) -> dict[tuple[str, str, date], float]:
    """Actual quantities by (store, product, week) in a shipments version's part files, for
    the ``wanted`` pairs only and from each pair's week on.

    The parts are streamed in blocks and filtered before anything becomes a Python object,
    so memory follows what is wanted (the forecasts' pairs and weeks), never the size of the
    version: a shipments drop of many GB costs the same as a small one.
    """
    rows: dict[tuple[str, str, date], float] = {}
    if not wanted:
        return rows
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    separator = "\x1f"
    keys = pa.array([f"{s}{separator}{p}" for s, p in wanted], pa.string())
    earliest = min(wanted.values()).isoformat()
    convert = pacsv.ConvertOptions(
        include_columns=list(ACTUAL_COLUMNS),
        # A part without one of these columns has no actuals to give: its rows come out null.
        include_missing_columns=True,
        column_types={c: pa.string() for c in ACTUAL_COLUMNS[:3]} | {"quantity": pa.float64()},
    )
    for blob in files:
        blob_container, _, name = blob.partition("/")
        if blob_container != container or "/part-" not in name or not name.endswith(".csv"):
            continue
        with lake.open(container, name) as handle:
            reader = pacsv.open_csv(
                handle, read_options=pacsv.ReadOptions(block_size=1 << 20), convert_options=convert
            )
            for batch in reader:
                pair = pc.binary_join_element_wise(
                    batch.column("store_id"), batch.column("product_id"), separator
                )
                keep = pc.and_(
                    pc.is_in(pc.fill_null(pair, ""), value_set=keys),
                    pc.greater_equal(batch.column("week_start"), earliest),
                )
                keep = pc.and_(keep, pc.is_valid(batch.column("quantity")))
                picked = batch.filter(pc.fill_null(keep, False)).to_pydict()
                for store, product, week_text, quantity in zip(
                    *(picked[c] for c in ACTUAL_COLUMNS), strict=True
                ):
                    week = _week(week_text)
                    if week >= wanted[(store, product)]:
                        rows[(store, product, week)] = float(quantity)
    return rows


# ---------------------------------------------------------------- the store


def record_model(store: SummaryStore, point: ModelPoint) -> None:
    store.update(MODELS, lambda d: fold_model(d, point))


def record_job(
    store: SummaryStore, job: JobRun, *, segment: str = "", duration_seconds: float | None = None
) -> None:
    entry = job_entry(job, segment, duration_seconds)
    store.update(JOBS, lambda d: fold_job(d, entry))


def record_dataset_version(
    store: SummaryStore, version: DatasetVersion, reject_counts: Mapping[str, int] | None = None
) -> None:
    entry = conditioning_entry(version, reject_counts)
    store.update(CONDITIONING, lambda d: fold_conditioning(d, entry))


def record_scoring(
    store: SummaryStore, scoring_date: str, scored: list[ScoredSegment],
    actual_rows: Mapping[tuple[str, str, date], float],
) -> None:  # fmt: skip
    """Record a scoring run (see ``fold_forecasts``) and refresh the page document."""
    keys = store.update(
        FORECAST_KEYS, lambda k: fold_forecasts(k, scoring_date, scored, actual_rows)
    )
    store.update(FORECASTS, lambda d: _newer_projection(d, keys))


def record_actuals(store: SummaryStore, rows: Mapping[tuple[str, str, date], float]) -> bool:
    """Fold new actual rows into the latest forecasts; ``False`` when nothing was scored."""
    if not rows or store.read(FORECAST_KEYS) is None:
        return False
    keys = store.update(FORECAST_KEYS, lambda k: fold_actuals(k, rows))
    store.update(FORECASTS, lambda d: _newer_projection(d, keys))
    return True


def load_dashboard(
    store: SummaryStore, *, now: datetime | None = None, stale_after_days: float = 60.0,
    max_mape: float = 0.45,
) -> DashboardData:  # fmt: skip
    """Everything the pages show, from the summary documents alone (four small reads).

    A document that cannot be read leaves its part empty and says so in ``problems``.
    """
    import logging

    from adapters.errors import MlopsError

    problems: list[str] = []
    documents: dict[str, Mapping[str, Any]] = {}
    for name in DOCUMENTS:
        try:
            documents[name] = store.read(name) or {}
        # The storage SDK raises its own types too; one unreadable document must not take
        # the other pages down, and the page says what failed.
        except Exception as exc:  # noqa: BLE001
            logging.getLogger(__name__).warning("dashboard: cannot read %s: %s", name, exc)
            kind = "" if isinstance(exc, MlopsError) else f"{type(exc).__name__}: "
            problems.append(f"summary {name}: {kind}{exc}")
            documents[name] = {}
    jobs, failures = jobs_from(documents[JOBS])
    return DashboardData(
        generated_at=now or datetime.now(UTC),
        models=models_from(documents[MODELS]),
        jobs=jobs,
        failures=failures,
        conditioning=conditioning_from(documents[CONDITIONING]),
        forecasts=forecasts_from(documents[FORECASTS]),
        stale_after_days=stale_after_days,
        max_mape=max_mape,
        problems=tuple(problems),
    )


def backfill(store: SummaryStore, data: DashboardData) -> dict[str, int]:
    """Fold everything a full scan found (``dashboard.collect``) into the summary, one update
    per document: for a deployment whose history predates the summary. Idempotent."""

    def conditioning(run: ConditioningRun) -> Document:
        return {
            "source": run.source,
            "dataset_version": run.dataset_version,
            "status": run.status,
            "rows_in": run.rows_in,
            "rows_out": run.rows_out,
            "rows_rejected": run.rows_rejected,
            "reject_counts": dict(run.reject_counts),
            "registered_at": _iso(run.registered_at) or "",
            "reason_code": run.reason_code,
        }

    def models(document: Document) -> Document:
        for point in sorted(data.models, key=lambda m: _version_key(m.version)):
            document = fold_model(document, point)
        return document

    def jobs(document: Document) -> Document:
        for job in data.jobs:
            document = fold_job(document, job_entry(job))
        return document

    def datasets(document: Document) -> Document:
        for run in data.conditioning:
            document = fold_conditioning(document, conditioning(run))
        return document

    store.update(MODELS, models)
    store.update(JOBS, jobs)
    store.update(CONDITIONING, datasets)
    if data.forecasts:
        scoring_date = max(f.scoring_date for f in data.forecasts)

        def keys(document: Document) -> Document:
            if str(document.get("scoring_date", "")) > scoring_date:
                return document
            segments = {}
            for f in data.forecasts:
                if f.scoring_date != scoring_date or not f.forecast:
                    continue
                segments[f.segment] = {
                    "model_name": f.model_name,
                    "model_version": f.model_version,
                    "stale": f.stale,
                    "rows": f.rows,
                    "first_week": min(f.forecast).isoformat(),
                    "forecast": {w.isoformat(): v for w, v in sorted(f.forecast.items())},
                    "history": {w.isoformat(): v for w, v in sorted(f.actual.items())},
                    "pairs": [],
                    "horizon": {},
                }
            held = json.loads(json.dumps(segments, sort_keys=True))
            same = document.get("scoring_date") == scoring_date and document.get("segments") == held
            revision = int(document.get("revision", 0)) + (0 if same else 1)
            return {"scoring_date": scoring_date, "revision": revision, "segments": held}

        held = store.update(FORECAST_KEYS, keys)
        store.update(FORECASTS, lambda d: _newer_projection(d, held))
    return {
        "models": len(data.models),
        "jobs": len(data.jobs),
        "datasets": len(data.conditioning),
        "forecast_segments": len(data.forecasts),
    }
