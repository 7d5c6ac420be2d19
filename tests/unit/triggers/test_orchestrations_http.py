"""The ADF routes as the worker calls them: real ``HttpRequest`` objects, a stand-in client.

Hostile bodies are answered 4xx before anything is started (the client is never asked), and a
failed instance's status shows the error and the failed activity, not its stack or paths.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import azure.functions as func
import pytest

from triggers.orchestrations import get_orchestration, public_failure, start_orchestration

# The output Durable Functions gives a failed instance: the reason, then the details JSON
# (as local/hosting/durable/context.py and azure-functions-durable build it).
FAILED_OUTPUT = (
    "Orchestrator function 'run_train' failed: Activity function 'submit_segment_job' failed: "
    "FileNotFoundError: [Errno 2] No such file: '/home/site/wwwroot/pipelines/train.yml' \n "
    + json.dumps(
        {
            "Message": "No such file",
            "ExceptionType": "FileNotFoundError",
            "StackTrace": 'File "/home/site/wwwroot/orchestrators/activities.py", line 12',
        }
    )
)


class NeverCalled:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the client was asked for {name} on a refused request")


@dataclass
class Status:
    runtime_status: str
    output: Any
    name: str = "run_train"
    custom_status: Any = None
    created_time: Any = None
    last_updated_time: Any = None


@dataclass
class StatusClient:
    status: Status

    async def get_status(self, instance_id: str) -> Status:
        return self.status


def _user_code(function: Any) -> Any:
    # The durable client decorator wraps the code to build the client from the binding's
    # JSON; the wrapped code takes the client object itself.
    return function.build().get_user_function().__wrapped__


def start(body: bytes, content_type: str = "application/json") -> func.HttpResponse:
    request = func.HttpRequest(
        "POST",
        "http://localhost/api/orchestrations/train",
        headers={"Content-Type": content_type},
        route_params={"name": "train"},
        body=body,
    )
    handler = _user_code(start_orchestration)
    response: func.HttpResponse = asyncio.run(handler(request, NeverCalled()))
    return response


def error_of(response: func.HttpResponse) -> tuple[int, str]:
    return response.status_code, json.loads(response.get_body())["error"]["code"]


def test_a_deeply_nested_body_is_a_400_not_a_500() -> None:
    assert error_of(start(b"[" * 10_000 + b"]" * 10_000)) == (400, "bad_request")


def test_a_body_that_is_not_declared_json_is_a_415() -> None:
    response = start(b"region=r01", "application/x-www-form-urlencoded")
    assert error_of(response) == (415, "unsupported_media_type")


def test_a_body_over_a_megabyte_is_a_413() -> None:
    body = json.dumps({"pad": "p" * (1 << 20)}).encode()
    assert error_of(start(body)) == (413, "payload_too_large")


@pytest.mark.parametrize("body", [b"[]", b'"x"', b"{not json"])
def test_other_bad_bodies_are_400(body: bytes) -> None:
    assert error_of(start(body)) == (400, "bad_request")


def test_a_failed_instance_shows_its_error_and_activity_but_no_stack_or_paths() -> None:
    request = func.HttpRequest(
        "GET",
        "http://localhost/api/orchestrations/abc",
        route_params={"instance_id": "abc"},
        body=b"",
    )
    handler = _user_code(get_orchestration)
    client = StatusClient(Status("Failed", FAILED_OUTPUT))
    response: func.HttpResponse = asyncio.run(handler(request, client))
    body = json.loads(response.get_body())
    assert body["runtimeStatus"] == "Failed"
    assert body["failedActivity"] == "submit_segment_job"
    assert "FileNotFoundError" in body["output"]
    text = response.get_body().decode()
    assert "StackTrace" not in text and "wwwroot" not in text and "/home/" not in text


def test_public_failure_keeps_short_messages_and_windows_paths_out() -> None:
    message, activity = public_failure(r"Activity function 'a' failed: cannot open C:\app\x\y.csv")
    assert (message, activity) == ("Activity function 'a' failed: cannot open <path>", "a")
    assert public_failure({"error": "x"})[0] == '{"error": "x"}'
    assert public_failure("")[0] == "the orchestration failed"
