"""A local Functions host: serves an app's ``get_functions()`` on real parts.

What it serves (see docs/local-runtime.md for every known difference from Azure):

* HTTP triggers under ``/api/<route>`` with function-key auth (``code`` query parameter or
  ``x-functions-key`` header) for non-anonymous routes;
* Event Grid triggers at ``/runtime/webhooks/eventgrid?functionName=X`` (Event Grid schema with
  the SubscriptionValidation handshake, CloudEvents with the OPTIONS handshake, arrays and single
  objects; ``code`` must be the ``eventgrid_extension`` system key, or the master key);
* blob triggers by polling the container: the host's ``{name}`` template semantics, a receipt per
  function and blob ETag so each blob version runs once, and after 5 failed tries a message on
  the ``webjobs-blobtrigger-poison`` queue. A function taking ``func.InputStream`` gets the
  blob's bytes; one taking an SDK type (``BlobClient``…) gets model binding data that the
  azurefunctions extension turns into the real client, as the worker does. At most host.json
  ``extensions.blobs.maxDegreeOfParallelism`` blob invocations run at once, across the app;
* timer triggers on their NCRONTAB schedule, and on demand through the admin API
  ``POST /admin/functions/{name}`` (master key), as the real host offers;
* orchestrations and activities on the Durable Task engine (``local.hosting.durable``), the durable
  client binding, and the Durable HTTP management API.

Azure's limits apply here too, so a local run fails where Azure would: every invocation is
bounded by host.json ``functionTimeout`` (and an HTTP response by the load balancer's 230 s);
Event Grid deliveries and topic publishes are bounded by Event Grid's event and batch sizes.

The host runs its own event loop in a background thread; ``start()`` and ``stop()`` are
synchronous so tests and the CLI can drive it simply. Every error body is a JSON object.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import azure.functions as func
from aiohttp import web

from adapters.events import event_grid_batch_problem
from adapters.settings import Connection
from local.hosting import invoke
from local.hosting.functions import FunctionSpec, index_functions
from local.hosting.keys import HostKeys

if TYPE_CHECKING:
    from azure.storage.blob import BlobServiceClient

    from local.hosting.durable import LocalDurableEngine

log = logging.getLogger("local.hosting.host")

HOSTS_CONTAINER = "azure-webjobs-hosts"
POISON_QUEUE = "webjobs-blobtrigger-poison"
VALIDATION_EVENT = "Microsoft.EventGrid.SubscriptionValidationEvent"
DEFAULT_HOST_JSON = Path(__file__).resolve().parents[2] / "host.json"
# Function timeouts (learn.microsoft.com, Azure Functions "Function app timeout duration"):
# host.json functionTimeout bounds every execution; without it the Flex Consumption plan the
# app deploys to uses 30 minutes. "-1" means unbounded (Flex, Premium, Dedicated). Whatever
# functionTimeout says, an HTTP-triggered function must respond within 230 s, the idle
# timeout of the Azure Load Balancer in front of the app.
FLEX_DEFAULT_TIMEOUT = timedelta(minutes=30)
HTTP_RESPONSE_LIMIT = timedelta(seconds=230)
_TIME_SPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})(?:\.\d+)?$")


def _host_json(host_json: Path) -> dict[str, Any] | None:
    """host.json as a dict; ``None`` when the file is missing. A file that is not a JSON
    object raises ``ValueError``, as the real host refuses to start on a bad host.json."""
    try:
        config = json.loads(host_json.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{host_json.name} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise ValueError(f"{host_json.name} must be a JSON object")
    return config


def read_function_timeout(host_json: Path) -> timedelta | None:
    """host.json ``functionTimeout`` as a ``timedelta``; ``None`` for unbounded (``-1``).

    A missing file or setting gives the Flex Consumption default; a malformed value raises
    ``ValueError`` naming it, as the real host refuses to start on a bad host.json.
    """
    config = _host_json(host_json)
    raw = None if config is None else config.get("functionTimeout")
    if raw is None:
        return FLEX_DEFAULT_TIMEOUT
    text = str(raw).strip()
    if text == "-1":
        return None
    match = _TIME_SPAN.match(text)
    if match is None:
        raise ValueError(
            f"{host_json.name}: functionTimeout {raw!r} is not a time span (hh:mm:ss) or -1"
        )
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    limit = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    if limit <= timedelta(0):
        raise ValueError(f"{host_json.name}: functionTimeout must be positive, got {raw!r}")
    return limit


def read_blob_parallelism(host_json: Path) -> int:
    """host.json ``extensions.blobs.maxDegreeOfParallelism``: how many blob-triggered
    invocations run at once across the app (the blobs extension's default, 8 x the cores,
    when it is not set). A value below 1 or not an integer raises ``ValueError``."""
    config = _host_json(host_json) or {}
    extensions = config.get("extensions") or {}
    blobs = extensions.get("blobs") if isinstance(extensions, dict) else None
    raw = blobs.get("maxDegreeOfParallelism") if isinstance(blobs, dict) else None
    if raw is None:
        return 8 * (os.cpu_count() or 1)
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
        raise ValueError(
            f"{host_json.name}: extensions.blobs.maxDegreeOfParallelism must be an integer "
            f">= 1, got {raw!r}"
        )
    return raw


def host_json_settings(host_json: Path) -> dict[str, Any]:
    """What ``HostConfig`` takes from an app's host.json, as keyword arguments."""
    return {
        "function_timeout": read_function_timeout(host_json),
        "blob_parallelism": read_blob_parallelism(host_json),
    }


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def json_error(status: int, code: str, message: str, **extra: Any) -> web.Response:
    return web.json_response(error_body(code, message, **extra), status=status)


