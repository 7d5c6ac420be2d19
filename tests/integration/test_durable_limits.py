"""The local Durable engine fails where Azure Durable Functions would, and says why.

Real Durable Task backend on loopback; the orchestrators are ordinary Durable Functions code.
Each limit is tested just under (completes) and just over (fails with a message naming the
limit, the orchestrator and the instance). The figures and their sources are in
``adapters/durable_limits.py``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Generator, Iterator
from typing import Any

import pytest

from adapters.durable_limits import CUSTOM_STATUS_FAIL_BYTES, LARGE_MESSAGE_BYTES
from adapters.errors import BadInputError
from local.hosting.durable import LocalDurableEngine

pytestmark = pytest.mark.integration


def _text_of_utf16_bytes(size: int) -> str:
    """A string whose JSON form (with its two quotes) is ``size`` bytes of UTF-16."""
    return "s" * (size // 2 - 2)


def run_status(context: Any) -> Generator[Any, Any, Any]:
    size = context.get_input()["utf16_bytes"]
    context.set_custom_status(_text_of_utf16_bytes(size))
    yield context.call_activity("echo", "after status")
    return "done"


def run_status_replaced_before_yield(context: Any) -> Generator[Any, Any, Any]:
    context.set_custom_status(_text_of_utf16_bytes(64 * 1024))
    context.set_custom_status({"stage": "small again"})
    yield context.call_activity("echo", 1)
    return "done"


def run_child_with_id(context: Any) -> Generator[Any, Any, Any]:
    child_id = context.get_input()["child_id"]
    try:
        result = yield context.call_sub_orchestrator("run_leaf", None, child_id)
    except Exception as exc:  # the orchestrator cannot swallow a refusal Azure makes outside it
        return f"caught {exc}"
    return result


def run_leaf(context: Any) -> Generator[Any, Any, Any]:
    return (yield context.call_activity("echo", context.instance_id))


def run_big_output(context: Any) -> Generator[Any, Any, Any]:
    size = context.get_input()["bytes"]
    return (yield context.call_activity("blob_of", size))


@pytest.fixture(scope="module")
def engine() -> Iterator[LocalDurableEngine]:
    with LocalDurableEngine(
        task_hub="limits",
        orchestrators={
            f.__name__: f
            for f in (
                run_status,
                run_status_replaced_before_yield,
                run_child_with_id,
                run_leaf,
                run_big_output,
            )
        },
        activities={"echo": lambda value: value, "blob_of": lambda size: "b" * size},
        max_concurrency=4,
    ) as running:
        yield running


def _run(engine: LocalDurableEngine, name: str, payload: Any) -> Any:
    instance = engine.start_instance(name, f"{name}-{uuid.uuid4().hex[:8]}", payload)
    return engine.wait_for_completion(instance, timeout=30)


def test_custom_status_just_under_the_limit_completes(engine: LocalDurableEngine) -> None:
    view = _run(engine, "run_status", {"utf16_bytes": CUSTOM_STATUS_FAIL_BYTES - 2})
    assert view.runtime_status == "Completed"
    assert len(view.custom_status) == (CUSTOM_STATUS_FAIL_BYTES - 2) // 2 - 2


def test_custom_status_just_over_the_limit_fails_naming_the_limit(
    engine: LocalDurableEngine,
) -> None:
    view = _run(engine, "run_status", {"utf16_bytes": CUSTOM_STATUS_FAIL_BYTES})
    assert view.runtime_status == "Failed"
    assert "custom status of 17,408 bytes" in view.output
    assert "must not exceed 16 KB" in view.output
    assert f"'run_status' (instance '{view.instance_id}')" in view.output


def test_a_big_status_replaced_before_the_next_yield_is_harmless(
    engine: LocalDurableEngine,
) -> None:
    view = _run(engine, "run_status_replaced_before_yield", None)
    assert view.runtime_status == "Completed"
    assert view.custom_status == {"stage": "small again"}


def test_a_valid_sub_orchestration_id_runs(engine: LocalDurableEngine) -> None:
    child = f"child:{uuid.uuid4().hex[:8]}"
    view = _run(engine, "run_child_with_id", {"child_id": child})
    assert view.runtime_status == "Completed"
    assert view.output == child


@pytest.mark.parametrize("child_id", ["team/other:1", "tab\there", "has#hash", "x" * 513])
def test_a_refused_sub_orchestration_id_fails_the_parent_uncatchably(
    engine: LocalDurableEngine, child_id: str
) -> None:
    view = _run(engine, "run_child_with_id", {"child_id": child_id})
    assert view.runtime_status == "Failed", view.output
    assert "called sub-orchestrator 'run_leaf' with an id Azure refuses" in view.output
    assert engine.get_instance(child_id) is None  # nothing was started under that id


def test_a_sub_orchestration_may_not_reuse_its_parent_s_id(engine: LocalDurableEngine) -> None:
    parent = f"parent-{uuid.uuid4().hex[:8]}"
    engine.start_instance("run_child_with_id", parent, {"child_id": parent.upper()})
    view = engine.wait_for_completion(parent, timeout=30)
    assert view.runtime_status == "Failed"
    assert "must be different than the instance ID of a parent" in view.output


@pytest.mark.parametrize(
    ("instance_id", "words"),
    [("team/other", "'/'"), ("what?", "'?'"), ("@entity", "'@'"), ("x" * 257, "at most 256")],
)
def test_starting_an_id_azure_refuses_is_bad_input(
    engine: LocalDurableEngine, instance_id: str, words: str
) -> None:
    with pytest.raises(BadInputError, match="instance id") as refused:
        engine.start_instance("run_leaf", instance_id, None)
    assert words in str(refused.value)


def test_the_longest_id_azure_accepts_starts(engine: LocalDurableEngine) -> None:
    instance_id = "y" * 255 + uuid.uuid4().hex[:1]
    engine.start_instance("run_leaf", instance_id, None)
    assert engine.wait_for_completion(instance_id, timeout=30).runtime_status == "Completed"


def test_payloads_over_45_kb_complete_with_a_warning(
    engine: LocalDurableEngine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="local.hosting.durable.limits")
    small = _run(engine, "run_big_output", {"bytes": LARGE_MESSAGE_BYTES - 100})
    assert small.runtime_status == "Completed"
    assert not [r for r in caplog.records if small.instance_id in r.getMessage()]

    big = _run(engine, "run_big_output", {"bytes": LARGE_MESSAGE_BYTES + 1024})
    assert big.runtime_status == "Completed" and len(big.output) == LARGE_MESSAGE_BYTES + 1024
    notes = [r.getMessage() for r in caplog.records if big.instance_id in r.getMessage()]
    assert any("activity 'blob_of'" in n and "45 KB" in n for n in notes), notes
    assert any("orchestrator 'run_big_output'" in n and "the output" in n for n in notes), notes
