"""Helpers shared by HTTP bindings: every body is a JSON object (ADF rejects arrays).

A request body is read only when it is small enough (``MAX_JSON_BODY``, answered 413), declared
JSON (``Content-Type: application/json``, else 415: a browser form cannot send that
cross-origin without asking first) and parses within the JSON reader's nesting limit (else 400).
"""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func

from adapters.errors import BadInputError

# What a start request carries is a few kilobytes; a megabyte leaves room and bounds the parse.
MAX_JSON_BODY = 1 << 20
_STATUS_OF = {"payload_too_large": 413, "unsupported_media_type": 415}


def json_response(body: dict[str, Any], status: int = 200, **headers: str) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body, default=str),
        status_code=status,
        mimetype="application/json",
        headers=headers or None,
    )


def error_response(status: int, code: str, message: str) -> func.HttpResponse:
    return json_response({"error": {"code": code, "message": message}}, status)


def refusal(exc: BadInputError) -> func.HttpResponse:
    """The 4xx answer to a refused request: 413 or 415 for those codes, 400 otherwise."""
    return error_response(_STATUS_OF.get(exc.code, 400), exc.code, str(exc))


def is_json_type(content_type: str | None) -> bool:
    """Whether a ``Content-Type`` declares JSON (``application/json``, ``...+json``)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def read_json_object(req: func.HttpRequest) -> dict[str, Any]:
    """The request body as a JSON object; an empty body is ``{}``.

    Raises ``BadInputError`` with a message fit for the answer: ``payload_too_large``,
    ``unsupported_media_type`` or ``bad_request`` (see ``refusal``).
    """
    raw = req.get_body()
    if not raw or not raw.strip():
        return {}
    if len(raw) > MAX_JSON_BODY:
        raise BadInputError(
            f"request body is {len(raw):,} bytes; at most {MAX_JSON_BODY:,} are read",
            code="payload_too_large",
        )
    if not is_json_type(req.headers.get("content-type")):
        raise BadInputError(
            "request body must be JSON: send it with Content-Type: application/json",
            code="unsupported_media_type",
        )
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInputError(f"request body is not valid JSON: {exc}", code="bad_request") from exc
    except RecursionError as exc:
        raise BadInputError(
            "request body nests deeper than the JSON reader follows", code="bad_request"
        ) from exc
    if not isinstance(body, dict):
        raise BadInputError(
            f"request body must be a JSON object, got {type(body).__name__}", code="bad_request"
        )
    return body
