"""Many models: one forecaster per partition (store x product by default) inside each segment.

The train_many pipeline uses the same features and the same baseline as train.yml; only the
grain of the model changes. Three pieces live here:

- ``partition_frames`` — prep: feature rows (train and holdout, marked by ``split``) with a
  ``partition`` column = segment + the ``partition_by`` key values, written as an MLTable
  folder with one sub-folder per partition (what Azure ML's ``partition_keys`` reads);
- ``train_partition`` — the parallel step's work for one partition: fit, forecast the
  holdout, compare with the baseline and the champion's forecast for the same rows, and apply
  the gate to that partition; it returns one result row (sums, not just ratios, so segment
  metrics pool exactly);
- ``ManyModelsForecast`` — the registered model: one MLflow pyfunc per segment whose artefact
  ``partitions.zip`` holds every partition's forecaster (``<partition>/forecaster.pkl``);
  ``predict`` routes each row to its partition's forecaster (a partition it has never seen
  gets the historical-average baseline).

Why one model per segment with per-partition artefacts, not one registered model per
partition: thousands of partitions would mean thousands of registered models, each with a
weekly version — past what a registry lists and gates comfortably, and one ModelRegistered
event (and one offline test) each. One model per segment keeps the registry, the events and
the champion/challenger flow exactly as they are for segment models, while every partition
still has its own forecaster, metrics and gate verdict.

Why one archive, not a folder per partition: a model's artefacts are fetched through the
workspace's artifact service, and azureml-mlflow lists a directory by listing every artefact of
the run and filtering (``AzureMLflowArtifactRepository.list_artifacts``). MLflow downloads a
folder by listing each sub-folder in turn, so a folder per partition costs one whole listing
per partition — quadratic in the partitions, and one HTTP download per file besides. One file
is one listing and one download at any size; its members are read one partition at a time.
"""

from __future__ import annotations

import json
import math
import pickle
import re
import tempfile
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc.model import PythonModel

from . import gate, metrics, mlflow_model
from .models import COMPONENTS, SegmentForecaster, TrainConfig
from .schema import SEGMENT, segment_name

PARTITION = "partition"
DEFAULT_PARTITION_BY = ("store_id", "product_id")
SPLIT = "split"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
FORECASTER_FILE = "forecaster.pkl"
PARTITIONS_ARCHIVE = "partitions.zip"


