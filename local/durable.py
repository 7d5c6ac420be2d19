"""Local Durable Functions engine: orchestrators run on Microsoft's Durable Task engine.

The app's orchestrators are ordinary ``azure-functions-durable`` generator functions over a
``DurableOrchestrationContext``. Locally they run on the ``durabletask`` package: an in-memory
sidecar backend (gRPC on loopback), a ``TaskHubGrpcWorker`` and a ``TaskHubGrpcClient``.
Replay and non-determinism detection are the Durable Task engine's own; this module only

* translates the Durable Functions context surface onto ``durabletask.task.OrchestrationContext``
  (:class:`DurableContextShim`), keeping Durable Functions semantics where they differ
  (``task_all`` fails fast, ``task_any`` returns the winning task, failed tasks raise a plain
  ``Exception`` whose message carries the activity's error);
* serialises payloads exactly like Durable Functions (``df_dumps`` / ``df_loads``);
* binds the backend to 127.0.0.1 on a free port with enough server threads for streaming
  calls, and recovers work that a stopped worker received but never ran, so that
  :meth:`LocalDurableEngine.restart_worker` loses nothing;
* serves the Durable HTTP API through :mod:`local.durable_http`.

Differences from Azure are listed in ``docs/local-durable.md``.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import uuid
from collections.abc import Callable, Generator, Iterable, Mapping
from concurrent import futures
from datetime import UTC, datetime, timedelta
from types import GeneratorType
from typing import TYPE_CHECKING, Any, cast

import durabletask.internal.orchestrator_service_pb2 as pb
import durabletask.internal.orchestrator_service_pb2_grpc as stubs
import grpc
from azure.durable_functions.models.utils.df_serialization import df_dumps, df_loads
from durabletask import client as dt_client
from durabletask import task as dt_task
from durabletask import worker as dt_worker
from durabletask.serialization import DataConverter
from durabletask.testing import InMemoryOrchestrationBackend
from durabletask.testing.in_memory_backend import ActivityWorkItem, OrchestrationInstance

from adapters.errors import BadInputError, ConflictError, NotFoundError
from local.durable_http import (
    InstanceView,
    add_durable_routes,
    client_binding_json,
    runtime_status_name,
    view_from_state,
)

if TYPE_CHECKING:
    from aiohttp import web

OrchestratorFn = Callable[[Any], Generator[Any, Any, Any]]
"""The user's Durable Functions generator function; it takes the orchestration context."""

ActivityFn = Callable[[Any], Any]
"""Python value in, JSON-serialisable Python value out; may raise."""

_log = logging.getLogger(__name__)


