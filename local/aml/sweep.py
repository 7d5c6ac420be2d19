"""Hyperparameter sweeps as Azure ML defines them: pure policies over plain data.

A ``type: sweep`` node runs its trial component once per sampled set of hyperparameters and
keeps the trial that did best on ``objective.primary_metric``. This module holds the rules,
with no processes, clocks or I/O (``local/aml/sweep_run.py`` runs the trials):

- **Search space** (``parse_distribution``, ``sample``): ``choice(values)``, ``randint(upper)``
  (an integer in ``[0, upper)``), ``uniform``/``quniform(min_value, max_value[, q])``,
  ``loguniform``/``qloguniform`` (``base ** uniform(min_value, max_value)``, ``base`` = e unless
  the sampling algorithm's ``logbase`` says otherwise), ``normal``/``qnormal(mu, sigma[, q])``
  and ``lognormal``/``qlognormal`` (``exp(normal)``). A ``q`` variant rounds to a multiple of
  ``q`` (an integer when ``q`` and the result are whole numbers).
- **Sampling** (``plan``): ``grid`` is the cartesian product of ``choice`` parameters (any other
  type is refused, as Azure ML refuses it) in the order written; ``random`` draws each
  parameter independently and never repeats a set (a finite space ends when exhausted);
  ``bayesian`` and random's ``sobol`` rule are run as plain random sampling (the caller warns).
- **Objective** (``Objective``): ``maximize`` or ``minimize`` a metric; a trial's value is the
  best it logged, and the best trial is the completed one with the best value.
- **Early termination** (``should_stop``), evaluated on intermediate metrics, where every value
  a trial logs for the primary metric is one interval, and a policy applies at every multiple
  of ``evaluation_interval`` that is at least ``delay_evaluation``. At interval ``k`` a trial
  is compared with the other trials' values up to interval ``k``:
  ``bandit`` stops a trial whose best value is outside ``slack_factor`` (ratio) or
  ``slack_amount`` (absolute) of the best trial's; ``median_stopping`` stops a trial whose best
  value is worse than the median of the other trials' running averages; ``truncation_selection``
  stops a trial in the worst ``truncation_percentage`` percent (finished trials left out of
  the ranking with ``exclude_finished_jobs``).
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from adapters.errors import BadInputError

GOALS = ("maximize", "minimize")
SAMPLING = ("random", "grid", "bayesian")
POLICIES = ("bandit", "median_stopping", "truncation_selection")
DEFAULT_MAX_TOTAL_TRIALS = 1000  # Azure ML's default when limits.max_total_trials is absent
# Distribution type -> the keys it needs (besides an optional ``q`` for q-variants).
_NEEDS: dict[str, tuple[str, ...]] = {
    "choice": ("values",),
    "randint": ("upper",),
    "uniform": ("min_value", "max_value"),
    "quniform": ("min_value", "max_value", "q"),
    "loguniform": ("min_value", "max_value"),
    "qloguniform": ("min_value", "max_value", "q"),
    "normal": ("mu", "sigma"),
    "qnormal": ("mu", "sigma", "q"),
    "lognormal": ("mu", "sigma"),
    "qlognormal": ("mu", "sigma", "q"),
}
# Random draws tried before a space counts as exhausted (only finite spaces ever get there).
_MAX_REDRAWS = 200


@dataclass(frozen=True)
class Distribution:
    """One hyperparameter's search expression (``type`` is one of ``_NEEDS``)."""

    type: str
    values: tuple[Any, ...] = ()
    upper: int = 0
    min_value: float = 0.0
    max_value: float = 0.0
    mu: float = 0.0
    sigma: float = 0.0
    q: float | None = None

    @property
    def size(self) -> int | None:
        """How many distinct values it can take; ``None`` when continuous."""
        if self.type == "choice":
            return len(self.values)
        if self.type == "randint":
            return self.upper
        return None


def _number(name: str, key: str, raw: Any) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise BadInputError(
            f"search_space parameter {name!r}: {key} must be a number, got {raw!r}",
            code="invalid_pipeline",
        )
    if not math.isfinite(float(raw)):
        raise BadInputError(
            f"search_space parameter {name!r}: {key} must be finite", code="invalid_pipeline"
        )
    return float(raw)


