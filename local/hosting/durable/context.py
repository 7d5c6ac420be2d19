"""The Durable Functions orchestration context over a Durable Task orchestration context.

:class:`DurableContextShim` offers the ``DurableOrchestrationContext`` surface the app's
orchestrators are written against; every scheduling call becomes a Durable Task action, so
replay and non-determinism checks stay the engine's. Where the two programming models differ,
Durable Functions semantics win: ``task_all`` fails fast, ``task_any`` returns the winning
task, and a failed task raises a plain ``Exception`` whose message carries the error.
"""

from __future__ import annotations

import itertools
import json
import logging
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from azure.durable_functions.models.utils.df_serialization import df_dumps
from durabletask import task as dt_task

from adapters.durable_limits import (
    custom_status_size,
    instance_id_problem,
    large_payload_note,
    payload_bytes,
)
from adapters.errors import BadInputError
from local.hosting.durable.codec import df_input

_limits_log = logging.getLogger("local.hosting.durable.limits")

# Same namespace and name layout as azure-functions-durable, so ids match Azure for the same
# instance, replay time and call count.
_DF_UUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_OID, "9e952958-5e33-4daf-827f-2fa12937b875")
_DF_DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


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
    def _faulted(self) -> bool:
        # Private on purpose: azure-functions-durable's tasks have no such attribute (a failed
        # task's ``result`` is the exception), so orchestrators must not rely on it.
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
        failed = [c for c in self.children if c.is_completed and c._faulted]
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

    Every scheduling call returns a :class:`DurableTask` the orchestrator yields; the driver
    (:func:`local.hosting.durable.driver.drive`) waits for it on the engine and sends its value (or
    throws its exception) back into the generator.
    """

    def __init__(
        self, ctx: dt_task.OrchestrationContext, raw_input: Any, orchestrator: str = ""
    ) -> None:
        self._ctx = ctx
        self._raw_input = raw_input
        self.orchestrator = orchestrator
        self._seq_counter = itertools.count(1)
        self._uuid_counter = 0
        self._custom_status: Any = None
        self._custom_status_refusal: str | None = None
        self._refused_action: str | None = None
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
        """Set the status; one Azure would refuse fails the orchestration at its next yield.

        Azure checks the status the orchestrator holds when it hands back control (the
        extension re-serialises it and refuses more than 16 KB of UTF-16 JSON), so a
        too-large value replaced before the next ``yield`` is harmless, as it is there.
        """
        size = custom_status_size(status)
        if size.accepted:
            self._custom_status_refusal = None
        else:
            self._custom_status_refusal = (
                f"Orchestrator function {self._label()} set a custom status of "
                f"{size.utf16_bytes:,} bytes (UTF-16 JSON); Azure Durable Functions caps it at "
                f"16 KB and fails the orchestration: {size.refusal()}"
            )
        self._custom_status = status
        self._ctx.set_custom_status(status)

    def _label(self) -> str:
        return f"'{self.orchestrator or '?'}' (instance '{self.instance_id}')"

    def platform_refusal(self) -> str | None:
        """Why Azure would fail this orchestration at this point, or ``None``.

        The driver asks after every step of the user's generator: these failures happen in
        the Durable extension after the orchestrator code returns control, so the code itself
        can never catch them.
        """
        return self._refused_action or self._custom_status_refusal

    def _note_payload(self, what: str, value: Any) -> None:
        if self._ctx.is_replaying or value is None:
            return
        note = large_payload_note(what, payload_bytes(df_dumps(value)))
        if note is not None:
            _limits_log.warning("orchestrator %s: %s", self._label(), note)

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
        self._note_payload(f"input of activity '{activity}'", input_)
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
        self._note_payload(f"input of activity '{activity}'", input_)
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
        if instance_id is not None:
            problem = instance_id_problem(instance_id, sub_orchestration=True)
            if problem is None and instance_id.lower() == self.instance_id.lower():
                problem = (
                    "The instance ID of a sub-orchestration must be different than the "
                    "instance ID of a parent orchestration."
                )
            if problem is not None:
                self._refused_action = (
                    f"Orchestrator function {self._label()} called sub-orchestrator "
                    f"'{orchestrator}' with an id Azure refuses: {problem}"
                )
                return self._detached()
        self._note_payload(f"input of sub-orchestrator '{orchestrator}'", input_)
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
        self._note_payload("continue_as_new input", input_)
        encoded = None if input_ is None else df_dumps(input_)
        self._ctx.continue_as_new(encoded, save_events=False)
