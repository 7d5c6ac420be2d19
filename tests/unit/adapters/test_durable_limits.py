"""Azure Durable Functions' limits on ids, custom status and payloads, as the app measures them.

The figures come from the Durable extension's own checks (see ``adapters/durable_limits.py``
for where each was read); these tests pin the boundary on both sides.
"""

from __future__ import annotations

import pytest

from adapters.durable_limits import (
    CUSTOM_STATUS_FAIL_BYTES,
    LARGE_MESSAGE_BYTES,
    MAX_INSTANCE_ID_LENGTH,
    check_instance_id,
    custom_status_size,
    instance_id_problem,
    large_payload_note,
)
from adapters.errors import BadInputError


@pytest.mark.parametrize(
    "instance_id",
    [
        "train-0123456789abcdef01234567",
        "model_test-forecast-r01-large-fast-7",
        "run:with:colons.and_dots-and spaces",
        "x" * MAX_INSTANCE_ID_LENGTH,
        "é" * MAX_INSTANCE_ID_LENGTH,  # one UTF-16 unit each, like a .NET char
    ],
)
def test_ids_azure_accepts(instance_id: str) -> None:
    assert instance_id_problem(instance_id) is None
    assert check_instance_id(instance_id) == instance_id


@pytest.mark.parametrize(
    ("instance_id", "words"),
    [
        ("", "non-empty"),
        ("@entity", "'@'"),
        ("model_test-team/other-1", "'/'"),
        ("a\\b", "'\\\\'"),
        ("a#b", "'#'"),
        ("a?b", "'?'"),
        ("tab\there", "'\\t'"),
        ("nl\nhere", "'\\n'"),
        ("c1\x85control", "'\\x85'"),
        ("del\x7f", "'\\x7f'"),
        ("x" * (MAX_INSTANCE_ID_LENGTH + 1), "at most 256"),
        ("😀" * 129, "at most 256"),  # 258 UTF-16 units: .NET counts surrogate pairs twice
    ],
)
def test_ids_azure_refuses_name_the_rule(instance_id: str, words: str) -> None:
    problem = instance_id_problem(instance_id)
    assert problem is not None and words in problem
    with pytest.raises(BadInputError, match="instance id"):
        check_instance_id(instance_id)


def test_sub_orchestration_ids_follow_the_table_key_length_not_the_client_one() -> None:
    assert instance_id_problem("x" * 300, sub_orchestration=True) is None
    assert instance_id_problem("x" * 512, sub_orchestration=True) is None
    assert "512" in (instance_id_problem("x" * 513, sub_orchestration=True) or "")
    assert "'/'" in (instance_id_problem("a/b", sub_orchestration=True) or "")


def _status_of_utf16_bytes(size: int) -> str:
    # A JSON string "xxx": two quote characters plus the body, two bytes per character.
    assert size % 2 == 0
    return "x" * (size // 2 - 2)


def test_custom_status_just_under_the_extension_s_check_passes() -> None:
    documented = custom_status_size(_status_of_utf16_bytes(16 * 1024))
    edge = custom_status_size(_status_of_utf16_bytes(CUSTOM_STATUS_FAIL_BYTES - 2))
    assert documented.utf16_bytes == 16 * 1024 and documented.accepted
    assert edge.utf16_bytes == CUSTOM_STATUS_FAIL_BYTES - 2 and edge.accepted


def test_custom_status_just_over_fails_with_the_extension_s_words() -> None:
    size = custom_status_size(_status_of_utf16_bytes(CUSTOM_STATUS_FAIL_BYTES))
    assert not size.accepted
    assert size.refusal() == (
        "The UTF-16 size of the JSON-serialized payload must not exceed 16 KB. "
        "The current payload size is 17 KB."
    )


def test_custom_status_is_measured_as_compact_json_in_utf16() -> None:
    value = {"stage": "training", "names": ["é", "😀"]}
    # {"stage":"training","names":["é","😀"]}: 38 characters, the emoji two UTF-16 units.
    assert custom_status_size(value).utf16_bytes == 2 * 39


def test_large_payloads_are_a_warning_not_a_limit() -> None:
    assert large_payload_note("the output", LARGE_MESSAGE_BYTES) is None
    note = large_payload_note("the output", LARGE_MESSAGE_BYTES + 1)
    assert note is not None and "45 KB" in note and "blob" in note
