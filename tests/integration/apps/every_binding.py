"""A small app with one function of every binding kind the local host serves.

Each function records what it saw in ``CALLS`` so tests can assert on outcomes.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from datetime import timedelta
from typing import Any

import azure.durable_functions as df
import azure.functions as func
import azurefunctions.extensions.bindings.blob as blob_sdk

CALLS: dict[str, list[Any]] = defaultdict(list)
FLAKY_ATTEMPTS: dict[str, int] = defaultdict(int)
_lock = threading.Lock()


def record(name: str, value: Any) -> None:
    with _lock:
        CALLS[name].append(value)


def make_app() -> df.DFApp:
    app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)

    @app.route(route="echo/{item}", methods=["POST"])
    def echo(req: func.HttpRequest) -> func.HttpResponse:
        try:
            body = req.get_json()
        except ValueError:
            return func.HttpResponse(
                json.dumps({"error": "body must be JSON"}),
                status_code=400,
                mimetype="application/json",
            )
        return func.HttpResponse(
            json.dumps({"item": req.route_params["item"], "body": body, "q": req.params.get("q")}),
            mimetype="application/json",
        )

    @app.route(route="open", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
    def open_route(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("open")

    @app.route(route="boom", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
    def boom(req: func.HttpRequest) -> func.HttpResponse:
        raise RuntimeError("secret internal detail")

    @app.blob_trigger(arg_name="blob", path="drops/{source}/{name}", connection="DropStorage")
    def on_drop(blob: func.InputStream) -> None:
        record("on_drop", {"name": blob.name, "content": blob.read().decode(), "len": blob.length})

    @app.blob_trigger(arg_name="blob", path="clientdrops/{name}", connection="DropStorage")
    def on_client_drop(blob: blob_sdk.BlobClient) -> None:
        # An SDK-type binding: the function reads the blob itself, in chunks.
        chunks = blob.download_blob(max_concurrency=1).chunks()
        record(
            "on_client_drop",
            {
                "type": f"{type(blob).__module__}.{type(blob).__qualname__}",
                "url": blob.url,
                "container": blob.container_name,
                "blob": blob.blob_name,
                "content": b"".join(chunks).decode(),
                "client": id(blob),
            },
        )

    @app.blob_trigger(arg_name="blob", path="broken/{name}", connection="DropStorage")
    def always_fails(blob: func.InputStream) -> None:
        record("always_fails", blob.name)
        raise ValueError("cannot handle this blob")

    @app.event_grid_trigger(arg_name="event")
    def on_event(event: func.EventGridEvent | func.CloudEvent) -> None:
        kind = event.type if isinstance(event, func.CloudEvent) else event.event_type
        record("on_event", {"id": event.id, "type": kind, "data": event.get_json()})

    @app.timer_trigger(arg_name="timer", schedule="0 0 0 1 1 *", run_on_startup=False)
    def yearly(timer: func.TimerRequest) -> None:
        record("yearly", timer.past_due)

    @app.timer_trigger(arg_name="timer", schedule="*/1 * * * * *", run_on_startup=False)
    def every_second(timer: func.TimerRequest) -> None:
        record("every_second", timer.past_due)

    @app.route(route="orchestrators/{name}", methods=["POST"])
    @app.durable_client_input(client_name="client")
    async def start_orchestration(
        req: func.HttpRequest, client: df.DurableOrchestrationClient
    ) -> func.HttpResponse:
        instance_id = await client.start_new(req.route_params["name"], None, req.get_json())
        return client.create_check_status_response(req, instance_id)

    @app.orchestration_trigger(context_name="context")
    def pipeline(context: df.DurableOrchestrationContext):  # type: ignore[no-untyped-def]
        data = context.get_input() or {}
        first = yield context.call_activity("double", data.get("x", 1))
        retry = df.RetryOptions(first_retry_interval_in_milliseconds=200, max_number_of_attempts=3)
        flaky = yield context.call_activity_with_retry("flaky", retry, data.get("key", "k"))
        fan = yield context.task_all([context.call_activity("double", i) for i in range(5)])
        deadline = context.current_utc_datetime + timedelta(seconds=1)
        yield context.create_timer(deadline)
        context.set_custom_status({"stage": "waiting for approval"})
        approval = yield context.wait_for_external_event("approval")
        return {"first": first, "flaky": flaky, "fan": fan, "approval": approval}

    @app.activity_trigger(input_name="value")
    def double(value: int) -> int:
        return value * 2

    @app.activity_trigger(input_name="key")
    def flaky(key: str) -> str:
        with _lock:
            FLAKY_ATTEMPTS[key] += 1
            attempt = FLAKY_ATTEMPTS[key]
        if attempt < 3:
            raise RuntimeError(f"transient failure {attempt}")
        return f"ok after {attempt}"

    return app