def _type_of(raw: Mapping[str, Any], allowed: tuple[str, ...], what: str) -> str:
    kind = str(raw.get("type", "")).strip().lower()
    if kind not in allowed:
        raise BadInputError(
            f"{what} type {raw.get('type')!r} is not one of " + ", ".join(allowed),
            code="invalid_pipeline",
        )
    return kind


def parse_distribution(name: str, raw: Mapping[str, Any]) -> Distribution:
    """A search expression as written in YAML (``{type: uniform, min_value: 0, ...}``).

    Raises ``BadInputError`` naming the parameter for an unknown type, a missing or
    non-numeric bound, an empty choice, ``min_value > max_value``, ``sigma < 0``, ``q <= 0``
    or ``upper < 1``.
    """
    kind = _type_of(raw, tuple(_NEEDS), f"search_space parameter {name!r}")
    missing = [key for key in _NEEDS[kind] if raw.get(key) is None]
    if missing:
        raise BadInputError(
            f"search_space parameter {name!r} ({kind}) needs {', '.join(missing)}",
            code="invalid_pipeline",
        )
    if kind == "choice":
        values = raw["values"]
        if not isinstance(values, list | tuple) or not values:
            raise BadInputError(
                f"search_space parameter {name!r}: choice needs a non-empty list of values",
                code="invalid_pipeline",
            )
        return Distribution(kind, values=tuple(values))
    if kind == "randint":
        upper = _number(name, "upper", raw["upper"])
        if upper < 1 or not upper.is_integer():
            raise BadInputError(
                f"search_space parameter {name!r}: randint upper must be a whole number >= 1",
                code="invalid_pipeline",
            )
        return Distribution(kind, upper=int(upper))
    q = _number(name, "q", raw["q"]) if "q" in _NEEDS[kind] else None
    if q is not None and q <= 0:
        raise BadInputError(
            f"search_space parameter {name!r}: q must be > 0", code="invalid_pipeline"
        )
    if kind.endswith("uniform"):
        low = _number(name, "min_value", raw["min_value"])
        high = _number(name, "max_value", raw["max_value"])
        if low > high:
            raise BadInputError(
                f"search_space parameter {name!r}: min_value {low:g} is above max_value {high:g}",
                code="invalid_pipeline",
            )
        return Distribution(kind, min_value=low, max_value=high, q=q)
    mu = _number(name, "mu", raw["mu"])
    sigma = _number(name, "sigma", raw["sigma"])
    if sigma < 0:
        raise BadInputError(
            f"search_space parameter {name!r}: sigma must be >= 0", code="invalid_pipeline"
        )
    return Distribution(kind, mu=mu, sigma=sigma, q=q)


def _quantize(value: float, q: float | None) -> float | int:
    if q is None:
        return value
    rounded = round(value / q) * q
    if float(q).is_integer() and float(rounded).is_integer():
        return int(rounded)
    # Round off the float noise of the multiplication (0.1 * 3 -> 0.30000000000000004).
    return round(rounded, 12)


def sample(dist: Distribution, rng: random.Random, logbase: float = math.e) -> Any:
    """One value drawn from ``dist``."""
    kind = dist.type
    if kind == "choice":
        return dist.values[rng.randrange(len(dist.values))]
    if kind == "randint":
        return rng.randrange(dist.upper)
    if kind in ("uniform", "quniform"):
        return _quantize(rng.uniform(dist.min_value, dist.max_value), dist.q)
    if kind in ("loguniform", "qloguniform"):
        return _quantize(logbase ** rng.uniform(dist.min_value, dist.max_value), dist.q)
    if kind in ("normal", "qnormal"):
        return _quantize(rng.gauss(dist.mu, dist.sigma), dist.q)
    return _quantize(math.exp(rng.gauss(dist.mu, dist.sigma)), dist.q)


@dataclass(frozen=True)
class Objective:
    goal: str
    primary_metric: str

    def better(self, a: float, b: float) -> bool:
        """True when ``a`` is strictly better than ``b``."""
        return a > b if self.goal == "maximize" else a < b

    def best(self, values: Sequence[float]) -> float:
        return max(values) if self.goal == "maximize" else min(values)


@dataclass(frozen=True)
class EarlyTermination:
    type: str
    evaluation_interval: int = 1
    delay_evaluation: int = 0
    slack_factor: float | None = None
    slack_amount: float | None = None
    truncation_percentage: int = 0
    exclude_finished_jobs: bool = False

    def applies_at(self, interval: int) -> bool:
        """Whether the policy is evaluated when a trial has logged ``interval`` values."""
        every = max(1, self.evaluation_interval)
        return interval >= 1 and interval % every == 0 and interval >= self.delay_evaluation