class _StreamCancelledOnStop(logging.Filter):
    """Drop the SDK's warning about its own work stream being cancelled when a worker stops."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (
            message.startswith("Error in work item stream") and "Locally cancelled" in message
        )


_worker_log = logging.getLogger(f"{__name__}.worker")
_worker_log.addFilter(_StreamCancelledOnStop())

# Same namespace and name layout as azure-functions-durable, so ids match Azure for the same
# instance, replay time and call count.
_DF_UUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_OID, "9e952958-5e33-4daf-827f-2fa12937b875")
_DF_DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"

# Statuses a start request may replace (the Functions host's default, NonRunningStates).
_REPLACEABLE_STATUSES = (
    pb.ORCHESTRATION_STATUS_COMPLETED,
    pb.ORCHESTRATION_STATUS_FAILED,
    pb.ORCHESTRATION_STATUS_TERMINATED,
    pb.ORCHESTRATION_STATUS_CANCELED,
)

_GRPC_CHANNEL_OPTIONS = [
    # Loopback only: never route the sidecar connection through an HTTP proxy from the env.
    ("grpc.enable_http_proxy", 0),
]


# --------------------------------------------------------------------------------------------
# Pure helpers
# --------------------------------------------------------------------------------------------


def retry_policy_from(retry_options: Any) -> dt_task.RetryPolicy:
    """Map ``azure.durable_functions.RetryOptions`` onto a Durable Task ``RetryPolicy``.

    Durable Functions Python retries at a fixed interval (it has no back-off coefficient) and
    counts the first call as an attempt, which is also Durable Task's convention.
    """
    interval_ms = int(retry_options.first_retry_interval_in_milliseconds)
    attempts = int(retry_options.max_number_of_attempts)
    if interval_ms <= 0:
        raise BadInputError("first_retry_interval_in_milliseconds must be greater than 0")
    if attempts < 1:
        raise BadInputError("max_number_of_attempts must be at least 1")
    return dt_task.RetryPolicy(
        first_retry_interval=timedelta(milliseconds=interval_ms),
        max_number_of_attempts=attempts,
        backoff_coefficient=1.0,
    )


def df_task_failure(kind: str, name: str, details: dt_task.FailureDetails) -> Exception:
    """Build the exception Durable Functions Python raises into an orchestrator for a failed task.

    azure-functions-durable raises a plain ``Exception(f"{Reason} \\n {Details}")``; the reason
    names the failed function and carries its error message, the details carry the error type
    and stack. ``kind`` is ``"Activity"`` or ``"Sub-orchestrator"``.
    """
    reason = f"{kind} function '{name}' failed: {details.message}"
    detail = json.dumps(
        {
            "Message": details.message,
            "ExceptionType": details.error_type,
            "StackTrace": details.stack_trace or "",
        }
    )
    return Exception(f"{reason} \n {detail}")


def df_input(raw: Any, expected_type: type | None = None) -> Any:
    """Decode an orchestration input the way ``DurableOrchestrationContext.get_input`` does.

    The Durable Functions Python client and context send inputs as JSON *text*, so the stored
    input is usually a JSON string that must be parsed once more. Inputs posted as a raw JSON
    object (ADF, curl) arrive as a dict and are decoded through the same codec.
    """
    if raw is None:
        return None
    if isinstance(raw, str):
        return df_loads(raw, expected_type=expected_type)
    if isinstance(raw, dict):
        return df_loads(json.dumps(raw), expected_type=expected_type)
    return raw


class DurableFunctionsDataConverter(DataConverter):
    """Durable Task data converter with the Durable Functions wire format.

    Builtins are plain JSON; custom objects use the ``__class__``/``__module__``/``__data__``
    convention of ``azure-functions-durable``, so payloads look the same as in Azure.
    """

    def serialize(self, value: Any) -> str | None:
        if value is None:
            return None
        return cast(str, df_dumps(value))

    def deserialize(self, data: str | None, target_type: type | None = None) -> Any:
        if data is None or data == "":
            return None
        return df_loads(data, expected_type=target_type)

    def coerce(self, value: Any, target_type: type | None = None) -> Any:
        if target_type is None or value is None or isinstance(value, target_type):
            return value
        return df_loads(json.dumps(value), expected_type=target_type)


# --------------------------------------------------------------------------------------------
# Durable Functions task objects over Durable Task tasks
# --------------------------------------------------------------------------------------------


class _CompletionProbe(dt_task.CompositeTask[None]):
    """Observes one Durable Task task and records the moment (in event order) it completes."""

    def __init__(self, watched: dt_task.Task[Any], on_done: Callable[[], None]) -> None:
        self._on_done = on_done
        super().__init__([watched])

    def on_child_completed(self, task: dt_task.Task[Any]) -> None:
        self._on_done()


class DurableTask:
    """A Durable Functions task as the orchestrator sees it.

    Mirrors ``azure.durable_functions.models.Task.TaskBase``: ``is_completed``; ``result`` is the
    value, or the ``Exception`` for a failed task. Identity comparison works
    (``winner == timer_task``) because ``task_any`` returns the child object itself.
    """

    def __init__(self, ctx: DurableContextShim) -> None:
        self._ctx = ctx
        self._done = False
        self._failed = False
        self.result: Any = None
        self._seq: int | None = None  # event-order position of completion

    @property
    def is_completed(self) -> bool:
        return self._done

    @property
    def is_faulted(self) -> bool:
        return self._failed

    def _succeed(self, value: Any, seq: int) -> None:
        self._done, self._failed, self.result, self._seq = True, False, value, seq

    def _fail(self, error: Exception, seq: int) -> None:
        self._done, self._failed, self.result, self._seq = True, True, error, seq

    def _refresh(self) -> None:
        """Bring this task (and its children) up to date with the engine's tasks."""
        raise NotImplementedError

    def _pending_leaves(self) -> list[_LeafTask]:
        """Engine-backed tasks whose completion could change this task's state."""
        raise NotImplementedError


class _LeafTask(DurableTask):
    """A task backed by one Durable Task task (activity, sub-orchestration, timer, event)."""

    def __init__(
        self,
        ctx: DurableContextShim,
        inner: dt_task.Task[Any],
        failure: Callable[[dt_task.FailureDetails], Exception] | None = None,
    ) -> None:
        super().__init__(ctx)
        self._inner = inner
        self._failure = failure
        self._cancelled = False
        self._inner_seq: int | None = None
        self._probe = _CompletionProbe(inner, self._record_completion)

    def _record_completion(self) -> None:
        if self._inner_seq is None:
            self._inner_seq = self._ctx._next_seq()

    def _refresh(self) -> None:
        if self._done or self._cancelled or not self._inner.is_complete:
            return
        if isinstance(self._inner, dt_task.CancellableTask) and self._inner.is_cancelled:
            self._cancelled = True
            return
        seq = self._inner_seq if self._inner_seq is not None else self._ctx._next_seq()
        if self._inner.is_failed:
            details = self._inner.get_exception().details
            error = self._failure(details) if self._failure else Exception(details.message)
            self._fail(error, seq)
        else:
            self._succeed(self._inner.get_result(), seq)

    def _pending_leaves(self) -> list[_LeafTask]:
        return [] if (self._done or self._cancelled) else [self]


