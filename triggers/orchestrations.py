"""HTTP for Azure Data Factory (and people): start an orchestration, read its status.

``POST /api/orchestrations/{name}`` (function key) starts ``train``, ``score``, ``retrain`` or
``model_test`` with an instance id derived from the request, so ADF's retries and repeated
calls find the same instance instead of starting a second run; it answers the Durable 202
payload (``id``, ``statusQueryGetUri``, ...). ``GET /api/orchestrations/{id}`` answers a JSON
object with ``runtimeStatus``, ``customStatus`` and ``output``. Every body is a JSON object.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from adapters.errors import BadInputError
from orchestrators.policies import request_instance_id
from orchestrators.requests import ORCHESTRATORS, build_input
from triggers.http_common import error_response, json_response, read_json_object

log = logging.getLogger(__name__)
bp = df.Blueprint()

# A finished run with these statuses may be started again under the same id (a retry);
# anything else is the same run and is returned as it is.
RESTARTABLE = {"Failed", "Terminated", "Canceled"}


def _status_name(status: Any) -> str | None:
    runtime = getattr(status, "runtime_status", None)
    if runtime is None:
        return None
    return str(getattr(runtime, "value", runtime))


@bp.route(route="orchestrations/{name}", methods=["POST"])
@bp.durable_client_input(client_name="client")
async def start_orchestration(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    name = req.route_params.get("name", "")
    if name not in ORCHESTRATORS:
        return error_response(
            404, "unknown_orchestration", f"no orchestration {name!r}; use one of "
            + ", ".join(sorted(ORCHESTRATORS)),
        )  # fmt: skip
    try:
        body = read_json_object(req)
        from composition import get_services

        orchestration_input = build_input(name, body, get_services().settings, datetime.now(UTC))
    except (ValueError, BadInputError) as exc:
        return error_response(400, getattr(exc, "code", "bad_request"), str(exc))
    from adapters.telemetry import Correlation, span, trace_carrier

    instance_id = request_instance_id(name, body)
    with span(f"start_{name}", kind="server", correlation=Correlation(instance_id=instance_id)):
        existing = await client.get_status(instance_id)
        status = _status_name(existing)
        if status is not None and status not in RESTARTABLE:
            log.info("orchestration %s already exists (%s); returning it", instance_id, status)
        else:
            # The trace context rides along with the run options to every job submission.
            orchestration_input["options"]["trace"] = trace_carrier()
            await client.start_new(ORCHESTRATORS[name], instance_id, orchestration_input)
            log.info("started %s as %s", ORCHESTRATORS[name], instance_id)
    response: func.HttpResponse = client.create_check_status_response(req, instance_id)
    return response


@bp.route(route="orchestrations/{instance_id}", methods=["GET"])
@bp.durable_client_input(client_name="client")
async def get_orchestration(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    instance_id = req.route_params.get("instance_id", "")
    status = await client.get_status(instance_id)
    runtime = _status_name(status)
    if runtime is None:
        return error_response(404, "not_found", f"no orchestration instance {instance_id!r}")
    created = getattr(status, "created_time", None)
    updated = getattr(status, "last_updated_time", None)
    return json_response(
        {
            "instanceId": instance_id,
            "name": getattr(status, "name", None),
            "runtimeStatus": runtime,
            "customStatus": getattr(status, "custom_status", None),
            "output": getattr(status, "output", None),
            "createdTime": created.isoformat() if created else None,
            "lastUpdatedTime": updated.isoformat() if updated else None,
        }
    )
