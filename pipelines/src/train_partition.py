"""Entry script of train_many's parallel step: one forecaster per partition.

Azure ML (and the local executor) import this file, call ``init()`` once per worker process
and ``run(mini_batch, mini_batch_context)`` once per partition, with the partition's rows as
a DataFrame. Each call saves the partition's forecaster under
``<models>/<segment>/partitions/<partition>/`` and returns one JSON line of metrics and gate
verdict; the step appends those lines to its ``results`` output. The work is in
``forecasting.many``; this file only adapts it to the parallel-job contract.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pandas as pd
from forecasting import many, mlflow_model
from forecasting.metrics import MIN_ACTUAL
from forecasting.models import TrainConfig, parse_members, single_threaded
from forecasting.schema import model_name
from forecasting.step_common import read_json, slug, tracking_enabled

_state: dict[str, Any] = {}


def init() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--features", required=True)
    parser.add_argument("--models", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=0)
    parser.add_argument("--max_mape", type=float, default=0.45)
    parser.add_argument("--model_prefix", default="forecast")
    parser.add_argument("--min_actual", type=float, default=MIN_ACTUAL, help="MAPE's row filter")
    parser.add_argument("--members", default="default", help="default, all or a comma list")
    args, _ = parser.parse_known_args()
    # Each worker is one of max_concurrency_per_instance processes on the node: torch's and
    # the native pools' own threads on top of them only make the workers wait on each other.
    single_threaded()
    meta = read_json(Path(args.features) / "meta.json")
    _state.update(
        args=args,
        exog=list(meta["exog"]),
        config=TrainConfig(
            seed=args.seed,
            epochs=args.epochs or None,
            horizon=int(meta.get("horizon", 13)),
            members=parse_members(args.members),
            min_actual=args.min_actual,
        ),
        champions={},
    )


def _champion(segment: str) -> Any | None:
    """The segment's champion model (cached per worker), or None without one."""
    champions: dict[str, Any] = _state["champions"]
    if segment not in champions:
        # Cached once found (or known absent), never before: a lookup that fails fails this
        # mini-batch, and its retry looks again instead of going on without the champion.
        champion = None
        if tracking_enabled():
            name = model_name(segment, _state["args"].model_prefix)
            version = mlflow_model.find_champion(mlflow_model.client(), name)
            if version is not None:
                champion = mlflow_model.load(f"models:/{name}/{version.version}")
        champions[segment] = champion
    return champions[segment]


def run(mini_batch: pd.DataFrame, mini_batch_context: Any) -> list[str]:
    partition = str(mini_batch_context.partition_key_value[many.PARTITION])
    args = _state["args"]
    first = mini_batch.iloc[0]
    segment = f"{first['region']}/{first['format']}/{first['velocity']}"
    forecaster, row = many.train_partition(
        mini_batch,
        partition,
        _state["exog"],
        _state["config"],
        args.max_mape,
        champion=_champion(segment),
    )
    if forecaster is not None:
        many.save_forecaster(
            forecaster, Path(args.models) / slug(segment) / "partitions" / partition
        )
    return [json.dumps(row, allow_nan=True, default=str)]
