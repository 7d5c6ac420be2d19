"""The local Azure ML executor: runs CLI v2 pipeline YAML with command components on this machine.

Public API: ``LocalExecutor`` (submit / run / start_detached / status / cancel), ``JobRecord``,
``JobStatus``, ``load_pipeline`` and ``wait_for``. The command line is ``python -m local.aml``.
"""

from __future__ import annotations

from local.aml.executor import DEFAULT_ROOT, LocalExecutor, wait_for
from local.aml.spec import PipelineSpec, StepSpec, load_pipeline
from local.aml.status import TERMINAL, JobStatus
from local.aml.store import JobRecord, JobStore, StepRecord
from local.aml.tracking import sqlite_tracking_uri

__all__ = [
    "DEFAULT_ROOT",
    "TERMINAL",
    "JobRecord",
    "JobStatus",
    "JobStore",
    "LocalExecutor",
    "PipelineSpec",
    "StepRecord",
    "StepSpec",
    "load_pipeline",
    "sqlite_tracking_uri",
    "wait_for",
]