class TimerTask(_LeafTask):
    """A durable timer; ``cancel()`` stops it from keeping the orchestration waiting."""

    @property
    def is_cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        """Cancel the timer; raises ``ValueError`` once it fired, as Durable Functions does."""
        if self._done:
            raise ValueError("Cannot cancel a completed task.")
        if not self._cancelled:
            cast(dt_task.CancellableTask[Any], self._inner).cancel()
            self._cancelled = True


class _WhenAllTask(DurableTask):
    """Completes when every child succeeded; fails as soon as one child fails (as in DF)."""

    def __init__(self, ctx: DurableContextShim, children: list[DurableTask]) -> None:
        super().__init__(ctx)
        self.children = children

    def _refresh(self) -> None:
        for child in self.children:
            child._refresh()
        if self._done:
            return
        failed = [c for c in self.children if c.is_completed and c.is_faulted]
        if failed:
            first = min(failed, key=lambda c: c._seq or 0)
            self._fail(cast(Exception, first.result), first._seq or 0)
        elif all(c.is_completed for c in self.children):
            seq = max((c._seq or 0 for c in self.children), default=self._ctx._next_seq())
            self._succeed([c.result for c in self.children], seq)

    def _pending_leaves(self) -> list[_LeafTask]:
        return [] if self._done else _unique_leaves(self.children)


class _WhenAnyTask(DurableTask):
    """Completes with the first child to complete (success or failure), as in Durable Functions."""

    def __init__(self, ctx: DurableContextShim, children: list[DurableTask]) -> None:
        super().__init__(ctx)
        self.children = children

    def _refresh(self) -> None:
        for child in self.children:
            child._refresh()
        if self._done:
            return
        done = [c for c in self.children if c.is_completed]
        if done:
            winner = min(done, key=lambda c: c._seq or 0)
            self._succeed(winner, winner._seq or 0)

    def _pending_leaves(self) -> list[_LeafTask]:
        return [] if self._done else _unique_leaves(self.children)


def _unique_leaves(children: Iterable[DurableTask]) -> list[_LeafTask]:
    seen: set[int] = set()
    leaves: list[_LeafTask] = []
    for child in children:
        for leaf in child._pending_leaves():
            if id(leaf) not in seen:
                seen.add(id(leaf))
                leaves.append(leaf)
    return leaves


# --------------------------------------------------------------------------------------------
# The context shim
# --------------------------------------------------------------------------------------------


def _function_name(name: Any) -> str:
    """Accept a name or a v2 ``FunctionBuilder`` (the decorated function), as DF does."""
    if isinstance(name, str):
        return name
    function = getattr(name, "_function", None)
    resolved = getattr(function, "_name", None)
    if isinstance(resolved, str):
        return resolved
    raise ValueError(
        f"Expected a function name or a decorated Durable Functions function, got {name!r}"
    )


