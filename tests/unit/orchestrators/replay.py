"""Drive an orchestrator through azure-functions-durable's own replay executor.

This is the production path: in Azure the Durable extension sends the Python worker the
orchestration's history and the SDK's ``TaskOrchestrationExecutor`` replays the generator
over it. ``run`` plays the extension's part: it records the actions each episode asks for
as scheduled events, answers them (``respond``) in the order ``choose`` picks, and starts a
new episode over the whole history, until the orchestrator finishes. Each episode's state
(actions, custom status) is kept so tests can check determinism and sizes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

ACTIVITY, ACTIVITY_RETRY, SUB, SUB_RETRY = 0, 1, 2, 3

Respond = Callable[[dict[str, Any]], Any]
"""Given an action (``functionName``, ``input`` as a value), its result; raise to fail it."""

Choose = Callable[[list[int]], list[int]]
"""Given the open task ids (oldest first), which to complete in the next episode."""


@dataclass
class Run:
    output: Any = None
    error: str | None = None
    episodes: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def custom_statuses(self) -> list[Any]:
        return [e.get("customStatus") for e in self.episodes]


def _time(step: int) -> str:
    moment = datetime(2026, 11, 23, 6, tzinfo=UTC) + timedelta(seconds=step)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _event(kind: int, step: int, **fields: Any) -> dict[str, Any]:
    return {"EventType": kind, "EventId": -1, "IsPlayed": False, "Timestamp": _time(step), **fields}


def execute(
    handle: Callable[[str], str], name: str, instance_id: str, input_text: str, history: list[Any]
) -> tuple[dict[str, Any] | None, str | None]:
    """One episode over ``history``: the orchestrator state, or the error it raised."""
    context = {
        "history": history,
        "input": input_text,
        "instanceId": instance_id,
        "isReplaying": False,
        "parentInstanceId": None,
    }
    try:
        return json.loads(handle(json.dumps(context))), None
    except Exception as exc:  # the SDK raises the orchestrator's failure
        return None, str(exc).split("\n\n$OutOfProcData$:", 1)[0]


def run(
    handle: Callable[[str], str],
    name: str,
    payload: Any,
    respond: Respond,
    *,
    instance_id: str = "train-1",
    choose: Choose = lambda open_ids: open_ids,
    max_episodes: int = 5000,
) -> Run:
    """Run ``handle`` (an ``Orchestrator.create`` handle) to completion."""
    input_text = json.dumps(payload)
    step = 0
    history: list[dict[str, Any]] = [
        _event(12, step),
        _event(0, step, Name=name, Input=input_text, Version=""),
    ]
    outcome = Run(history=history)
    answers: dict[int, tuple[bool, Any]] = {}
    open_ids: list[int] = []
    for _ in range(max_episodes):
        state, error = execute(handle, name, instance_id, input_text, history)
        if error is not None:
            outcome.error = error
            return outcome
        assert state is not None
        outcome.episodes.append(state)
        actions = [a for group in state["actions"] for a in group]
        for task_id in range(len(outcome.actions), len(actions)):
            action = actions[task_id]
            outcome.actions.append(action)
            kind = action["actionType"]
            if kind in (SUB, SUB_RETRY):
                history.append(
                    _event(
                        7,
                        step,
                        EventId=task_id,
                        Name=action["functionName"],
                        InstanceId=action.get("instanceId"),
                    )
                )
            else:
                history.append(_event(4, step, EventId=task_id, Name=action["functionName"]))
            request = dict(
                action, input=json.loads(action["input"]) if action.get("input") else None
            )
            try:
                answers[task_id] = (True, respond(request))
            except Exception as exc:  # a failed task
                answers[task_id] = (False, str(exc))
            open_ids.append(task_id)
        if state["isDone"]:
            outcome.output = state.get("output")
            return outcome
        chosen = choose(list(open_ids))
        assert chosen, "the orchestrator waits but nothing was chosen to complete"
        step += 1
        history.append(_event(12, step))
        for task_id in chosen:
            open_ids.remove(task_id)
            ok, value = answers[task_id]
            sub = outcome.actions[task_id]["actionType"] in (SUB, SUB_RETRY)
            if ok:
                history.append(
                    _event(8 if sub else 5, step, TaskScheduledId=task_id, Result=json.dumps(value))
                )
            else:
                history.append(
                    _event(
                        9 if sub else 6,
                        step,
                        TaskScheduledId=task_id,
                        Reason=value,
                        Details=json.dumps({"Message": value}),
                    )
                )
    raise AssertionError(f"{name} did not finish in {max_episodes} episodes")
