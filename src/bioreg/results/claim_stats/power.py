"""How many seeds per arm would resolve a difference: power of the two-sided t-tests via the noncentral t.

* paired (``ttest_rel`` on n matched seeds): df = n − 1, noncentrality δ·√n / s_d, with s_d the std
  of the per-seed differences;
* unpaired (Welch, n seeds in each arm): noncentrality δ / √((s₁² + s₂²)/n), df by
  Welch–Satterthwaite, (n − 1)(s₁² + s₂²)² / (s₁⁴ + s₂⁴) — the pooled two-sample t-test
  (df = 2n − 2) when s₁ = s₂.

power = P(T > t₁₋α/₂) + P(T < −t₁₋α/₂), T ~ noncentral t (``scipy.stats.nct``), t the central
quantile with the same df. :func:`seeds_needed` is the smallest n ≥ 2 with power ≥ the target.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

__all__ = ["t_power", "seeds_needed", "MAX_SEEDS"]

#: beyond this many seeds per arm a difference counts as "not resolvable in practice"
MAX_SEEDS = 100_000


def _df_nc(n: np.ndarray, delta: float, sd_first: float, sd_second: float | None, paired: bool
           ) -> tuple[np.ndarray, np.ndarray]:
    if paired:
        return n - 1.0, abs(delta) * np.sqrt(n) / sd_first
    v1, v2 = sd_first ** 2, (sd_first if sd_second is None else sd_second) ** 2
    df = (n - 1.0) * (v1 + v2) ** 2 / (v1 ** 2 + v2 ** 2)
    return df, abs(delta) / np.sqrt((v1 + v2) / n)


def _powers(n: np.ndarray, delta: float, sd_first: float, sd_second: float | None, paired: bool,
            alpha: float) -> np.ndarray:
    df, nc = _df_nc(np.asarray(n, dtype=float), delta, sd_first, sd_second, paired)
    crit = stats.t.ppf(1.0 - alpha / 2.0, df)
    # the far tail P(T < −crit) as the upper tail of −T (noncentrality −nc): scipy's nct.cdf returns
    # nan there for large nc, where the tail is below 1e-300 anyway
    far = stats.nct.sf(crit, df, -nc)
    return stats.nct.sf(crit, df, nc) + np.nan_to_num(far, nan=0.0)


def t_power(n: int, delta: float, sd_first: float, sd_second: float | None = None, *, paired: bool = False,
            alpha: float = 0.05) -> float:
    """Power of the two-sided test at level ``alpha`` with ``n`` seeds per arm (``n`` pairs when
    ``paired``; then ``sd_first`` is the std of the differences and ``sd_second`` is ignored)."""
    return float(_powers(np.array([n]), delta, sd_first, sd_second, paired, alpha)[0])


def seeds_needed(delta: float, sd_first: float | None, sd_second: float | None = None, *,
                 paired: bool = False, alpha: float = 0.05, power: float = 0.8,
                 max_seeds: int = MAX_SEEDS) -> int | None:
    """Smallest number of seeds per arm whose test resolves ``delta`` with probability ``power``.

    ``None`` when it cannot be said: no difference (δ = 0), no spread to plan with (a std missing,
    or every std 0), or more than ``max_seeds``. The t-test needs at least the normal
    approximation's n₀ = (z₁₋α/₂ + z_power)²·v/δ² (v = s_d² paired, s₁² + s₂² unpaired) and, beyond
    small n, only a few more: candidates from n₀ − 4 on are tried in growing windows, each at once.
    """
    sds = [sd_first] if paired else [sd_first, sd_second]
    if delta is None or delta == 0 or any(s is None or s < 0 for s in sds) or not sum(sds) > 0:
        return None
    var = sum(s ** 2 for s in sds)
    n0 = (stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)) ** 2 * var / delta ** 2
    lo, size = max(2, int(n0) - 4), 16
    while lo <= max_seeds:
        ns = np.arange(lo, min(max_seeds, lo + size - 1) + 1)
        ok = np.flatnonzero(_powers(ns, delta, sd_first, sd_second, paired, alpha) >= power)
        if ok.size:
            return int(ns[ok[0]])
        lo, size = int(ns[-1]) + 1, 2 * size
    return None
