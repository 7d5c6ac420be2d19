"""The Durable Functions HTTP API of the local host, over a :class:`DurableManagement`.

Two route sets serve the same operations:

* ``/durabletask/...`` — the internal RPC API that ``DurableOrchestrationClient`` calls at the
  binding's ``rpcBaseUrl`` (the Functions host serves it on loopback without a key);
* ``/runtime/webhooks/durabletask/...`` — the public management webhooks that
  ``create_check_status_response`` links to; they require ``code=<system key>`` (or the
  ``x-functions-key`` header) — or the host's master key, which Azure accepts on every
  endpoint — and answer 401 otherwise.

Status codes follow the Functions host: status 202 while Pending/Running/ContinuedAsNew/
Suspended, 200 once finished (500 for a failed instance when
``returnInternalServerErrorOnFailure=true``); 404 for unknown ids; 410 for operations on a
finished instance; 409 for starting an id that is still live. Every error body is a JSON
object. The pure helpers at the top (status names, URL building, status bodies) carry the
contract; the aiohttp handlers only parse, call the engine off the event loop and map.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

import durabletask.internal.orchestrator_service_pb2 as pb
import grpc
from aiohttp import web
from google.protobuf import json_format

from adapters.errors import BadInputError, ConflictError, NotFoundError

if TYPE_CHECKING:
    from durabletask.client import OrchestrationState

_log = logging.getLogger(__name__)

PUBLIC_PREFIX = "/runtime/webhooks/durabletask"
RPC_PREFIX = "/durabletask"
CONNECTION_NAME = "Storage"
INSTANCE_PLACEHOLDER = "INSTANCEID"

RUNTIME_STATUS_NAMES: dict[int, str] = {
    pb.ORCHESTRATION_STATUS_RUNNING: "Running",
    pb.ORCHESTRATION_STATUS_COMPLETED: "Completed",
    pb.ORCHESTRATION_STATUS_CONTINUED_AS_NEW: "ContinuedAsNew",
    pb.ORCHESTRATION_STATUS_FAILED: "Failed",
    pb.ORCHESTRATION_STATUS_CANCELED: "Canceled",
    pb.ORCHESTRATION_STATUS_TERMINATED: "Terminated",
    pb.ORCHESTRATION_STATUS_PENDING: "Pending",
    pb.ORCHESTRATION_STATUS_SUSPENDED: "Suspended",
}
TERMINAL_STATUSES = frozenset({"Completed", "Failed", "Canceled", "Terminated"})
IN_PROGRESS_STATUSES = frozenset({"Pending", "Running", "ContinuedAsNew", "Suspended"})


# --------------------------------------------------------------------------------------------
# Pure helpers
# --------------------------------------------------------------------------------------------


def runtime_status_name(value: int) -> str:
    """Durable Functions ``runtimeStatus`` string for a Durable Task status value."""
    try:
        return RUNTIME_STATUS_NAMES[value]
    except KeyError:
        raise BadInputError(f"Unknown orchestration status value {value}") from None


def runtime_status_values(names: str) -> list[int]:
    """Parse a comma-separated ``runtimeStatus`` filter (case-insensitive) into status values."""
    by_name = {name.lower(): value for value, name in RUNTIME_STATUS_NAMES.items()}
    values: list[int] = []
    for raw in names.split(","):
        name = raw.strip().lower()
        if not name:
            continue
        if name not in by_name:
            allowed = ", ".join(sorted(RUNTIME_STATUS_NAMES.values()))
            raise BadInputError(f"Unknown runtimeStatus '{raw.strip()}'; use one of {allowed}")
        values.append(by_name[name])
    return values


def status_http_code(runtime_status: str, *, fail_with_500: bool = False) -> int:
    """HTTP status of a status query: 202 in progress, 200 finished, optionally 500 for Failed."""
    if runtime_status in IN_PROGRESS_STATUSES:
        return 202
    if runtime_status == "Failed" and fail_with_500:
        return 500
    return 200


def format_time(moment: datetime) -> str:
    """UTC ISO-8601 with a ``Z`` suffix, seconds precision, as the Functions host writes it."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    """Parse an ISO-8601 query value (``Z`` allowed) into an aware UTC datetime."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadInputError(f"'{text}' is not an ISO-8601 date-time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _query(task_hub: str, system_key: str) -> str:
    return f"taskHub={quote(task_hub)}&connection={CONNECTION_NAME}&code={quote(system_key)}"


