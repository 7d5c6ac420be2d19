"""The train orchestration on azure-functions-durable's own replay executor (the Azure path).

``replay.run`` plays the Durable extension: it answers each scheduled activity and
sub-orchestration and replays the whole history every episode, exactly as Azure drives the
Python worker. These tests check that ``run_train`` and ``run_train_batch`` are deterministic
(any completion order, any replay gives the same actions and output), that the custom status
stays far below Azure's 16 KB at any number of segments, and that the train orchestration's
own history grows with the number of batches, not of segments.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from adapters.durable_limits import custom_status_size
from orchestrators import flows
from orchestrators.progress import BATCH_MAX, TrainingProgress, training_batches
from tests.unit.orchestrators.replay import SUB, execute, run

TRAIN = flows.run_train._function.get_user_function()
BATCH = flows.run_train_batch._function.get_user_function()
FORMATS = ("large", "small")
VELOCITIES = ("fast", "slow")


def segments_for(regions: int) -> list[str]:
    return [f"r{r:03d}-{f}-{v}" for r in range(1, regions + 1) for f in FORMATS for v in VELOCITIES]


def segment_result(segment: str) -> dict[str, Any]:
    # A realistic result: what run_segment_training returns, metrics and reasons included.
    number = sum(map(ord, segment))
    if number % 7 == 0:
        return {"segment": segment, "status": "failed", "job_name": f"train_{number}",
                "job_status": "Failed", "error": "Traceback ... ValueError: no rows " * 3,
                "failed_step": "train"}  # fmt: skip
    decision = ("champion", "challenger", "rejected")[number % 3]
    return {
        "segment": segment, "status": "completed", "job_name": f"train_{number}",
        "job_status": "Completed", "model_name": f"forecast-{segment}", "model_version": "3",
        "metrics": {"candidate": {"mape": 0.31, "rmse_zero": 1.2, "rmse_all": 2.3},
                    "baseline": {"mape": 0.52, "rmse_zero": 2.1, "rmse_all": 3.4},
                    "champion": {"mape": 0.33, "rmse_zero": 1.3, "rmse_all": 2.4}},
        "decision": decision, "reasons": ["MAPE 0.310 beats the champion's 0.330"],
    }  # fmt: skip


def respond(action: dict[str, Any]) -> Any:
    name, payload = action["functionName"], action["input"]
    if name == "check_training_inputs":
        return {"segments": payload["segments"], "inputs": {"shipments": "c/s/v1"}, "missing": []}
    if name == "run_train_batch":
        return {s: segment_result(s) for s in payload["segments"]}
    if name == "run_segment_training":
        return segment_result(payload["segment"])
    if name == "run_score":
        return {"scoring_date": payload["scoring_date"], "stale": [],
                "segments": {s: {"status": "scored"} for s in payload["segments"]}}  # fmt: skip
    raise AssertionError(f"unexpected call {name}")


def train(segments: list[str], **kwargs: Any) -> Any:
    request = {"segments": segments, "week": "2026-11-23", "options": {"polling": {}}}
    return run(TRAIN, "run_train", request, respond, **kwargs)


@pytest.mark.parametrize("regions", [3, 14, 125])  # 12, 56 and 500 segments
def test_train_runs_in_batches_and_its_status_stays_small(regions: int) -> None:
    segments = segments_for(regions)
    result = train(segments, choose=lambda ids: ids[-1:])  # newest first, one per episode

    assert result.error is None
    batches = math.ceil(len(segments) / min(BATCH_MAX, math.ceil(len(segments) / 4)))
    kinds = [a["functionName"] for a in result.actions]
    assert kinds == ["check_training_inputs", *["run_train_batch"] * batches, "run_score"]
    assert all(a["actionType"] == SUB for a in result.actions[1:])
    assert result.actions[1]["instanceId"] == "train-1:batch-000"
    output = result.output
    assert list(output["segments"]) == segments
    assert output["counts"]["finished"] == len(segments)
    assert output["promoted"] == sorted(
        s for s in segments if segment_result(s).get("decision") == "champion"
    )
    sizes = [custom_status_size(s).utf16_bytes for s in result.custom_statuses]
    assert max(sizes) < 4 * 1024, max(sizes)  # Azure's cap is 16 KB; this never nears it
    assert result.custom_statuses[-1]["stage"] == "done"


def test_the_output_does_not_depend_on_the_order_batches_finish() -> None:
    segments = segments_for(14)
    oldest_first = train(segments, choose=lambda ids: ids[:1])
    newest_first = train(segments, choose=lambda ids: ids[-1:])
    all_at_once = train(segments)
    assert oldest_first.output == newest_first.output == all_at_once.output


def test_replaying_the_finished_history_gives_the_same_actions_and_output() -> None:
    segments = segments_for(14)
    first = train(segments, choose=lambda ids: ids[-1:])
    payload = json.dumps({"segments": segments, "week": "2026-11-23", "options": {"polling": {}}})
    again, error = execute(TRAIN, "run_train", "train-1", payload, first.history)
    assert error is None and again is not None
    assert again["output"] == first.output
    assert [a for group in again["actions"] for a in group] == first.actions


def test_a_crashed_batch_fails_its_segments_only() -> None:
    segments = segments_for(3)
    doomed = set(training_batches(segments)[1])

    def crash_one(action: dict[str, Any]) -> Any:
        if action["functionName"] == "run_train_batch" and doomed & set(
            action["input"]["segments"]
        ):
            raise RuntimeError("Sub-orchestrator function 'run_train_batch' failed: boom")
        return respond(action)

    result = run(TRAIN, "run_train", {"segments": segments, "week": "2026-11-23"}, crash_one)
    assert result.error is None
    output = result.output
    assert sorted(output["failed"]) == sorted(
        doomed | {s for s in segments if segment_result(s)["status"] == "failed"}
    )
    assert all(output["segments"][s]["error"] == "boom" for s in doomed)
    assert output["status"] == "partial"


def test_when_every_segment_fails_the_error_names_a_bounded_few() -> None:
    def fail_all(action: dict[str, Any]) -> Any:
        if action["functionName"] == "run_train_batch":
            return {s: {"segment": s, "status": "failed", "error": "no data " * 20}
                    for s in action["input"]["segments"]}  # fmt: skip
        return respond(action)

    segments = segments_for(125)
    result = run(TRAIN, "run_train", {"segments": segments, "week": "2026-11-23"}, fail_all)
    assert result.error is not None
    assert "every segment failed (500)" in result.error and "and 490 more" in result.error
    assert len(result.error) < 3000
    assert (
        result.custom_statuses[-1] is None
        or custom_status_size(result.custom_statuses[-1]).accepted
    )


def test_a_batch_trains_each_segment_under_the_train_run_s_name() -> None:
    segments = segments_for(6)[:BATCH_MAX]
    request = {"segments": segments, "week": "2026-11-23", "inputs": {}, "options": {},
               "parent": "train-9"}  # fmt: skip

    def one_crashes(action: dict[str, Any]) -> Any:
        if action["input"]["segment"] == segments[3]:
            raise RuntimeError("Sub-orchestrator function 'run_segment_training' failed: bug")
        return respond(action)

    result = run(BATCH, "run_train_batch", request, one_crashes, instance_id="train-9:batch-000",
                 choose=lambda ids: ids[-1:])  # fmt: skip
    assert result.error is None
    assert [a["instanceId"] for a in result.actions] == [f"train-9:{s}" for s in segments]
    assert all(json.loads(a["input"])["parent"] == "train-9" for a in result.actions)
    assert list(result.output) == segments
    assert result.output[segments[3]] == {"segment": segments[3], "status": "failed",
                                          "error": "bug"}  # fmt: skip
    assert result.output[segments[0]] == segment_result(segments[0])


@pytest.mark.parametrize(
    ("count", "sizes"),
    [
        (0, []),
        (1, [1]),
        (12, [3, 3, 3, 3]),
        (56, [14, 14, 14, 14]),
        (101, [25, 25, 25, 25, 1]),
        (500, [25] * 20),
    ],
)
def test_batches_keep_order_and_size(count: int, sizes: list[int]) -> None:
    segments = [f"s{i}" for i in range(count)]
    batches = training_batches(segments)
    assert [len(b) for b in batches] == sizes
    assert [s for b in batches for s in b] == segments


def test_progress_status_is_bounded_whatever_the_number_of_segments() -> None:
    progress = TrainingProgress(segments=5000, batches=200)
    for i in range(5000):
        progress.record(f"r{i:04d}-large-fast", segment_result(f"r{i:04d}-large-fast"))
    status = progress.status("training")
    assert status["finished"] == 5000 and len(status["recent"]) == 10
    assert custom_status_size(status).utf16_bytes < 4 * 1024


def test_scoring_hundreds_of_segments_keeps_a_short_history_and_status() -> None:
    segments = segments_for(125)

    def score(action: dict[str, Any]) -> Any:
        name, payload = action["functionName"], action["input"]
        if name == "get_champions":
            trained = "2026-11-01T00:00:00+00:00"
            return {
                s: {"model_name": f"forecast-{s}", "version": "2", "trained_at": trained}
                for s in payload["segments"]
            }
        if name == "score_inputs":
            return {"inputs": {"shipments": "c/s/v1"}}
        if name == "submit_pipeline_job":
            return {"job_name": "score_0001"}
        if name == "run_job_monitor":
            return {"job_name": "score_0001", "status": "Completed", "polls": 3}
        if name == "record_job_outcome":
            return None
        if name == "collect_forecasts":
            return {s: {"blob": f"forecasts/{s}.csv", "rows": 52} for s in payload["segments"]}
        raise AssertionError(f"unexpected call {name}")

    request = {"segments": segments, "scoring_date": "2026-11-23", "options": {}}
    result = run(flows.run_score._function.get_user_function(), "run_score", request, score)
    assert result.error is None
    assert len(result.actions) <= 6  # champions, inputs, submit, monitor, telemetry, forecasts
    assert all(v["status"] == "scored" for v in result.output["segments"].values())
    sizes = [custom_status_size(s).utf16_bytes for s in result.custom_statuses]
    assert max(sizes) < 1024
