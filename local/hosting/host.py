"""A local Functions host: serves an app's ``get_functions()`` on real parts.

What it serves (see docs/local-runtime.md for every known difference from Azure):

* HTTP triggers under ``/api/<route>`` with function-key auth (``code`` query parameter or
  ``x-functions-key`` header) for non-anonymous routes;
* Event Grid triggers at ``/runtime/webhooks/eventgrid?functionName=X`` (Event Grid schema with
  the SubscriptionValidation handshake, CloudEvents with the OPTIONS handshake, arrays and single
  objects; ``code`` must be the ``eventgrid_extension`` system key or the master key, checked
  before anything else about the request);
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
a request body by Azure's 100 MB; Event Grid deliveries and topic publishes by Event Grid's
event and batch sizes, checked before the body is parsed.

The host serves loopback only, and defends it as a developer's machine needs: a request must
name this host (``Host`` of 127.0.0.1, localhost or [::1] with the port: 421 otherwise, against
DNS rebinding) and, when a browser says where it comes from (``Origin``), come from it (403);
every route but anonymous HTTP functions needs a key; a body must be JSON where JSON is
expected (415). One blob the storage cannot list or the host cannot handle never stalls the
others.

The host runs its own event loop in a background thread; ``start()`` and ``stop()`` are
synchronous so tests and the CLI can drive it simply. Every error body is a JSON object.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
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

from adapters.events import EVENT_GRID_MAX_BATCH_BYTES, event_grid_batch_problem
from adapters.settings import Connection
from local.hosting import invoke
from local.hosting.functions import FunctionSpec, index_functions
from local.hosting.keys import HostKeys, presented_key

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
# Azure Functions' HTTP request length limit (learn.microsoft.com, "HTTP trigger": 100 MB).
MAX_REQUEST_BYTES = 104_857_600
# Event Grid bodies are parsed only up to twice its 1 MB cap: enough to name an oversized
# event; anything longer is refused unread. Bodies above 64 KiB are parsed off the loop.
EVENT_BODY_PARSE_LIMIT = 2 * EVENT_GRID_MAX_BATCH_BYTES
_OFF_LOOP_BYTES = 64 * 1024
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
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
        self._host_failures: dict[tuple[str, str, str], int] = {}
        self._host_failures_lock = threading.Lock()
        self._unlistable: set[str] = set()

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
        app = web.Application(client_max_size=MAX_REQUEST_BYTES, middlewares=[self._guard])
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

    def function_key(self, function: str, name: str = "default") -> str:
        """A key that opens ``function``'s routes and no other's (created on first use)."""
        return self.keys.function_key(function, name, self.config.state_dir / "host-keys.json")

    @staticmethod
    def _presented_key(request: web.Request) -> str | None:
        return presented_key(request.query, request.headers)

    # ------------------------------------------------------------------ request guard

    def _loopback_hosts(self) -> set[str]:
        return {f"{name}:{self._port}" for name in LOOPBACK_NAMES}

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Every request: this host by name, a loopback origin if any, and a JSON answer always.

        A page on another site cannot read the host's answers, but with DNS rebinding it can
        make its own name resolve to 127.0.0.1: the ``Host`` it sends is then its name, which
        is refused. A browser also names the page that sends a request (``Origin``).
        """
        host = (request.headers.get("Host") or "").lower()
        if host not in self._loopback_hosts():
            return json_error(
                421, "misdirected_request", "this host answers to 127.0.0.1, localhost or [::1]"
            )
        origin = request.headers.get("Origin")
        if origin is not None and origin.lower() not in {
            f"http://{h}" for h in self._loopback_hosts()
        }:
            return json_error(403, "forbidden_origin", f"requests from {origin!r} are refused")
        try:
            response: web.StreamResponse = await handler(request)
        except web.HTTPException as exc:
            # aiohttp's own refusals (413 for a body over the limit, ...) as JSON, like ours.
            code = "payload_too_large" if exc.status == 413 else "http_error"
            return json_error(exc.status, code, exc.reason)
        except Exception:
            log.exception("the host failed on %s %s", request.method, request.path)
            return json_error(500, "host_error", "the host failed; see its log")
        return response

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
        if not self.keys.allows(spec.auth_level, self._presented_key(request), spec.name):
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
        # The key first: without it, nothing about the request (not even whether the function
        # exists) is answered. Event Grid calls the subscription's URL, key included, for the
        # handshakes too.
        if not self.keys.allows_system("eventgrid_extension", self._presented_key(request)):
            return json_error(
                401, "unauthorized", "the Event Grid webhook needs the eventgrid_extension key"
            )
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
        read = await _read_events(request, name, empty_ok=False)
        if isinstance(read, web.Response):
            return read
        events = read
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
        read = await _read_events(request, f"topic {topic}", empty_ok=True)
        if isinstance(read, web.Response):
            return read
        events = read
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
        """Run one blob scan for function ``name`` synchronously (tests, demos), after the
        polling loop's scan if one is running."""
        self._scan_blobs(self.by_name[name], wait=True)

    def _scan_blobs(self, spec: FunctionSpec, *, wait: bool = False) -> None:
        lock = self._blob_locks.setdefault(spec.name, threading.Lock())
        if not lock.acquire(blocking=wait):
            return
        try:
            assert spec.blob_path is not None
            client = self._blob_client(spec.blob_connection)
            container = client.get_container_client(spec.blob_path.container)
            running = []
            for props in self._list_blobs(container, spec.blob_path.prefix):
                params = spec.blob_path.match(spec.blob_path.container, props.name)
                if params is None:
                    continue
                # A blob the host itself cannot handle is set aside after a few tries.
                if self._host_failures.get(self._attempt(spec, props), 0) >= (
                    self.config.max_blob_attempts
                ):
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

    @staticmethod
    def _attempt(spec: FunctionSpec, props: Any) -> tuple[str, str, str]:
        return spec.name, str(props.name), str(props.etag)

    def _process_in_slot(self, spec: FunctionSpec, props: Any, params: dict[str, str]) -> None:
        """One blob; whatever the host meets handling it (a name storage mangles, a receipt it
        cannot read) is logged and counted, and never holds up the other blobs."""
        try:
            self._process_blob(spec, props, params)
        except Exception:
            attempt = self._attempt(spec, props)
            with self._host_failures_lock:
                failures = self._host_failures.get(attempt, 0) + 1
                self._host_failures[attempt] = failures
            log.exception(
                "the host could not handle blob %r for %s (try %d of %d)%s",
                props.name,
                spec.name,
                failures,
                self.config.max_blob_attempts,
                "; it is skipped from now on" if failures >= self.config.max_blob_attempts else "",
            )
        finally:
            self._blob_slots.release()

    def _list_blobs(self, container: Any, prefix: str) -> list[Any]:
        """Every blob under ``prefix``; when the listing fails, every blob that can be listed.

        Azurite cannot list a folder holding a name with some control characters (Azure
        returns such names encoded): the folders around it are listed one by one, and the
        failing folder by the first character of the names in it, leaving out only what cannot
        be listed at all. Listings are not retried: the next scan comes soon.
        """
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

        try:
            return list(container.list_blobs(name_starts_with=prefix or None, retry_total=0))
        except ResourceNotFoundError:
            return []
        except HttpResponseError as exc:
            if prefix not in self._unlistable:
                self._unlistable.add(prefix)
                log.warning(
                    "listing %s/%s failed (%s); listing around the blob that breaks it",
                    container.container_name,
                    prefix,
                    str(exc).splitlines()[0],
                )
        found: list[Any] = []
        self._list_around(container, prefix, found, depth=0)
        return found

    def _list_around(self, container: Any, prefix: str, found: list[Any], depth: int) -> None:
        from azure.core.exceptions import HttpResponseError
        from azure.storage.blob import BlobPrefix

        try:
            items = list(
                container.walk_blobs(name_starts_with=prefix or None, delimiter="/", retry_total=0)
            )
        except HttpResponseError:
            if depth < _MAX_LIST_SPLIT:
                # Names directly in this folder break the listing: by first character.
                for ch in _LISTABLE_CHARS:
                    self._list_flat_or_split(container, prefix + ch, found, depth + 1)
            return
        for item in items:
            if isinstance(item, BlobPrefix):
                self._list_flat_or_split(container, item.name, found, depth)
            else:
                found.append(item)

    def _list_flat_or_split(
        self, container: Any, prefix: str, found: list[Any], depth: int
    ) -> None:
        from azure.core.exceptions import HttpResponseError

        try:
            found.extend(container.list_blobs(name_starts_with=prefix, retry_total=0))
        except HttpResponseError:
            self._list_around(container, prefix, found, depth)

    def _receipt_name(self, spec: FunctionSpec, container: str, blob: str, etag: str) -> str:
        function_id = f"{self.config.host_id}.Functions.{spec.name}"
        where = f"{etag}/{container}/{_receipt_blob(blob)}"
        return f"blobreceipts/{self.config.host_id}/{function_id}/{where}"

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