def management_urls(
    base_url: str, task_hub: str, system_key: str, instance_id: str = INSTANCE_PLACEHOLDER
) -> dict[str, str]:
    """The management URLs of one instance, keyed as in ``create_check_status_response``."""
    root = f"{base_url.rstrip('/')}{PUBLIC_PREFIX}/instances/{instance_id}"
    query = _query(task_hub, system_key)
    return {
        "id": instance_id,
        "statusQueryGetUri": f"{root}?{query}",
        "sendEventPostUri": f"{root}/raiseEvent/{{eventName}}?{query}",
        "terminatePostUri": f"{root}/terminate?reason={{text}}&{query}",
        "rewindPostUri": f"{root}/rewind?reason={{text}}&{query}",
        "purgeHistoryDeleteUri": f"{root}?{query}",
        "restartPostUri": f"{root}/restart?{query}",
        "suspendPostUri": f"{root}/suspend?reason={{text}}&{query}",
        "resumePostUri": f"{root}/resume?reason={{text}}&{query}",
    }


def creation_urls(base_url: str, task_hub: str, system_key: str) -> dict[str, str]:
    root = f"{base_url.rstrip('/')}{PUBLIC_PREFIX}/orchestrators/{{functionName}}[/{{instanceId}}]"
    query = _query(task_hub, system_key)
    return {
        "createNewInstancePostUri": f"{root}?{query}",
        "createAndWaitOnNewInstancePostUri": (
            f"{root}?timeout={{timeoutInSeconds}}&pollingInterval={{intervalInSeconds}}&{query}"
        ),
    }


def client_binding_json(base_url: str, task_hub: str, system_key: str) -> str:
    """JSON of the durable client binding, as the Functions host passes it to Python.

    ``DurableOrchestrationClient(client_binding_json(...))`` then talks to ``rpcBaseUrl`` and
    builds management links from ``managementUrls``.
    """
    base = base_url.rstrip("/")
    return json.dumps(
        {
            "taskHubName": task_hub,
            "creationUrls": creation_urls(base, task_hub, system_key),
            "managementUrls": management_urls(base, task_hub, system_key),
            "baseUrl": f"{base}{PUBLIC_PREFIX}",
            "requiredQueryStringParameters": _query(task_hub, system_key).split("&", 1)[1],
            "rpcBaseUrl": f"{base}{RPC_PREFIX}/",
            "httpBaseUrl": "",
        }
    )


