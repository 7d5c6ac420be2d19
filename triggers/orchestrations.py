"""HTTP for Azure Data Factory (and people): start an orchestration, read its status.

``POST /api/orchestrations/{name}`` (function key) starts ``train``, ``score``, ``retrain`` or
``model_test``. The instance id comes from the caller's ``idempotencyKey`` (query parameter
or body field; ADF sends its pipeline run id), so a retried call finds its run and the next
pipeline run starts a new one. Without a key every request starts a new run, unless the same
request arrives again within ``MLOPS_START_DEDUPE_SECONDS``. It answers 200 with the Durable
management payload (``id``, ``statusQueryGetUri``, ...) and no ``Location`` header: ADF's async
pattern follows a 202 + Location until the work ends (its Web activity does; its Azure Function
activity may), and a start must not invite that. The pipeline polls the status endpoint below.

``GET /api/orchestrations/{id}`` (function key) is what ADF's Web activity polls: always a
JSON object with ``runtimeStatus`` (200 while the instance exists, whatever its status; 404
otherwise), ``customStatus`` and ``output``. Every body is a JSON object.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from adapters.errors import BadInputError
from orchestrators.policies import start_ids
from orchestrators.requests import ORCHESTRATORS, build_input
from triggers.http_common import error_response, json_response, read_json_object
from triggers.starts import find_or_start, status_name

log = logging.getLogger(__name__)
bp = df.Blueprint()


def idempotency_key(req: func.HttpRequest, body: dict[str, Any]) -> Any:
    """The caller's ``idempotencyKey`` (query parameter or body field), or ``None``.

    Raises ``BadInputError`` when both are given and differ.
    """
    in_query = req.params.get("idempotencyKey")
    in_body = body.get("idempotencyKey")
    if in_query is not None and in_body is not None and str(in_body) != in_query:
        raise BadInputError(
            "idempotencyKey differs between the query string and the body", code="bad_request"
        )
    return in_query if in_query is not None else in_body


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

        settings = get_services().settings
        now = datetime.now(UTC)
        orchestration_input = build_input(name, body, settings, now)
        window = timedelta(seconds=settings.automation.start_dedupe_seconds)
        ids = start_ids(name, body, idempotency_key(req, body), now, window)
    except (ValueError, BadInputError) as exc:
        return error_response(400, getattr(exc, "code", "bad_request"), str(exc))
    from adapters.telemetry import Correlation, span, trace_carrier

    with span(f"start_{name}", kind="server", correlation=Correlation(instance_id=ids.instance_id)):
        # The trace context rides along with the run options to every job submission.
        orchestration_input["options"]["trace"] = trace_carrier()
        instance_id, started = await find_or_start(
            client, ORCHESTRATORS[name], ids, orchestration_input
        )
    if started:
        log.info("started %s as %s", ORCHESTRATORS[name], instance_id)
    else:
        log.info("orchestration %s already exists; returning it", instance_id)
    # Not create_check_status_response: its 202 + Location would have ADF wait on the run.
    return json_response(client.get_client_response_links(req, instance_id))


@bp.route(route="orchestrations/{instance_id}", methods=["GET"])
@bp.durable_client_input(client_name="client")
async def get_orchestration(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    instance_id = req.route_params.get("instance_id", "")
    status = await client.get_status(instance_id)
    runtime = status_name(status)
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
