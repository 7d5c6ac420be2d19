"""The forecaster as an MLflow pyfunc model, and the registry look-ups the steps share.

A saved model carries this package in its ``code`` folder, so it loads anywhere MLflow
does (Azure ML, the local executor, a notebook) without installing anything else.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc.model import PythonModel

from .models import SegmentForecaster

CHAMPION = "champion"
ROLE_TAG = "role"


class ForecastModel(PythonModel):
    """``predict(frame)`` → the component forecasts (baseline, lasso, nn, ensemble)."""

    def __init__(self, forecaster: SegmentForecaster, metadata: dict[str, str]) -> None:
        self.forecaster = forecaster
        self.metadata = dict(metadata)

    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        return self.forecaster.predict_components(pd.DataFrame(model_input))


# What a saved forecaster needs to load and predict (torch only for the network member).
REQUIREMENTS = ("numpy", "pandas", "scikit-learn", "lightgbm")


def requirements(network: bool = False) -> list[str]:
    """The model's pip requirements, pinned to the versions that saved it. Stating them
    spares MLflow inferring them, which loads the model in a subprocess: half a train
    step's time on the demo data."""
    from importlib.metadata import PackageNotFoundError, version

    names = [*REQUIREMENTS, *(["torch"] if network else [])]
    pinned = []
    for name in names:
        try:
            pinned.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            continue
    return pinned


def save(path: str | Path, forecaster: SegmentForecaster, metadata: dict[str, str]) -> None:
    package = Path(__file__).resolve().parent
    mlflow.pyfunc.save_model(
        str(path),
        python_model=ForecastModel(forecaster, metadata),
        code_paths=[str(package)],
        metadata=metadata,
        pip_requirements=requirements(network="nn" in forecaster.members),
    )


def load(uri: str | Path) -> Any:
    return mlflow.pyfunc.load_model(str(uri))


def predict(model: Any, frame: pd.DataFrame) -> pd.DataFrame:
    out = model.predict(frame)
    return pd.DataFrame(out, index=frame.index)


def client() -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient()


def find_champion(mlflow_client: Any, name: str) -> Any | None:
    """The version holding the champion alias (MLflow) or tag ``role=champion`` (Azure ML)."""
    with contextlib.suppress(Exception):  # no alias support, no such model or no alias set
        return mlflow_client.get_model_version_by_alias(name, CHAMPION)
    try:
        versions = mlflow_client.search_model_versions(f"name = '{name}'")
    except Exception:  # noqa: BLE001 - the registry does not know the model
        return None
    tagged = [v for v in versions if (v.tags or {}).get(ROLE_TAG) == CHAMPION]
    return max(tagged, key=lambda v: int(v.version)) if tagged else None
