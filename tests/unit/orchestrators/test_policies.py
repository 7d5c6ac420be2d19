from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from adapters.errors import BadInputError
from orchestrators.policies import (
    Metrics,
    Segment,
    StartIds,
    is_stale,
    keyed_instance_id,
    parse_segments,
    promotion_gate,
    retrain_instance_id,
    start_ids,
    window_start,
)


def test_segment_round_trip_and_model_name() -> None:
    s = Segment.parse("R01-Large-Fast")
    assert s == Segment("r01", "large", "fast")
    assert s.id == "r01-large-fast" and s.model_name == "forecast-r01-large-fast"
    assert Segment.parse("north_east-small-slow").region == "north_east"


@pytest.mark.parametrize("bad", ["r01-large", "r01-medium-fast", "r01-large-quick", "-large-fast",
                                 "R 1-large-fast", ""])  # fmt: skip
def test_bad_segments_are_bad_input(bad: str) -> None:
    with pytest.raises(BadInputError):
        Segment.parse(bad)


def test_regions_expand_to_four_segments_each_sorted_and_unique() -> None:
    segs = parse_segments({"regions": ["r02", "r01", "r01"]})
    assert len(segs) == 8
    assert segs[0] == Segment("r01", "large", "fast")
    assert parse_segments(["r01-small-slow", "r01-small-slow"]) == [Segment("r01", "small", "slow")]
    for bad in ([], {"regions": []}, "r01-large-fast", None):
        with pytest.raises(BadInputError):
            parse_segments(bad)


M = Metrics


@pytest.mark.parametrize(
    ("candidate", "baseline", "champion", "decision"),
    [
        (M(0.30), M(0.50), None, "champion"),
        (M(0.30), M(0.50), M(0.35), "champion"),
        (M(0.30), M(0.50), M(0.30), "challenger"),  # a tie does not dethrone
        (M(0.30), M(0.50), M(0.25), "challenger"),
        (M(0.46), M(0.90), None, "rejected"),  # above the 45% bar
        (M(0.45), M(0.90), None, "champion"),  # on the bar is allowed
        (M(0.40), M(0.40), None, "rejected"),  # must beat the baseline
        (M(0.40), None, None, "rejected"),  # no baseline, no promotion
        (None, M(0.5), None, "rejected"),
    ],
)
def test_promotion_gate(
    candidate: Metrics | None, baseline: Metrics | None, champion: Metrics | None, decision: str
) -> None:
    verdict = promotion_gate(candidate, baseline, champion)
    assert verdict.decision == decision
    assert verdict.reasons
    assert verdict.promoted == (decision == "champion")


def test_gate_reasons_name_every_failure() -> None:
    verdict = promotion_gate(M(0.6), M(0.5), None)
    assert len(verdict.reasons) == 2
    assert "above the bar" in verdict.reasons[0] and "baseline" in verdict.reasons[1]


def test_metrics_from_mapping_tolerates_junk() -> None:
    assert Metrics.from_mapping({"ensemble_mape": "0.3", "ensemble_rmse_all": 2}, "ensemble_") == M(
        0.3, None, 2.0
    )
    assert Metrics.from_mapping({"mape": "nan"}) is None
    assert Metrics.from_mapping({"mape": "abc"}) is None
    assert Metrics.from_mapping({}) is None


def test_staleness_is_strictly_more_than_sixty_days() -> None:
    trained = datetime(2026, 1, 1, tzinfo=UTC)
    assert not is_stale(trained, trained + timedelta(days=60))
    assert is_stale(trained, trained + timedelta(days=60, seconds=1))


def test_a_key_decides_the_instance() -> None:
    now = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
    window = timedelta(minutes=2)
    body = {"segments": ["r01-large-fast"], "week": "2026-11-23"}
    run_1 = start_ids("train", body, "0b7f2c0e-run-1", now, window)
    assert run_1.instance_id == "train-0b7f2c0e-run-1" and run_1.earlier is None
    # A retry of the same run, a week later or not, finds the same instance; a new run does not.
    assert start_ids("train", body, "0b7f2c0e-run-1", now + timedelta(days=7), window) == run_1
    assert start_ids("train", body, "0b7f2c0e-run-2", now, window) != run_1
    assert keyed_instance_id("train", "adf run/42") == "train-adf_run_42"
    assert len(keyed_instance_id("score", "x" * 500)) == len("score-") + 80


@pytest.mark.parametrize("bad", ["", "   ", "///", "#?"])
def test_an_empty_key_is_bad_input(bad: str) -> None:
    with pytest.raises(BadInputError, match="idempotencyKey"):
        keyed_instance_id("train", bad)


def test_without_a_key_the_same_request_is_one_run_only_within_the_window() -> None:
    window = timedelta(seconds=120)
    t = datetime(2026, 11, 23, 6, 0, 30, tzinfo=UTC)
    a = {"segments": ["r01-large-fast"], "week": "2026-11-23"}
    same = {"week": "2026-11-23", "segments": ["r01-large-fast"]}
    first = start_ids("train", a, None, t, window)
    assert start_ids("train", same, None, t + timedelta(seconds=60), window) == StartIds(
        first.instance_id, first.earlier, t + timedelta(seconds=60) - window
    )
    # Across a window boundary the repeat looks at the earlier window's run, if recent enough.
    later = start_ids("train", a, None, t + timedelta(seconds=100), window)
    assert later.instance_id != first.instance_id and later.earlier == first.instance_id
    assert later.not_before == t + timedelta(seconds=100) - window
    # Next week the same input is a new run.
    next_week = start_ids("train", a, None, t + timedelta(days=7), window)
    assert next_week.instance_id not in (first.instance_id, later.instance_id)
    assert next_week.earlier != first.instance_id
    # Different requests never share a run.
    other_week = start_ids("train", {**a, "week": "2026-11-30"}, None, t, window)
    scoring = start_ids("score", a, None, t, window)
    assert len({first.instance_id, other_week.instance_id, scoring.instance_id}) == 3
    assert first.instance_id.startswith("train-")


def test_retrain_is_debounced_per_segment_and_window() -> None:
    seg = Segment("r01", "large", "fast")
    hour = timedelta(hours=6)
    t = datetime(2026, 11, 26, 7, 30, tzinfo=UTC)
    assert window_start(t, hour) == datetime(2026, 11, 26, 6, 0, tzinfo=UTC)
    same = retrain_instance_id(seg, t + timedelta(hours=4), hour)
    assert retrain_instance_id(seg, t, hour) == same
    assert retrain_instance_id(seg, t + timedelta(hours=5), hour) != same
    other = retrain_instance_id(Segment("r02", "large", "fast"), t, hour)
    assert other != same