_EVENT_MEDIA = (
    "application/json",
    "application/cloudevents+json",
    "application/cloudevents-batch+json",
)


async def _read_events(
    request: web.Request, what: str, *, empty_ok: bool
) -> list[Any] | web.Response:
    """The events of an Event Grid request, or the 4xx answer to it.

    The body must be declared JSON (415), and no longer than ``EVENT_BODY_PARSE_LIMIT`` before
    a byte of it is parsed (413); a large one is parsed, and sized against Event Grid's limits,
    off the event loop.
    """
    if request.content_type.lower() not in _EVENT_MEDIA:
        return json_error(
            415,
            "unsupported_media_type",
            f"{what}: Event Grid delivers JSON, not {request.content_type!r}",
        )
    raw = await _read_at_most(request, EVENT_BODY_PARSE_LIMIT)
    if raw is None:
        return json_error(
            413,
            "payload_too_large",
            f"{what}: the body is over {EVENT_BODY_PARSE_LIMIT:,} bytes; Event Grid takes at most "
            f"{EVENT_GRID_MAX_BATCH_BYTES:,} bytes (1 MB) per request",
        )
    if len(raw) > _OFF_LOOP_BYTES:
        parsed = await asyncio.to_thread(_parse_events, raw, empty_ok)
    else:
        parsed = _parse_events(raw, empty_ok)
    if isinstance(parsed, tuple):
        status, code, message = parsed
        return json_error(status, code, f"{what}: {message}" if status == 413 else message)
    return parsed


