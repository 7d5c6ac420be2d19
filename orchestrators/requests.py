"""Turning an HTTP request body into an orchestration input (pure validation).

Bad requests raise ``BadInputError`` with a message fit for a 400 answer; the orchestrations
themselves then only ever see well-formed input.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Any

from adapters.errors import BadInputError
from adapters.settings import Settings
from orchestrators.policies import parse_segments, window_start

ORCHESTRATORS = {
    "train": "run_train",
    "score": "run_score",
    "retrain": "run_retrain",
    "model_test": "run_model_test",
}

ALLOWED_KEYS = {
    "train": {
        "segments",
        "regions",
        "week",
        "score",
        "scoring_date",
        "many_models",
        "partition_by",
        "idempotencyKey",
    },
    "score": {"segments", "regions", "scoring_date", "idempotencyKey"},
    "retrain": {"segments", "regions", "reason", "week", "idempotencyKey"},
    "model_test": {"model_name", "model_version", "idempotencyKey"},
}


def _iso_date(value: Any, field: str) -> str:
    try:
        return date.fromisoformat(str(value)).isoformat()
    except ValueError:
        raise BadInputError(f"'{field}' must be an ISO date (YYYY-MM-DD), got {value!r}") from None


_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def _many_models(body: dict[str, Any]) -> dict[str, Any]:
    """``many_models`` (one model per partition, trained by pipelines/train_many.yml) and its
    ``partition_by`` key columns (a list or comma-separated text; default store x product)."""
    many = body.get("many_models", False)
    if not isinstance(many, bool):
        raise BadInputError("'many_models' must be true or false")
    if "partition_by" in body and not many:
        raise BadInputError("'partition_by' applies only with 'many_models': true")
    if not many:
        return {}
    raw = body.get("partition_by", ["store_id", "product_id"])
    keys = raw.split(",") if isinstance(raw, str) else raw
    if not isinstance(keys, list) or not keys:
        raise BadInputError("'partition_by' must be a non-empty list of column names")
    columns = [str(k).strip() for k in keys]
    bad = [c for c in columns if not _COLUMN.match(c)]
    if bad:
        raise BadInputError(f"'partition_by' has invalid column name(s): {', '.join(bad)}")
    if len(set(columns)) != len(columns):
        raise BadInputError("'partition_by' names a column twice")
    return {"many_models": True, "partition_by": ",".join(columns)}


def _segments(body: dict[str, Any]) -> list[str]:
    if "segments" in body and "regions" in body:
        raise BadInputError("give either 'segments' or 'regions', not both")
    if "regions" in body:
        return [s.id for s in parse_segments({"regions": body["regions"]})]
    if "segments" not in body:
        raise BadInputError("'segments' (ids like r01-large-fast) or 'regions' is required")
    return [s.id for s in parse_segments(body["segments"])]


def build_input(
    name: str, body: dict[str, Any], settings: Settings, now: datetime
) -> dict[str, Any]:
    """Validate ``body`` for orchestration ``name`` and add the run options from settings.

    ``now`` places a retrain in its debounce window (at most one per segment per window).
    """
    unknown = sorted(set(body) - ALLOWED_KEYS[name])
    if unknown:
        raise BadInputError(
            f"unknown field(s) {', '.join(unknown)}; {name} accepts "
            + ", ".join(sorted(ALLOWED_KEYS[name]))
        )
    options = settings.automation.orchestration_options()
    if name == "train":
        result: dict[str, Any] = {"segments": _segments(body), "options": options}
        if "week" in body:
            result["week"] = _iso_date(body["week"], "week")
        if "scoring_date" in body:
            result["scoring_date"] = _iso_date(body["scoring_date"], "scoring_date")
        score = body.get("score", True)
        if not isinstance(score, bool):
            raise BadInputError("'score' must be true or false")
        result["score"] = score
        result.update(_many_models(body))
        return result
    if name == "score":
        if "scoring_date" not in body:
            raise BadInputError("'scoring_date' (YYYY-MM-DD) is required")
        return {
            "segments": _segments(body),
            "scoring_date": _iso_date(body["scoring_date"], "scoring_date"),
            "options": options,
        }
    if name == "model_test":
        model_name = body.get("model_name")
        version = body.get("model_version")
        if not isinstance(model_name, str) or not model_name.strip():
            raise BadInputError("'model_name' is required")
        if isinstance(version, bool) or not isinstance(version, str | int) or str(version) == "":
            raise BadInputError("'model_version' is required (a number or a string)")
        return {"model_name": model_name.strip(), "model_version": str(version), "options": options}
    # retrain
    segments = _segments(body) if ("segments" in body or "regions" in body) else []
    reason = body.get("reason", "manual")
    if not isinstance(reason, str):
        raise BadInputError("'reason' must be text")
    week = _iso_date(body["week"], "week") if "week" in body else None
    return retrain_input(settings, segments, reason, "http", now, week=week)


def retrain_input(
    settings: Settings,
    segments: list[str],
    reason: str,
    source: str,
    moment: datetime,
    *,
    week: str | None = None,
) -> dict[str, Any]:
    """The ``run_retrain`` input: the debounce window that ``moment`` falls in, and run options.

    Every retrain trigger (HTTP, drift and monitor events, the staleness and drift timers)
    builds its input here, so they all debounce on the same windows.
    """
    window = timedelta(hours=settings.automation.retrain_window_hours)
    result: dict[str, Any] = {
        "segments": segments,
        "reason": reason,
        "source": source,
        "window_start": window_start(moment, window).isoformat(),
        "options": settings.automation.orchestration_options(),
    }
    if week:
        result["week"] = week
    return result
