"""The sweep policies (local/aml/sweep.py): search spaces, sampling, objective, early
termination and the YAML settings, as pure functions over plain data."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from adapters.errors import BadInputError
from local.aml.sweep import (
    DEFAULT_MAX_TOTAL_TRIALS,
    Distribution,
    EarlyTermination,
    Limits,
    Objective,
    SweepSpec,
    best_trial,
    parse_distribution,
    parse_sweep,
    plan,
    sample,
    should_stop,
)

MAXIMIZE = Objective("maximize", "accuracy")
MINIMIZE = Objective("minimize", "loss")


def seeded(seed: int) -> random.Random:
    return random.Random(seed)  # noqa: S311 - sampling, not secrets


def draws(raw: dict[str, Any], n: int = 400, **kwargs: Any) -> list[Any]:
    dist = parse_distribution("p", raw)
    rng = seeded(7)
    return [sample(dist, rng, **kwargs) for _ in range(n)]


# -- search space ----------------------------------------------------------------------------


def test_choice_and_randint_draw_only_their_values() -> None:
    assert set(draws({"type": "choice", "values": ["rbf", "linear", 3]})) == {"rbf", "linear", 3}
    values = draws({"type": "randint", "upper": 4})
    assert set(values) == {0, 1, 2, 3}
    assert all(isinstance(v, int) for v in values)


@pytest.mark.parametrize(
    ("raw", "low", "high"),
    [
        ({"type": "uniform", "min_value": 0.5, "max_value": 0.9}, 0.5, 0.9),
        ({"type": "loguniform", "min_value": -3, "max_value": 0}, math.exp(-3), 1.0),
        ({"type": "quniform", "min_value": 0, "max_value": 10, "q": 2}, 0, 10),
        ({"type": "qloguniform", "min_value": 0, "max_value": 3, "q": 1}, 1, round(math.exp(3))),
    ],
)
def test_bounded_distributions_stay_in_their_range(
    raw: dict[str, Any], low: float, high: float
) -> None:
    values = draws(raw)
    assert min(values) >= low
    assert max(values) <= high
    assert len(set(values)) > 3  # actually random, not a constant


def test_q_variants_round_to_multiples_and_whole_q_gives_integers() -> None:
    assert all(v % 2 == 0 and isinstance(v, int) for v in draws(
        {"type": "quniform", "min_value": 0, "max_value": 10, "q": 2}
    ))  # fmt: skip
    tenths = draws({"type": "qnormal", "mu": 1, "sigma": 0.5, "q": 0.1})
    assert all(abs(v * 10 - round(v * 10)) < 1e-9 for v in tenths)
    whole = draws({"type": "qlognormal", "mu": 1, "sigma": 1, "q": 1})
    assert all(isinstance(v, int) for v in whole)


def test_normal_and_lognormal_follow_mu_and_sigma() -> None:
    normal = draws({"type": "normal", "mu": 10, "sigma": 2}, n=2000)
    assert abs(sum(normal) / len(normal) - 10) < 0.3
    lognormal = draws({"type": "lognormal", "mu": 0, "sigma": 0.5}, n=2000)
    assert all(v > 0 for v in lognormal)
    assert abs(sorted(lognormal)[1000] - 1.0) < 0.1  # the median of exp(normal(0, s)) is 1


def test_loguniform_uses_the_sampling_logbase() -> None:
    values = draws({"type": "loguniform", "min_value": 1, "max_value": 2}, logbase=10)
    assert min(values) >= 10 and max(values) <= 100


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"type": "beta"}, "type 'beta' is not one of choice, randint, uniform"),
        ({"type": "uniform", "min_value": 1}, "needs max_value"),
        ({"type": "choice", "values": []}, "non-empty list"),
        ({"type": "uniform", "min_value": 2, "max_value": 1}, "above max_value"),
        ({"type": "normal", "mu": 0, "sigma": -1}, "sigma must be >= 0"),
        ({"type": "quniform", "min_value": 0, "max_value": 1, "q": 0}, "q must be > 0"),
        ({"type": "randint", "upper": 0}, "whole number >= 1"),
        ({"type": "randint", "upper": 2.5}, "whole number >= 1"),
        ({"type": "uniform", "min_value": True, "max_value": 2}, "must be a number"),
        ({"type": "uniform", "min_value": "low", "max_value": 2}, "must be a number"),
        ({"type": "normal", "mu": float("inf"), "sigma": 1}, "must be finite"),
    ],
)
def test_bad_search_expressions_are_refused_naming_the_parameter(
    raw: dict[str, Any], message: str
) -> None:
    with pytest.raises(BadInputError, match=message) as err:
        parse_distribution("lr", raw)
    assert "'lr'" in str(err.value)


# -- sampling --------------------------------------------------------------------------------


def spec(space: dict[str, dict[str, Any]], sampling: str = "random", total: int = 50) -> SweepSpec:
    return SweepSpec(
        search_space={k: parse_distribution(k, v) for k, v in space.items()},
        objective=MINIMIZE,
        sampling=sampling,
        limits=Limits(max_total_trials=total),
    )


def test_grid_is_the_product_of_choices_in_written_order_up_to_the_limit() -> None:
    space = {
        "kernel": {"type": "choice", "values": ["rbf", "linear"]},
        "c": {"type": "choice", "values": [1, 2, 3]},
    }
    sets = list(plan(spec(space, "grid"), seeded(0)))
    assert sets == [
        {"kernel": k, "c": c} for k in ("rbf", "linear") for c in (1, 2, 3)
    ]  # fmt: skip
    assert len(list(plan(spec(space, "grid", total=4), seeded(0)))) == 4


def test_random_sampling_never_repeats_and_ends_when_a_finite_space_is_exhausted() -> None:
    space = {
        "kernel": {"type": "choice", "values": ["rbf", "linear"]},
        "depth": {"type": "randint", "upper": 2},
    }
    sets = list(plan(spec(space, total=10), seeded(1)))
    assert len(sets) == 4
    assert {tuple(sorted(s.items())) for s in sets} == {
        (("depth", d), ("kernel", k)) for d in (0, 1) for k in ("rbf", "linear")
    }


def test_random_sampling_is_reproducible_with_a_seed_and_honours_the_limit() -> None:
    space = {"lr": {"type": "uniform", "min_value": 0, "max_value": 1}}
    first = list(plan(spec(space, total=7), seeded(42)))
    assert first == list(plan(spec(space, total=7), seeded(42)))
    assert len(first) == 7
    assert first != list(plan(spec(space, total=7), seeded(43)))


# -- objective and best trial ----------------------------------------------------------------


def test_the_goal_decides_better_and_best() -> None:
    assert MAXIMIZE.better(0.9, 0.8) and not MAXIMIZE.better(0.8, 0.8)
    assert MINIMIZE.better(0.1, 0.2) and MINIMIZE.best([0.3, 0.1, 0.2]) == 0.1
    assert MAXIMIZE.best([0.3, 0.1, 0.2]) == 0.3


def test_best_trial_uses_each_trials_best_value_and_ties_go_to_the_earlier_one() -> None:
    assert best_trial(MAXIMIZE, {"0": [0.5, 0.9], "1": [0.8], "2": [0.9]}) == ("0", 0.9)
    assert best_trial(MINIMIZE, {"0": [0.5, 0.9], "1": [0.2, 0.7]}) == ("1", 0.2)
    assert best_trial(MINIMIZE, {"0": [], "1": []}) is None


# -- early termination -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("interval", "delay", "applies"),
    [
        (1, 0, [1, 2, 3, 4, 5, 6]),
        (2, 0, [2, 4, 6]),
        (2, 5, [6]),
        (3, 3, [3, 6]),
        (0, 0, [1, 2, 3, 4, 5, 6]),  # Azure ML's SDK default 0 means every interval
    ],
)
def test_a_policy_applies_at_multiples_of_its_interval_from_its_delay_on(
    interval: int, delay: int, applies: list[int]
) -> None:
    policy = EarlyTermination("bandit", interval, delay, slack_factor=0.1)
    assert [k for k in range(7) if policy.applies_at(k)] == applies


def bandit(**kwargs: Any) -> EarlyTermination:
    return EarlyTermination("bandit", **kwargs)


@pytest.mark.parametrize(
    ("mine", "stopped"),
    [([0.6], True), ([0.66], True), ([0.67], False), ([0.7], False), ([0.5, 0.7], False)],
)
def test_bandit_slack_factor_as_azure_ml_documents_it(mine: list[float], stopped: bool) -> None:
    # Best trial at 0.8, slack factor 0.2: a trial is out when its best * 1.2 < 0.8.
    histories = {"best": [0.8, 0.8], "me": mine}
    reason = should_stop(bandit(slack_factor=0.2), MAXIMIZE, "me", len(mine), histories)
    assert bool(reason) is stopped
    if stopped:
        assert "bandit policy" in reason and "slack_factor 0.2" in reason


@pytest.mark.parametrize(("mine", "stopped"), [(0.49, True), (0.5, False), (0.51, False)])
def test_bandit_slack_amount(mine: float, stopped: bool) -> None:
    # Best trial at 0.75, slack amount 0.25: a trial is out below 0.5.
    histories = {"best": [0.75], "me": [mine]}
    assert bool(should_stop(bandit(slack_amount=0.25), MAXIMIZE, "me", 1, histories)) is stopped


@pytest.mark.parametrize(("mine", "stopped"), [(1.21, True), (1.19, False), (0.5, False)])
def test_bandit_when_minimizing(mine: float, stopped: bool) -> None:
    histories = {"best": [1.0], "me": [mine]}
    assert bool(should_stop(bandit(slack_factor=0.2), MINIMIZE, "me", 1, histories)) is stopped
    amount = should_stop(bandit(slack_amount=0.2), MINIMIZE, "me", 1, histories)
    assert bool(amount) is (mine > 1.2)


def test_bandit_compares_only_values_up_to_the_interval() -> None:
    # The other trial became much better only at interval 3; at interval 1 it was worse.
    histories = {"other": [0.5, 0.5, 0.99], "me": [0.6, 0.6, 0.6]}
    policy = bandit(slack_factor=0.1)
    assert should_stop(policy, MAXIMIZE, "me", 1, histories) == ""
    assert should_stop(policy, MAXIMIZE, "me", 3, histories) != ""


def test_bandit_needs_another_trial_and_an_evaluation_point() -> None:
    policy = bandit(slack_factor=0.0, evaluation_interval=2)
    assert should_stop(policy, MAXIMIZE, "me", 2, {"me": [0.1, 0.1]}) == ""
    histories = {"other": [0.9, 0.9], "me": [0.1, 0.1]}
    assert should_stop(policy, MAXIMIZE, "me", 1, histories) == ""
    assert should_stop(policy, MAXIMIZE, "me", 2, histories) != ""
    assert should_stop(policy, MAXIMIZE, "me", 2, {"other": [0.9], "me": []}) == ""


def test_median_stopping_compares_with_the_median_of_running_averages() -> None:
    policy = EarlyTermination("median_stopping")
    # Other trials' running averages up to interval 2: 0.5, 0.7, 0.9 -> median 0.7.
    others = {"a": [0.4, 0.6, 1.0], "b": [0.6, 0.8], "c": [0.9, 0.9]}
    assert should_stop(policy, MAXIMIZE, "me", 2, {**others, "me": [0.5, 0.69]}) != ""
    assert should_stop(policy, MAXIMIZE, "me", 2, {**others, "me": [0.5, 0.7]}) == ""  # a tie
    assert should_stop(policy, MAXIMIZE, "me", 2, {**others, "me": [0.8, 0.1]}) == ""  # best 0.8
    reason = should_stop(policy, MINIMIZE, "me", 2, {**others, "me": [0.75, 0.8]})
    assert "median 0.7" in reason
    assert should_stop(policy, MAXIMIZE, "me", 1, {"me": [0.0]}) == ""


def test_truncation_selection_stops_the_worst_percentage() -> None:
    policy = EarlyTermination("truncation_selection", truncation_percentage=20)
    others = {"a": [0.9], "b": [0.8], "c": [0.7], "d": [0.6]}
    worst = should_stop(policy, MAXIMIZE, "me", 1, {**others, "me": [0.5]})
    assert "worst 20% of 5 trials" in worst
    assert should_stop(policy, MAXIMIZE, "me", 1, {**others, "me": [0.65]}) == ""
    assert should_stop(policy, MAXIMIZE, "me", 1, {**others, "me": [0.6]}) == ""  # tied, not worse
    assert should_stop(policy, MINIMIZE, "me", 1, {**others, "me": [0.95]}) != ""
    # 20% of 4 trials rounds down to none.
    few = {"a": [0.9], "b": [0.8], "c": [0.7], "me": [0.1]}
    assert should_stop(policy, MAXIMIZE, "me", 1, few) == ""


def test_truncation_selection_can_leave_finished_trials_out_of_the_ranking() -> None:
    histories = {"a": [0.9], "b": [0.8], "c": [0.7], "d": [0.6], "me": [0.5]}
    keep = EarlyTermination("truncation_selection", truncation_percentage=20)
    leave = EarlyTermination(
        "truncation_selection", truncation_percentage=20, exclude_finished_jobs=True
    )
    assert should_stop(keep, MAXIMIZE, "me", 1, histories, {"a", "b"}) != ""
    assert should_stop(leave, MAXIMIZE, "me", 1, histories, {"a", "b"}) == ""  # 3 left: no cut


# -- the YAML settings -----------------------------------------------------------------------

NODE: dict[str, Any] = {
    "search_space": {"lr": {"type": "uniform", "min_value": 0.01, "max_value": 0.1}},
    "objective": {"goal": "Maximize", "primary_metric": "accuracy"},
}


def test_defaults_follow_azure_ml() -> None:
    parsed = parse_sweep("node 'x'", NODE)
    assert parsed.sampling == "random"
    assert parsed.objective == Objective("maximize", "accuracy")
    assert parsed.limits == Limits(max_total_trials=DEFAULT_MAX_TOTAL_TRIALS)
    assert parsed.early_termination is None and parsed.notes() == []
    grid = parse_sweep(
        "node 'x'",
        {
            **NODE,
            "sampling_algorithm": "grid",
            "search_space": {"a": {"type": "choice", "values": [1, 2, 3]}},
        },
    )
    assert grid.limits.max_total_trials == 3


def test_full_settings_are_read() -> None:
    parsed = parse_sweep(
        "node 'x'",
        {
            **NODE,
            "sampling_algorithm": {"type": "random", "seed": 5, "rule": "sobol", "logbase": 10},
            "limits": {
                "max_total_trials": 8,
                "max_concurrent_trials": 2,
                "timeout": 600,
                "trial_timeout": 60,
            },
            "early_termination": {
                "type": "bandit",
                "slack_amount": 0.1,
                "evaluation_interval": 2,
                "delay_evaluation": 4,
            },
        },
    )
    assert parsed.seed == 5 and parsed.logbase == 10
    assert parsed.limits == Limits(8, 2, 600.0, 60.0)
    assert parsed.early_termination == EarlyTermination("bandit", 2, 4, slack_amount=0.1)
    assert parsed.notes() == ["random sampling's sobol rule is run as plain random sampling"]
    bayesian = parse_sweep("node 'x'", {**NODE, "sampling_algorithm": "bayesian"})
    assert bayesian.sampling == "random" and "bayesian" in bayesian.notes()[0]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"search_space": {}}, "needs a search_space"),
        ({"objective": None}, "needs objective.primary_metric"),
        ({"objective": {"goal": "up", "primary_metric": "a"}}, "maximize or minimize"),
        ({"sampling_algorithm": "hill_climbing"}, "is not one of random, grid, bayesian"),
        ({"sampling_algorithm": "grid"}, "grid sampling takes only choice parameters; 'lr'"),
        ({"limits": {"max_total_trials": 0}}, "max_total_trials must be a whole number >= 1"),
        ({"limits": {"max_concurrent_trials": "two"}}, "max_concurrent_trials"),
        ({"limits": {"timeout": -5}}, "limits.timeout must be > 0"),
        ({"early_termination": {"type": "bandit"}}, "exactly one of slack_factor"),
        (
            {"early_termination": {"type": "bandit", "slack_factor": 0.1, "slack_amount": 1}},
            "exactly one of slack_factor",
        ),
        ({"early_termination": {"type": "truncation_selection"}}, "truncation_percentage"),
        (
            {"early_termination": {"type": "truncation_selection", "truncation_percentage": 100}},
            "between 1 and 99",
        ),
        ({"early_termination": {"type": "patience"}}, "is not one of bandit"),
        ({"sampling_algorithm": {"type": "random", "logbase": 1}}, "logbase"),
    ],
)
def test_bad_settings_are_refused_naming_the_node(change: dict[str, Any], message: str) -> None:
    with pytest.raises(BadInputError, match=message) as err:
        parse_sweep("node 'tune'", {**NODE, **change})
    assert str(err.value).startswith("node 'tune'") or "'lr'" in str(err.value)


def test_distribution_sizes() -> None:
    assert Distribution("choice", values=(1, 2)).size == 2
    assert Distribution("randint", upper=5).size == 5
    assert Distribution("uniform", min_value=0, max_value=1).size is None