async def _read_at_most(request: web.Request, limit: int) -> bytes | None:
    """The body, or ``None`` as soon as it is known to be longer than ``limit`` bytes."""
    if request.content_length is not None and request.content_length > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(64 * 1024):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_events(raw: bytes, empty_ok: bool) -> list[Any] | tuple[int, str, str]:
    """Events from a body: the list, or ``(status, code, message)`` for the refusal."""
    try:
        payload = json.loads(raw) if raw.strip() else None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return 400, "bad_json", f"the body is not valid JSON: {exc}"
    except RecursionError:
        return 400, "bad_json", "the body nests deeper than the JSON reader follows"
    events = [payload] if isinstance(payload, dict) else payload
    if not isinstance(events, list) or not (events or empty_ok):
        return 400, "bad_payload", "expected an event object or a non-empty array"
    too_big = event_grid_batch_problem(len(raw), events)
    if too_big is not None:
        # What Event Grid answers a publisher for an oversized event or batch; it never
        # delivers one, so whoever posted it is not behaving like Event Grid.
        return 413, "payload_too_large", too_big
    return events


# Listing around a name that breaks a folder's listing: by first character, this many deep.
_LISTABLE_CHARS = [chr(c) for c in range(32, 127)]
_MAX_LIST_SPLIT = 8
_RECEIPT_SAFE = re.compile(r"^[A-Za-z0-9._~!$&'()*+,;=:@ -]+(?:/[A-Za-z0-9._~!$&'()*+,;=:@ -]+)*$")


def _receipt_blob(name: str) -> str:
    """A blob's name as a receipt path: itself when plainly safe, else a hash of it.

    Receipts are blobs named after the blob; a name with backslashes, dot segments or control
    characters would name another path (or none), so those get ``~sha256-<hex>`` instead.
    """
    segments = name.split("/")
    if len(name) <= 512 and _RECEIPT_SAFE.match(name) and not {".", ".."} & set(segments):
        return name
    return "~sha256-" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()


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