class DurableContextShim:
    """The ``DurableOrchestrationContext`` surface, backed by a Durable Task orchestration context.

    Every scheduling call returns a :class:`DurableTask` the orchestrator yields; the driver in
    :func:`_drive` waits for it on the engine and sends its value (or throws its exception)
    back into the generator.
    """

    def __init__(self, ctx: dt_task.OrchestrationContext, raw_input: Any) -> None:
        self._ctx = ctx
        self._raw_input = raw_input
        self._seq_counter = itertools.count(1)
        self._uuid_counter = 0
        self._custom_status: Any = None
        self._continued_as_new = False

    def _next_seq(self) -> int:
        return next(self._seq_counter)

    # -- identity and clock -----------------------------------------------------------------

    @property
    def instance_id(self) -> str:
        return self._ctx.instance_id

    @property
    def parent_instance_id(self) -> str | None:
        return self._ctx.parent_instance_id

    @property
    def is_replaying(self) -> bool:
        return self._ctx.is_replaying

    @property
    def current_utc_datetime(self) -> datetime:
        """Replay-safe UTC time (timezone-aware, like Durable Functions')."""
        now = self._ctx.current_utc_datetime
        return now if now.tzinfo else now.replace(tzinfo=UTC)

    @property
    def custom_status(self) -> Any:
        return self._custom_status

    @property
    def will_continue_as_new(self) -> bool:
        return self._continued_as_new

    def get_input(self, expected_type: type | None = None) -> Any:
        return df_input(self._raw_input, expected_type)

    def new_uuid(self) -> str:
        """Replay-safe UUID, computed exactly as azure-functions-durable computes it."""
        name = (
            f"{self.instance_id}_{self.current_utc_datetime.strftime(_DF_DATETIME_FORMAT)}"
            f"_{self._uuid_counter}"
        )
        self._uuid_counter += 1
        return str(uuid.uuid5(_DF_UUID_NAMESPACE, name))

    def new_guid(self) -> uuid.UUID:
        name = f"{self.instance_id}_{self.current_utc_datetime}_{self._uuid_counter}"
        self._uuid_counter += 1
        return uuid.uuid5(uuid.NAMESPACE_URL, name)

    def set_custom_status(self, status: Any) -> None:
        self._custom_status = status
        self._ctx.set_custom_status(status)

    # -- scheduling -------------------------------------------------------------------------

    def _detached(self) -> _LeafTask:
        # After continue_as_new Durable Functions records no further actions; the task the
        # orchestrator gets back is never scheduled (the driver stops at the next yield).
        return _LeafTask(self, dt_task.CompletableTask())

    def call_activity(
        self, name: Any, input_: Any = None, expected_type: type | None = None
    ) -> DurableTask:
        activity = _function_name(name)
        if self._continued_as_new:
            return self._detached()
        inner: dt_task.Task[Any] = self._ctx.call_activity(
            activity, input=input_, return_type=cast(Any, expected_type)
        )
        return _LeafTask(self, inner, lambda d: df_task_failure("Activity", activity, d))

    def call_activity_with_retry(
        self,
        name: Any,
        retry_options: Any,
        input_: Any = None,
        expected_type: type | None = None,
    ) -> DurableTask:
        activity = _function_name(name)
        if self._continued_as_new:
            return self._detached()
        inner: dt_task.Task[Any] = self._ctx.call_activity(
            activity,
            input=input_,
            retry_policy=retry_policy_from(retry_options),
            return_type=cast(Any, expected_type),
        )
        return _LeafTask(self, inner, lambda d: df_task_failure("Activity", activity, d))

    def call_sub_orchestrator(
        self,
        name: Any,
        input_: Any = None,
        instance_id: str | None = None,
        version: str | None = None,
        expected_type: type | None = None,
    ) -> DurableTask:
        return self._sub_orchestrator(
            name, input_, instance_id=instance_id, version=version, expected_type=expected_type
        )

    def call_sub_orchestrator_with_retry(
        self,
        name: Any,
        retry_options: Any,
        input_: Any = None,
        instance_id: str | None = None,
        version: str | None = None,
        expected_type: type | None = None,
    ) -> DurableTask:
        policy = retry_policy_from(retry_options)
        return self._sub_orchestrator(
            name,
            input_,
            instance_id=instance_id,
            version=version,
            expected_type=expected_type,
            policy=policy,
        )

    def _sub_orchestrator(
        self,
        name: Any,
        input_: Any,
        *,
        instance_id: str | None,
        version: str | None,
        expected_type: type | None,
        policy: dt_task.RetryPolicy | None = None,
    ) -> DurableTask:
        orchestrator = _function_name(name)
        if self._continued_as_new:
            return self._detached()
        # Durable Functions hands inputs over as JSON text; keep that shape for get_input().
        encoded = None if input_ is None else df_dumps(input_)
        inner: dt_task.Task[Any] = self._ctx.call_sub_orchestrator(
            orchestrator,
            input=encoded,
            instance_id=instance_id,
            retry_policy=policy,
            version=version,
            return_type=cast(Any, expected_type),
        )
        return _LeafTask(
            self, inner, lambda d: df_task_failure("Sub-orchestrator", orchestrator, d)
        )

    def create_timer(self, fire_at: datetime) -> TimerTask:
        if self._continued_as_new:
            return TimerTask(self, dt_task.TimerTask())
        return TimerTask(self, self._ctx.create_timer(fire_at))

    def wait_for_external_event(self, name: str, expected_type: type | None = None) -> DurableTask:
        if self._continued_as_new:
            return self._detached()
        return _LeafTask(self, self._ctx.wait_for_external_event(name, data_type=expected_type))

    def task_all(self, activities: list[DurableTask]) -> DurableTask:
        return _WhenAllTask(self, list(activities))

    def task_any(self, activities: list[DurableTask]) -> DurableTask:
        return _WhenAnyTask(self, list(activities))

    def continue_as_new(self, input_: Any) -> None:
        """Restart with ``input_`` once the orchestrator returns (events are not carried over)."""
        if self._continued_as_new:
            return
        self._continued_as_new = True
        encoded = None if input_ is None else df_dumps(input_)
        self._ctx.continue_as_new(encoded, save_events=False)