def parse_keys(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"store_id,product_id"`` → the partition key columns (never empty)."""
    keys = [k.strip() for k in (text.split(",") if isinstance(text, str) else text) if k.strip()]
    if not keys:
        raise ValueError("partition_by names no column")
    return tuple(keys)


def partition_value(region: str, fmt: str, velocity: str, values: Iterable[Any]) -> str:
    """The partition id: segment and key values, safe as a folder name."""
    parts = [region, fmt, velocity, *(str(v) for v in values)]
    return "__".join(_UNSAFE.sub("-", p) for p in parts)


def with_partition(frame: pd.DataFrame, keys: Sequence[str]) -> pd.Series:
    """The ``partition`` id of every row of a feature frame."""
    missing = [k for k in keys if k not in frame.columns]
    if missing:
        raise ValueError(f"partition_by column(s) {', '.join(missing)} are not in the features")
    columns = [*SEGMENT, *keys]
    values = frame[columns].astype(str).to_numpy()
    return pd.Series(
        [partition_value(r[0], r[1], r[2], r[3:]) for r in values], index=frame.index, dtype=str
    )


MLTABLE = """\
paths:
  - pattern: ./*/part.csv
transformations:
  - read_delimited:
      delimiter: ","
      header: all_files_same_headers
      encoding: utf8
  - extract_columns_from_partition_format:
      partition_format: "{partition}/{file_name}.{extension}"
  - drop_columns: [file_name, extension]
"""


def write_partitions(
    train: pd.DataFrame, holdout: pd.DataFrame, keys: Sequence[str], out: Path
) -> list[str]:
    """Write ``out/<partition>/part.csv`` (history rows as ``train``, holdout feature rows as
    ``holdout``) and ``out/MLTable``."""
    frame = pd.concat(
        [train.assign(**{SPLIT: "train"}), holdout.assign(**{SPLIT: "holdout"})],
        ignore_index=True,
    )
    frame[PARTITION] = with_partition(frame, keys)
    out.mkdir(parents=True, exist_ok=True)
    names: list[str] = []
    for name, group in frame.groupby(PARTITION, sort=True):
        folder = out / str(name)
        folder.mkdir(exist_ok=True)
        group.drop(columns=[PARTITION]).to_csv(folder / "part.csv", index=False)
        names.append(str(name))
    (out / "MLTable").write_text(MLTABLE, encoding="utf-8")
    return names


# -- one partition ---------------------------------------------------------------------------


def _sums(
    actual: np.ndarray, forecast: np.ndarray, holiday: np.ndarray, min_actual: float
) -> dict[str, float]:
    """Sums from which every measure of ``metrics`` pools exactly (MAPE's over the rows of at
    least ``min_actual``)."""
    big = metrics.mape_rows(actual, min_actual)
    zero = actual == 0
    weight = np.where(holiday, metrics.HOLIDAY_WEIGHT, 1.0)
    return {
        "ape_sum": float(np.sum(np.abs(actual[big] - forecast[big]) / np.abs(actual[big]))),
        "ape_n": float(big.sum()),
        "ae_sum": float(np.sum(np.abs(actual - forecast))),
        "abs_actual_sum": float(np.sum(np.abs(actual))),
        "wae_sum": float(np.sum(weight * np.abs(actual - forecast))),
        "weight_sum": float(np.sum(weight)),
        "se_sum": float(np.sum((actual - forecast) ** 2)),
        "n": float(actual.size),
        "zse_sum": float(np.sum(forecast[zero] ** 2)),
        "zn": float(zero.sum()),
    }


def from_sums(sums: Mapping[str, float]) -> dict[str, float]:
    """The case-study metrics (``metrics.summarize``'s keys) from pooled ``_sums``."""
    nan = math.nan
    return {
        "mape": sums["ape_sum"] / sums["ape_n"] if sums["ape_n"] else nan,
        "wape": sums["ae_sum"] / sums["abs_actual_sum"] if sums.get("abs_actual_sum") else nan,
        "wmae": sums["wae_sum"] / sums["weight_sum"] if sums.get("weight_sum") else nan,
        "rmse_zero": math.sqrt(sums["zse_sum"] / sums["zn"]) if sums["zn"] else nan,
        "rmse_all": math.sqrt(sums["se_sum"] / sums["n"]) if sums["n"] else nan,
        "rows": sums["n"],
    }


def train_partition(
    frame: pd.DataFrame,
    partition: str,
    exog: Sequence[str],
    config: TrainConfig,
    max_mape: float,
    champion: Any | None = None,
) -> tuple[SegmentForecaster | None, dict[str, Any]]:
    """Fit one partition on its history rows (``split`` = train: the joined rows, from which
    training origins are stacked) and judge it on its holdout rows (features as of the
    origin, written by prep): the gate, per partition, with MAPE over the rows of at least
    ``config.min_actual`` (recorded in the row)."""
    train = frame[frame[SPLIT] == "train"]
    holdout = frame[frame[SPLIT] == "holdout"]
    first = frame.iloc[0]
    segment = segment_name(str(first["region"]), str(first["format"]), str(first["velocity"]))
    row: dict[str, Any] = {
        "partition": partition,
        "segment": segment,
        "train_rows": len(train),
        "holdout_rows": len(holdout),
        "min_actual": config.min_actual,
    }
    if train.empty or holdout.empty:
        row["gate"] = {"passed": False, "reasons": ["no train or no holdout rows"]}
        return None, row
    forecaster = SegmentForecaster(exog, config).fit(train)
    forecast = forecaster.predict_components(holdout)
    actual = holdout["quantity"].to_numpy(dtype=float)
    holiday = holdout["holiday"].fillna(0).to_numpy(dtype=bool)
    for component in COMPONENTS:
        if component not in forecast:
            continue
        values = forecast[component].to_numpy(dtype=float)
        row[component] = {
            **metrics.summarize(actual, values, holiday, config.min_actual),
            "sums": _sums(actual, values, holiday, config.min_actual),
        }
    champion_mape = None
    if champion is not None:
        predicted = pd.DataFrame(champion.predict(holdout), index=holdout.index)["ensemble"]
        values = predicted.to_numpy(dtype=float)
        row["champion"] = {
            **metrics.summarize(actual, values, holiday, config.min_actual),
            "sums": _sums(actual, values, holiday, config.min_actual),
        }
        champion_mape = row["champion"]["mape"]
    verdict = gate.gate(row["ensemble"]["mape"], row["baseline"]["mape"], champion_mape, max_mape)
    row["gate"] = {"passed": verdict.passed, "reasons": verdict.reasons}
    return forecaster, row


def save_forecaster(forecaster: SegmentForecaster, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / FORECASTER_FILE).open("wb") as handle:
        pickle.dump(forecaster, handle, protocol=pickle.HIGHEST_PROTOCOL)


# -- a segment, summarised -------------------------------------------------------------------


def summarise(rows: Iterable[Mapping[str, Any]], max_mape: float) -> dict[str, Any]:
    """metrics.json in the evaluate step's shape, plus a per-partition gate summary.

    Segment metrics pool every partition's holdout rows (exactly, from the sums); the
    segment's own gate applies the same rule to the pooled metrics. ``partitions`` says how
    many partitions passed their own gate and which failed worst. ``min_actual`` is the MAPE
    row filter the partitions were measured with (one for all of them).
    """
    by_segment: dict[str, list[Mapping[str, Any]]] = {}
    thresholds: set[float] = set()
    for row in rows:
        by_segment.setdefault(str(row["segment"]), []).append(row)
        if row.get("min_actual") is not None:
            thresholds.add(float(row["min_actual"]))
    if len(thresholds) > 1:
        raise ValueError(f"partitions measured MAPE with different min_actual {sorted(thresholds)}")
    min_actual = thresholds.pop() if thresholds else metrics.MIN_ACTUAL
    result: dict[str, Any] = {"segments": {}, "max_mape": max_mape, "kind": "many_models",
                              "min_actual": min_actual}  # fmt: skip
    for segment, members in sorted(by_segment.items()):
        trained = [r for r in members if r.get("ensemble")]
        seg: dict[str, Any] = {}
        for component in (*COMPONENTS, "champion"):
            parts = [r[component]["sums"] for r in trained if r.get(component)]
            if component == "champion" and len(parts) < len(trained):
                parts = []  # compare with a champion only where it covers every partition
            if parts:
                pooled = {k: sum(p[k] for p in parts) for k in parts[0]}
                seg[component] = from_sums(pooled)
            else:
                seg[component] = None
        failed = [r for r in members if not r["gate"]["passed"]]
        worst = sorted(failed, key=_badness, reverse=True)[:5]
        seg["partitions"] = {
            "total": len(members),
            "passed": len(members) - len(failed),
            "failed": len(failed),
            "worst": [
                {
                    "partition": r["partition"],
                    "mape": (r.get("ensemble") or {}).get("mape"),
                    "reasons": r["gate"]["reasons"],
                }
                for r in worst
            ],
        }
        if seg["ensemble"] is None or seg["baseline"] is None:
            seg["gate"] = {"passed": False, "verdict": "fail", "reasons": ["no partition trained"]}
        else:
            champion = seg["champion"]["mape"] if seg["champion"] else None
            verdict = gate.gate(
                seg["ensemble"]["mape"], seg["baseline"]["mape"], champion, max_mape
            )
            seg["gate"] = {
                "passed": verdict.passed,
                "verdict": verdict.label,
                "reasons": verdict.reasons,
            }
        result["segments"][segment] = seg
    return result


def _badness(row: Mapping[str, Any]) -> float:
    """A failed partition's ensemble MAPE; untrained or undefined ranks worst."""
    value = (row.get("ensemble") or {}).get("mape")
    return math.inf if value is None or math.isnan(value) else float(value)


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The parallel step's result rows (one JSON object per line)."""
    files = [path] if path.is_file() else sorted(path.rglob("*.txt"))
    rows: list[dict[str, Any]] = []
    for file in files:
        for line in file.read_text(encoding="utf-8").splitlines():
            if line.strip():
                rows.append(json.loads(line))
    return rows


class ManyModelsForecast(PythonModel):
    """One segment's partition forecasters behind one pyfunc ``predict(frame)``.

    Returns the component forecasts (baseline, lasso, nn, ensemble) like the segment model,
    so scoring and offline tests use either kind unchanged. Forecasters load lazily, one
    partition at a time, from the model's ``partitions`` artefact: the archive, or the folder
    of one sub-folder per partition that versions saved before the archive hold.
    """

    def __init__(self, keys: Sequence[str], metadata: Mapping[str, str]) -> None:
        self.keys = list(keys)
        self.metadata = dict(metadata)
        self._folder: Path | None = None
        self._archive: zipfile.ZipFile | None = None
        self._members: set[str] = set()
        self._cache: dict[str, SegmentForecaster | None] = {}

    def load_context(self, context: Any) -> None:
        location = Path(context.artifacts["partitions"])
        if location.is_file():
            self._archive = zipfile.ZipFile(location)
            self._members = set(self._archive.namelist())
        else:
            self._folder = location

    def __getstate__(self) -> dict[str, Any]:
        # Saved (pickled) before any artefact is opened; never with an open archive or a cache.
        state = dict(self.__dict__)
        state.update(_folder=None, _archive=None, _members=set(), _cache={})
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Versions saved before the archive pickled fewer attributes.
        self.__dict__.update(_folder=None, _archive=None, _members=set(), _cache={})
        self.__dict__.update(state)

    def _forecaster(self, partition: str) -> SegmentForecaster | None:
        if partition not in self._cache:
            forecaster = None
            member = f"{partition}/{FORECASTER_FILE}"
            if self._archive is not None:
                if member in self._members:
                    data = self._archive.read(member)
                    forecaster = pickle.loads(data)  # noqa: S301 - our own artefact
            else:
                file = (self._folder or Path()) / member
                if file.is_file():
                    with file.open("rb") as handle:
                        forecaster = pickle.load(handle)  # noqa: S301 - our own artefact
            self._cache[partition] = forecaster
        return self._cache[partition]

    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        frame = pd.DataFrame(model_input)
        baseline = frame["series_mean"].clip(lower=0.0)
        out = pd.DataFrame({c: baseline for c in COMPONENTS}, index=frame.index)
        partitions = with_partition(frame, self.keys)
        for partition, index in partitions.groupby(partitions).groups.items():
            forecaster = self._forecaster(str(partition))
            if forecaster is not None:
                parts = forecaster.predict_components(frame.loc[index])
                present = [c for c in COMPONENTS if c in parts]
                out.loc[index, present] = parts[present].to_numpy()
        return out


def pack_partitions(partitions: Path, archive: Path) -> int:
    """Write every ``<partition>/forecaster.pkl`` under ``partitions`` into one zip archive
    (members in name order, so the same forecasters make the same member list); returns how
    many. Deflate at level 1: pickled estimators shrink by about a third at little cost."""
    files = sorted(partitions.glob(f"*/{FORECASTER_FILE}"))
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as out:
        for file in files:
            out.write(file, f"{file.parent.name}/{FORECASTER_FILE}")
    return len(files)


def archived_forecasters(location: Path) -> int:
    """How many partition forecasters a model's ``partitions`` artefact holds (either form)."""
    if location.is_file():
        with zipfile.ZipFile(location) as archive:
            return sum(1 for n in archive.namelist() if n.endswith(f"/{FORECASTER_FILE}"))
    return sum(1 for _ in location.glob(f"*/{FORECASTER_FILE}")) if location.is_dir() else 0


def save_segment_model(
    path: Path, partitions: Path, keys: Sequence[str], metadata: Mapping[str, str]
) -> None:
    """Save the segment's model at ``path``: its partitions' forecasters (one sub-folder each
    under ``partitions``) packed into the ``partitions`` artefact."""
    import mlflow

    package = Path(__file__).resolve().parent
    with tempfile.TemporaryDirectory() as scratch:
        archive = Path(scratch) / PARTITIONS_ARCHIVE
        pack_partitions(partitions, archive)
        mlflow.pyfunc.save_model(
            str(path),
            python_model=ManyModelsForecast(keys, metadata),
            artifacts={"partitions": str(archive)},
            code_paths=[str(package)],
            metadata=dict(metadata),
            pip_requirements=mlflow_model.requirements(network=True),
        )