@dataclass(frozen=True)
class Limits:
    max_total_trials: int = DEFAULT_MAX_TOTAL_TRIALS
    max_concurrent_trials: int | None = None
    timeout: float | None = None
    trial_timeout: float | None = None


@dataclass(frozen=True)
class SweepSpec:
    """Everything a sweep node says about its trials, validated."""

    search_space: dict[str, Distribution]
    objective: Objective
    sampling: str = "random"  # what runs: random or grid
    requested_sampling: str = "random"  # as written (bayesian runs as random)
    rule: str = "random"
    seed: int | None = None
    logbase: float = math.e
    limits: Limits = field(default_factory=Limits)
    early_termination: EarlyTermination | None = None

    def notes(self) -> list[str]:
        """What runs differently from Azure ML (one line each, for the job's warnings)."""
        lines = []
        if self.requested_sampling == "bayesian":
            lines.append(
                "bayesian sampling is run as random sampling (the local executor has no "
                "Bayesian optimiser)"
            )
        if self.rule == "sobol":
            lines.append("random sampling's sobol rule is run as plain random sampling")
        return lines


def grid_size(space: Mapping[str, Distribution]) -> int:
    return math.prod(len(d.values) for d in space.values())


def _check_grid(space: Mapping[str, Distribution], where: str) -> None:
    for name, dist in space.items():
        if dist.type != "choice":
            raise BadInputError(
                f"{where}: grid sampling takes only choice parameters; {name!r} is {dist.type}",
                code="invalid_pipeline",
            )


def plan(spec: SweepSpec, rng: random.Random) -> Iterator[dict[str, Any]]:
    """The hyperparameter sets to try, in order (at most ``limits.max_total_trials``)."""
    limit = spec.limits.max_total_trials
    names = list(spec.search_space)
    if spec.sampling == "grid":
        product = itertools.product(*(spec.search_space[n].values for n in names))
        for values in itertools.islice(product, limit):
            yield dict(zip(names, values, strict=True))
        return
    sizes = [d.size for d in spec.search_space.values()]
    finite = math.prod(s for s in sizes if s is not None) if None not in sizes else None
    seen: set[str] = set()
    produced = 0
    while produced < limit and (finite is None or produced < finite):
        for _ in range(_MAX_REDRAWS):
            params = {n: sample(spec.search_space[n], rng, spec.logbase) for n in names}
            key = repr(sorted(params.items(), key=lambda item: item[0]))
            if key not in seen:
                break
        else:
            return
        seen.add(key)
        produced += 1
        yield params


# -- early termination ----------------------------------------------------------------------


def _best_upto(objective: Objective, values: Sequence[float], k: int) -> float | None:
    head = list(values[:k])
    return objective.best(head) if head else None


def should_stop(
    policy: EarlyTermination,
    objective: Objective,
    trial: str,
    interval: int,
    histories: Mapping[str, Sequence[float]],
    finished: frozenset[str] | set[str] = frozenset(),
) -> str:
    """Why ``trial`` is stopped at ``interval`` ('' to let it run on).

    ``histories`` maps every trial (running or finished, ``trial`` included) to the values it
    logged for the primary metric, in order; only values up to ``interval`` count.
    ``finished`` names the trials that ended (for ``exclude_finished_jobs``).
    """
    own = _best_upto(objective, histories.get(trial, ()), interval)
    if own is None or not policy.applies_at(interval):
        return ""
    others = {
        name: values for name, values in histories.items() if name != trial and len(values) > 0
    }
    if policy.type == "bandit":
        return _bandit(policy, objective, own, interval, others)
    if policy.type == "median_stopping":
        return _median(objective, own, interval, others)
    return _truncation(policy, objective, own, interval, others, finished)