def _drive(
    user: Generator[Any, Any, Any], shim: DurableContextShim
) -> Generator[dt_task.Task[Any], Any, Any]:
    """Run a Durable Functions generator as a Durable Task orchestrator generator.

    Each Durable Functions task the user yields is awaited by yielding ``when_any`` over the
    engine tasks that could still change it, so composite semantics (fail-fast ``task_all``,
    ``task_any`` returning the winner) are Durable Functions' while every scheduled action,
    and therefore replay and non-determinism checks, stays the engine's.
    """
    value: Any = None
    error: Exception | None = None
    while True:
        try:
            yielded = user.throw(error) if error is not None else user.send(value)
        except StopIteration as stop:
            return stop.value
        value, error = None, None
        if shim.will_continue_as_new:
            user.close()
            return None
        if not isinstance(yielded, DurableTask):
            raise TypeError(
                f"Orchestrator '{shim.instance_id}' yielded {type(yielded).__name__}; "
                "yield tasks created by the orchestration context"
            )
        while True:
            yielded._refresh()
            if yielded.is_completed:
                break
            leaves = yielded._pending_leaves()
            if not leaves:
                raise RuntimeError(
                    f"Orchestrator '{shim.instance_id}' waits on a task that can never complete "
                    "(every timer it depends on was cancelled)"
                )
            yield dt_task.when_any([leaf._inner for leaf in leaves])
        if yielded.is_faulted:
            error = cast(Exception, yielded.result)
        else:
            value = yielded.result


def _orchestrator_entry(name: str, fn: OrchestratorFn) -> Callable[..., Any]:
    def run(ctx: dt_task.OrchestrationContext, raw_input: Any) -> Any:
        shim = DurableContextShim(ctx, raw_input)
        produced = fn(shim)
        if isinstance(produced, GeneratorType):
            return (yield from _drive(produced, shim))
        return produced

    run.__name__ = name
    run.__qualname__ = name
    return run


class ActivityFailedError(Exception):
    """An activity raised an exception without a message; named so the failure is not lost."""


def _activity_entry(name: str, fn: ActivityFn) -> Callable[..., Any]:
    def run(ctx: dt_task.ActivityContext, value: Any) -> Any:
        try:
            return fn(value)
        except Exception as exc:
            if str(exc):
                raise
            # The sidecar protocol treats an empty error message as success; keep it a failure.
            raise ActivityFailedError(f"{type(exc).__name__} (no message)") from exc

    run.__name__ = name
    run.__qualname__ = name
    return run


# --------------------------------------------------------------------------------------------
# The backend
# --------------------------------------------------------------------------------------------


