"""Azure ML's curated environments, as package sets the local executor can install.

A curated environment is a Docker image Azure ML builds from a conda file it publishes in
Azure/azureml-assets (``assets/training/general/environments/<name>/context/``). Locally the
executor installs the same packages into a virtualenv with the machine's Python. Each entry
keeps the upstream pins; where an upstream pin has no wheel for Python 3.11 (the machine's
Python) the entry says which pin was moved and why, so a difference from Azure is never silent.
Packages that only serve Azure ML's own serving and diagnostics stack inside the image
(``azureml-core``, ``azureml-defaults``, ``azureml-inference-server-http``, ``debugpy``,
``ipykernel``, ``tensorboard``, ``py-spy`` …) are left out: job code does not import them,
and several pin versions that do not build on Python 3.11.

GPU images (``acpt-pytorch-*-cuda*``, ``tensorflow-*-cuda*``) are not in the table: they need
CUDA, and a job asking for one is refused at submit with one line.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class CuratedEnvironment:
    name: str
    python: str
    packages: tuple[str, ...]
    # (package, upstream pin, local pin, why) for every pin moved for this machine's Python.
    adjustments: tuple[tuple[str, str, str, str], ...] = ()
    source: str = ""
    aliases: tuple[str, ...] = field(default_factory=tuple)


_ASSETS = "Azure/azureml-assets assets/training/general/environments/{}/context/"

# The moves both scikit-learn-based images need: pins with no wheel for Python 3.11, and the
# MLflow the image holds. Upstream asks for azureml-mlflow=={{latest-pypi-version}} and leaves
# mlflow-skinny to it; both definitions were last changed in July 2026, when the latest
# azureml-mlflow was 1.62.0.post5, which caps mlflow-skinny at 3.13.0 (resolved with
# `uv pip compile --exclude-newer` over the image's own pip list). That matters: from
# mlflow-skinny 3.15 on, mlflow.sklearn.save_model writes skops by default and the image has
# no skops, while 3.13 writes cloudpickle, as jobs built on these images expect.
_PY311_AND_MLFLOW: tuple[tuple[str, str, str, str], ...] = (
    ("numpy", "~=1.22.0", "~=1.23.5", "numpy 1.22 has no wheel for Python 3.11"),
    ("matplotlib", "~=3.5.0", "~=3.7.0", "matplotlib 3.5 has no wheel for Python 3.11"),
    ("psutil", "~=5.8.0", "~=5.9.0", "psutil 5.8 has no wheel for Python 3.11"),
    (
        "azureml-mlflow",
        "=={{latest-pypi-version}}",
        "==1.62.0.post5",
        "the latest release when the image's definition last changed, July 2026",
    ),
    (
        "mlflow-skinny",
        "(azureml-mlflow's)",
        "==3.13.0",
        "the newest azureml-mlflow 1.62.0.post5 accepts; 3.15 saves scikit-learn models "
        "with skops, which the image lacks",
    ),
)
# The MLflow pins above, as requirements.
_IMAGE_MLFLOW = ("mlflow-skinny==3.13.0", "azureml-mlflow==1.62.0.post5")

CURATED: dict[str, CuratedEnvironment] = {
    env.name: env
    for env in (
        CuratedEnvironment(
            name="sklearn-1.5",
            python="3.10",
            packages=(
                "pandas~=1.5.3",
                "scipy~=1.10.0",
                "numpy~=1.23.5",
                "scikit-learn~=1.5.0",
                "joblib~=1.2.0",
                *_IMAGE_MLFLOW,
                "matplotlib~=3.7.0",
                "tqdm~=4.66.3",
                "psutil~=5.9.0",
            ),
            adjustments=_PY311_AND_MLFLOW,
            source=_ASSETS.format("sklearn-1.5") + "conda_dependencies.yaml",
            aliases=("AzureML-sklearn-1.5", "AzureML-sklearn-1.5-ubuntu22.04-py310-cpu"),
        ),
        CuratedEnvironment(
            name="lightgbm-3.3",
            python="3.10",
            packages=(
                "pandas~=1.5.3",
                "scipy~=1.10.0",
                "numpy~=1.23.5",
                "scikit-learn~=1.5.1",
                "xgboost~=1.7.6",
                "lightgbm>=4.6.0",
                *_IMAGE_MLFLOW,
                "matplotlib~=3.7.0",
                "tqdm~=4.66.3",
                "psutil~=5.9.0",
            ),
            adjustments=(
                *_PY311_AND_MLFLOW,
                (
                    "distributed, adlfs",
                    "~=2021.10.0, ~=0.7.0",
                    "(left out)",
                    "Dask cluster "
                    "and Data Lake filesystem clients; they reach services that are not here",
                ),
            ),
            source=_ASSETS.format("lightgbm-3.3") + "conda_dependencies.yaml",
            aliases=("AzureML-lightgbm-3.3",),
        ),
    )
}


def find_curated(name: str) -> CuratedEnvironment | None:
    """The curated environment called ``name`` (its registry name or an old ``AzureML-`` alias)."""
    wanted = name.strip().lower()
    for env in CURATED.values():
        if wanted == env.name.lower() or wanted in (a.lower() for a in env.aliases):
            return env
    return None


def is_gpu_image(name: str) -> bool:
    lowered = name.lower()
    return "cuda" in lowered or "gpu" in lowered


__all__ = ["CURATED", "CuratedEnvironment", "find_curated", "is_gpu_image"]
