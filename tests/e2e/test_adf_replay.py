"""The ADF replay follows 202 + Location as ADF's async pattern does, so a start that answers
that way fails here as it would in the factory.

The pipeline is the real infra/adf JSON; the HTTP answers are scripted (no server): one start
that answers the Durable 202 with a Location (what the app answered before) and one that
answers 200 with the management payload and no Location (what it answers now).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e.adf import PipelineFailed, Request, Response, replay
from tests.e2e.harness import ADF_PIPELINE

APP = "https://func.example"
VAULT = "https://kv.example/"
STATUS = f"{APP}/runtime/webhooks/durabletask/instances/train-1?code=system"


def _pipeline() -> dict[str, Any]:
    return dict(json.loads(ADF_PIPELINE.read_text(encoding="utf-8")))


def _parameters() -> dict[str, Any]:
    return {"functionAppUrl": APP, "keyVaultUrl": VAULT, "pollIntervalSeconds": 1}


class App:
    """The function app and Key Vault as the factory sees them; ``start`` is the start's answer."""

    def __init__(self, start: Response) -> None:
        self.start = start
        self.calls: list[tuple[str, str]] = []

    def __call__(self, request: Request) -> Response:
        self.calls.append((request.method, request.target))
        if request.target.startswith("orchestrations/"):
            return self.start
        if request.target.startswith(VAULT):
            return Response(200, {"value": "function-key", "id": "x", "attributes": {}})
        if request.target == STATUS:
            # The Durable status endpoint: 202 while the run is going.
            return Response(202, {"runtimeStatus": "Running"}, {"Location": STATUS})
        if request.target == f"{APP}/api/orchestrations/train-1":
            return Response(200, {"instanceId": "train-1", "runtimeStatus": "Completed"})
        raise AssertionError(f"unexpected call {request}")


def test_a_start_that_answers_202_with_a_location_is_followed_until_the_activity_times_out() -> (
    None
):
    durable_202 = Response(
        202,
        {"id": "train-1", "statusQueryGetUri": STATUS},
        {"Location": STATUS, "Retry-After": "10"},
    )
    app = App(durable_202)
    with pytest.raises(PipelineFailed, match=r"Start orchestration .* timed out following 202"):
        replay(_pipeline(), _parameters(), app, speed=0.0005)
    assert ("GET", STATUS) in app.calls


def test_a_start_that_answers_200_is_one_call_and_the_pipeline_polls_the_app() -> None:
    app = App(Response(200, {"id": "train-1", "statusQueryGetUri": STATUS}))
    run = replay(_pipeline(), _parameters(), app, speed=0.0005)
    assert run.variables["runtimeStatus"] == "Completed"
    starts = [c for c in app.calls if c[1].startswith("orchestrations/")]
    assert len(starts) == 1
    assert ("GET", STATUS) not in app.calls


def test_turn_off_async_stops_the_follow() -> None:
    pipeline = _pipeline()
    (start,) = [a for a in pipeline["properties"]["activities"] if a["name"].startswith("Start")]
    start["typeProperties"]["turnOffAsync"] = True
    durable_202 = Response(
        202, {"id": "train-1", "statusQueryGetUri": STATUS}, {"Location": STATUS}
    )
    app = App(durable_202)
    run = replay(pipeline, _parameters(), app, speed=0.0005)
    assert run.variables["runtimeStatus"] == "Completed"
    assert ("GET", STATUS) not in app.calls
