"""The local Durable engine end to end: real Durable Task backend on loopback, real HTTP API.

Orchestrators below are ordinary Durable Functions generator functions; the engine runs them on
``durabletask``'s in-memory sidecar and the aiohttp app serves the Durable HTTP API. Requests
go over loopback exactly as ADF or the Durable Functions client would send them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import azure.durable_functions as df
import azure.functions as func
import pytest
from aiohttp import web

from adapters.errors import TransientError
from local.hosting.durable import LocalDurableEngine

pytestmark = pytest.mark.integration

SYSTEM_KEY = "test-system-key"
TASK_HUB = "testhub"

# --------------------------------------------------------------------------------------------
# Orchestrators and activities under test (plain Durable Functions code)
# --------------------------------------------------------------------------------------------


def run_chain(context: Any) -> Generator[Any, Any, Any]:
    data = context.get_input()
    first = yield context.call_activity("add_one", data["start"])
    second = yield context.call_activity("add_one", first)
    return {"result": second, "instance": context.instance_id}


def run_retry(context: Any) -> Generator[Any, Any, Any]:
    options = df.RetryOptions(first_retry_interval_in_milliseconds=100, max_number_of_attempts=3)
    return (yield context.call_activity_with_retry("flaky", options, context.instance_id))


def run_timer(context: Any) -> Generator[Any, Any, Any]:
    started = context.current_utc_datetime
    yield context.create_timer(started + timedelta(seconds=context.get_input()["seconds"]))
    return (context.current_utc_datetime - started).total_seconds()


def run_fan_out(context: Any) -> Generator[Any, Any, Any]:
    count = context.get_input()["count"]
    return (yield context.task_all([context.call_activity("square", i) for i in range(count)]))


def run_race(context: Any) -> Generator[Any, Any, Any]:
    limit = context.get_input()["timeout_seconds"]
    approval = context.wait_for_external_event("approval")
    timeout = context.create_timer(context.current_utc_datetime + timedelta(seconds=limit))
    context.set_custom_status("waiting for approval")
    winner = yield context.task_any([approval, timeout])
    if winner == approval:
        timeout.cancel()
        return {"outcome": "approved", "by": approval.result}
    return {"outcome": "timed out", "timer_fired": timeout.is_completed}


def run_counter(context: Any) -> Generator[Any, Any, Any]:
    state = context.get_input()
    count = state["count"] + 1
    if count < state["until"]:
        context.continue_as_new({"count": count, "until": state["until"]})
        return None
    yield context.call_activity("add_one", 0)
    return {"count": count}


def run_failing(context: Any) -> Generator[Any, Any, Any]:
    yield context.call_activity("explode", "segment-7")
    return "unreachable"


def run_wait(context: Any) -> Generator[Any, Any, Any]:
    context.set_custom_status({"stage": "waiting", "instance": context.instance_id})
    payload = yield context.wait_for_external_event("resume")
    context.set_custom_status({"stage": "done"})
    return {"resumed_with": payload}


def run_sleep_then_work(context: Any) -> Generator[Any, Any, Any]:
    yield context.create_timer(context.current_utc_datetime + timedelta(seconds=2))
    return (yield context.call_activity("square", 12))


def run_fail_fast(context: Any) -> Generator[Any, Any, Any]:
    try:
        yield context.task_all(
            [context.call_activity("explode", "a"), context.call_activity("held", None)]
        )
    except Exception as error:
        return f"caught: {error}"
    return "not reached"


def run_parent(context: Any) -> Generator[Any, Any, Any]:
    return (yield context.call_sub_orchestrator("run_child", {"n": 5}))


def run_slow_parent(context: Any) -> Generator[Any, Any, Any]:
    return (yield context.call_sub_orchestrator("run_slow_child", {"seconds": 33}))


def run_slow_child(context: Any) -> Generator[Any, Any, Any]:
    # Longer than the stock backend's 30 s sub-orchestration watch, and continued as new once,
    # the way the job monitor runs.
    state = context.get_input()
    if not state.get("continued"):
        context.continue_as_new({**state, "continued": True})
        return None
    yield context.create_timer(context.current_utc_datetime + timedelta(seconds=state["seconds"]))
    return "slept"


def run_child(context: Any) -> Generator[Any, Any, Any]:
    squared = yield context.call_activity("square", context.get_input()["n"])
    return {"parent": context.parent_instance_id, "squared": squared}


_REPLAYS = {"count": 0}


def run_shifty(context: Any) -> Generator[Any, Any, Any]:
    # Deliberately non-deterministic: module state changes between the first run and replay.
    _REPLAYS["count"] += 1
    activity = "add_one" if _REPLAYS["count"] == 1 else "square"
    yield context.call_activity(activity, 1)
    return "should not complete"


_ATTEMPTS: dict[str, int] = {}
_ATTEMPTS_LOCK = threading.Lock()


def flaky(key: str) -> dict[str, int]:
    with _ATTEMPTS_LOCK:
        _ATTEMPTS[key] = _ATTEMPTS.get(key, 0) + 1
        attempt = _ATTEMPTS[key]
    if attempt < 3:
        raise TransientError(f"model registry unavailable (attempt {attempt})")
    return {"attempts": attempt}


def explode(segment: str) -> None:
    raise ValueError(f"cannot train {segment}: no rows")


_RELEASE_HELD = threading.Event()


def held(_: Any) -> str:
    _RELEASE_HELD.wait(timeout=10)
    return "released"


ORCHESTRATORS: dict[str, Callable[[Any], Generator[Any, Any, Any]]] = {
    f.__name__: f
    for f in (
        run_chain,
        run_retry,
        run_timer,
        run_fan_out,
        run_race,
        run_counter,
        run_failing,
        run_wait,
        run_sleep_then_work,
        run_shifty,
        run_fail_fast,
        run_parent,
        run_child,
        run_slow_parent,
        run_slow_child,
    )
}
ACTIVITIES: dict[str, Callable[[Any], Any]] = {
    "add_one": lambda value: value + 1,
    "square": lambda value: value * value,
    "flaky": flaky,
    "explode": explode,
    "held": held,
}

# --------------------------------------------------------------------------------------------
# Fixture: engine + aiohttp app on a free loopback port
# --------------------------------------------------------------------------------------------


@dataclass
class DurableHost:
    engine: LocalDurableEngine
    base_url: str

    def public(self, path: str, *, key: str | None = SYSTEM_KEY) -> str:
        query = f"?code={key}" if key is not None else ""
        return f"{self.base_url}/runtime/webhooks/durabletask{path}{query}"

    def rpc(self, path: str, *, key: str | None = SYSTEM_KEY) -> str:
        # The RPC routes need the system key too (the client binding carries it).
        query = f"?code={key}" if key is not None else ""
        return f"{self.base_url}/durabletask{path}{query}"


@pytest.fixture(scope="module")
def host() -> Iterator[DurableHost]:
    engine = LocalDurableEngine(
        task_hub=TASK_HUB, orchestrators=ORCHESTRATORS, activities=ACTIVITIES, max_concurrency=8
    )
    engine.start()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="durable-test-http", daemon=True)
    thread.start()
    app = web.Application()
    bound: dict[str, str] = {}
    engine.add_routes(app, base_url=lambda: bound["base"], system_key=SYSTEM_KEY)
    runner = web.AppRunner(app)

    async def serve() -> str:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host_, port = runner.addresses[0][:2]
        return f"http://{host_}:{port}"

    bound["base"] = asyncio.run_coroutine_threadsafe(serve(), loop).result(timeout=10)
    try:
        yield DurableHost(engine=engine, base_url=bound["base"])
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        engine.stop()


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http(method: str, url: str, body: Any = None) -> tuple[int, dict[str, str], Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with _NO_PROXY.open(request, timeout=15) as response:
            raw = response.read()
            return response.status, dict(response.headers), json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        raw = error.read()
        return error.code, dict(error.headers), json.loads(raw) if raw else None


def start(host: DurableHost, name: str, body: Any = None, instance_id: str | None = None) -> Any:
    path = f"/orchestrators/{name}" + (f"/{instance_id}" if instance_id else "")
    status, headers, payload = http("POST", host.public(path), body)
    assert status == 202, payload
    assert headers["Location"] == payload["statusQueryGetUri"]
    return payload


def wait_for(
    url: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = 20.0
) -> tuple[int, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        status, _, body = http("GET", url)
        if predicate(body):
            return status, body
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached within {timeout}s; last status {body}")
        time.sleep(0.05)


def finished(body: dict[str, Any]) -> bool:
    return body.get("runtimeStatus") in {"Completed", "Failed", "Terminated", "Canceled"}


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------


def test_activity_chain_completes_and_status_has_the_contract_shape(host: DurableHost) -> None:
    started = start(host, "run_chain", {"start": 40})
    assert set(started) >= {
        "id",
        "statusQueryGetUri",
        "sendEventPostUri",
        "terminatePostUri",
        "rewindPostUri",
        "purgeHistoryDeleteUri",
        "suspendPostUri",
        "resumePostUri",
    }
    assert (
        f"/runtime/webhooks/durabletask/instances/{started['id']}?" in started["statusQueryGetUri"]
    )
    assert f"taskHub={TASK_HUB}" in started["statusQueryGetUri"]

    status, body = wait_for(started["statusQueryGetUri"], finished)

    assert status == 200
    assert body["runtimeStatus"] == "Completed"
    assert body["output"] == {"result": 42, "instance": started["id"]}
    assert body["input"] == {"start": 40}
    assert body["name"] == "run_chain"
    assert body["instanceId"] == started["id"]
    assert {"customStatus", "createdTime", "lastUpdatedTime"} <= set(body)


def test_status_is_202_with_location_while_running_and_shows_custom_status(
    host: DurableHost,
) -> None:
    started = start(host, "run_wait")

    status, body = wait_for(
        started["statusQueryGetUri"], lambda b: b.get("customStatus") is not None
    )

    assert status == 202
    assert body["runtimeStatus"] == "Running"
    assert body["customStatus"] == {"stage": "waiting", "instance": started["id"]}
    _, headers, _ = http("GET", started["statusQueryGetUri"])
    assert headers["Location"].startswith(f"{host.base_url}/runtime/webhooks/durabletask/")
    http("POST", host.public(f"/instances/{started['id']}/terminate"))


def test_failing_activity_is_retried_until_it_succeeds(host: DurableHost) -> None:
    started = start(host, "run_retry")

    _, body = wait_for(started["statusQueryGetUri"], finished)

    assert body["runtimeStatus"] == "Completed"
    assert body["output"] == {"attempts": 3}
    assert _ATTEMPTS[started["id"]] == 3


def test_durable_timer_delays_the_orchestration(host: DurableHost) -> None:
    began = time.monotonic()
    started = start(host, "run_timer", {"seconds": 1})

    _, body = wait_for(started["statusQueryGetUri"], finished)

    assert body["runtimeStatus"] == "Completed"
    assert body["output"] >= 1.0
    assert time.monotonic() - began >= 1.0


def test_fan_out_fan_in_returns_results_in_call_order(host: DurableHost) -> None:
    started = start(host, "run_fan_out", {"count": 10})

    _, body = wait_for(started["statusQueryGetUri"], finished)

    assert body["runtimeStatus"] == "Completed"
    assert body["output"] == [i * i for i in range(10)]


def test_task_any_event_beats_timer_when_raised_through_the_public_webhook(
    host: DurableHost,
) -> None:
    started = start(host, "run_race", {"timeout_seconds": 30})
    wait_for(started["statusQueryGetUri"], lambda b: b.get("customStatus") is not None)
    event_url = started["sendEventPostUri"].replace("{eventName}", "approval")

    status, _, _ = http("POST", event_url, {"approver": "ops"})
    assert status == 202

    _, body = wait_for(started["statusQueryGetUri"], finished)
    assert body["runtimeStatus"] == "Completed"
    assert body["output"] == {"outcome": "approved", "by": {"approver": "ops"}}


def test_task_any_timer_wins_when_no_event_arrives(host: DurableHost) -> None:
    started = start(host, "run_race", {"timeout_seconds": 1})

    _, body = wait_for(started["statusQueryGetUri"], finished)

    assert body["output"] == {"outcome": "timed out", "timer_fired": True}


def test_continue_as_new_restarts_with_new_input_until_done(host: DurableHost) -> None:
    started = start(host, "run_counter", {"count": 0, "until": 4})

    _, body = wait_for(started["statusQueryGetUri"], finished)

    assert body["runtimeStatus"] == "Completed"
    assert body["output"] == {"count": 4}


def test_failed_orchestration_reports_the_activity_error(
    host: DurableHost, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="local.hosting.durable.activities")
    started = start(host, "run_failing")

    status, body = wait_for(started["statusQueryGetUri"], finished)
    # The host's log says which activity failed and why, as the Functions host does, even
    # when an orchestrator turns the failure into a result instead of failing.
    logged = [r.getMessage() for r in caplog.records if r.name.endswith("activities")]
    assert any("'explode'" in m and "cannot train segment-7: no rows" in m for m in logged)

    assert status == 200
    assert body["runtimeStatus"] == "Failed"
    assert "Orchestrator function 'run_failing' failed" in body["output"]
    assert "Activity function 'explode' failed" in body["output"]
    assert "cannot train segment-7: no rows" in body["output"]
    strict_status, _, _ = http(
        "GET", started["statusQueryGetUri"] + "&returnInternalServerErrorOnFailure=true"
    )
    assert strict_status == 500


def test_terminate_through_the_webhook_and_then_gone(host: DurableHost) -> None:
    started = start(host, "run_wait")
    wait_for(started["statusQueryGetUri"], lambda b: b.get("runtimeStatus") == "Running")
    terminate_url = started["terminatePostUri"].replace("{text}", "operator%20request")

    status, _, _ = http("POST", terminate_url)
    assert status == 202

    _, body = wait_for(started["statusQueryGetUri"], finished)
    assert body["runtimeStatus"] == "Terminated"
    assert body["output"] == "operator request"
    again, _, error = http("POST", terminate_url)
    assert again == 410
    assert isinstance(error, dict)


def test_restart_worker_mid_timer_and_the_instance_still_completes(host: DurableHost) -> None:
    started = start(host, "run_sleep_then_work")
    wait_for(started["statusQueryGetUri"], lambda b: b.get("runtimeStatus") == "Running")

    host.engine.restart_worker()

    _, body = wait_for(started["statusQueryGetUri"], finished)
    assert body["runtimeStatus"] == "Completed"
    assert body["output"] == 144


def test_restart_worker_while_waiting_for_an_event(host: DurableHost) -> None:
    started = start(host, "run_wait")
    wait_for(started["statusQueryGetUri"], lambda b: b.get("customStatus") is not None)

    host.engine.restart_worker()
    http("POST", started["sendEventPostUri"].replace("{eventName}", "resume"), "go")

    _, body = wait_for(started["statusQueryGetUri"], finished)
    assert body["output"] == {"resumed_with": "go"}
    assert body["customStatus"] == {"stage": "done"}


def test_non_determinism_is_detected_by_the_engine(host: DurableHost) -> None:
    started = start(host, "run_shifty")

    _, body = wait_for(started["statusQueryGetUri"], finished)

    assert body["runtimeStatus"] == "Failed"
    assert "history mismatch" in body["output"]
    assert "square" in body["output"]
    assert "add_one" in body["output"]


def test_real_durable_client_starts_links_and_reads_status(host: DurableHost) -> None:
    binding = host.engine.client_binding(host.base_url, SYSTEM_KEY)
    trigger_url = f"{host.base_url}/api/orchestrations/run_chain"

    async def scenario() -> tuple[str, func.HttpResponse, Any]:
        from azure.durable_functions.models.utils import http_utils

        client = df.DurableOrchestrationClient(binding)
        try:
            instance_id = await client.start_new("run_chain", client_input={"start": 1})
            request = func.HttpRequest(method="POST", url=trigger_url, body=b"")
            response = client.create_check_status_response(request, instance_id)
            status = await client.get_status(instance_id)
            for _ in range(200):
                if status.runtime_status == df.OrchestrationRuntimeStatus.Completed:
                    break
                await asyncio.sleep(0.05)
                status = await client.get_status(instance_id)
            return instance_id, response, status
        finally:
            # The SDK keeps one module-level session; close it before this loop ends.
            await http_utils._close_session()

    instance_id, response, status = asyncio.run(scenario())

    assert response.status_code == 202
    links = json.loads(response.get_body())
    assert links["id"] == instance_id
    assert links["statusQueryGetUri"].startswith(
        f"{host.base_url}/runtime/webhooks/durabletask/instances/{instance_id}?"
    )
    assert response.headers["Location"] == links["statusQueryGetUri"]
    assert status.runtime_status == df.OrchestrationRuntimeStatus.Completed
    assert status.output == {"result": 3, "instance": instance_id}
    http_status, _, body = http("GET", links["statusQueryGetUri"])
    assert http_status == 200
    assert body["output"] == {"result": 3, "instance": instance_id}


def test_public_webhooks_require_the_system_key(host: DurableHost) -> None:
    started = start(host, "run_chain", {"start": 0})
    path = f"/instances/{quote(started['id'])}"

    missing, _, missing_body = http("GET", host.public(path, key=None))
    wrong, _, wrong_body = http("GET", host.public(path, key="not-the-key"))
    start_without_key, _, _ = http("POST", host.public("/orchestrators/run_chain", key=None), {})

    assert (missing, wrong, start_without_key) == (401, 401, 401)
    assert isinstance(missing_body, dict)
    assert isinstance(wrong_body, dict)


def test_unknown_ids_and_orchestrators_get_json_errors(host: DurableHost) -> None:
    unknown_status, _, unknown_body = http("GET", host.public("/instances/no-such-instance"))
    bad_start, _, bad_body = http("POST", host.public("/orchestrators/run_nothing"), {})

    assert unknown_status == 404
    assert isinstance(unknown_body, dict)
    assert bad_start == 400
    assert "run_nothing" in bad_body["ExceptionMessage"]


def test_an_instance_id_azure_refuses_is_a_400_naming_the_rule(host: DurableHost) -> None:
    # %2F reaches the engine as '/', as the Functions host would decode it.
    status, _, body = http("POST", host.public("/orchestrators/run_chain/team%2Fother"), {})
    too_long, _, long_body = http("POST", host.rpc(f"/orchestrators/run_chain/{'x' * 257}"), {})

    assert status == 400
    assert "must not contain /" in body["ExceptionMessage"]
    assert too_long == 400
    assert "at most 256" in long_body["ExceptionMessage"]


def test_starting_a_live_instance_id_conflicts_but_a_finished_one_is_replaced(
    host: DurableHost,
) -> None:
    instance_id = f"singleton-{uuid.uuid4().hex[:8]}"
    first = start(host, "run_wait", instance_id=instance_id)
    wait_for(first["statusQueryGetUri"], lambda b: b.get("runtimeStatus") == "Running")

    conflict, _, conflict_body = http(
        "POST", host.rpc(f"/orchestrators/run_wait/{instance_id}"), {}
    )
    assert conflict == 409
    assert "already exists" in conflict_body["ExceptionMessage"]

    http("POST", host.public(f"/instances/{instance_id}/terminate"))
    wait_for(first["statusQueryGetUri"], finished)
    again = start(host, "run_chain", {"start": 5}, instance_id=instance_id)
    _, body = wait_for(again["statusQueryGetUri"], finished)
    assert body["name"] == "run_chain"
    assert body["output"]["result"] == 7


def test_history_and_purge(host: DurableHost) -> None:
    started = start(host, "run_chain", {"start": 10})
    wait_for(started["statusQueryGetUri"], finished)

    _, _, with_history = http("GET", started["statusQueryGetUri"] + "&showHistory=true")
    kinds = [event["EventType"] for event in with_history["historyEvents"]]
    assert kinds[0] == "ExecutionStarted"
    assert kinds.count("TaskScheduled") == 2
    assert kinds.count("TaskCompleted") == 2
    assert kinds[-1] == "ExecutionCompleted"

    purged, _, purge_body = http("DELETE", started["purgeHistoryDeleteUri"])
    assert (purged, purge_body) == (200, {"instancesDeleted": 1})
    gone, _, _ = http("GET", started["statusQueryGetUri"])
    assert gone == 404


def test_task_all_fails_fast_while_other_activities_still_run(host: DurableHost) -> None:
    started = start(host, "run_fail_fast")
    try:
        _, body = wait_for(started["statusQueryGetUri"], finished)
        still_held = not _RELEASE_HELD.is_set()
    finally:
        _RELEASE_HELD.set()

    assert still_held
    assert body["runtimeStatus"] == "Completed"
    assert body["output"].startswith("caught: Activity function 'explode' failed: cannot train a")


def test_sub_orchestrator_result_and_parent_id(host: DurableHost) -> None:
    started = start(host, "run_parent")

    _, body = wait_for(started["statusQueryGetUri"], finished)

    assert body["runtimeStatus"] == "Completed"
    assert body["output"] == {"parent": started["id"], "squared": 25}


def test_a_sub_orchestration_longer_than_thirty_seconds_reports_to_its_parent(
    host: DurableHost,
) -> None:
    started = start(host, "run_slow_parent")

    _, body = wait_for(started["statusQueryGetUri"], finished, timeout=60)

    assert body["runtimeStatus"] == "Completed"
    assert body["output"] == "slept"


def test_suspend_holds_events_until_resume(host: DurableHost) -> None:
    started = start(host, "run_wait")
    wait_for(started["statusQueryGetUri"], lambda b: b.get("customStatus") is not None)

    suspended, _, _ = http("POST", started["suspendPostUri"].replace("{text}", "maintenance"))
    wait_for(started["statusQueryGetUri"], lambda b: b.get("runtimeStatus") == "Suspended")
    http("POST", started["sendEventPostUri"].replace("{eventName}", "resume"), "late")
    time.sleep(0.3)
    status_while_suspended, _, body_while_suspended = http("GET", started["statusQueryGetUri"])
    resumed, _, _ = http("POST", started["resumePostUri"].replace("{text}", "done"))
    _, body = wait_for(started["statusQueryGetUri"], finished)

    assert (suspended, resumed) == (202, 202)
    assert status_while_suspended == 202
    assert body_while_suspended["runtimeStatus"] == "Suspended"
    assert body["output"] == {"resumed_with": "late"}


def test_backend_requeues_work_a_dead_worker_never_finished() -> None:
    """A worker that takes a work item and disappears must not leave the instance stuck."""
    import grpc
    from durabletask import client as dt_client
    from durabletask import worker as dt_worker
    from durabletask.internal import orchestrator_service_pb2 as pb
    from durabletask.internal import orchestrator_service_pb2_grpc as stubs

    from local.hosting.durable import LoopbackBackend

    def greet(ctx: Any, name: str) -> Any:
        return (yield ctx.call_activity("shout", input=name))

    def shout(ctx: Any, name: str) -> str:
        return name.upper()

    backend = LoopbackBackend(server_threads=16)
    address = backend.start()
    channel = grpc.insecure_channel(address, options=[("grpc.enable_http_proxy", 0)])
    client = dt_client.TaskHubGrpcClient(channel=channel)
    worker: dt_worker.TaskHubGrpcWorker | None = None
    try:
        instance_id = client.schedule_new_orchestration("greet", input="ada")
        # A worker that receives the orchestration work item and then dies.
        stream = stubs.TaskHubSidecarServiceStub(channel).GetWorkItems(pb.GetWorkItemsRequest())
        taken = next(stream)
        stream.cancel()
        assert taken.orchestratorRequest.instanceId == instance_id

        recovered = backend.recover_abandoned_work()

        worker_channel = grpc.insecure_channel(address, options=[("grpc.enable_http_proxy", 0)])
        worker = dt_worker.TaskHubGrpcWorker(channel=worker_channel)
        worker.add_orchestrator(greet)
        worker.add_activity(shout)
        worker.start()
        state = client.wait_for_orchestration_completion(instance_id, timeout=15)
        assert recovered == 1
        assert state is not None
        assert state.serialized_output == '"ADA"'
    finally:
        if worker is not None:
            worker.stop()
        client.close()
        channel.close()
        backend.stop(grace=1.0)