def _bandit(
    policy: EarlyTermination,
    objective: Objective,
    own: float,
    interval: int,
    others: Mapping[str, Sequence[float]],
) -> str:
    bests = [b for v in others.values() if (b := _best_upto(objective, v, interval)) is not None]
    if not bests:
        return ""
    best = objective.best([*bests, own])
    maximize = objective.goal == "maximize"
    if policy.slack_amount is not None:
        slack = f"slack_amount {policy.slack_amount:g}"
        limit = best - policy.slack_amount if maximize else best + policy.slack_amount
        outside = own < limit if maximize else own > limit
    else:
        factor = policy.slack_factor or 0.0
        slack = f"slack_factor {factor:g}"
        # Azure ML's rule: a maximised value Y is out when Y * (1 + factor) < best.
        outside = own * (1 + factor) < best if maximize else own > best * (1 + factor)
    if not outside:
        return ""
    return (
        f"bandit policy at interval {interval}: {objective.primary_metric} {own:g} is outside "
        f"{slack} of the best trial's {best:g}"
    )


def _median(
    objective: Objective, own: float, interval: int, others: Mapping[str, Sequence[float]]
) -> str:
    averages = [statistics.fmean(v[:interval]) for v in others.values()]
    if not averages:
        return ""
    median = statistics.median(averages)
    if not objective.better(median, own):
        return ""
    return (
        f"median stopping policy at interval {interval}: best {objective.primary_metric} "
        f"{own:g} is worse than the median {median:g} of the other trials' running averages"
    )


def _truncation(
    policy: EarlyTermination,
    objective: Objective,
    own: float,
    interval: int,
    others: Mapping[str, Sequence[float]],
    finished: frozenset[str] | set[str],
) -> str:
    cohort = [
        b
        for name, values in others.items()
        if not (policy.exclude_finished_jobs and name in finished)
        and (b := _best_upto(objective, values, interval)) is not None
    ]
    size = len(cohort) + 1
    cut = math.floor(size * policy.truncation_percentage / 100)
    if cut < 1:
        return ""
    ahead = sum(1 for value in cohort if objective.better(value, own))
    if ahead < size - cut:
        return ""
    return (
        f"truncation selection policy at interval {interval}: {objective.primary_metric} "
        f"{own:g} is in the worst {policy.truncation_percentage}% of {size} trials"
    )


def best_trial(
    objective: Objective, candidates: Mapping[str, Sequence[float]]
) -> tuple[str, float] | None:
    """The trial with the best value among ``candidates`` (completed trials and the values
    they logged); ``None`` when none logged the metric. Ties go to the earlier trial."""
    best: tuple[str, float] | None = None
    for name, values in candidates.items():
        if not values:
            continue
        value = objective.best(values)
        if best is None or objective.better(value, best[1]):
            best = (name, value)
    return best


# -- reading the YAML -------------------------------------------------------------------------


def _int(where: str, key: str, raw: Any, minimum: int) -> int:
    value: int | None = None
    if isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    elif isinstance(raw, float) and raw.is_integer():
        value = int(raw)
    elif isinstance(raw, str) and raw.strip().lstrip("-").isdigit():
        value = int(raw.strip())
    if value is None or value < minimum:
        raise BadInputError(
            f"{where}: {key} must be a whole number >= {minimum}, got {raw!r}",
            code="invalid_pipeline",
        )
    return value


def _seconds(where: str, key: str, raw: Any) -> float | None:
    if raw in (None, "", 0):
        return None
    if isinstance(raw, bool):
        raise BadInputError(f"{where}: {key} must be seconds", code="invalid_pipeline")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise BadInputError(f"{where}: {key} must be seconds", code="invalid_pipeline") from None
    if value <= 0 or not math.isfinite(value):
        raise BadInputError(f"{where}: {key} must be > 0 seconds", code="invalid_pipeline")
    return value


