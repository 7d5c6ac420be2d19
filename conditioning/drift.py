"""Population stability index (PSI) between a reference sample and a new one (pure).

PSI = Σ (pᵢ − qᵢ) · ln(pᵢ / qᵢ) over bins fixed on the reference's quantiles, where pᵢ and qᵢ
are the new and reference shares. Rules of thumb: < 0.1 stable, 0.1–0.2 moderate, > 0.2 drift.
Empty bins get a small floor so the logarithm stays finite.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

FLOOR = 1e-4


def psi(reference: Sequence[float], current: Sequence[float], bins: int = 10) -> float:
    """PSI of ``current`` against ``reference``; NaNs are dropped; needs data on both sides."""
    ref = np.asarray(reference, dtype=float)
    cur = np.asarray(current, dtype=float)
    ref = ref[~np.isnan(ref)]
    cur = cur[~np.isnan(cur)]
    if ref.size == 0 or cur.size == 0:
        raise ValueError("PSI needs at least one value on each side")
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)))
    if edges.size < 2:  # a constant reference: one bin for "equal", one for "different"
        same = float(np.mean(cur == edges[0]))
        p = np.array([same, 1 - same])
        q = np.array([1.0, 0.0])
    else:
        inner = edges[1:-1]
        q = np.bincount(np.searchsorted(inner, ref, side="right"), minlength=inner.size + 1)
        p = np.bincount(np.searchsorted(inner, cur, side="right"), minlength=inner.size + 1)
        q = q / q.sum()
        p = p / p.sum()
    p = np.clip(p, FLOOR, None)
    q = np.clip(q, FLOOR, None)
    value = float(np.sum((p - q) * np.log(p / q)))
    return 0.0 if math.isclose(value, 0.0, abs_tol=1e-12) else value


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    psi: float
    drifted: bool


def drift_report(
    reference: Mapping[str, Sequence[float]],
    current: Mapping[str, Sequence[float]],
    threshold: float,
) -> list[FeatureDrift]:
    """PSI per feature present on both sides with data, sorted by PSI (worst first)."""
    out: list[FeatureDrift] = []
    for feature in sorted(set(reference) & set(current)):
        try:
            value = psi(reference[feature], current[feature])
        except ValueError:
            continue
        out.append(FeatureDrift(feature, round(value, 6), value > threshold))
    return sorted(out, key=lambda f: -f.psi)
