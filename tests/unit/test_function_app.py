"""The real function app: what it registers, and what importing it costs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# name -> trigger kind. Every function the app registers is listed here on purpose: adding one
# means saying what it is.
EXPECTED = {
    "on_health_get": "httpTrigger",
    "on_dashboard_get": "httpTrigger",
    "on_raw_blob_created": "blobTrigger",
    "start_orchestration": "httpTrigger",
    "get_orchestration": "httpTrigger",
    "on_model_registered": "eventGridTrigger",
    "on_run_status_changed": "eventGridTrigger",
    "on_run_completed": "eventGridTrigger",
    "on_weekly_retrain_timer": "timerTrigger",
    "on_daily_staleness_timer": "timerTrigger",
    "on_drift_check_timer": "timerTrigger",
    "on_alert_outbox_timer": "timerTrigger",
    "run_job_monitor": "orchestrationTrigger",
    "run_segment_training": "orchestrationTrigger",
    "run_train": "orchestrationTrigger",
    "run_train_batch": "orchestrationTrigger",
    "run_score": "orchestrationTrigger",
    "run_model_test": "orchestrationTrigger",
    "run_retrain": "orchestrationTrigger",
    "check_training_inputs": "activityTrigger",
    "submit_pipeline_job": "activityTrigger",
    "get_job_status": "activityTrigger",
    "cancel_pipeline_job": "activityTrigger",
    "read_training_result": "activityTrigger",
    "get_champion": "activityTrigger",
    "get_champions": "activityTrigger",
    "apply_gate_verdict": "activityTrigger",
    "score_inputs": "activityTrigger",
    "collect_forecasts": "activityTrigger",
    "model_test_inputs": "activityTrigger",
    "read_model_test_verdict": "activityTrigger",
    "list_champion_segments": "activityTrigger",
    "claim_retrain_slot": "activityTrigger",
    "send_job_failure_alert": "activityTrigger",
    "record_job_outcome": "activityTrigger",
}


def _indexed() -> dict[str, str]:
    # get_functions() may be called once per app object, so read it in a fresh process.
    code = (
        "import json, function_app\n"
        "from adapters.settings import SETTINGS\n"
        "from local.hosting.functions import index_functions\n"
        "env = {s.key: s.default for s in SETTINGS if s.default is not None}\n"
        "print(json.dumps({s.name: s.trigger_type "
        "for s in index_functions(function_app.app.get_functions(), env)}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_the_app_indexes_with_the_expected_functions_and_triggers() -> None:
    assert _indexed() == EXPECTED


def test_importing_the_app_does_not_import_heavy_libraries() -> None:
    # azure.storage.blob is not in the list: the blob trigger's SDK-type binding needs its
    # BlobClient type at load (the worker resolves the annotation then).
    code = (
        "import sys, function_app\n"
        "heavy = [m for m in ('azure.ai.ml', 'pandas', 'torch', 'pyarrow', 'mlflow', "
        "'sklearn') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == ""
