"""Calling a user function exactly as the Python worker would.

Inputs are built as ``azure.functions.meta.Datum`` values and decoded by the azure-functions
library's own converters (the code the real worker runs), so a function receives the same
``HttpRequest``, ``InputStream``, ``TimerRequest``, ``EventGridEvent``/``CloudEvent`` or durable
client objects locally as in Azure.

SDK-type bindings (a parameter annotated with an azurefunctions extension type such as
``azurefunctions.extensions.bindings.blob.BlobClient``) get what the worker gets from the host:
*model binding data* naming the connection setting, container and blob, decoded by the
extension's own converter, which builds the real client from the process environment (a
connection string, or ``X__serviceUri``/``X__blobServiceUri`` with a managed identity). Like
the worker, the client is cached per parameter, type, binding data and function.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import json
import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import azure.functions as func
import azure.functions.blob
import azure.functions.durable_functions
import azure.functions.eventgrid
import azure.functions.http
import azure.functions.timer
from azure.functions import meta

from local.hosting.functions import Binding, FunctionSpec

log = logging.getLogger("local.hosting.host")


class FunctionTimeoutError(Exception):
    """A function ran longer than its time limit (host.json ``functionTimeout``, or 230 s
    for an HTTP response); the message names the limit and the function."""


def hms(limit: timedelta) -> str:
    """``00:10:00`` — how the host writes a time span in its timeout message."""
    seconds = int(limit.total_seconds())
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def timeout_message(spec: FunctionSpec, limit: timedelta, what: str) -> str:
    return f"Timeout value of {hms(limit)} was exceeded by function: Functions.{spec.name} ({what})"


class InvocationContext(func.Context):
    """The ``context`` argument a function may declare (invocation id, name, directory)."""

    def __init__(self, function_name: str, function_directory: str) -> None:
        self._invocation_id = str(uuid.uuid4())
        self._function_name = function_name
        self._function_directory = function_directory

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> Any:
        return None

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def trace_context(self) -> Any:
        return None

    @property
    def retry_context(self) -> Any:
        return None


@dataclass
class Invocation:
    """One call: the trigger's datum and metadata plus any extra input datums by binding name.

    ``sdk_objects`` is the caller's cache of SDK-type binding objects (the worker keeps one per
    process); without it every call builds its own.
    """

    trigger: Any
    metadata: dict[str, meta.Datum] = field(default_factory=dict)
    inputs: dict[str, meta.Datum] = field(default_factory=dict)
    sdk_objects: dict[tuple[Any, ...], Any] | None = None


# What the Functions host's blob extension names itself in model binding data.
BLOB_BINDING_SOURCE = "AzureStorageBlobs"


@dataclass(frozen=True)
class ModelBindingData:
    """The worker protocol's ``ModelBindingData`` message, as the host sends it for SDK types."""

    version: str
    source: str
    content_type: str
    content: str


def blob_binding_datum(connection: str, container: str, blob: str) -> Any:
    """The trigger datum of a blob SDK-type binding: model binding data, not the blob's bytes."""
    from azurefunctions.extensions.base import Datum

    content = json.dumps({"Connection": connection, "ContainerName": container, "BlobName": blob})
    data = ModelBindingData("1.0", BLOB_BINDING_SOURCE, "application/json", content)
    return Datum(value=data, type="model_binding_data")


def s(value: str) -> meta.Datum:
    return meta.Datum(value=value, type="string")


def b(value: bytes) -> meta.Datum:
    return meta.Datum(value=value, type="bytes")


def j(value: Any) -> meta.Datum:
    return meta.Datum(value=json.dumps(value, default=str), type="json")


def http_datum(
    method: str,
    url: str,
    headers: Mapping[str, str],
    query: Mapping[str, str],
    route_params: Mapping[str, str],
    body: bytes,
) -> meta.Datum:
    return meta.Datum(
        type="http",
        value={
            "method": s(method),
            "url": s(url),
            "headers": {k.lower(): s(v) for k, v in headers.items()},
            "query": {k: s(v) for k, v in query.items()},
            "params": {k: s(v) for k, v in route_params.items()},
            "body": meta.Datum(value=body, type="bytes"),
        },
    )


def _decode(binding_type: str, datum: meta.Datum, metadata: dict[str, meta.Datum]) -> Any:
    converter = meta._ConverterMeta.get(binding_type)  # type: ignore[no-untyped-call]
    if converter is None:  # pragma: no cover - index_functions rejects these first
        raise RuntimeError(f"no converter for binding type {binding_type!r}")
    return converter.decode(datum, trigger_metadata=metadata)


def _decode_sdk_type(spec: FunctionSpec, binding: Binding, invocation: Invocation) -> Any:
    from azurefunctions.extensions.base import meta as sdk_meta

    datum = invocation.trigger
    converter = sdk_meta.get_binding_registry().get(binding.type)
    if converter is None:  # pragma: no cover - index_functions checked the registry
        raise RuntimeError(f"no SDK-type converter for binding type {binding.type!r}")
    key = (binding.name, binding.sdk_type, datum.value.content, spec.name)
    cache = invocation.sdk_objects if invocation.sdk_objects is not None else {}
    if key not in cache:
        cache[key] = converter.decode(
            datum, trigger_metadata=invocation.metadata, pytype=binding.sdk_type
        )
    return cache[key]


