"""Liveness for load balancers and the local runtime's readiness check."""

from __future__ import annotations

import azure.functions as func

from triggers.http_common import json_response

bp = func.Blueprint()


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def on_health_get(req: func.HttpRequest) -> func.HttpResponse:
    return json_response({"status": "ok"})