def new_system_key() -> str:
    """A random key for the Durable webhooks (the host's ``durabletask_extension`` system key)."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class InstanceView:
    """One instance as the status API shows it (payload fields hold JSON values)."""

    name: str
    instance_id: str
    runtime_status: str
    input: Any
    output: Any
    custom_status: Any
    created_time: datetime
    last_updated_time: datetime
    history: list[dict[str, Any]] | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": self.name,
            "instanceId": self.instance_id,
            "runtimeStatus": self.runtime_status,
            "input": self.input,
            "customStatus": self.custom_status,
            "output": self.output,
            "createdTime": format_time(self.created_time),
            "lastUpdatedTime": format_time(self.last_updated_time),
        }
        if self.history is not None:
            body["historyEvents"] = self.history
        return body


def _json_or_text(text: str | None) -> Any:
    if text is None or text == "":
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def view_from_state(
    state: OrchestrationState,
    *,
    show_input: bool = True,
    history: list[pb.HistoryEvent] | None = None,
    show_history_output: bool = False,
) -> InstanceView:
    """Build the status view; a failed instance's output is the host's failure sentence."""
    status = runtime_status_name(state.runtime_status.value)
    output = _json_or_text(state.serialized_output)
    if status == "Failed" and state.failure_details is not None:
        output = f"Orchestrator function '{state.name}' failed: {state.failure_details.message}"
    return InstanceView(
        name=state.name,
        instance_id=state.instance_id,
        runtime_status=status,
        input=_json_or_text(state.serialized_input) if show_input else None,
        output=output,
        custom_status=_json_or_text(state.serialized_custom_status),
        created_time=state.created_at,
        last_updated_time=state.last_updated_at,
        history=history_events(history, show_output=show_history_output)
        if history is not None
        else None,
    )


_HIDDEN_EVENTS = frozenset({"orchestratorStarted", "orchestratorCompleted"})
_PAYLOAD_FIELDS = frozenset({"input", "result"})


def history_events(events: Iterable[pb.HistoryEvent], *, show_output: bool) -> list[dict[str, Any]]:
    """History as the host's ``historyEvents``: ``EventType``, ``Timestamp`` and the event's fields.

    Replay bookkeeping events are omitted, as the host omits them; payloads of completed tasks
    appear only with ``showHistoryOutput=true``.
    """
    rows: list[dict[str, Any]] = []
    for event in events:
        kind = event.WhichOneof("eventType")
        if kind is None or kind in _HIDDEN_EVENTS:
            continue
        row: dict[str, Any] = {
            "EventType": kind[0].upper() + kind[1:],
            "Timestamp": format_time(event.timestamp.ToDatetime(tzinfo=UTC)),
        }
        fields = json_format.MessageToDict(getattr(event, kind))
        for key, value in fields.items():
            if key in _PAYLOAD_FIELDS and kind != "executionStarted" and not show_output:
                continue
            shown = _json_or_text(value) if key in _PAYLOAD_FIELDS else value
            row[key[0].upper() + key[1:]] = shown
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------
# aiohttp handlers
# --------------------------------------------------------------------------------------------


def _error(status: int, message: str, exception_type: str | None = None) -> web.Response:
    body: dict[str, Any] = {"Message": message, "ExceptionMessage": message}
    if exception_type:
        body["ExceptionType"] = exception_type
    return web.json_response(body, status=status)


def _flag(request: web.Request, name: str, default: bool) -> bool:
    raw = request.query.get(name)
    if raw is None:
        return default
    return raw.strip().lower() in {"true", "1", "yes"}


async def _json_body(request: web.Request) -> Any:
    text = await request.text()
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError:
        raise BadInputError("Only application/json request content is supported") from None


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class DurableManagement(Protocol):
    """What the HTTP API needs of an engine (``LocalDurableEngine`` provides it).

    Blocking calls, run off the event loop; they raise ``NotFoundError``, ``ConflictError`` or
    ``BadInputError``, which the handlers map to 404, 409/410 and 400.
    """

    @property
    def task_hub(self) -> str: ...

    def start_instance(self, name: str, instance_id: str | None, input_value: Any) -> str: ...

    def get_instance(
        self,
        instance_id: str,
        *,
        show_input: bool = True,
        show_history: bool = False,
        show_history_output: bool = False,
    ) -> InstanceView | None: ...

    def list_instances(
        self,
        *,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        statuses: list[int] | None = None,
        prefix: str | None = None,
        show_input: bool = False,
    ) -> list[InstanceView]: ...

    def raise_event(self, instance_id: str, event_name: str, data: Any) -> None: ...

    def terminate(self, instance_id: str, reason: str | None) -> None: ...

    def suspend(self, instance_id: str, reason: str | None) -> None: ...

    def resume(self, instance_id: str, reason: str | None) -> None: ...

    def rewind(self, instance_id: str, reason: str | None) -> None: ...

    def restart(self, instance_id: str, *, new_instance_id: bool) -> str: ...

    def purge(self, instance_id: str) -> int: ...

    def purge_by(
        self,
        *,
        created_from: datetime | None,
        created_to: datetime | None,
        statuses: list[int] | None,
    ) -> int: ...


class _DurableApi:
    """Handlers shared by the RPC and the public route sets."""

    def __init__(
        self,
        engine: DurableManagement,
        base_url: Callable[[], str],
        system_key: str,
        master_key: str | None = None,
    ) -> None:
        self._engine = engine
        self._base_url = base_url
        self._system_key = system_key
        self._accepted = tuple(k.encode() for k in (system_key, master_key) if k)

    def guarded(self, handler: Handler, *, require_key: bool) -> Handler:
        async def run(request: web.Request) -> web.StreamResponse:
            if require_key and not self._authorised(request):
                return _error(401, "A valid 'code' query parameter (system key) is required.")
            try:
                return await handler(request)
            except Exception as exc:  # noqa: BLE001 - the API boundary answers JSON, never a traceback
                return self._error_for(exc, request)

        return run

    def _authorised(self, request: web.Request) -> bool:
        supplied = (
            request.query.get("code") or request.headers.get("x-functions-key") or ""
        ).encode()
        # Compare with every accepted key, so the time taken does not say which one matched.
        matches = [secrets.compare_digest(supplied, key) for key in self._accepted]
        return any(matches)

    @classmethod
    def _error_for(cls, exc: Exception, request: web.Request) -> web.Response:
        if isinstance(exc, BadInputError):
            return _error(400, str(exc), "System.ArgumentException")
        if isinstance(exc, NotFoundError):
            return _error(404, str(exc))
        if isinstance(exc, ConflictError):
            return _error(409, str(exc), "System.InvalidOperationException")
        if isinstance(exc, grpc.RpcError):
            return cls._grpc_error(exc, request)
        _log.error("durable API %s %s failed", request.method, request.path, exc_info=exc)
        return _error(500, "Something went wrong while processing your request")

    @staticmethod
    def _grpc_error(exc: Any, request: web.Request) -> web.Response:
        code = exc.code()
        detail = exc.details() or str(code)
        if code == grpc.StatusCode.NOT_FOUND:
            return _error(404, detail)
        if code == grpc.StatusCode.FAILED_PRECONDITION:
            return _error(410, detail)
        if code == grpc.StatusCode.ALREADY_EXISTS:
            return _error(409, detail, "System.InvalidOperationException")
        _log.error("durable API %s %s: engine error %s", request.method, request.path, detail)
        return _error(500, "Something went wrong while processing your request")

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        # Engine calls are blocking gRPC round trips; keep them off the event loop.
        return await asyncio.to_thread(fn, *args, **kwargs)

    def _check_status_payload(self, instance_id: str) -> dict[str, str]:
        return management_urls(
            self._base_url(), self._engine.task_hub, self._system_key, quote(instance_id, safe="")
        ) | {"id": instance_id}

    async def _existing(self, instance_id: str) -> InstanceView:
        view: InstanceView | None = await self._call(
            self._engine.get_instance, instance_id, show_input=False
        )
        if view is None:
            raise NotFoundError(f"No instance with ID '{instance_id}' found.")
        return view

    # -- operations -------------------------------------------------------------------------

    async def start(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        instance_id = request.match_info.get("instance_id") or None
        body = await _json_body(request)
        new_id = await self._call(self._engine.start_instance, name, instance_id, body)
        payload = self._check_status_payload(new_id)
        return web.json_response(
            payload,
            status=202,
            headers={"Location": payload["statusQueryGetUri"], "Retry-After": "10"},
        )

    async def status(self, request: web.Request) -> web.StreamResponse:
        instance_id = request.match_info["instance_id"]
        view = await self._call(
            self._engine.get_instance,
            instance_id,
            show_input=_flag(request, "showInput", True),
            show_history=_flag(request, "showHistory", False),
            show_history_output=_flag(request, "showHistoryOutput", False),
        )
        if view is None:
            return _error(404, f"No instance with ID '{instance_id}' found.")
        code = status_http_code(
            view.runtime_status,
            fail_with_500=_flag(request, "returnInternalServerErrorOnFailure", False),
        )
        headers: dict[str, str] = {}
        if code == 202:
            headers = {
                "Location": self._check_status_payload(instance_id)["statusQueryGetUri"],
                "Retry-After": "10",
            }
        return web.json_response(view.to_json(), status=code, headers=headers)

    async def list_instances(self, request: web.Request) -> web.StreamResponse:
        created_from = request.query.get("createdTimeFrom")
        created_to = request.query.get("createdTimeTo")
        statuses = request.query.get("runtimeStatus")
        views = await self._call(
            self._engine.list_instances,
            created_from=parse_time(created_from) if created_from else None,
            created_to=parse_time(created_to) if created_to else None,
            statuses=runtime_status_values(statuses) if statuses else None,
            prefix=request.query.get("instanceIdPrefix") or None,
            show_input=_flag(request, "showInput", False),
        )
        return web.json_response([v.to_json() for v in views])

    async def raise_event(self, request: web.Request) -> web.StreamResponse:
        instance_id = request.match_info["instance_id"]
        event_name = request.match_info["event_name"]
        data = await _json_body(request)
        view = await self._existing(instance_id)
        if view.runtime_status in TERMINAL_STATUSES:
            return _error(
                410, f"Instance with ID {instance_id} is gone: either completed or failed"
            )
        await self._call(self._engine.raise_event, instance_id, event_name, data)
        return web.json_response({"id": instance_id, "eventName": event_name}, status=202)

    async def operation(self, request: web.Request) -> web.StreamResponse:
        instance_id = request.match_info["instance_id"]
        op = request.match_info["operation"]
        reason = request.query.get("reason")
        view = await self._existing(instance_id)
        finished = view.runtime_status in TERMINAL_STATUSES
        if op == "restart":
            new_id = _flag(request, "restartWithNewInstanceId", True)
            restarted = await self._call(self._engine.restart, instance_id, new_instance_id=new_id)
            return web.json_response(restarted, status=202)
        if op == "rewind":
            if view.runtime_status != "Failed":
                return _error(410, "The rewind operation is only supported on failed instances.")
            await self._call(self._engine.rewind, instance_id, reason)
        elif finished:
            return _error(410, f"Instance '{instance_id}' is already {view.runtime_status}.")
        elif op == "terminate":
            await self._call(self._engine.terminate, instance_id, reason)
        elif op == "suspend":
            await self._call(self._engine.suspend, instance_id, reason)
        elif op == "resume":
            await self._call(self._engine.resume, instance_id, reason)
        else:
            return _error(404, f"Unknown instance operation '{op}'.")
        return web.json_response({"id": instance_id, "operation": op}, status=202)

    async def purge(self, request: web.Request) -> web.StreamResponse:
        instance_id = request.match_info["instance_id"]
        view = await self._existing(instance_id)
        if view.runtime_status not in TERMINAL_STATUSES:
            raise ConflictError(
                f"Instance '{instance_id}' is {view.runtime_status}; terminate it before purging."
            )
        deleted = await self._call(self._engine.purge, instance_id)
        return web.json_response({"instancesDeleted": deleted}, status=200 if deleted else 404)

    async def purge_by(self, request: web.Request) -> web.StreamResponse:
        created_from = request.query.get("createdTimeFrom")
        if not created_from:
            raise BadInputError("createdTimeFrom is required to purge instances by filter")
        created_to = request.query.get("createdTimeTo")
        statuses = request.query.get("runtimeStatus")
        deleted = await self._call(
            self._engine.purge_by,
            created_from=parse_time(created_from),
            created_to=parse_time(created_to) if created_to else None,
            statuses=runtime_status_values(statuses) if statuses else None,
        )
        return web.json_response({"instancesDeleted": deleted}, status=200 if deleted else 404)


def add_durable_routes(
    app: web.Application,
    engine: DurableManagement,
    *,
    base_url: Callable[[], str],
    system_key: str,
    master_key: str | None = None,
) -> None:
    """Register the RPC routes (no key) and the public webhooks (system key, or the host's
    ``master_key``) on ``app``.

    ``base_url`` returns the host's public origin (``http://127.0.0.1:<port>``); it is called
    per request because the port is known only once the site is bound.
    """
    if not system_key:
        raise BadInputError("The durable system key must not be empty")
    api = _DurableApi(engine, base_url, system_key, master_key)
    for prefix, require_key in ((RPC_PREFIX, False), (PUBLIC_PREFIX, True)):

        def route(handler: Handler, require_key: bool = require_key) -> Handler:
            return api.guarded(handler, require_key=require_key)

        instance = f"{prefix}/instances/{{instance_id}}"
        app.router.add_post(f"{prefix}/orchestrators/{{name}}", route(api.start))
        app.router.add_post(f"{prefix}/orchestrators/{{name}}/{{instance_id}}", route(api.start))
        app.router.add_get(f"{prefix}/instances", route(api.list_instances))
        app.router.add_get(f"{prefix}/instances/", route(api.list_instances))
        app.router.add_delete(f"{prefix}/instances", route(api.purge_by))
        app.router.add_delete(f"{prefix}/instances/", route(api.purge_by))
        app.router.add_get(instance, route(api.status))
        app.router.add_delete(instance, route(api.purge))
        app.router.add_post(f"{instance}/raiseEvent/{{event_name}}", route(api.raise_event))
        app.router.add_post(
            f"{instance}/{{operation:terminate|suspend|resume|rewind|restart}}",
            route(api.operation),
        )
