"""When conditioned data completes a week, training may start (F1 → F3).

A week is complete when every required source has conditioned data and the shipments (the
target) reach that week. The start is idempotent: the instance id names the week, so the same
blob delivered twice — or every source of the week arriving — starts one training.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from orchestrators.policies import Segment
from orchestrators.regions import covered_regions

if TYPE_CHECKING:
    from composition import Services


def week_of(day: date) -> date:
    """The Monday of ``day``'s week."""
    return day - timedelta(days=day.weekday())


def training_request(services: Services) -> tuple[str, dict[str, Any]] | str:
    """``(instance id, run_train input)`` when a complete week is ready, else why not."""
    settings = services.settings
    automation = settings.automation
    if not automation.train_on_arrival:
        return "training on data arrival is off (MLOPS_TRAIN_ON_ARRIVAL)"
    assert services.datasets is not None
    latest: dict[str, str] = {}
    for source in automation.training_sources:
        versions = [v for v in services.datasets.versions(source) if v.status == "conditioned"]
        if not versions:
            return f"waiting for {source}"
        latest[source] = max((v.period_end or "" for v in versions), default="")
    shipments_end = latest.get("shipments", "")
    if not shipments_end:
        return "the shipments data names no period"
    week = week_of(date.fromisoformat(shipments_end[:10])).isoformat()
    regions = covered_regions(services)
    if not regions:
        return "no regions: MLOPS_REGIONS names none and no conditioned store master names one"
    segments = [s.id for s in Segment.for_regions(regions)]
    payload = {
        "segments": segments,
        "week": week,
        "score": True,
        "options": automation.orchestration_options(),
    }
    return f"train-data-{week}", payload
