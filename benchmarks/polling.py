"""Status calls and completion-detection delay: adaptive polling against fixed intervals.

Simulates a deterministic set of Azure ML jobs lasting 5 minutes to 8 hours (log-uniform,
seeded). Each job is ``Queued`` for a while, then ``Running``, ``Finalizing`` for its last
moments, then ``Completed``. Every strategy polls the simulated job until it sees a terminal
status; we count status calls per job and the detection delay (time of the first call that
sees the end minus the end itself).

Strategies: fixed 30 s, fixed 60 s, the adaptive policy of ``orchestrators.polling`` without
any hint, and the same policy given an expected-duration hint that is off by a log-normal
error (sigma 0.25, i.e. typically ±25%).

Goal: adaptive calls <= 1/5 of fixed-60 s calls overall, with a median detection delay
<= max(60 s, 5% of the job's duration) ("allowance"; the table shows delay/allowance).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from orchestrators.polling import DEFAULT_POLICY, PollingPolicy, is_terminal

MIN_DURATION = 5 * 60.0
MAX_DURATION = 8 * 3600.0
BUCKETS: tuple[tuple[str, float, float], ...] = (
    ("5-15 min", 300, 900),
    ("15-60 min", 900, 3600),
    ("1-2 h", 3600, 7200),
    ("2-4 h", 7200, 14400),
    ("4-8 h", 14400, 28800.001),
)


@dataclass(frozen=True)
class Job:
    duration: float  # seconds from submission to the terminal state
    queued: float  # seconds spent Queued before Running
    finalizing: float  # the last seconds, spent Finalizing
    hint: float  # an imperfect expected duration

    def status_at(self, t: float) -> str:
        if t >= self.duration:
            return "Completed"
        if t < self.queued:
            return "Queued"
        if t >= self.duration - self.finalizing:
            return "Finalizing"
        return "Running"

    @property
    def allowance(self) -> float:
        return max(60.0, 0.05 * self.duration)


@dataclass(frozen=True)
class Outcome:
    calls: int
    delay: float


def make_jobs(count: int, seed: int) -> list[Job]:
    rng = random.Random(seed)
    jobs = []
    for _ in range(count):
        duration = math.exp(rng.uniform(math.log(MIN_DURATION), math.log(MAX_DURATION)))
        queued = max(20.0, rng.uniform(0.01, 0.05) * duration)
        finalizing = min(90.0, max(10.0, 0.01 * duration))
        hint = duration * math.exp(rng.gauss(0.0, 0.25))
        jobs.append(Job(duration, queued, finalizing, hint))
    return jobs


def run_fixed(job: Job, interval: float) -> Outcome:
    calls = math.ceil(job.duration / interval)
    return Outcome(calls=calls, delay=calls * interval - job.duration)


def run_adaptive(job: Job, policy: PollingPolicy, *, use_hint: bool) -> Outcome:
    t = 0.0
    calls = 0
    status: str | None = None
    hint = timedelta(seconds=job.hint) if use_hint else None
    while not is_terminal(status):
        delay = policy.next_delay(
            elapsed=timedelta(seconds=t), polls=calls, last_status=status, expected_duration=hint
        )
        t += delay.total_seconds()
        calls += 1
        status = job.status_at(t)
    return Outcome(calls=calls, delay=t - job.duration)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, ``q`` in [0, 100]."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    jobs = make_jobs(args.jobs, args.seed)
    strategies: dict[str, Callable[[Job], Outcome]] = {
        "fixed 30s": lambda j: run_fixed(j, 30.0),
        "fixed 60s": lambda j: run_fixed(j, 60.0),
        "adaptive": lambda j: run_adaptive(j, DEFAULT_POLICY, use_hint=False),
        "adaptive+hint": lambda j: run_adaptive(j, DEFAULT_POLICY, use_hint=True),
    }
    results = {name: [run(j) for j in jobs] for name, run in strategies.items()}

    print(f"\nPolling benchmark: {len(jobs)} simulated jobs, 5 min to 8 h (seed {args.seed})")
    print("calls = status calls per job (mean); delay = completion-detection delay in seconds;")
    print("d/allow = median of delay / max(60 s, 5% of duration) (goal <= 1.00)\n")
    header = (
        f"{'bucket':<10} {'jobs':>5} {'strategy':<14} {'calls':>7} {'vs 60s':>7} "
        f"{'delay p50':>9} {'delay p90':>9} {'d/allow':>8}"
    )
    print(header)
    print("-" * len(header))
    rows = [*BUCKETS, ("overall", 0.0, math.inf)]
    verdicts: list[str] = []
    overall: dict[str, dict[str, float | bool]] = {}
    for label, lo, hi in rows:
        idx = [i for i, j in enumerate(jobs) if lo <= j.duration < hi]
        if not idx:
            continue
        fixed60 = sum(results["fixed 60s"][i].calls for i in idx) / len(idx)
        for n, name in enumerate(strategies):
            outcomes = [results[name][i] for i in idx]
            calls = sum(o.calls for o in outcomes) / len(idx)
            delays = [o.delay for o in outcomes]
            ratio = percentile([results[name][i].delay / jobs[i].allowance for i in idx], 50)
            print(
                f"{label if n == 0 else '':<10} {len(idx) if n == 0 else '':>5} {name:<14} "
                f"{calls:>7.1f} {calls / fixed60:>7.3f} {percentile(delays, 50):>9.0f} "
                f"{percentile(delays, 90):>9.0f} {ratio:>8.2f}"
            )
            if label == "overall" and name.startswith("adaptive"):
                ok = calls / fixed60 <= 0.2 and ratio <= 1.0
                overall[name] = {"calls_vs_fixed_60s": calls / fixed60,
                                 "median_delay_over_allowance": ratio, "meets": ok}  # fmt: skip
                verdicts.append(
                    f"{name}: {calls / fixed60:.3f} of fixed-60 s calls, median delay/allowance "
                    f"{ratio:.2f} -> {'meets' if ok else 'MISSES'} the goal"
                )
        print()
    print("\n".join(verdicts))
    if args.json:
        args.json.write_text(json.dumps({"jobs": len(jobs), "overall": overall}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