class LoopbackBackend(InMemoryOrchestrationBackend):
    """The Durable Task in-memory backend on 127.0.0.1, with recovery of abandoned work.

    The stock backend listens on ``[::]`` with 10 server threads; a worker's streaming call,
    the client's waits and every completion each hold a thread, so this one takes a free
    loopback port and ``server_threads`` threads. It also remembers every work item it handed
    out until the worker reports it done: :meth:`recover_abandoned_work` re-queues those a
    stopped worker never ran (the stock backend would leave them stuck in flight).
    """

    def __init__(self, *, server_threads: int = 64, max_history_size: int = 100_000) -> None:
        super().__init__(max_history_size=max_history_size, port=0)
        self._server_threads = server_threads
        self._outstanding_orchestrations: dict[str, pb.WorkItem] = {}
        self._outstanding_activities: dict[tuple[str, int], pb.WorkItem] = {}
        self._tracking_lock = threading.Lock()
        self._streams_changed = threading.Condition(self._tracking_lock)
        self._active_streams = 0
        self.address = ""

    def start(self) -> str:
        self._shutdown_event.clear()
        server = grpc.server(
            futures.ThreadPoolExecutor(
                max_workers=self._server_threads, thread_name_prefix="durable-backend"
            )
        )
        stubs.add_TaskHubSidecarServiceServicer_to_server(self, server)  # type: ignore[no-untyped-call]
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self._server = server
        self._port = port
        self.address = f"127.0.0.1:{port}"
        return self.address

    def GetWorkItems(self, request: pb.GetWorkItemsRequest, context: grpc.ServicerContext) -> Any:
        with self._streams_changed:
            self._active_streams += 1
        try:
            for item in super().GetWorkItems(request, context):
                with self._tracking_lock:
                    if item.HasField("orchestratorRequest"):
                        orch = item.orchestratorRequest
                        self._outstanding_orchestrations[orch.instanceId] = item
                    elif item.HasField("activityRequest"):
                        act = item.activityRequest
                        key = (act.orchestrationInstance.instanceId, act.taskId)
                        self._outstanding_activities[key] = item
                yield item
        finally:
            with self._streams_changed:
                self._active_streams -= 1
                self._streams_changed.notify_all()

    def CompleteOrchestratorTask(
        self, request: pb.OrchestratorResponse, context: grpc.ServicerContext
    ) -> pb.CompleteTaskResponse:
        with self._tracking_lock:
            self._outstanding_orchestrations.pop(request.instanceId, None)
        return super().CompleteOrchestratorTask(request, context)

    def CompleteActivityTask(
        self, request: pb.ActivityResponse, context: grpc.ServicerContext
    ) -> pb.CompleteTaskResponse:
        with self._tracking_lock:
            self._outstanding_activities.pop((request.instanceId, request.taskId), None)
        return super().CompleteActivityTask(request, context)

    def AbandonTaskOrchestratorWorkItem(
        self, request: pb.AbandonOrchestrationTaskRequest, context: grpc.ServicerContext
    ) -> pb.AbandonOrchestrationTaskResponse:
        with self._tracking_lock:
            for instance_id, item in list(self._outstanding_orchestrations.items()):
                if item.completionToken == request.completionToken:
                    del self._outstanding_orchestrations[instance_id]
        return super().AbandonTaskOrchestratorWorkItem(request, context)

    def _watch_sub_orchestration(
        self, parent_instance_id: str, sub_instance_id: str, task_id: int
    ) -> None:
        # The stock watcher's "no timeout" wait gives up after 30 s, so a sub-orchestration
        # running longer never reported back and its parent waited forever. Wait in slices
        # until the child really ends, then let the stock code deliver its result.
        def wait_then_deliver() -> None:
            while not self._shutdown_event.is_set():
                done = self._wait_for_state(
                    sub_instance_id, self._is_terminal_status_check, timeout=5.0
                )
                if done is not None:
                    InMemoryOrchestrationBackend._watch_sub_orchestration(
                        self, parent_instance_id, sub_instance_id, task_id
                    )
                    return

        threading.Thread(target=wait_then_deliver, name="sub-orchestration", daemon=True).start()

    def _process_create_sub_orchestration_action(
        self, instance: OrchestrationInstance, action: pb.OrchestratorAction
    ) -> None:
        super()._process_create_sub_orchestration_action(instance, action)
        # The stock backend starts the child without naming its parent, so the child's
        # context would report no parent_instance_id; record it as a real sidecar does.
        child = self._instances.get(action.createSubOrchestration.instanceId)
        if child is None:
            return
        for event in child.pending_events:
            if event.HasField("executionStarted"):
                parent = event.executionStarted.parentInstance
                parent.taskScheduledId = action.id
                parent.name.value = instance.name
                parent.orchestrationInstance.instanceId = instance.instance_id
                break

    def recover_abandoned_work(self, *, stream_wait_seconds: float = 5.0) -> int:
        """Re-queue work handed to a worker that has stopped without finishing it.

        Call only when no worker is connected (between stopping one and starting the next).
        It first waits (up to ``stream_wait_seconds``) for the server side of cancelled work
        streams to wind down, since a dying stream could otherwise take re-queued work with
        it; anything still outstanding then can no longer complete. Activities may therefore
        run twice, which is the at-least-once contract of Durable Functions. Returns the number
        of work items re-queued.
        """
        with self._streams_changed:
            idle = self._streams_changed.wait_for(
                lambda: self._active_streams == 0, timeout=stream_wait_seconds
            )
        if not idle:
            _log.warning(
                "work streams still open while recovering abandoned work; "
                "items they hold may run twice"
            )
        with self._tracking_lock:
            orchestrations = list(self._outstanding_orchestrations.values())
            activities = list(self._outstanding_activities.values())
            self._outstanding_orchestrations.clear()
            self._outstanding_activities.clear()
        recovered = 0
        with self._lock:
            for item in orchestrations:
                instance_id = item.orchestratorRequest.instanceId
                instance = self._instances.get(instance_id)
                if instance is None or instance_id not in self._orchestration_in_flight:
                    continue
                if str(instance.completion_token) != item.completionToken:
                    continue
                instance.pending_events = list(instance.dispatched_events) + list(
                    instance.pending_events
                )
                instance.dispatched_events.clear()
                self._orchestration_in_flight.discard(instance_id)
                self._enqueue_orchestration(instance_id)
                recovered += 1
            for item in activities:
                act = item.activityRequest
                instance_id = act.orchestrationInstance.instanceId
                if instance_id not in self._instances:
                    continue
                self._activity_queue.append(
                    ActivityWorkItem(
                        instance_id=instance_id,
                        name=act.name,
                        task_id=act.taskId,
                        input=act.input.value if act.HasField("input") else None,
                        completion_token=int(item.completionToken),
                    )
                )
                recovered += 1
            if recovered:
                self._work_available.set()
        if recovered:
            _log.info("re-queued %d work item(s) left by a stopped worker", recovered)
        return recovered

    def history_of(self, instance_id: str) -> list[pb.HistoryEvent] | None:
        """A copy of the committed history of an instance, or None when it does not exist."""
        with self._lock:
            instance = self._instances.get(instance_id)
            if instance is None:
                return None
            copies: list[pb.HistoryEvent] = []
            for event in instance.history:
                clone = pb.HistoryEvent()
                clone.CopyFrom(event)
                copies.append(clone)
            return copies


# --------------------------------------------------------------------------------------------
# The engine
# --------------------------------------------------------------------------------------------


