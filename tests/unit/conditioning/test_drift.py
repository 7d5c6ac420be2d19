from __future__ import annotations

import numpy as np
import pytest

from conditioning.drift import drift_report, psi


def test_identical_distributions_have_zero_psi() -> None:
    rng = np.random.default_rng(0)
    sample = rng.normal(100, 10, 5000)
    assert psi(sample, sample) == 0.0


def test_a_shifted_distribution_drifts_and_a_resample_does_not() -> None:
    rng = np.random.default_rng(1)
    ref = rng.normal(100, 10, 20000)
    same = rng.normal(100, 10, 20000)
    shifted = rng.normal(115, 10, 20000)
    assert psi(ref, same) < 0.02
    assert psi(ref, shifted) > 0.5


def test_constant_reference_and_nans() -> None:
    assert psi([5, 5, 5], [5, 5, float("nan")]) == 0.0
    assert psi([5, 5, 5], [6, 6, 6]) > 1
    with pytest.raises(ValueError):
        psi([], [1.0])
    with pytest.raises(ValueError):
        psi([float("nan")], [1.0])


def test_report_flags_only_features_over_the_threshold() -> None:
    rng = np.random.default_rng(2)
    ref = {"quantity": rng.poisson(20, 5000), "temperature": rng.normal(15, 5, 5000)}
    cur = {"quantity": rng.poisson(20, 5000), "temperature": rng.normal(25, 5, 5000), "x": [1]}
    report = drift_report(ref, cur, threshold=0.2)
    assert [f.feature for f in report] == ["temperature", "quantity"]
    assert report[0].drifted and not report[1].drifted
