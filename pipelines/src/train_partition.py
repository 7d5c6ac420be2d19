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
from forecasting.models import TrainConfig
from forecasting.schema import model_name
from forecasting.step_common import read_json, slug

_state: dict[str, Any] = {}


def init() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--features", required=True)
    parser.add_argument("--models", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=0)
    parser.add_argument("--max_mape", type=float, default=0.45)
    parser.add_argument("--model_prefix", default="forecast")
    args, _ = parser.parse_known_args()
    meta = read_json(Path(args.features) / "meta.json")
    _state.update(
        args=args,
        exog=list(meta["exog"]),
        config=TrainConfig(
            seed=args.seed, epochs=args.epochs or None, horizon=int(meta.get("horizon", 13))
        ),
        champions={},
    )


def _champion(segment: str) -> Any | None:
    """The segment's champion model (cached per worker), or None without one."""
    champions: dict[str, Any] = _state["champions"]
    if segment not in champions:
        champions[segment] = None
        if mlflow_model.tracking_enabled():
            name = model_name(segment, _state["args"].model_prefix)
            version = mlflow_model.find_champion(mlflow_model.client(), name)
            if version is not None:
                champions[segment] = mlflow_model.load(f"models:/{name}/{version.version}")
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
