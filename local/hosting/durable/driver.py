"""Durable Functions functions as Durable Task worker entries.

:func:`drive` runs a Durable Functions orchestrator generator as a Durable Task orchestrator
generator; :func:`orchestrator_entry` and :func:`activity_entry` wrap the app's functions in
the shape ``TaskHubGrpcWorker`` registers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator
from types import GeneratorType
from typing import Any, cast

from azure.durable_functions.models.utils.df_serialization import df_dumps
from durabletask import task as dt_task

from adapters.durable_limits import large_payload_note, payload_bytes
from local.hosting.durable.context import DurableContextShim, DurableTask

_limits_log = logging.getLogger("local.hosting.durable.limits")
_activity_log = logging.getLogger("local.hosting.durable.activities")


class AzureLimitError(Exception):
    """The orchestration did something Azure Durable Functions refuses (the message says what).

    Raised by the driver, outside the orchestrator's own code, because in Azure these checks
    run in the Durable extension after the orchestrator hands back control.
    """


OrchestratorFn = Callable[[Any], Generator[Any, Any, Any]]
"""The user's Durable Functions generator function; it takes the orchestration context."""

ActivityFn = Callable[[Any], Any]
"""Python value in, JSON-serialisable Python value out; may raise."""


def drive(
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
            _refuse_if_azure_would(shim)
            _note_output(shim, stop.value)
            return stop.value
        value, error = None, None
        _refuse_if_azure_would(shim)
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
        if yielded._faulted:
            error = cast(Exception, yielded.result)
        else:
            value = yielded.result


def _refuse_if_azure_would(shim: DurableContextShim) -> None:
    refusal = shim.platform_refusal()
    if refusal is not None:
        raise AzureLimitError(refusal)


def _note_output(shim: DurableContextShim, output: Any) -> None:
    if shim.is_replaying or output is None:
        return
    note = large_payload_note("the output", payload_bytes(df_dumps(output)))
    if note is not None:
        _limits_log.warning(
            "orchestrator '%s' (instance '%s'): %s", shim.orchestrator, shim.instance_id, note
        )


def orchestrator_entry(name: str, fn: OrchestratorFn) -> Callable[..., Any]:
    def run(ctx: dt_task.OrchestrationContext, raw_input: Any) -> Any:
        shim = DurableContextShim(ctx, raw_input, name)
        produced = fn(shim)
        if isinstance(produced, GeneratorType):
            return (yield from drive(produced, shim))
        return produced

    run.__name__ = name
    run.__qualname__ = name
    return run


class ActivityFailedError(Exception):
    """An activity raised an exception without a message; named so the failure is not lost."""


def activity_entry(name: str, fn: ActivityFn) -> Callable[..., Any]:
    def run(ctx: dt_task.ActivityContext, value: Any) -> Any:
        try:
            result = fn(value)
        except Exception as exc:
            # As the Functions host logs a failed invocation: the orchestrator may turn the
            # failure into a result, and without this line nothing says why.
            first = str(exc).strip().split("\n", 1)[0][:500]
            _activity_log.warning(
                "activity '%s' (instance '%s') failed: %s: %s",
                name, ctx.orchestration_id, type(exc).__name__, first,
            )  # fmt: skip
            if str(exc):
                raise
            # The sidecar protocol treats an empty error message as success; keep it a failure.
            raise ActivityFailedError(f"{type(exc).__name__} (no message)") from exc
        if result is not None:
            note = large_payload_note("its result", payload_bytes(df_dumps(result)))
            if note is not None:
                _limits_log.warning(
                    "activity '%s' (instance '%s'): %s", name, ctx.orchestration_id, note
                )
        return result

    run.__name__ = name
    run.__qualname__ = name
    return run