class LocalDurableEngine:
    """Durable Functions orchestrators and activities on a loopback Durable Task engine.

    Lifecycle: :meth:`start` (backend, worker, client), :meth:`stop` (idempotent). The
    management methods (``start_instance`` …) are blocking gRPC calls; the HTTP layer runs
    them off the event loop. They raise ``NotFoundError`` for unknown instances,
    ``ConflictError`` for state conflicts and ``BadInputError`` for unknown orchestrators.
    """

    def __init__(
        self,
        *,
        task_hub: str,
        orchestrators: Mapping[str, OrchestratorFn],
        activities: Mapping[str, ActivityFn],
        max_concurrency: int = 16,
    ) -> None:
        if max_concurrency < 1:
            raise BadInputError("max_concurrency must be at least 1")
        self.task_hub = task_hub
        self._orchestrators = dict(orchestrators)
        self._activities = dict(activities)
        self._max_concurrency = max_concurrency
        self._converter = DurableFunctionsDataConverter()
        self._lifecycle = threading.RLock()
        self._backend: LoopbackBackend | None = None
        self._worker: dt_worker.TaskHubGrpcWorker | None = None
        self._worker_channel: grpc.Channel | None = None
        self._client: dt_client.TaskHubGrpcClient | None = None
        self._client_channel: grpc.Channel | None = None

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>`` of the gRPC backend (empty before :meth:`start`)."""
        return self._backend.address if self._backend else ""

    @property
    def orchestrator_names(self) -> frozenset[str]:
        return frozenset(self._orchestrators)

    def start(self) -> None:
        with self._lifecycle:
            if self._backend is not None:
                return
            backend = LoopbackBackend(server_threads=max(64, 4 * self._max_concurrency))
            address = backend.start()
            self._backend = backend
            try:
                self._start_worker()
                self._client_channel = grpc.insecure_channel(address, options=_GRPC_CHANNEL_OPTIONS)
                self._client = dt_client.TaskHubGrpcClient(
                    channel=self._client_channel,
                    data_converter=self._converter,
                    logger=logging.getLogger(f"{__name__}.client"),
                )
            except Exception:
                self.stop()
                raise
            _log.info("durable engine for task hub %s listening on %s", self.task_hub, address)

    def stop(self) -> None:
        with self._lifecycle:
            self._stop_worker()
            if self._client is not None:
                self._client.close()
                self._client = None
            if self._client_channel is not None:
                self._client_channel.close()
                self._client_channel = None
            if self._backend is not None:
                self._backend.stop(grace=1.0)
                self._backend = None

    def restart_worker(self) -> None:
        """Stop the worker and start a fresh one; in-flight instances resume on the new one."""
        with self._lifecycle:
            backend = self._require_backend()
            self._stop_worker()
            backend.recover_abandoned_work()
            self._start_worker()

    def __enter__(self) -> LocalDurableEngine:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start_worker(self) -> None:
        backend = self._require_backend()
        channel = grpc.insecure_channel(backend.address, options=_GRPC_CHANNEL_OPTIONS)
        worker = dt_worker.TaskHubGrpcWorker(
            channel=channel,
            data_converter=self._converter,
            concurrency_options=dt_worker.ConcurrencyOptions(
                maximum_concurrent_activity_work_items=self._max_concurrency,
                maximum_concurrent_orchestration_work_items=self._max_concurrency,
                maximum_thread_pool_workers=self._max_concurrency,
            ),
            # Lifecycle spans belong to the host's telemetry, not to the local engine.
            emit_trace_spans=False,
            # Route the SDK's logs through the app's logging configuration (its default
            # logger prints every replay at INFO to stderr).
            logger=_worker_log,
        )
        for name, orchestrator in self._orchestrators.items():
            worker.add_orchestrator(_orchestrator_entry(name, orchestrator))
        for name, activity in self._activities.items():
            worker.add_activity(_activity_entry(name, activity))
        worker.start()  # type: ignore[no-untyped-call]
        self._worker, self._worker_channel = worker, channel

    def _stop_worker(self) -> None:
        if self._worker is not None:
            self._worker.stop()  # type: ignore[no-untyped-call]
            self._worker = None
        if self._worker_channel is not None:
            self._worker_channel.close()
            self._worker_channel = None

    def _require_backend(self) -> LoopbackBackend:
        if self._backend is None:
            raise RuntimeError("The durable engine is not started; call start() first")
        return self._backend

    def _require_client(self) -> dt_client.TaskHubGrpcClient:
        if self._client is None:
            raise RuntimeError("The durable engine is not started; call start() first")
        return self._client

    # -- HTTP -------------------------------------------------------------------------------

    def add_routes(
        self, app: web.Application, *, base_url: Callable[[], str], system_key: str
    ) -> None:
        """Serve the Durable HTTP API on ``app`` (see :mod:`local.durable_http`)."""
        add_durable_routes(app, self, base_url=base_url, system_key=system_key)

    def client_binding(self, base_url: str, system_key: str) -> str:
        """The durable client binding JSON the real ``DurableOrchestrationClient`` is built from."""
        return client_binding_json(base_url, self.task_hub, system_key)

    # -- management (blocking) --------------------------------------------------------------

    def start_instance(self, name: str, instance_id: str | None, input_value: Any) -> str:
        """Start ``name``; replaces a terminal instance with the same id, refuses a live one."""
        if name not in self._orchestrators:
            raise BadInputError(
                f"The function '{name}' doesn't exist, is disabled, or is not an orchestrator "
                "function.",
                code="orchestrator_not_found",
            )
        client = self._require_client()
        policy = pb.OrchestrationIdReusePolicy(replaceableStatus=list(_REPLACEABLE_STATUSES))
        try:
            return client.schedule_new_orchestration(
                name,
                input=input_value,
                instance_id=instance_id or uuid.uuid4().hex,
                reuse_id_policy=policy,
            )
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.ALREADY_EXISTS:
                status = self._status_name(instance_id or "")
                raise ConflictError(
                    f"An Orchestration instance with the status {status} already exists."
                ) from exc
            raise

    def _status_name(self, instance_id: str) -> str:
        state = self._require_client().get_orchestration_state(instance_id, fetch_payloads=False)
        return runtime_status_name(state.runtime_status.value) if state else "Unknown"

    def get_instance(
        self,
        instance_id: str,
        *,
        show_input: bool = True,
        show_history: bool = False,
        show_history_output: bool = False,
    ) -> InstanceView | None:
        state = self._require_client().get_orchestration_state(instance_id, fetch_payloads=True)
        if state is None:
            return None
        history = None
        if show_history:
            history = self._require_backend().history_of(instance_id) or []
        return view_from_state(
            state,
            show_input=show_input,
            history=history,
            show_history_output=show_history_output,
        )

    def list_instances(
        self,
        *,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        statuses: list[int] | None = None,
        prefix: str | None = None,
        show_input: bool = False,
    ) -> list[InstanceView]:
        query = dt_client.OrchestrationQuery(
            created_time_from=created_from,
            created_time_to=created_to,
            runtime_status=[dt_client.OrchestrationStatus(s) for s in statuses]
            if statuses
            else None,
            fetch_inputs_and_outputs=True,
            instance_id_prefix=prefix,
        )
        states = self._require_client().get_all_orchestration_states(query)
        return [view_from_state(s, show_input=show_input) for s in states]

    def raise_event(self, instance_id: str, event_name: str, data: Any) -> None:
        self._require_client().raise_orchestration_event(instance_id, event_name, data=data)

    def terminate(self, instance_id: str, reason: str | None) -> None:
        self._require_client().terminate_orchestration(instance_id, output=reason)

    def suspend(self, instance_id: str, reason: str | None) -> None:
        self._require_client().suspend_orchestration(instance_id, reason=reason)

    def resume(self, instance_id: str, reason: str | None) -> None:
        self._require_client().resume_orchestration(instance_id, reason=reason)

    def rewind(self, instance_id: str, reason: str | None) -> None:
        self._require_client().rewind_orchestration(instance_id, reason=reason)

    def restart(self, instance_id: str, *, new_instance_id: bool) -> str:
        try:
            return self._require_client().restart_orchestration(
                instance_id, restart_with_new_instance_id=new_instance_id
            )
        except grpc.RpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.NOT_FOUND:
                raise NotFoundError(f"No instance with ID '{instance_id}' found.") from exc
            if code == grpc.StatusCode.FAILED_PRECONDITION:
                raise ConflictError(
                    f"Instance '{instance_id}' is still running; only finished instances restart"
                ) from exc
            raise

    def purge(self, instance_id: str) -> int:
        result = self._require_client().purge_orchestration(instance_id, recursive=False)
        return result.deleted_instance_count

    def purge_by(
        self,
        *,
        created_from: datetime | None,
        created_to: datetime | None,
        statuses: list[int] | None,
    ) -> int:
        result = self._require_client().purge_orchestrations_by(
            created_time_from=created_from,
            created_time_to=created_to,
            runtime_status=[dt_client.OrchestrationStatus(s) for s in statuses]
            if statuses
            else None,
        )
        return result.deleted_instance_count

    def wait_for_completion(self, instance_id: str, timeout: float = 30.0) -> InstanceView:
        """Block until the instance is terminal; raises ``TimeoutError``/``NotFoundError``."""
        state = self._require_client().wait_for_orchestration_completion(
            instance_id, fetch_payloads=True, timeout=timeout
        )
        if state is None:
            raise NotFoundError(f"No instance with ID '{instance_id}' found.")
        return view_from_state(state, show_input=True)