@dataclass
class HostConfig:
    """Knobs of the local host. ``state_dir`` holds keys; settings come from ``environ``."""

    state_dir: Path
    environ: Mapping[str, str]
    task_hub: str = "mlopshub"
    host_id: str = "local-host"
    port: int = 0
    blob_poll_interval: float = 1.0
    max_blob_attempts: int = 5
    durable_concurrency: int = 16
    # Local stand-ins for Event Grid topics: topic -> {function name: [event types]}.
    topics: Mapping[str, Mapping[str, tuple[str, ...]]] = field(default_factory=dict)
    # host.json functionTimeout, applied to every invocation (None: unbounded).
    function_timeout: timedelta | None = field(
        default_factory=lambda: read_function_timeout(DEFAULT_HOST_JSON)
    )
    # host.json extensions.blobs.maxDegreeOfParallelism: blob invocations at once, app-wide.
    blob_parallelism: int = field(default_factory=lambda: read_blob_parallelism(DEFAULT_HOST_JSON))
    # When set, the host's event loop runs in asyncio debug mode and logs every callback that
    # holds the loop longer than this many seconds ("Executing <Handle ...> took X seconds").
    slow_callback_seconds: float | None = None


@dataclass
class BlobTriggerStats:
    invocations: int = 0
    completed: int = 0
    failures: int = 0
    poisoned: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, what: str) -> None:
        """Add one to counter ``what`` (blob invocations may run on several threads)."""
        with self._lock:
            setattr(self, what, getattr(self, what) + 1)


@dataclass
class _Receipt:
    attempts: int
    status: str  # "running" | "failed" | "completed" | "poisoned"


