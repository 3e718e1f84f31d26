"""Binomial confidence intervals for accuracies measured on a finite test subset.

Robust accuracies in Singh (2023, Tables 3.4-3.5) come from a subset of the test set (the authors'
public code attacked the first 100-256 test images), so every accuracy we report carries a 95 %
Wilson score interval (Wilson 1927; no continuity correction). It equals
``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")`` and, unlike the normal
approximation, stays inside [0, 1] and keeps its coverage at 0 % or 100 % accuracy.
"""

from __future__ import annotations

import math
from statistics import NormalDist

__all__ = ["wilson_ci", "acc_entry", "significantly_greater"]


def wilson_ci(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion ``k / n``, in **percent**."""
    if n < 1:
        raise ValueError(f"wilson_ci needs n >= 1 trials, got n={n}")
    if not 0 <= k <= n:
        raise ValueError(f"wilson_ci needs 0 <= k <= n, got k={k}, n={n}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    p = k / n
    denom = 1.0 + z * z / n
    center = (p + z * z / (2.0 * n)) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n)) / denom
    lo, hi = max(0.0, center - half), min(1.0, center + half)
    if k == 0:
        lo = 0.0
    if k == n:
        hi = 1.0
    return 100.0 * lo, 100.0 * hi


def acc_entry(k: int, n: int, confidence: float = 0.95) -> dict:
    """``{acc (%), ci95: [lo, hi] (%), k, n}`` for ``k`` correct out of ``n``."""
    lo, hi = wilson_ci(k, n, confidence)
    return {"acc": 100.0 * k / n, "ci95": [lo, hi], "k": int(k), "n": int(n)}


def significantly_greater(a: dict, b: dict) -> bool:
    """``a`` above ``b`` with non-overlapping intervals (a conservative test at the 95 % level)."""
    return float(a["ci95"][0]) > float(b["ci95"][1])
