"""The local Azure ML executor: runs CLI v2 pipeline YAML on this machine.

Command and parallel (``run_function``) steps, pipeline components, datastore paths mapped to
local folders; what it cannot serve is refused at submit. Public API: ``LocalExecutor``
(submit / run / start_detached / status / cancel), ``JobRecord``, ``JobStatus``,
``load_pipeline``, ``Datastores`` and ``wait_for``. The command line is ``python -m local.aml``.
"""

from __future__ import annotations

from local.aml.executor import DEFAULT_ROOT, LocalExecutor, wait_for
from local.aml.locations import Datastores
from local.aml.spec import PipelineSpec, StepSpec, load_pipeline
from local.aml.status import TERMINAL, JobStatus
from local.aml.store import JobRecord, JobStore, StepRecord
from local.aml.tracking import sqlite_tracking_uri

__all__ = [
    "DEFAULT_ROOT",
    "TERMINAL",
    "Datastores",
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