class LocalFunctionsHost:
    """Serve one function app locally. ``functions`` is the app's ``get_functions()`` result."""

    def __init__(self, functions: list[Any], config: HostConfig) -> None:
        self.config = config
        self.specs: list[FunctionSpec] = index_functions(functions, config.environ)
        self.by_name = {s.name: s for s in self.specs}
        self.keys = HostKeys.load_or_create(config.state_dir / "host-keys.json")
        self.blob_stats: dict[str, BlobTriggerStats] = {
            s.name: BlobTriggerStats() for s in self.specs if s.trigger_type == "blobTrigger"
        }
        self._http_specs = sorted(
            (s for s in self.specs if s.trigger_type == "httpTrigger"),
            key=lambda s: -(s.route.literal_segments if s.route else 0),
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._blob_clients: dict[str, BlobServiceClient] = {}
        self._blob_locks: dict[str, threading.Lock] = {}
        # Every blob-triggered invocation takes a slot, whichever function it is for.
        self._blob_slots = threading.BoundedSemaphore(config.blob_parallelism)
        self._blob_pool: ThreadPoolExecutor | None = None
        self._durable: LocalDurableEngine | None = None
        self._port = 0
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self._durable_client_json: str | None = None
        self._sdk_objects: dict[tuple[Any, ...], Any] = {}
        self._exported: dict[str, str] = {}

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def durable(self) -> LocalDurableEngine | None:
        return self._durable

    def start(self, timeout: float = 30.0) -> LocalFunctionsHost:
        self._export_sdk_connections()
        if self.blob_stats:
            self._blob_pool = ThreadPoolExecutor(
                max_workers=self.config.blob_parallelism, thread_name_prefix="blob-trigger"
            )
        self._start_durable()
        self._thread = threading.Thread(target=self._run_loop, name="functions-host", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise RuntimeError("the local Functions host did not start in time")
        if self._start_error is not None:
            self.stop()
            raise RuntimeError(f"the local Functions host failed to start: {self._start_error}")
        log.info("host started at %s with %d functions", self.base_url, len(self.specs))
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is not None and self._thread is not None and self._thread.is_alive():
            fut = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
            with contextlib.suppress(Exception):
                fut.result(timeout=15)
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(timeout=15)
        self._thread = None
        self._loop = None
        if self._durable is not None:
            self._durable.stop()
            self._durable = None
        for client in self._blob_clients.values():
            with contextlib.suppress(Exception):
                client.close()
        self._blob_clients.clear()
        if self._blob_pool is not None:
            self._blob_pool.shutdown(wait=True, cancel_futures=True)
            self._blob_pool = None
        self._sdk_objects.clear()
        for key, value in self._exported.items():
            if os.environ.get(key) == value:
                del os.environ[key]
        self._exported.clear()

    def __enter__(self) -> LocalFunctionsHost:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _export_sdk_connections(self) -> None:
        """Make SDK-type bindings' connection settings visible to the extensions.

        The azurefunctions extensions read a binding's connection from the worker's process
        environment (``os.environ``), which the real host fills from the app settings. Here the
        worker is this process: settings the host was given but the environment lacks are
        exported for the host's lifetime; a conflicting value stops start-up.
        """
        names: set[str] = set()
        for spec in self.specs:
            for binding in spec.bindings:
                if binding.sdk_type is not None:
                    names.add(str(binding.get("connection") or "AzureWebJobsStorage"))
        problems: list[str] = []
        for name in sorted(names):
            keys = [k for k in self.config.environ if k == name or k.startswith(f"{name}__")]
            if not keys:
                problems.append(f"connection setting {name} (or {name}__serviceUri) is not set")
            for key in keys:
                value = self.config.environ[key]
                current = os.environ.get(key)
                if current is None:
                    os.environ[key] = value
                    self._exported[key] = value
                elif current != value:
                    problems.append(
                        f"{key} differs between the host's settings and the process "
                        "environment the binding extensions read"
                    )
        if problems:
            for key, value in self._exported.items():
                if os.environ.get(key) == value:
                    del os.environ[key]
            self._exported.clear()
            raise RuntimeError("SDK-type bindings cannot be served: " + "; ".join(problems))

    def _start_durable(self) -> None:
        orchestrators = {
            s.durable_name or s.name: getattr(s.func, "orchestrator_function", s.func)
            for s in self.specs
            if s.trigger_type == "orchestrationTrigger"
        }
        activities = {
            s.durable_name or s.name: invoke.activity_callable(
                s, lambda: self._loop, self.config.function_timeout
            )
            for s in self.specs
            if s.trigger_type == "activityTrigger"
        }
        needs_client = any(b.type == "durableClient" for s in self.specs for b in s.extra_inputs)
        if not (orchestrators or activities or needs_client):
            return
        from local.hosting.durable import LocalDurableEngine

        self._durable = LocalDurableEngine(
            task_hub=self.config.task_hub,
            orchestrators=orchestrators,
            activities=activities,
            max_concurrency=self.config.durable_concurrency,
        )
        self._durable.start()

    def _run_loop(self) -> None:
        loop = asyncio.new_event_loop()
        if self.config.slow_callback_seconds is not None:
            loop.set_debug(True)
            loop.slow_callback_duration = self.config.slow_callback_seconds
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._startup())
        except BaseException as exc:  # noqa: BLE001 - reported to start()
            self._start_error = exc
            self._started.set()
            loop.close()
            return
        self._started.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _startup(self) -> None:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_route("*", "/api/{tail:.*}", self._handle_http)
        app.router.add_route("*", "/api", self._handle_http)
        app.router.add_route("*", "/runtime/webhooks/eventgrid", self._handle_eventgrid)
        app.router.add_post("/runtime/local/topics/{topic}", self._handle_topic)
        app.router.add_get("/admin/host/status", self._handle_host_status)
        app.router.add_get("/admin/functions", self._handle_list_functions)
        app.router.add_post("/admin/functions/{name}", self._handle_admin_invoke)
        if self._durable is not None:
            self._durable.add_routes(
                app,
                base_url=lambda: self.base_url,
                system_key=self.keys.system_keys["durabletask_extension"],
                master_key=self.keys.master,
            )
        app.router.add_route("*", "/{tail:.*}", self._handle_not_found)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.config.port)
        await site.start()
        self._runner = runner
        sockets = getattr(site._server, "sockets", None) or []
        self._port = int(sockets[0].getsockname()[1]) if sockets else self.config.port
        if self._durable is not None:
            self._durable_client_json = self._durable.client_binding(
                self.base_url, self.keys.system_keys["durabletask_extension"]
            )
        for spec in self.specs:
            if spec.trigger_type == "blobTrigger":
                self._tasks.append(asyncio.create_task(self._poll_blobs(spec)))
            elif spec.trigger_type == "timerTrigger":
                self._tasks.append(asyncio.create_task(self._run_timer(spec)))

    async def _shutdown(self) -> None:
        from azure.durable_functions.models.utils import http_utils

        # The durable client's shared HTTP session belongs to this loop, which is closing.
        await http_utils._close_session()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------------ helpers

    def url_for(self, spec_name: str, *, with_key: bool = True) -> str:
        """The invocation URL of a function, with a key where one is needed."""
        spec = self.by_name[spec_name]
        if spec.trigger_type == "eventGridTrigger":
            key = quote(self.keys.system_keys["eventgrid_extension"])
            return f"{self.base_url}/runtime/webhooks/eventgrid?functionName={quote(spec.name)}" + (
                f"&code={key}" if with_key else ""
            )
        if spec.trigger_type == "httpTrigger" and spec.route is not None:
            url = f"{self.base_url}/api/{spec.route.template}"
            if with_key and spec.auth_level != "anonymous":
                url += f"?code={quote(self.keys.default_function_key)}"
            return url
        return f"{self.base_url}/admin/functions/{quote(spec.name)}"

    def _extra_inputs(self, spec: FunctionSpec) -> dict[str, Any]:
        inputs: dict[str, Any] = {}
        for binding in spec.extra_inputs:
            if binding.type == "durableClient":
                if self._durable_client_json is None:
                    raise RuntimeError("the durable engine is not running")
                inputs[binding.name] = invoke.s(self._durable_client_json)
        return inputs

    @staticmethod
    def _presented_key(request: web.Request) -> str | None:
        return request.query.get("code") or request.headers.get("x-functions-key")

    # ------------------------------------------------------------------ HTTP triggers

    async def _handle_http(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info.get("tail", "")
        matched: list[tuple[FunctionSpec, dict[str, str]]] = []
        for spec in self._http_specs:
            assert spec.route is not None
            values = spec.route.match(path)
            if values is not None:
                matched.append((spec, values))
        if not matched:
            return json_error(404, "not_found", f"no function is bound to /api/{path}")
        allowed = [(s, v) for s, v in matched if request.method in s.methods]
        if not allowed:
            methods = sorted({m for s, _ in matched for m in s.methods})
            return json_error(
                405, "method_not_allowed", f"/api/{path} accepts {', '.join(methods)}"
            )
        spec, route_values = allowed[0]
        if not self.keys.allows(spec.auth_level, self._presented_key(request)):
            return json_error(
                401,
                "unauthorized",
                f"function {spec.name} needs a {spec.auth_level} key: pass it as ?code= "
                "or the x-functions-key header (keys are in .local/host-keys.json)",
            )
        body = await request.read()
        datum = invoke.http_datum(
            request.method,
            str(request.url),
            dict(request.headers),
            dict(request.query),
            route_values,
            body,
        )
        limit, limit_name = self._http_deadline()
        try:
            inv = invoke.Invocation(trigger=datum, inputs=self._extra_inputs(spec))
            result = await invoke.call_async(spec, inv, limit, limit_name=limit_name)
        except invoke.FunctionTimeoutError as exc:
            log.error("%s", exc)
            status = 502 if limit_name == _HTTP_LIMIT_NAME else 500
            return json_error(status, "function_timeout", str(exc))
        except Exception:
            log.exception("function %s failed", spec.name)
            return json_error(
                500, "function_failed", f"function {spec.name} failed; see the host log"
            )
        return self._to_response(spec, result)

    def _http_deadline(self) -> tuple[timedelta, str]:
        """The tighter of functionTimeout and the load balancer's 230 s, and its name."""
        limit = self.config.function_timeout
        if limit is None or limit > HTTP_RESPONSE_LIMIT:
            return HTTP_RESPONSE_LIMIT, _HTTP_LIMIT_NAME
        return limit, "host.json functionTimeout"

    @staticmethod
    def _to_response(spec: FunctionSpec, result: Any) -> web.StreamResponse:
        if result is None:
            return web.Response(status=204)
        if isinstance(result, str):
            return web.Response(text=result, content_type="text/plain")
        if isinstance(result, func.HttpResponse):
            headers = {k: v for k, v in result.headers.items() if k.lower() != "content-length"}
            if "content-type" not in {k.lower() for k in headers}:
                ct = result.mimetype
                if ct.startswith("text/"):
                    ct = f"{ct}; charset={result.charset}"
                headers["Content-Type"] = ct
            return web.Response(status=result.status_code, body=result.get_body(), headers=headers)
        log.error("function %s returned %s, not an HttpResponse", spec.name, type(result).__name__)
        return json_error(
            500, "bad_return_value", f"function {spec.name} returned {type(result).__name__}"
        )

    async def _handle_not_found(self, request: web.Request) -> web.StreamResponse:
        return json_error(404, "not_found", f"nothing is served at {request.path}")

    # ------------------------------------------------------------------ admin API

    async def _handle_host_status(self, request: web.Request) -> web.StreamResponse:
        if not self.keys.allows("admin", self._presented_key(request)):
            return json_error(401, "unauthorized", "the admin API needs the master key")
        return web.json_response(
            {"id": self.config.host_id, "state": "Running", "functions": len(self.specs)}
        )

    async def _handle_list_functions(self, request: web.Request) -> web.StreamResponse:
        if not self.keys.allows("admin", self._presented_key(request)):
            return json_error(401, "unauthorized", "the admin API needs the master key")
        return web.json_response(
            {
                "functions": [
                    {"name": s.name, "trigger": s.trigger_type, "description": s.describe()}
                    for s in self.specs
                ]
            }
        )

    async def _handle_admin_invoke(self, request: web.Request) -> web.StreamResponse:
        """``POST /admin/functions/{name}`` runs a non-HTTP function now (timers mainly)."""
        if not self.keys.allows("admin", self._presented_key(request)):
            return json_error(401, "unauthorized", "the admin API needs the master key")
        name = request.match_info["name"]
        spec = self.by_name.get(name)
        if spec is None:
            return json_error(404, "not_found", f"no function named {name!r}")
        if spec.trigger_type != "timerTrigger":
            return json_error(
                400,
                "not_invocable",
                f"function {name} has a {spec.trigger_type}; only timer functions are "
                "invoked through the admin API locally",
            )
        self._tasks.append(asyncio.create_task(self._invoke_timer(spec, past_due=False)))
        return web.json_response({"status": "accepted", "function": name}, status=202)

    # ------------------------------------------------------------------ Event Grid

    async def _handle_eventgrid(self, request: web.Request) -> web.StreamResponse:
        if request.method == "OPTIONS":
            origin = request.headers.get("WebHook-Request-Origin")
            if not origin:
                return json_error(400, "bad_handshake", "WebHook-Request-Origin header missing")
            return web.Response(
                status=200,
                headers={"WebHook-Allowed-Origin": origin, "WebHook-Allowed-Rate": "*"},
            )
        if request.method != "POST":
            return json_error(405, "method_not_allowed", "the Event Grid webhook accepts POST")
        name = request.query.get("functionName", "")
        spec = self.by_name.get(name)
        if spec is None:
            return json_error(404, "not_found", f"no function named {name!r}")
        if spec.trigger_type != "eventGridTrigger":
            return json_error(
                400, "not_event_grid", f"function {name} is not an Event Grid trigger"
            )
        if not self.keys.allows_system("eventgrid_extension", self._presented_key(request)):
            return json_error(
                401, "unauthorized", "the Event Grid webhook needs the eventgrid_extension key"
            )
        raw = await request.read()
        try:
            payload = json.loads(raw) if raw.strip() else None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return json_error(400, "bad_json", f"the body is not valid JSON: {exc}")
        events = [payload] if isinstance(payload, dict) else payload
        if not isinstance(events, list) or not events:
            return json_error(400, "bad_payload", "expected an event object or a non-empty array")
        too_big = event_grid_batch_problem(len(raw), events)
        if too_big is not None:
            # Event Grid never delivers such a batch; whoever posted it is not behaving like it.
            return json_error(413, "payload_too_large", f"{name}: {too_big}")
        problems = [
            f"item {i}: {p}" for i, e in enumerate(events) if (p := _event_problem(e)) is not None
        ]
        if problems:
            return json_error(400, "bad_event", "; ".join(problems[:10]))
        kind = request.headers.get("aeg-event-type", "Notification")
        if kind == "SubscriptionValidation" or any(
            e.get("eventType") == VALIDATION_EVENT for e in events
        ):
            code = (events[0].get("data") or {}).get("validationCode")
            if not code:
                return json_error(400, "bad_handshake", "validation event without validationCode")
            return web.json_response({"validationResponse": code})
        if kind == "SubscriptionDeletion":
            return web.json_response({})
        failed: list[str] = []
        for event in events:
            inv = invoke.Invocation(trigger=invoke.j(event), inputs=self._extra_inputs(spec))
            try:
                await invoke.call_async(spec, inv, self.config.function_timeout)
            except Exception:
                log.exception("function %s failed on event %s", spec.name, event.get("id"))
                failed.append(str(event.get("id")))
        if failed:
            # Event Grid redelivers the batch on any non-2xx; handlers must be idempotent.
            return json_error(
                500, "function_failed", f"function {spec.name} failed", event_ids=failed
            )
        return web.json_response({"delivered": len(events)})

    def topic_url(self, topic: str) -> str:
        """Where a local publisher posts events for ``topic`` (the Event Grid topic stand-in)."""
        key = quote(self.keys.system_keys["eventgrid_extension"])
        return f"{self.base_url}/runtime/local/topics/{quote(topic)}?code={key}"

    async def _handle_topic(self, request: web.Request) -> web.StreamResponse:
        """Deliver a batch to every function subscribed to each event's type.

        This plays Event Grid's part locally: the subscriptions are the host's ``topics``
        table, each delivery goes through the same webhook handling as a real push, and the
        publisher sees a failure (500) if any subscriber failed, so it can retry.
        """
        topic = request.match_info["topic"]
        subscriptions = self.config.topics.get(topic)
        if subscriptions is None:
            return json_error(404, "not_found", f"no local topic {topic!r}")
        if not self.keys.allows_system("eventgrid_extension", self._presented_key(request)):
            return json_error(401, "unauthorized", "topics need the eventgrid_extension key")
        raw = await request.read()
        try:
            payload = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return json_error(400, "bad_json", f"the body is not valid JSON: {exc}")
        events = [payload] if isinstance(payload, dict) else payload
        if not isinstance(events, list):
            return json_error(400, "bad_payload", "expected an event object or an array")
        too_big = event_grid_batch_problem(len(raw), events)
        if too_big is not None:
            # What Event Grid answers a publisher for an oversized event or batch.
            return json_error(413, "payload_too_large", f"topic {topic}: {too_big}")
        delivered = 0
        failed: list[str] = []
        for event in events:
            if _event_problem(event) is not None:
                return json_error(400, "bad_event", str(_event_problem(event)))
            kind = event.get("type") if "specversion" in event else event.get("eventType")
            for function, kinds in subscriptions.items():
                spec = self.by_name.get(function)
                if spec is None or kind not in kinds:
                    continue
                inv = invoke.Invocation(trigger=invoke.j(event), inputs=self._extra_inputs(spec))
                try:
                    await invoke.call_async(spec, inv, self.config.function_timeout)
                    delivered += 1
                except Exception:
                    log.exception("function %s failed on event %s", function, event.get("id"))
                    failed.append(f"{function}:{event.get('id')}")
        if failed:
            return json_error(500, "delivery_failed", "some subscribers failed", failed=failed)
        return web.json_response({"events": len(events), "deliveries": delivered})

    # ------------------------------------------------------------------ blob triggers

    def _blob_client(self, connection_name: str) -> BlobServiceClient:
        client = self._blob_clients.get(connection_name)
        if client is None:
            from adapters.datalake import blob_service_client

            client = blob_service_client(_connection(connection_name, self.config.environ))
            self._blob_clients[connection_name] = client
        return client

    async def _poll_blobs(self, spec: FunctionSpec) -> None:
        while True:
            try:
                await asyncio.to_thread(self._scan_blobs, spec)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("blob scan for %s failed; retrying", spec.name)
            await asyncio.sleep(self.config.blob_poll_interval)

    def scan_now(self, name: str) -> None:
        """Run one blob scan for function ``name`` synchronously (tests, demos)."""
        self._scan_blobs(self.by_name[name])

    def _scan_blobs(self, spec: FunctionSpec) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        lock = self._blob_locks.setdefault(spec.name, threading.Lock())
        if not lock.acquire(blocking=False):
            return
        try:
            assert spec.blob_path is not None
            client = self._blob_client(spec.blob_connection)
            container = client.get_container_client(spec.blob_path.container)
            try:
                blobs = list(container.list_blobs(name_starts_with=spec.blob_path.prefix or None))
            except ResourceNotFoundError:
                return
            running = []
            for props in blobs:
                params = spec.blob_path.match(spec.blob_path.container, props.name)
                if params is None:
                    continue
                # As the blobs extension: at most maxDegreeOfParallelism invocations at once.
                self._blob_slots.acquire()
                try:
                    running.append(self._blob_invoker().submit(self._process_in_slot, spec,
                                                                props, params))  # fmt: skip
                except BaseException:
                    self._blob_slots.release()
                    raise
            for future in running:
                future.result()
        finally:
            lock.release()

    def _blob_invoker(self) -> ThreadPoolExecutor:
        if self._blob_pool is None:  # scan_now on a host that was not started
            self._blob_pool = ThreadPoolExecutor(
                max_workers=self.config.blob_parallelism, thread_name_prefix="blob-trigger"
            )
        return self._blob_pool

    def _process_in_slot(self, spec: FunctionSpec, props: Any, params: dict[str, str]) -> None:
        try:
            self._process_blob(spec, props, params)
        finally:
            self._blob_slots.release()

    def _receipt_name(self, spec: FunctionSpec, container: str, blob: str, etag: str) -> str:
        function_id = f"{self.config.host_id}.Functions.{spec.name}"
        return f"blobreceipts/{self.config.host_id}/{function_id}/{etag}/{container}/{blob}"

    def _hosts_container(self) -> Any:
        from azure.core.exceptions import ResourceExistsError

        client = self._blob_client("AzureWebJobsStorage")
        hosts = client.get_container_client(HOSTS_CONTAINER)
        with contextlib.suppress(ResourceExistsError):
            hosts.create_container()
        return hosts

    def _read_receipt(self, hosts: Any, name: str) -> _Receipt | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            meta = hosts.get_blob_client(name).get_blob_properties().metadata
        except ResourceNotFoundError:
            return None
        return _Receipt(attempts=int(meta.get("attempts", "0")), status=meta.get("status", ""))

    def _write_receipt(self, hosts: Any, name: str, receipt: _Receipt) -> None:
        hosts.get_blob_client(name).upload_blob(
            b"",
            overwrite=True,
            metadata={"attempts": str(receipt.attempts), "status": receipt.status},
        )

    def _process_blob(self, spec: FunctionSpec, props: Any, params: dict[str, str]) -> None:
        assert spec.blob_path is not None
        container_name = spec.blob_path.container
        # Listings give the ETag bare, uploads quoted; the host's receipts and poison messages
        # carry the quoted form.
        etag = str(props.etag) if str(props.etag).startswith('"') else f'"{props.etag}"'
        hosts = self._hosts_container()
        receipt_name = self._receipt_name(spec, container_name, props.name, etag)
        receipt = self._read_receipt(hosts, receipt_name)
        if receipt is not None and receipt.status in ("completed", "poisoned"):
            return
        attempts = (receipt.attempts if receipt else 0) + 1
        self._write_receipt(hosts, receipt_name, _Receipt(attempts, "running"))
        blob_client = self._blob_client(spec.blob_connection).get_blob_client(
            container_name, props.name
        )
        stats = self.blob_stats[spec.name]
        started = time.monotonic()
        try:
            if spec.trigger.sdk_type is not None:
                # An SDK-type binding gets model binding data, not bytes: the function reads
                # the blob itself through the client the extension builds.
                trigger: Any = invoke.blob_binding_datum(
                    spec.blob_connection, container_name, props.name
                )
            else:
                trigger = invoke.b(
                    blob_client.download_blob(etag=etag, match_condition=_if_match()).readall()
                )
            metadata: dict[str, Any] = {
                "BlobTrigger": invoke.s(f"{container_name}/{props.name}"),
                "Uri": invoke.s(blob_client.url),
                "Properties": invoke.j(
                    {
                        "Length": props.size,
                        "ContentLength": props.size,
                        "ETag": etag,
                        "LastModified": props.last_modified.isoformat()
                        if props.last_modified
                        else None,
                        "ContentType": props.content_settings.content_type
                        if props.content_settings
                        else None,
                    }
                ),
                "Metadata": invoke.j(dict(props.metadata or {})),
                **{k: invoke.s(v) for k, v in params.items()},
            }
            inv = invoke.Invocation(
                trigger=trigger,
                metadata=metadata,
                inputs=self._extra_inputs(spec),
                sdk_objects=self._sdk_objects,
            )
            stats.count("invocations")
            invoke.call(spec, inv, self._loop, self.config.function_timeout)
        except Exception as exc:
            from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError

            if isinstance(exc, ResourceModifiedError | ResourceNotFoundError):
                # The blob changed or vanished since listing: the next scan sees its new version.
                hosts.get_blob_client(receipt_name).delete_blob()
                return
            stats.count("failures")
            log.exception(
                "function %s failed on blob %s/%s (attempt %d of %d)",
                spec.name,
                container_name,
                props.name,
                attempts,
                self.config.max_blob_attempts,
            )
            if attempts >= self.config.max_blob_attempts:
                self._poison(spec, container_name, props.name, etag)
                self._write_receipt(hosts, receipt_name, _Receipt(attempts, "poisoned"))
                stats.count("poisoned")
            else:
                self._write_receipt(hosts, receipt_name, _Receipt(attempts, "failed"))
            return
        self._write_receipt(hosts, receipt_name, _Receipt(attempts, "completed"))
        stats.count("completed")
        log.info(
            "function %s processed blob %s/%s in %.2fs",
            spec.name,
            container_name,
            props.name,
            time.monotonic() - started,
        )

    def _poison(self, spec: FunctionSpec, container: str, blob: str, etag: str) -> None:
        from azure.core.exceptions import ResourceExistsError
        from azure.storage.queue import QueueClient

        conn = _connection("AzureWebJobsStorage", self.config.environ)
        if conn.connection_string is not None:
            queue = QueueClient.from_connection_string(conn.connection_string, POISON_QUEUE)
        else:
            # Identity-based host storage, as the deployment configures it.
            from azure.identity import DefaultAzureCredential

            from adapters.errors import SettingsError

            if conn.queue_service_uri is None:
                raise SettingsError(
                    ["AzureWebJobsStorage__queueServiceUri: missing (the blob trigger's "
                     "poison queue is in the host storage's queue service)"]
                )  # fmt: skip
            credential = DefaultAzureCredential(managed_identity_client_id=conn.client_id)
            queue = QueueClient(conn.queue_service_uri, POISON_QUEUE, credential=credential)
        with contextlib.suppress(ResourceExistsError):
            queue.create_queue()
        message = {
            "Type": "BlobTrigger",
            "FunctionId": f"{self.config.host_id}.Functions.{spec.name}",
            "BlobType": "BlockBlob",
            "ContainerName": container,
            "BlobName": blob,
            "ETag": etag,
        }
        # The Functions queue extension reads base64 by default, so a queue trigger on the
        # poison queue can consume what we write.
        encoded = base64.b64encode(json.dumps(message).encode("utf-8")).decode("ascii")
        queue.send_message(encoded)
        queue.close()

    # ------------------------------------------------------------------ timers

    async def _run_timer(self, spec: FunctionSpec) -> None:
        assert spec.schedule is not None
        if spec.run_on_startup:
            await self._invoke_timer(spec, past_due=False)
        while True:
            now = datetime.now(UTC)
            due = spec.schedule.next_after(now)
            await asyncio.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()))
            late = (datetime.now(UTC) - due).total_seconds() > 1.0
            await self._invoke_timer(spec, past_due=late)

    async def _invoke_timer(self, spec: FunctionSpec, *, past_due: bool) -> None:
        assert spec.schedule is not None
        now = datetime.now(UTC)
        info = {
            "Schedule": {"AdjustForDST": True},
            "ScheduleStatus": {
                "Last": now.isoformat(),
                "Next": spec.schedule.next_after(now).isoformat(),
                "LastUpdated": now.isoformat(),
            },
            "IsPastDue": past_due,
        }
        try:
            inv = invoke.Invocation(trigger=invoke.j(info), inputs=self._extra_inputs(spec))
            await invoke.call_async(spec, inv, self.config.function_timeout)
        except Exception:
            log.exception("timer function %s failed", spec.name)


_HTTP_LIMIT_NAME = "the 230 s limit of an HTTP response in Azure"


def _if_match() -> Any:
    from azure.core import MatchConditions

    return MatchConditions.IfNotModified


def _event_problem(event: Any) -> str | None:
    if not isinstance(event, dict):
        return "an event must be a JSON object"
    if not event.get("id"):
        return "missing 'id'"
    if "specversion" in event:
        if not event.get("type") or not event.get("source"):
            return "a CloudEvent needs 'type' and 'source'"
        return None
    if not event.get("eventType"):
        return "missing 'eventType'"
    return None


def _connection(name: str, environ: Mapping[str, str]) -> Connection:
    from adapters.errors import SettingsError
    from adapters.settings import read_connection

    problems: list[str] = []
    conn = read_connection(name, environ, problems)
    if problems:
        raise SettingsError(problems)
    return conn