def parse_sweep(where: str, node: Mapping[str, Any]) -> SweepSpec:
    """A sweep node's settings as plain data (the YAML as written, already accepted by the
    SDK's schema); ``where`` names the node in every ``BadInputError``."""
    raw_space = node.get("search_space")
    if not isinstance(raw_space, Mapping) or not raw_space:
        raise BadInputError(f"{where}: a sweep needs a search_space", code="invalid_pipeline")
    space = {}
    for name, expr in raw_space.items():
        if not isinstance(expr, Mapping):
            raise BadInputError(
                f"{where}: search_space parameter {name!r} is not a mapping",
                code="invalid_pipeline",
            )
        space[str(name)] = parse_distribution(str(name), expr)

    raw_objective = node.get("objective")
    if not isinstance(raw_objective, Mapping) or not raw_objective.get("primary_metric"):
        raise BadInputError(
            f"{where}: a sweep needs objective.primary_metric and objective.goal",
            code="invalid_pipeline",
        )
    goal = str(raw_objective.get("goal", "")).strip().lower()
    if goal not in GOALS:
        raise BadInputError(
            f"{where}: objective.goal must be maximize or minimize, got {goal!r}",
            code="invalid_pipeline",
        )
    objective = Objective(goal, str(raw_objective["primary_metric"]))

    raw_sampling = node.get("sampling_algorithm", "random")
    settings: Mapping[str, Any] = raw_sampling if isinstance(raw_sampling, Mapping) else {}
    kind = str(settings.get("type", raw_sampling if not settings else "random")).strip().lower()
    if kind not in SAMPLING:
        raise BadInputError(
            f"{where}: sampling_algorithm {kind!r} is not one of " + ", ".join(SAMPLING),
            code="invalid_pipeline",
        )
    rule = str(settings.get("rule", "random") or "random").strip().lower()
    seed = settings.get("seed")
    logbase = settings.get("logbase", "e")
    base = math.e if logbase in (None, "", "e") else _number("logbase", "logbase", logbase)
    if base <= 0 or base == 1:
        raise BadInputError(
            f"{where}: sampling_algorithm.logbase must be > 0 and not 1", code="invalid_pipeline"
        )
    sampling = "grid" if kind == "grid" else "random"
    if sampling == "grid":
        _check_grid(space, where)

    raw_limits = node.get("limits") or {}
    if not isinstance(raw_limits, Mapping):
        raise BadInputError(f"{where}: limits must be a mapping", code="invalid_pipeline")
    default_total = grid_size(space) if sampling == "grid" else DEFAULT_MAX_TOTAL_TRIALS
    total_raw = raw_limits.get("max_total_trials")
    total = default_total if total_raw is None else _int(where, "max_total_trials", total_raw, 1)
    concurrent_raw = raw_limits.get("max_concurrent_trials")
    concurrent = (
        None if concurrent_raw is None else _int(where, "max_concurrent_trials", concurrent_raw, 1)
    )
    limits = Limits(
        max_total_trials=total,
        max_concurrent_trials=concurrent,
        timeout=_seconds(where, "limits.timeout", raw_limits.get("timeout")),
        trial_timeout=_seconds(where, "limits.trial_timeout", raw_limits.get("trial_timeout")),
    )
    return SweepSpec(
        search_space=space,
        objective=objective,
        sampling=sampling,
        requested_sampling=kind,
        rule=rule,
        seed=None if seed is None else _int(where, "sampling_algorithm.seed", seed, 0),
        logbase=base,
        limits=limits,
        early_termination=_parse_policy(where, node.get("early_termination")),
    )


def _parse_policy(where: str, raw: Any) -> EarlyTermination | None:
    if raw in (None, {}):
        return None
    if not isinstance(raw, Mapping):
        raise BadInputError(
            f"{where}: early_termination must be a mapping", code="invalid_pipeline"
        )
    kind = _type_of(raw, POLICIES, f"{where}: early_termination")
    interval = _int(where, "evaluation_interval", raw.get("evaluation_interval", 1) or 1, 1)
    delay = _int(where, "delay_evaluation", raw.get("delay_evaluation", 0) or 0, 0)
    if kind == "bandit":
        factor = raw.get("slack_factor")
        amount = raw.get("slack_amount")
        if (factor is None) == (amount is None):
            raise BadInputError(
                f"{where}: a bandit policy needs exactly one of slack_factor and slack_amount",
                code="invalid_pipeline",
            )
        factor_value = None if factor is None else _number("bandit", "slack_factor", factor)
        amount_value = None if amount is None else _number("bandit", "slack_amount", amount)
        if (factor_value or 0) < 0 or (amount_value or 0) < 0:
            raise BadInputError(f"{where}: bandit slack must be >= 0", code="invalid_pipeline")
        return EarlyTermination(
            kind, interval, delay, slack_factor=factor_value, slack_amount=amount_value
        )
    if kind == "truncation_selection":
        percentage = _int(where, "truncation_percentage", raw.get("truncation_percentage", 0), 1)
        if percentage > 99:
            raise BadInputError(
                f"{where}: truncation_percentage must be between 1 and 99",
                code="invalid_pipeline",
            )
        return EarlyTermination(
            kind,
            interval,
            delay,
            truncation_percentage=percentage,
            exclude_finished_jobs=bool(raw.get("exclude_finished_jobs", False)),
        )
    return EarlyTermination(kind, interval, delay)
