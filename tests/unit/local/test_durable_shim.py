"""Unit tests of the local Durable engine's pure pieces and of the context shim's semantics.

The shim is exercised over real ``durabletask`` task objects handed out by a small fake of the
Durable Task orchestration context, so Durable Functions semantics (fail-fast ``task_all``,
``task_any`` returning the winner, plain ``Exception`` for failed activities) are checked
without a server.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.durable_functions as df
import azure.functions as func
import pytest
from azure.durable_functions.models.DurableOrchestrationContext import (
    DurableOrchestrationContext,
)
from azure.durable_functions.models.history.HistoryEventType import HistoryEventType
from azure.durable_functions.models.utils.df_serialization import df_dumps
from durabletask import task as dt_task
from durabletask.internal import helpers

from adapters.errors import BadInputError
from local.hosting.durable.codec import DurableFunctionsDataConverter, df_input
from local.hosting.durable.context import DurableContextShim, df_task_failure, retry_policy_from
from local.hosting.durable.driver import drive
from local.hosting.durable.http import (
    INSTANCE_PLACEHOLDER,
    client_binding_json,
    format_time,
    history_events,
    management_urls,
    runtime_status_name,
    runtime_status_values,
    status_http_code,
)

# --------------------------------------------------------------------------------------------
# A small fake of durabletask's OrchestrationContext handing out real durabletask tasks
# --------------------------------------------------------------------------------------------


class FakeEngineContext:
    def __init__(self, instance_id: str = "inst-1", now: datetime | None = None) -> None:
        self.instance_id = instance_id
        self.parent_instance_id = None
        self.is_replaying = False
        self.current_utc_datetime = now or datetime(2025, 3, 4, 5, 6, 7, 123456)
        self.scheduled: list[tuple[str, Any, dt_task.Task[Any]]] = []
        self.custom_status: Any = None
        self.continued_with: Any = "not continued"

    def call_activity(self, name: str, *, input: Any = None, **_: Any) -> dt_task.Task[Any]:
        task: dt_task.CompletableTask[Any] = dt_task.CompletableTask()
        self.scheduled.append((name, input, task))
        return task

    def create_timer(self, fire_at: datetime) -> dt_task.TimerTask:
        timer = dt_task.TimerTask()
        self.scheduled.append(("timer", fire_at, timer))
        return timer

    def wait_for_external_event(self, name: str, **_: Any) -> dt_task.Task[Any]:
        event: dt_task.CancellableTask[Any] = dt_task.CancellableTask()
        self.scheduled.append((f"event:{name}", None, event))
        return event

    def set_custom_status(self, status: Any) -> None:
        self.custom_status = status

    def continue_as_new(self, new_input: Any, *, save_events: bool = False) -> None:
        self.continued_with = new_input


def fail(task: dt_task.Task[Any], message: str) -> None:
    assert isinstance(task, dt_task.CompletableTask)
    task.fail(message, ValueError(message))


def shim_with(raw_input: Any = None) -> tuple[DurableContextShim, FakeEngineContext]:
    engine = FakeEngineContext()
    return DurableContextShim(engine, raw_input), engine  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Pure helpers
# --------------------------------------------------------------------------------------------


def test_retry_options_map_to_a_fixed_interval_retry_policy() -> None:
    policy = retry_policy_from(
        df.RetryOptions(first_retry_interval_in_milliseconds=250, max_number_of_attempts=4)
    )

    assert policy.first_retry_interval == timedelta(milliseconds=250)
    assert policy.max_number_of_attempts == 4
    assert policy.backoff_coefficient == 1.0


def test_retry_options_without_attempts_are_rejected() -> None:
    with pytest.raises(BadInputError, match="max_number_of_attempts"):
        retry_policy_from(
            df.RetryOptions(first_retry_interval_in_milliseconds=10, max_number_of_attempts=0)
        )


def test_failed_task_becomes_a_plain_exception_shaped_like_durable_functions() -> None:
    details = dt_task.FailureDetails("disk full", "builtins.OSError", "  File x, line 1")

    error = df_task_failure("Activity", "write_manifest", details)

    assert type(error) is Exception
    reason, detail = str(error).split(" \n ", 1)
    assert reason == "Activity function 'write_manifest' failed: disk full"
    assert json.loads(detail)["ExceptionType"] == "builtins.OSError"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, None),
        ('{"segments": ["a", "b"]}', {"segments": ["a", "b"]}),  # JSON text from the DF client
        ({"segments": ["a"]}, {"segments": ["a"]}),  # a raw JSON object posted by ADF
        ('"plain"', "plain"),
        (7, 7),
    ],
)
def test_orchestration_input_is_decoded_like_get_input(raw: Any, expected: Any) -> None:
    assert df_input(raw) == expected


class Segment:
    def __init__(self, region: str, size: str) -> None:
        self.region, self.size = region, size

    @staticmethod
    def to_json(obj: Segment) -> dict[str, str]:
        return {"region": obj.region, "size": obj.size}

    @classmethod
    def from_json(cls, data: dict[str, str]) -> Segment:
        return cls(data["region"], data["size"])


def test_converter_uses_the_durable_functions_wire_format() -> None:
    converter = DurableFunctionsDataConverter()
    segment = Segment("west", "large")

    encoded = converter.serialize(segment)
    decoded = converter.deserialize(encoded, Segment)

    assert encoded == df_dumps(segment)
    assert isinstance(decoded, Segment)
    assert (decoded.region, decoded.size) == ("west", "large")
    assert converter.serialize(None) is None
    assert converter.deserialize("") is None


def test_runtime_status_names_cover_every_engine_status() -> None:
    names = {runtime_status_name(v) for v in runtime_status_values(",".join(_ALL_STATUSES))}

    assert names == set(_ALL_STATUSES)
    assert runtime_status_values(" running ,COMPLETED") == runtime_status_values(
        "Running,Completed"
    )
    with pytest.raises(BadInputError, match="Sleeping"):
        runtime_status_values("Running,Sleeping")


_ALL_STATUSES = [
    "Pending",
    "Running",
    "Completed",
    "ContinuedAsNew",
    "Failed",
    "Canceled",
    "Terminated",
    "Suspended",
]


@pytest.mark.parametrize(
    ("status", "strict", "code"),
    [
        ("Pending", False, 202),
        ("Running", False, 202),
        ("ContinuedAsNew", False, 202),
        ("Suspended", False, 202),
        ("Completed", False, 200),
        ("Terminated", False, 200),
        ("Failed", False, 200),
        ("Failed", True, 500),
        ("Completed", True, 200),
    ],
)
def test_status_http_code_follows_the_functions_host(status: str, strict: bool, code: int) -> None:
    assert status_http_code(status, fail_with_500=strict) == code


def test_times_are_utc_with_z() -> None:
    assert format_time(datetime(2025, 1, 2, 3, 4, 5, 999)) == "2025-01-02T03:04:05Z"
    east = datetime(2025, 1, 2, 5, 4, 5, tzinfo=UTC).astimezone()
    assert format_time(east) == "2025-01-02T05:04:05Z"


def test_management_urls_point_at_the_public_webhooks_with_the_key() -> None:
    urls = management_urls("http://127.0.0.1:7071/", "hub", "k3y")

    assert urls["id"] == INSTANCE_PLACEHOLDER
    assert urls["statusQueryGetUri"] == (
        "http://127.0.0.1:7071/runtime/webhooks/durabletask/instances/INSTANCEID"
        "?taskHub=hub&connection=Storage&code=k3y"
    )
    assert urls["sendEventPostUri"].startswith(
        "http://127.0.0.1:7071/runtime/webhooks/durabletask/instances/INSTANCEID/raiseEvent/"
        "{eventName}?"
    )
    assert all("code=k3y" in url for key, url in urls.items() if key != "id")


def test_real_client_built_from_the_binding_links_to_the_requesting_origin() -> None:
    client = df.DurableOrchestrationClient(
        client_binding_json("http://127.0.0.1:7071", "hub", "k3y")
    )
    request = func.HttpRequest(
        method="POST", url="http://127.0.0.1:9999/api/orchestrations/train", body=b"{}"
    )

    response = client.create_check_status_response(request, "abc-123")
    payload = json.loads(response.get_body())

    assert response.status_code == 202
    assert payload["id"] == "abc-123"
    assert payload["statusQueryGetUri"] == (
        "http://127.0.0.1:9999/runtime/webhooks/durabletask/instances/abc-123"
        "?taskHub=hub&connection=Storage&code=k3y"
    )
    assert payload["terminatePostUri"].endswith("&code=k3y")
    # The RPC routes share the public port locally, so the binding carries their key.
    rpc = "http://durabletask:k3y@127.0.0.1:7071/durabletask/"
    assert client._orchestration_bindings.rpc_base_url == rpc
    assert "durabletask:k3y@" not in response.get_body().decode()


def test_history_hides_replay_bookkeeping_and_payloads_unless_asked() -> None:
    events = [
        helpers.new_orchestrator_started_event(datetime(2025, 1, 1)),
        helpers.new_execution_started_event("run_train", "i1", '{"a": 1}'),
        helpers.new_task_scheduled_event(1, "submit_job", '"seg"'),
        helpers.new_task_completed_event(1, '{"job": "j-1"}'),
        helpers.new_orchestrator_completed_event(),
    ]

    quiet = history_events(events, show_output=False)
    loud = history_events(events, show_output=True)

    assert [e["EventType"] for e in quiet] == [
        "ExecutionStarted",
        "TaskScheduled",
        "TaskCompleted",
    ]
    assert quiet[0]["Input"] == {"a": 1}
    assert "Result" not in quiet[2]
    assert loud[2]["Result"] == {"job": "j-1"}
    assert loud[1]["Name"] == "submit_job"


# --------------------------------------------------------------------------------------------
# Context shim semantics
# --------------------------------------------------------------------------------------------


def test_task_all_completes_with_results_in_call_order() -> None:
    shim, engine = shim_with()
    tasks = [shim.call_activity("square", i) for i in range(3)]
    group = shim.task_all(tasks)

    for _, value, inner in reversed(engine.scheduled):
        assert isinstance(inner, dt_task.CompletableTask)
        group._refresh()
        assert not group.is_completed
        inner.complete(value * value)
    group._refresh()

    assert group.is_completed
    assert group.result == [0, 1, 4]


def test_task_all_fails_as_soon_as_one_activity_fails() -> None:
    shim, engine = shim_with()
    group = shim.task_all([shim.call_activity("a"), shim.call_activity("b")])

    fail(engine.scheduled[1][2], "boom")
    group._refresh()

    assert group.is_completed
    assert group._faulted
    assert str(group.result).startswith("Activity function 'b' failed: boom")
    assert not engine.scheduled[0][2].is_complete  # the other activity is still running


def test_task_any_returns_the_first_child_to_complete_in_event_order() -> None:
    shim, engine = shim_with()
    first_listed = shim.call_activity("slow")
    second_listed = shim.call_activity("fast")
    race = shim.task_any([first_listed, second_listed])

    engine.scheduled[1][2].complete("fast done")  # type: ignore[attr-defined]
    engine.scheduled[0][2].complete("slow done")  # type: ignore[attr-defined]
    race._refresh()

    assert race.result is second_listed
    assert race.result == second_listed
    assert second_listed.result == "fast done"


def test_task_any_hands_back_a_failed_winner_instead_of_raising() -> None:
    shim, engine = shim_with()
    doomed = shim.call_activity("explode")
    race = shim.task_any([doomed, shim.wait_for_external_event("approval")])

    fail(engine.scheduled[0][2], "no rows")
    race._refresh()

    assert not race._faulted
    assert not hasattr(race, "is_faulted")  # the SDK's tasks have none either
    assert race.result is doomed
    assert isinstance(doomed.result, Exception)


def test_cancelled_timer_no_longer_holds_a_race_and_fired_timer_cannot_be_cancelled() -> None:
    shim, engine = shim_with()
    timer = shim.create_timer(shim.current_utc_datetime + timedelta(minutes=5))
    approval = shim.wait_for_external_event("approval")
    race = shim.task_any([approval, timer])

    timer.cancel()
    race._refresh()

    assert timer.is_cancelled
    assert race._pending_leaves() == [approval]

    fired = shim.create_timer(shim.current_utc_datetime)
    engine.scheduled[-1][2].complete(None)  # type: ignore[attr-defined]
    fired._refresh()
    with pytest.raises(ValueError, match="completed"):
        fired.cancel()


def test_driver_throws_the_activity_failure_into_the_orchestrator() -> None:
    shim, engine = shim_with('{"segment": "west"}')

    def orchestrator(context: Any) -> Any:
        segment = context.get_input()["segment"]
        try:
            yield context.call_activity("train", segment)
        except Exception as error:
            return f"handled: {error}"
        return "not reached"

    driver = drive(orchestrator(shim), shim)
    waiting = next(driver)
    assert isinstance(waiting, dt_task.WhenAnyTask)
    assert engine.scheduled[0][:2] == ("train", "west")

    fail(engine.scheduled[0][2], "GPU quota exceeded")
    with pytest.raises(StopIteration) as stopped:
        driver.send(waiting.get_result())

    assert stopped.value.value.startswith(
        "handled: Activity function 'train' failed: GPU quota exceeded"
    )


def test_driver_rejects_yielding_something_that_is_not_a_task() -> None:
    shim, _ = shim_with()

    def orchestrator(context: Any) -> Any:
        yield "not a task"

    with pytest.raises(TypeError, match="yielded str"):
        next(drive(orchestrator(shim), shim))


def test_continue_as_new_hands_json_text_over_and_stops_the_orchestrator() -> None:
    shim, engine = shim_with()

    def orchestrator(context: Any) -> Any:
        context.continue_as_new({"page": 2})
        yield context.call_activity("never")

    with pytest.raises(StopIteration):
        next(drive(orchestrator(shim), shim))

    assert engine.continued_with == '{"page": 2}'
    assert df_input(json.loads(json.dumps(engine.continued_with))) == {"page": 2}
    assert engine.scheduled == []


def test_new_uuid_and_clock_match_durable_functions() -> None:
    shim, _ = shim_with()
    reference = DurableOrchestrationContext(
        history=[
            {
                "EventType": int(HistoryEventType.ORCHESTRATOR_STARTED),
                "EventId": -1,
                "IsPlayed": False,
                "Timestamp": "2025-03-04T05:06:07.123456Z",
            }
        ],
        instanceId="inst-1",
        isReplaying=False,
        parentInstanceId=None,
    )

    assert shim.current_utc_datetime == reference.current_utc_datetime
    assert [shim.new_uuid(), shim.new_uuid()] == [reference.new_uuid(), reference.new_uuid()]


def test_custom_status_is_forwarded_to_the_engine() -> None:
    shim, engine = shim_with()

    shim.set_custom_status({"stage": "training", "done": 3})

    assert engine.custom_status == {"stage": "training", "done": 3}
    assert shim.custom_status == {"stage": "training", "done": 3}
