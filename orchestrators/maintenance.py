"""Scheduled checks the timers run: stale champions and drift in newly conditioned data.

Both read through the ports and decide with pure functions; they start nothing themselves:
the timer turns their findings into (debounced) retrain orchestrations.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from adapters.errors import ConflictError, NotFoundError
from adapters.locator import data_files
from orchestrators.policies import Segment, is_stale
from orchestrators.regions import covered_regions

if TYPE_CHECKING:
    from adapters.datasets import DatasetVersion
    from composition import Services

log = logging.getLogger(__name__)

DRIFT_MARKERS = "_automation/drift-checked"
# Numeric features checked per source; a source's CSV may lack some.
DRIFT_FEATURES = {
    "shipments": ("quantity",),
    "weather": ("temperature", "temp_max", "temp_min", "precipitation"),
}
MAX_SAMPLE_ROWS = 200_000


@dataclass(frozen=True)
class StaleModel:
    segment: str
    model_name: str
    version: str
    trained_at: str


def stale_champions(services: Services, now: datetime) -> list[StaleModel]:
    """Champions of the covered regions (``covered_regions``) trained longer ago than the
    staleness limit."""
    assert services.model_registry is not None
    limit = timedelta(days=services.settings.automation.stale_after_days)
    stale: list[StaleModel] = []
    for segment in Segment.for_regions(covered_regions(services)):
        champion = services.model_registry.get_by_alias(segment.model_name, "champion")
        if champion is None or champion.trained_at is None:
            continue
        if is_stale(champion.trained_at, now, limit):
            stale.append(
                StaleModel(segment.id, champion.name, champion.version,
                           champion.trained_at.isoformat())
            )  # fmt: skip
    return stale


def _sample(services: Services, version: DatasetVersion, features: tuple[str, ...]) -> Any:
    import pandas as pd

    frames = []
    rows = 0
    container = services.settings.conditioned_container
    for blob in data_files(container, version.files):
        if rows >= MAX_SAMPLE_ROWS:
            break
        data = services.data_lake.read(container, blob)
        header = pd.read_csv(io.BytesIO(data), nrows=0).columns
        wanted = [c for c in features if c in header]
        if not wanted:
            continue
        frame = pd.read_csv(io.BytesIO(data), usecols=wanted, nrows=MAX_SAMPLE_ROWS - rows)
        rows += len(frame)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def check_drift(services: Services) -> list[dict[str, Any]]:
    """PSI of each new conditioned version against the versions before it, once per version.

    Returns one finding per checked version: ``{"source", "dataset_version", "features":
    [{"feature", "psi", "drifted"}], "drifted": bool}``.
    """
    assert services.datasets is not None
    from conditioning.drift import drift_report

    threshold = services.settings.automation.drift_psi_threshold
    lake, container = services.data_lake, services.settings.conditioned_container
    findings: list[dict[str, Any]] = []
    for source, features in DRIFT_FEATURES.items():
        versions = [v for v in services.datasets.versions(source) if v.status == "conditioned"]
        for index, version in enumerate(versions):
            marker = f"{DRIFT_MARKERS}/{source}/{version.dataset_version}.json"
            if lake.exists(container, marker):
                continue
            finding: dict[str, Any] = {"source": source,
                                       "dataset_version": version.dataset_version,
                                       "features": [], "drifted": False}  # fmt: skip
            if index > 0:
                current = _sample(services, version, features)
                reference_frames = [_sample(services, v, features) for v in versions[:index]]
                import pandas as pd

                reference = pd.concat(reference_frames, ignore_index=True)
                report = drift_report(
                    {c: reference[c].to_numpy(float) for c in reference.columns},
                    {c: current[c].to_numpy(float) for c in current.columns},
                    threshold,
                )
                finding["features"] = [f.__dict__ for f in report]
                finding["drifted"] = any(f.drifted for f in report)
            try:
                lake.write(container, marker, json.dumps(finding).encode(), if_absent=True)
            except ConflictError:
                continue  # another check got there first
            except NotFoundError:
                lake.ensure_container(container)
                lake.write(container, marker, json.dumps(finding).encode(), if_absent=True)
            findings.append(finding)
    return findings
