"""MLflow with a sqlite store: the local tracking server and model registry (no server process).

The executor opens one MLflow run per pipeline job and one child run per step, and hands the
child's id to the step in ``MLFLOW_RUN_ID``: ``mlflow.start_run()`` in component code then
resumes that run, which is how component code logs the same way locally and in Azure ML.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MLFLOW_STATUS = {"Completed": "FINISHED", "Failed": "FAILED", "Canceled": "KILLED"}


def sqlite_tracking_uri(folder: str | Path) -> str:
    """The tracking URI of the sqlite store in ``folder`` (created on first use)."""
    path = Path(folder).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path / 'mlflow.db'}"


def artifact_root_for(tracking_uri: str) -> str | None:
    """Artifacts beside a local sqlite store, never in the current directory (MLflow's default)."""
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri.removeprefix("sqlite:///"))
        return (db.parent / "artifacts").resolve().as_uri()
    return None


def initialize_store(tracking_uri: str) -> None:
    """Create (or migrate) a sqlite store once, even when many job processes start together.

    MLflow builds its schema on first use; two processes doing that at once collide
    ("duplicate column"). A file lock beside the database serialises the first use. A new
    store starts as a copy of an empty one made once per MLflow version (building the schema
    takes seconds; every job without a configured store gets a fresh one).
    """
    if not tracking_uri.startswith("sqlite:///"):
        return
    import fcntl

    from mlflow.tracking import MlflowClient

    db = Path(tracking_uri.removeprefix("sqlite:///"))
    db.parent.mkdir(parents=True, exist_ok=True)
    with (db.parent / f"{db.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not db.exists():
                _copy_empty_store(db, artifact_root_for(tracking_uri) or "")
            client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
            client.search_experiments(max_results=1)
            client.search_registered_models(max_results=1)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


TEMPLATES = Path(__file__).resolve().parents[2] / ".local" / "mlflow-templates"


def _copy_empty_store(db: Path, artifact_root: str) -> None:
    """Start ``db`` as a copy of an empty, fully migrated store (made once per version)."""
    import fcntl
    import shutil
    import sqlite3

    import mlflow
    from mlflow.tracking import MlflowClient

    template = TEMPLATES / f"mlflow-{mlflow.__version__}.db"
    if not template.exists():
        TEMPLATES.mkdir(parents=True, exist_ok=True)
        with (TEMPLATES / f"{template.name}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not template.exists():
                building = template.with_suffix(f".{os.getpid()}.tmp")
                uri = f"sqlite:///{building}"
                client = MlflowClient(tracking_uri=uri, registry_uri=uri)
                client.search_experiments(max_results=1)
                client.search_registered_models(max_results=1)
                building.replace(template)
    tmp = db.with_suffix(f".{os.getpid()}.tmp")
    shutil.copyfile(template, tmp)
    # MLflow's "Default" experiment (id 0) keeps the artifact root it was made with.
    with contextlib.closing(sqlite3.connect(tmp)) as conn:
        conn.execute(
            "UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
            (artifact_root,),
        )
        conn.commit()
    tmp.replace(db)


def quiet_mlflow() -> None:
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def ensure_experiment(client: Any, name: str, tracking_uri: str) -> str:
    """The id of experiment ``name``, created with artifacts beside the store if missing."""
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        return str(existing.experiment_id)
    try:
        return str(
            client.create_experiment(name, artifact_location=artifact_root_for(tracking_uri))
        )
    except Exception:
        again = client.get_experiment_by_name(name)
        if again is None:
            raise
        return str(again.experiment_id)


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: str
    tags: dict[str, str]


class Tracking:
    """The executor's view of MLflow: runs for jobs and steps, and models a run registered."""

    def __init__(self, tracking_uri: str) -> None:
        quiet_mlflow()
        from mlflow.tracking import MlflowClient

        self.uri = tracking_uri
        initialize_store(tracking_uri)
        self._client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def start_run(
        self, experiment_name: str, run_name: str, tags: dict[str, str], parent_run_id: str = ""
    ) -> str:
        exp_id = ensure_experiment(self._client, experiment_name, self.uri)
        all_tags = {**tags, "mlflow.runName": run_name}
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        run = self._client.create_run(exp_id, tags=all_tags, run_name=run_name)
        return str(run.info.run_id)

    def experiment_of(self, run_id: str) -> str:
        """The id of the experiment ``run_id`` belongs to."""
        return str(self._client.get_run(run_id).info.experiment_id)

    def finish(self, run_id: str, status: str) -> None:
        self._client.set_terminated(run_id, MLFLOW_STATUS.get(status, "FAILED"))

    def registered_by(self, run_id: str) -> list[RegisteredVersion]:
        """Model versions whose source run is ``run_id``."""
        versions = self._client.search_model_versions(f"run_id = '{run_id}'")
        return [
            RegisteredVersion(
                str(v.name), str(v.version), {str(k): str(t) for k, t in v.tags.items()}
            )
            for v in versions
        ]
