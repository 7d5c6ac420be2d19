"""Helpers shared by HTTP bindings: every body is a JSON object (ADF rejects arrays)."""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func


def json_response(body: dict[str, Any], status: int = 200, **headers: str) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body, default=str),
        status_code=status,
        mimetype="application/json",
        headers=headers or None,
    )


def error_response(status: int, code: str, message: str) -> func.HttpResponse:
    return json_response({"error": {"code": code, "message": message}}, status)


def read_json_object(req: func.HttpRequest) -> dict[str, Any]:
    """The request body as a JSON object; an empty body is ``{}``.

    Raises ``ValueError`` with a message fit for a 400 answer.
    """
    raw = req.get_body()
    if not raw or not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ValueError(f"request body must be a JSON object, got {type(body).__name__}")
    return body
