"""The Event Grid failure handler only records the alert: no azure.ai.ml, no job lookup, no send.

Event Grid gives a webhook 30 s and then redelivers; importing azure.ai.ml takes seconds, a job
lookup is a round trip to the workspace and an email through Communication Services takes tens
of seconds. The handler runs here in a fresh interpreter, as a cold worker would: the app
composed for Azure (``MLOPS_ENVIRONMENT=azure``, the Azure ML adapters, Communication Services
email at an endpoint on loopback nobody answers) with the alert outbox in Azurite. An audit
hook records every connection the process opens (and refuses any beyond loopback). The child
reports what was imported and opened and how long the import and the handler took; the times
are printed for the record, the assertions are about what happened.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from local.hosting.azurite import Azurite
from local.processes import free_port

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]

CHILD = r"""
import asyncio, json, sys, time
from datetime import datetime, timezone

opened = []

def audit(event, args):
    if event == "socket.connect":
        address = args[1]
        opened.append(list(address) if isinstance(address, tuple) else str(address))
        host = address[0] if isinstance(address, tuple) else ""
        if host not in ("127.0.0.1", "::1"):
            raise ConnectionRefusedError(f"nothing beyond loopback here: {address}")

sys.addaudithook(audit)
started = time.perf_counter()
import azure.functions as func
import function_app  # what the worker loads
from triggers.aml_events import on_run_status_changed
imported = time.perf_counter() - started

run_id = sys.argv[1]
event = func.EventGridEvent(
    id=f"evt-{run_id}",
    topic="/subscriptions/s/resourceGroups/rg/providers/"
    "Microsoft.MachineLearningServices/workspaces/w",
    subject=f"experiments/0b9e/runs/{run_id}",
    event_type="Microsoft.MachineLearningServices.RunStatusChanged",
    event_time=datetime.now(timezone.utc),
    data={"experimentName": "forecast-train", "runId": run_id, "runType": "azureml.PipelineRun",
          "runStatus": "Failed", "runTags": {"segment": "r01-large-fast", "pipeline": "train"}},
    data_version="2",
)

class NoDurable:
    async def get_status(self, instance_id):
        raise AssertionError("a failure alert starts no orchestration")

    async def start_new(self, *args):
        raise AssertionError("a failure alert starts no orchestration")

# Below the durable-client middleware (which builds a client from binding JSON).
handler = on_run_status_changed._function.get_user_function().__wrapped__
before = time.perf_counter()
asyncio.run(handler(event, NoDurable()))
handled = time.perf_counter() - before

from composition import get_services
record = get_services().alert_store.get(f"job-{run_id}-Failed")
print(json.dumps({
    "import_seconds": imported,
    "handler_seconds": handled,
    "modules": sorted(
        m for m in sys.modules if m.startswith(("azure.ai.ml", "azure.communication"))
    ),
    "opened": opened,
    "record": None if record is None else record.to_json(),
}))
"""


def _child(azurite: Azurite, acs_port: int, run_id: str) -> dict[str, Any]:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(REPO_ROOT),
        "MLOPS_ENVIRONMENT": "azure",
        "AzureWebJobsStorage": azurite.connection_string,
        "MLOPS_DATALAKE": azurite.connection_string,
        "MLOPS_ALERTS_CONTAINER": f"ops{uuid.uuid4().hex[:8]}",
        "MLOPS_AML_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000",
        "MLOPS_AML_RESOURCE_GROUP": "rg-ml",
        "MLOPS_AML_WORKSPACE": "mlw",
        "MLOPS_ALERT_TRANSPORT": "acs",
        "MLOPS_ACS_ENDPOINT": f"https://127.0.0.1:{acs_port}/",
    }
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, run_id],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_the_failure_handler_records_the_alert_and_nothing_else(azurite: Azurite) -> None:
    acs_port = free_port()
    run_id = f"train_{uuid.uuid4().hex[:8]}"
    result = _child(azurite, acs_port, run_id)
    print(
        f"\ncold import of function_app {result['import_seconds']:.2f} s, "
        f"failure handler {result['handler_seconds']:.2f} s"
    )
    # No Azure ML SDK, no email SDK, and no connection but the outbox's.
    assert result["modules"] == []
    ports = {address[1] for address in result["opened"] if isinstance(address, list)}
    assert ports <= {azurite.ports["blob"]}, result["opened"]
    assert acs_port not in ports
    record = result["record"]
    assert record is not None and record["status"] == "pending" and record["attempts"] == 0
    # The sender reads the job's step and log before the first attempt.
    assert record["payload"]["details_pending"] is True
    assert record["payload"]["segment"] == "r01-large-fast"