def build_arguments(spec: FunctionSpec, invocation: Invocation) -> dict[str, Any]:
    trigger = spec.trigger
    kwargs: dict[str, Any] = {
        trigger.name: _decode_sdk_type(spec, trigger, invocation)
        if trigger.sdk_type is not None
        else _decode(trigger.type, invocation.trigger, invocation.metadata)
    }
    for binding in spec.extra_inputs:
        datum = invocation.inputs.get(binding.name)
        if datum is None:
            raise RuntimeError(f"{spec.name}: no value for input binding {binding.name!r}")
        kwargs[binding.name] = _decode(binding.type, datum, {})
    params = inspect.signature(spec.func).parameters
    if "context" in params and "context" not in kwargs:
        kwargs["context"] = InvocationContext(spec.name, spec.name)
    return kwargs


def is_async(spec: FunctionSpec) -> bool:
    return inspect.iscoroutinefunction(spec.func)


def _abandoned(spec: FunctionSpec) -> None:
    # Python cannot stop a thread; in Azure the host would recycle the worker process.
    log.error(
        "function %s timed out; its thread runs on until it returns (the result is dropped)",
        spec.name,
    )


def _run_in_thread(spec: FunctionSpec, kwargs: dict[str, Any], timeout: timedelta) -> Any:
    """Run a sync function in its own thread and wait at most ``timeout`` for it."""
    outcome: dict[str, Any] = {}
    done = threading.Event()
    context = contextvars.copy_context()

    def target() -> None:
        try:
            outcome["value"] = context.run(spec.func, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
            outcome["error"] = exc
        finally:
            done.set()

    threading.Thread(target=target, name=f"function-{spec.name}", daemon=True).start()
    if not done.wait(timeout.total_seconds()):
        _abandoned(spec)
        raise FunctionTimeoutError(timeout_message(spec, timeout, "host.json functionTimeout"))
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def call(
    spec: FunctionSpec,
    invocation: Invocation,
    loop: asyncio.AbstractEventLoop | None = None,
    timeout: timedelta | None = None,
) -> Any:
    """Invoke a function from a worker thread; ``FunctionTimeoutError`` after ``timeout``.

    Async functions run on ``loop`` (the host's loop, as the Python worker runs every coroutine
    on its one loop, so loop-bound clients such as the durable client's HTTP session keep
    working); without a loop they get a private one. A timed-out coroutine is cancelled.
    """
    kwargs = build_arguments(spec, invocation)
    seconds = None if timeout is None else timeout.total_seconds()
    if is_async(spec):
        if loop is not None and loop.is_running():
            future = asyncio.run_coroutine_threadsafe(spec.func(**kwargs), loop)
            try:
                return future.result(seconds)
            except TimeoutError:
                future.cancel()
                assert timeout is not None
                raise FunctionTimeoutError(
                    timeout_message(spec, timeout, "host.json functionTimeout")
                ) from None
        return asyncio.run(_with_deadline(spec, spec.func(**kwargs), timeout))
    if timeout is None:
        return spec.func(**kwargs)
    return _run_in_thread(spec, kwargs, timeout)


async def _with_deadline(spec: FunctionSpec, work: Any, timeout: timedelta | None) -> Any:
    if timeout is None:
        return await work
    try:
        return await asyncio.wait_for(work, timeout.total_seconds())
    except TimeoutError:
        raise FunctionTimeoutError(
            timeout_message(spec, timeout, "host.json functionTimeout")
        ) from None


async def call_async(
    spec: FunctionSpec,
    invocation: Invocation,
    timeout: timedelta | None = None,
    *,
    limit_name: str = "host.json functionTimeout",
) -> Any:
    """Invoke a function from the host's event loop (sync functions run in a thread).

    After ``timeout`` a coroutine is cancelled and a sync function's thread is abandoned;
    either way ``FunctionTimeoutError`` names ``limit_name`` and the function.
    """
    kwargs = build_arguments(spec, invocation)
    work = spec.func(**kwargs) if is_async(spec) else asyncio.to_thread(spec.func, **kwargs)
    if timeout is None:
        return await work
    try:
        return await asyncio.wait_for(work, timeout.total_seconds())
    except TimeoutError:
        if not is_async(spec):
            _abandoned(spec)
        raise FunctionTimeoutError(timeout_message(spec, timeout, limit_name)) from None


def activity_callable(
    spec: FunctionSpec,
    loop: Callable[[], asyncio.AbstractEventLoop | None] = lambda: None,
    timeout: timedelta | None = None,
) -> Any:
    """Wrap an activity so it takes and returns plain Python values, via the activity converter.

    An activity is a function invocation like any other, so ``timeout`` (host.json
    ``functionTimeout``) applies to it: past it, the activity fails with the host's message.
    """
    conv = azure.functions.durable_functions.ActivityTriggerConverter

    def run(value: Any) -> Any:
        from azure.functions._durable_functions import _serialize_custom_object

        datum = meta.Datum(value=json.dumps(value, default=_serialize_custom_object), type="json")
        result = call(spec, Invocation(trigger=datum), loop(), timeout)
        encoded = conv.encode(result, expected_type=None)
        return json.loads(encoded.value) if encoded.value is not None else None

    run.__name__ = spec.name
    return run
