"""The durable orchestrations: train, score, model_test, retrain, and the job monitor.

Orchestrators are deterministic generators: no I/O, no clocks (``current_utc_datetime``), no
environment. Everything they learn comes from activities (``orchestrators/activities.py``);
everything they decide comes from pure policies (``policies.py``, ``polling.py``). Settings
that shape a run (polling bounds, timeouts) arrive in the input, put there by the starter.

Shapes (all JSON objects):
- ``run_train``  input ``{"segments": [...], "week": "YYYY-MM-DD", "score": bool, "options",
  "many_models": bool, "partition_by": "store_id,product_id"}`` (many models: one forecaster
  per partition, pipelines/train_many.yml, gated per partition and summarised per segment)
  output ``{"status": "succeeded"|"partial", "counts", "segments": {id: result}, "promoted": [...],
  "failed": {id: error}, "score"}``; fails (runtimeStatus Failed) when the inputs are unusable or
  every segment failed. Custom status: counts and the latest outcomes, never per-segment maps.
- ``run_train_batch`` up to 25 segments of one train run, so no history grows with the run.
- ``run_segment_training`` one segment: submit → monitor → metrics → gate → promote.
- ``run_job_monitor`` polls one Azure ML job to a terminal state with the adaptive policy,
  cancels it at its deadline, and continues as new every ``MONITOR_GENERATION`` polls so its
  history stays bounded.
- ``run_score``, ``run_model_test``, ``run_retrain`` as described on each.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Generator
from datetime import datetime, timedelta
from typing import Any

import azure.durable_functions as df

from orchestrators.policies import Metrics, is_stale, promotion_gate
from orchestrators.polling import (
    PollingPolicy,
    is_terminal,
    job_deadline,
    next_poll_at,
    next_poll_delay,
    past_deadline,
)
from orchestrators.progress import RECENT, TrainingProgress, training_batches

bp = df.Blueprint()

MONITOR_GENERATION = 25
TRANSIENT_MARKER = "transient:"
MAX_TRANSIENT_ATTEMPTS = 4

Flow = Generator[Any, Any, Any]


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _policy(options: dict[str, Any]) -> PollingPolicy:
    polling = options.get("polling") or {}
    defaults = PollingPolicy()
    return PollingPolicy(
        first_delay=timedelta(
            seconds=float(polling.get("first_seconds", defaults.first_delay.total_seconds()))
        ),
        min_delay=timedelta(
            seconds=float(polling.get("min_seconds", defaults.min_delay.total_seconds()))
        ),
        max_delay=timedelta(
            seconds=float(polling.get("max_seconds", defaults.max_delay.total_seconds()))
        ),
        growth=float(polling.get("growth", defaults.growth)),
        ending_delay=timedelta(
            seconds=float(polling.get("ending_seconds", defaults.ending_delay.total_seconds()))
        ),
    )


def call_with_transient_retry(
    context: df.DurableOrchestrationContext, name: str, payload: Any
) -> Flow:
    """Call an activity; retry with back-off only when it failed transiently.

    Adapters raise ``TransientError`` for failures worth retrying; its message starts with
    ``transient:``, which is how the orchestrator tells it from bad input (never retried).
    Use with ``yield from``.
    """
    attempt = 1
    while True:
        try:
            result = yield context.call_activity(name, payload)
            return result
        except Exception as exc:
            if TRANSIENT_MARKER not in str(exc) or attempt >= MAX_TRANSIENT_ATTEMPTS:
                raise
            delay = timedelta(seconds=5 * 2 ** (attempt - 1))
            yield context.create_timer(context.current_utc_datetime + delay)
            attempt += 1


def _short_error(exc: BaseException) -> str:
    text = str(exc)
    # Durable wraps an activity failure as "Activity function 'x' failed: <msg> \n {details}".
    if " failed: " in text:
        text = text.split(" failed: ", 1)[1]
    return text.split("\n", 1)[0].strip()[:500]


# ------------------------------------------------------------------ job monitor


@bp.orchestration_trigger(context_name="context")
def run_job_monitor(context: df.DurableOrchestrationContext) -> Flow:
    """Poll one job to a terminal state; cancel it at its deadline.

    Input ``{"job_name", "submitted_at", "deadline", "polls", "last_status", "options"}``.
    Output ``{"job_name", "status", "polls", "timed_out", "error", "failed_step"}``.
    """
    state: dict[str, Any] = dict(context.get_input())
    options = state.get("options") or {}
    policy = _policy(options)
    submitted = _time(state["submitted_at"])
    deadline = _time(state["deadline"])
    polls = int(state.get("polls", 0))
    last: dict[str, Any] = state.get("last") or {"status": state.get("last_status")}
    for _ in range(MONITOR_GENERATION):
        now = context.current_utc_datetime
        delay = next_poll_delay(now - submitted, polls, last.get("status"), policy=policy)
        wake = next_poll_at(now, delay, deadline)
        context.set_custom_status(
            {
                "job_name": state["job_name"],
                "status": last.get("status"),
                "polls": polls,
                "next_poll": _iso(wake),
            }
        )
        yield context.create_timer(wake)
        last = yield context.call_activity("get_job_status", {"job_name": state["job_name"]})
        polls += 1
        if is_terminal(last.get("status")):
            return {
                "job_name": state["job_name"],
                "status": last["status"],
                "polls": polls,
                "timed_out": False,
                "error": last.get("error", ""),
                "failed_step": last.get("failed_step", ""),
            }
        if past_deadline(context.current_utc_datetime, deadline):
            yield from call_with_transient_retry(
                context, "cancel_pipeline_job", {"job_name": state["job_name"]}
            )
            return {
                "job_name": state["job_name"],
                "status": "Canceled",
                "polls": polls,
                "timed_out": True,
                "error": f"no result by the deadline {state['deadline']}; canceled",
                "failed_step": "",
            }
    state.update(polls=polls, last=last)
    context.continue_as_new(state)
    return None


def monitor(
    context: df.DurableOrchestrationContext,
    job_name: str,
    options: dict[str, Any],
    pipeline: str,
    segment: str = "",
) -> Flow:
    """Start ``run_job_monitor`` for ``job_name`` as a sub-orchestration and wait for it."""
    now = context.current_utc_datetime
    timeout = timedelta(minutes=float(options.get("job_timeout_minutes", 720)))
    deadline = job_deadline(
        now, default_timeout=timeout, minimum=min(timeout, timedelta(minutes=30))
    )
    payload = {
        "job_name": job_name,
        "submitted_at": _iso(now),
        "deadline": _iso(deadline),
        "polls": 0,
        "options": options,
    }
    result = yield context.call_sub_orchestrator(
        "run_job_monitor", payload, f"{context.instance_id}:monitor:{pipeline}"
    )
    elapsed = context.current_utc_datetime - now
    if result["status"].lower() != "completed":
        # Every monitored job that does not complete is reported here, once: Azure ML may
        # emit no event for it, and the Event Grid path uses the same alert id.
        yield from call_with_transient_retry(
            context,
            "send_job_failure_alert",
            {
                "pipeline": pipeline,
                "segment": segment,
                "job_name": job_name,
                "status": result["status"],
                "timed_out": result.get("timed_out", False),
                "error": result.get("error") or f"job ended {result['status']}",
                "failed_step": result.get("failed_step", ""),
            },
        )
    # Telemetry is I/O, so it is an activity; losing it must never fail the run.
    with contextlib.suppress(Exception):
        yield context.call_activity(
            "record_job_outcome",
            {
                "pipeline": pipeline,
                "segment": segment,
                "status": result["status"],
                "duration_seconds": elapsed.total_seconds(),
                "job_name": job_name,
                "started_at": _iso(now),
                "error": result.get("error") or "",
                "failed_step": result.get("failed_step") or "",
            },
        )
    return result


# ------------------------------------------------------------------ training


@bp.orchestration_trigger(context_name="context")
def run_segment_training(context: df.DurableOrchestrationContext) -> Flow:
    """One segment: submit the train pipeline, watch it, gate the candidate, promote or tag.

    Never raises for a job that fails: the result says ``status: failed`` and why, so the
    parent's other segments go on.
    """
    req: dict[str, Any] = context.get_input()
    segment = req["segment"]
    options = req.get("options") or {}
    pipeline = "train_many" if req.get("many_models") else "train"
    inputs = dict(req["inputs"])
    if pipeline == "train_many" and req.get("partition_by"):
        inputs["partition_by"] = req["partition_by"]
    result: dict[str, Any] = {"segment": segment, "status": "failed", "pipeline": pipeline}
    context.set_custom_status({"segment": segment, "stage": "submitting"})
    try:
        submitted = yield from call_with_transient_retry(
            context,
            "submit_pipeline_job",
            {
                "pipeline": pipeline,
                "trace": options.get("trace"),
                "segment": segment,
                "inputs": inputs,
                "tags": {
                    "segment": segment,
                    "week": req.get("week", ""),
                    "orchestration": req.get("parent", context.instance_id),
                },
            },
        )
    except Exception as exc:  # noqa: BLE001 - a failed submit fails this segment only
        result["error"] = f"submit failed: {_short_error(exc)}"
        return result
    job_name = submitted["job_name"]
    result["job_name"] = job_name
    context.set_custom_status({"segment": segment, "stage": "running", "job_name": job_name})
    outcome = yield from monitor(context, job_name, options, pipeline, segment)
    result["job_status"] = outcome["status"]
    if outcome["status"].lower() != "completed":
        result["error"] = outcome.get("error") or f"job ended {outcome['status']}"
        result["failed_step"] = outcome.get("failed_step", "")
        return result
    context.set_custom_status({"segment": segment, "stage": "gating", "job_name": job_name})
    trained = yield from call_with_transient_retry(
        context, "read_training_result", {"job_name": job_name, "segment": segment}
    )
    candidate = Metrics.from_mapping(trained.get("candidate") or {})
    baseline = Metrics.from_mapping(trained.get("baseline") or {})
    champion_info = yield from call_with_transient_retry(
        context, "get_champion", {"segment": segment}
    )
    champion = Metrics.from_mapping((champion_info or {}).get("metrics") or {})
    if champion_info and champion_info.get("version") == trained.get("model_version"):
        champion = None  # the candidate itself was already marked champion by its pipeline
    verdict = promotion_gate(candidate, baseline, champion)
    yield from call_with_transient_retry(
        context,
        "apply_gate_verdict",
        {
            "segment": segment,
            "model_name": trained.get("model_name"),
            "model_version": trained.get("model_version"),
            "decision": verdict.decision,
            "reasons": verdict.reasons,
        },
    )
    result.update(
        status="completed",
        model_name=trained.get("model_name"),
        model_version=trained.get("model_version"),
        metrics={
            "candidate": trained.get("candidate"),
            "baseline": trained.get("baseline"),
            "champion": (champion_info or {}).get("metrics"),
        },
        decision=verdict.decision,
        reasons=verdict.reasons,
    )
    if trained.get("partitions"):
        # Many models: each partition passed or failed its own gate in the pipeline; the
        # segment's decision above is the same gate on metrics pooled over its partitions.
        result["partitions"] = trained["partitions"]
    return result


def _crashed(segment: str, error: BaseException) -> dict[str, Any]:
    """The result of a segment whose sub-orchestration itself failed (a bug, not a bad job)."""
    return {"segment": segment, "status": "failed", "error": _short_error(error)}


@bp.orchestration_trigger(context_name="context")
def run_train_batch(context: df.DurableOrchestrationContext) -> Flow:
    """Train a batch of segments, one ``run_segment_training`` each; return their results.

    Input ``{"segments": [...], "week", "inputs", "options", "parent", "many_models",
    "partition_by"}`` where ``parent`` is the train run (job tags and the segments' instance
    ids name it, not the batch). Output
    ``{segment: result}``. Never raises for a segment: a crashed one is a failed result.
    """
    req: dict[str, Any] = context.get_input()
    parent = req["parent"]
    segments: list[str] = req["segments"]
    pending = {
        segment: context.call_sub_orchestrator(
            "run_segment_training",
            {
                "segment": segment,
                "week": req.get("week"),
                "inputs": req["inputs"],
                "options": req.get("options") or {},
                "parent": parent,
                "many_models": bool(req.get("many_models")),
                "partition_by": req.get("partition_by"),
            },
            f"{parent}:{segment}",
        )
        for segment in segments
    }
    results: dict[str, Any] = {}
    context.set_custom_status({"segments": len(segments), "finished": 0})
    while pending:
        done = yield context.task_any(list(pending.values()))
        segment = next(s for s, t in pending.items() if t == done)
        del pending[segment]
        # a crashed sub-orchestration is one failed segment, not the whole batch
        failed = isinstance(done.result, Exception)  # how the SDK marks a failed task
        results[segment] = _crashed(segment, done.result) if failed else done.result
        context.set_custom_status({"segments": len(segments), "finished": len(results)})
    return {segment: results[segment] for segment in segments}


def _failure_sentence(failed: list[str], results: dict[str, Any]) -> str:
    shown = "; ".join(f"{s}: {results[s].get('error', '')}" for s in failed[:RECENT])
    more = f"; and {len(failed) - RECENT} more" if len(failed) > RECENT else ""
    return f"every segment failed ({len(failed)}): {shown}{more}"


@bp.orchestration_trigger(context_name="context")
def run_train(context: df.DurableOrchestrationContext) -> Flow:
    """Validate inputs, train the segments in batches, gate, then score the promoted ones.

    The custom status is counts and the latest few outcomes (``TrainingProgress``); the
    per-segment results are the output. Segments run in batch sub-orchestrations so this
    orchestration's history has one event pair per batch, not per segment.
    """
    req: dict[str, Any] = context.get_input()
    options = req.get("options") or {}
    context.set_custom_status({"stage": "checking inputs"})
    checked = yield from call_with_transient_retry(
        context, "check_training_inputs", {"segments": req["segments"], "week": req.get("week")}
    )
    if checked.get("missing"):
        raise ValueError(
            "training inputs are incomplete: " + "; ".join(str(m) for m in checked["missing"])
        )
    segments: list[str] = checked["segments"]
    batches = training_batches(segments)
    progress = TrainingProgress(segments=len(segments), batches=len(batches))
    context.set_custom_status(progress.status("training"))
    pending = {
        index: context.call_sub_orchestrator(
            "run_train_batch",
            {
                "segments": batch,
                "week": req.get("week"),
                "inputs": checked["inputs"],
                "options": options,
                "parent": context.instance_id,
                "many_models": bool(req.get("many_models")),
                "partition_by": req.get("partition_by"),
            },
            f"{context.instance_id}:batch-{index:03d}",
        )
        for index, batch in enumerate(batches)
    }
    results: dict[str, Any] = {}
    while pending:
        done = yield context.task_any(list(pending.values()))
        index = next(i for i, t in pending.items() if t == done)
        del pending[index]
        batch = batches[index]
        for segment in batch:
            if isinstance(done.result, Exception):  # how the SDK marks a failed task
                results[segment] = _crashed(segment, done.result)
            else:
                results[segment] = done.result.get(segment) or _crashed(
                    segment, RuntimeError("the batch returned no result for it")
                )
            progress.record(segment, results[segment])
        progress.batches_finished += 1
        context.set_custom_status(progress.status("training"))
    results = {segment: results[segment] for segment in segments}
    failed = sorted(s for s, r in results.items() if r["status"] != "completed")
    promoted = sorted(s for s, r in results.items() if r.get("decision") == "champion")
    summary: dict[str, Any] = {
        "status": "succeeded" if not failed else "partial",
        "week": req.get("week"),
        "counts": progress.counts(),
        "segments": results,
        "promoted": promoted,
        "failed": {s: results[s].get("error", "") for s in failed},
    }
    if len(failed) == len(segments):
        context.set_custom_status(progress.status("failed"))
        raise RuntimeError(_failure_sentence(failed, results))
    if promoted and req.get("score", True):
        context.set_custom_status(progress.status("scoring"))
        try:
            summary["score"] = yield context.call_sub_orchestrator(
                "run_score",
                {
                    "segments": promoted,
                    "scoring_date": req.get("scoring_date") or req.get("week"),
                    "options": options,
                },
                f"{context.instance_id}:score",
            )
        except Exception as exc:  # noqa: BLE001 - the models are trained; scoring can rerun
            summary["status"] = "partial"
            summary["score"] = {"status": "failed", "error": _short_error(exc)}
    context.set_custom_status(progress.status("done"))
    return summary


# ------------------------------------------------------------------ scoring and testing


@bp.orchestration_trigger(context_name="context")
def run_score(context: df.DurableOrchestrationContext) -> Flow:
    """Batch-score each segment with its champion; flag champions older than 60 days.

    Input ``{"segments": [...], "scoring_date": "YYYY-MM-DD", "options": {...}}``.
    """
    req: dict[str, Any] = context.get_input()
    options = req.get("options") or {}
    scoring_date = req["scoring_date"]
    scoring_time = datetime.fromisoformat(f"{scoring_date}T00:00:00+00:00")
    stale_after = timedelta(days=float(options.get("stale_after_days", 60)))
    by_segment = yield from call_with_transient_retry(
        context, "get_champions", {"segments": req["segments"]}
    )
    champions = [by_segment.get(s) for s in req["segments"]]
    results: dict[str, Any] = {}
    to_score: list[str] = []
    for segment, champion in zip(req["segments"], champions, strict=True):
        if not champion:
            results[segment] = {"status": "skipped", "reason": "no champion model"}
            continue
        trained_at = champion.get("trained_at")
        too_old = bool(trained_at) and is_stale(
            datetime.fromisoformat(trained_at), scoring_time, stale_after
        )
        results[segment] = {
            "status": "pending",
            "model_name": champion.get("model_name"),
            "model_version": champion.get("version"),
            "stale": too_old,
        }
        to_score.append(segment)
    context.set_custom_status(
        {"stage": "scoring", "segments": len(results), "to_score": len(to_score)}
    )
    if to_score:
        inputs = yield from call_with_transient_retry(
            context, "score_inputs", {"segments": to_score, "scoring_date": scoring_date}
        )
        submitted = yield from call_with_transient_retry(
            context,
            "submit_pipeline_job",
            {
                "pipeline": "score",
                "trace": options.get("trace"),
                "segment": "",
                "inputs": inputs["inputs"],
                "tags": {"segments": ",".join(to_score), "scoring_date": scoring_date},
            },
        )
        outcome = yield from monitor(
            context, submitted["job_name"], options, "score", ",".join(to_score)
        )
        ok = outcome["status"].lower() == "completed"
        forecasts: dict[str, Any] = {}
        if ok:
            forecasts = yield from call_with_transient_retry(
                context,
                "collect_forecasts",
                {
                    "job_name": submitted["job_name"],
                    "segments": to_score,
                    "scoring_date": scoring_date,
                },
            )
        for segment in to_score:
            results[segment]["job_name"] = submitted["job_name"]
            results[segment]["status"] = "scored" if ok else "failed"
            if ok:
                results[segment]["forecasts"] = forecasts.get(segment)
            else:
                results[segment]["error"] = outcome.get("error") or outcome["status"]
    stale = sorted(s for s, r in results.items() if r.get("stale"))
    outcomes = Counter(str(r["status"]) for r in results.values())
    context.set_custom_status(
        {"stage": "done", "segments": len(results), "outcomes": dict(sorted(outcomes.items()))}
    )
    return {"scoring_date": scoring_date, "segments": results, "stale": stale}


@bp.orchestration_trigger(context_name="context")
def run_model_test(context: df.DurableOrchestrationContext) -> Flow:
    """Offline test of one registered model version; the verdict is recorded on the version.

    Input ``{"model_name", "model_version", "options"}``.
    """
    req: dict[str, Any] = context.get_input()
    options = req.get("options") or {}
    name, version = req["model_name"], str(req["model_version"])
    inputs = yield from call_with_transient_retry(
        context, "model_test_inputs", {"model_name": name, "model_version": version}
    )
    submitted = yield from call_with_transient_retry(
        context,
        "submit_pipeline_job",
        {
            "pipeline": "model_test",
            "trace": options.get("trace"),
            "segment": inputs.get("segment", ""),
            "inputs": inputs["inputs"],
            "tags": {"model": f"{name}:{version}"},
        },
    )
    outcome = yield from monitor(
        context, submitted["job_name"], options, "model_test", inputs.get("segment", "")
    )
    if outcome["status"].lower() != "completed":
        return {
            "model": f"{name}:{version}",
            "status": "failed",
            "job_name": submitted["job_name"],
            "error": outcome.get("error", ""),
        }
    verdict = yield from call_with_transient_retry(
        context,
        "read_model_test_verdict",
        {"job_name": submitted["job_name"], "model_name": name, "model_version": version},
    )
    return {
        "model": f"{name}:{version}",
        "status": "completed",
        "job_name": submitted["job_name"],
        "verdict": verdict,
    }


@bp.orchestration_trigger(context_name="context")
def run_retrain(context: df.DurableOrchestrationContext) -> Flow:
    """Retrain after drift or a monitor breach: at most once per segment per window.

    Input ``{"segments": [...] (may be empty: every segment with a champion), "reason",
    "source", "window_start", "week", "options"}``. Segments already claimed by another
    retrain in the same window are skipped.
    """
    req: dict[str, Any] = context.get_input()
    segments: list[str] = req.get("segments") or []
    if not segments:
        segments = yield from call_with_transient_retry(context, "list_champion_segments", {})
    claims = yield context.task_all(
        [
            context.call_activity(
                "claim_retrain_slot",
                {
                    "segment": s,
                    "window_start": req["window_start"],
                    "reason": req.get("reason", ""),
                    "instance": context.instance_id,
                },
            )
            for s in segments
        ]
    )
    claimed = [s for s, ok in zip(segments, claims, strict=True) if ok]
    skipped = [s for s, ok in zip(segments, claims, strict=True) if not ok]
    if not claimed:
        return {
            "status": "debounced",
            "skipped": skipped,
            "reason": req.get("reason"),
            "source": req.get("source"),
        }
    trained = yield context.call_sub_orchestrator(
        "run_train",
        {
            "segments": claimed,
            "week": req.get("week"),
            "score": True,
            "options": req.get("options") or {},
        },
        f"{context.instance_id}:train",
    )
    return {
        "status": "retrained",
        "segments": claimed,
        "skipped": skipped,
        "reason": req.get("reason"),
        "source": req.get("source"),
        "train": trained,
    }
