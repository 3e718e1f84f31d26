"""Table 3.2's "Linear Exponential" column: the off-diagonal statistics of eq 2.14 for a layer's kernels
and map size, from ``T`` (C × C) and ``S`` (HW × HW) of :mod:`bioreg.layers.correlation` — never the
``N × N`` matrix — under each reading of eq 2.14's distance scale (:data:`DISTANCE_SCALES`)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from bioreg.evaluate.correlation_analysis.common import DISTANCE_SCALES, AnalysisError, OffDiagStats
from bioreg.layers.correlation import CorrelationParams, spatial_matrix, tuning_matrix


def linear_exponential_stats(weight: Tensor, height: int, width: int,
                             params: CorrelationParams) -> OffDiagStats:
    """Table 3.2's "Linear Exponential" statistics: eq 2.14 off the diagonal for a layer with kernels
    ``weight`` and ``H × W`` maps, from ``T`` (C × C) and ``S`` (HW × HW) of
    :mod:`bioreg.layers.correlation` — never the ``N × N`` matrix ``T ⊗ S + c``.

    Off-diagonal pairs: ``(c1 ≠ c2, any p, q)`` with value ``T S + c`` and ``(c, p ≠ q)`` with
    ``T_cc S_pq + c`` (``T_cc = 1``). ``T, S ≥ 0``, so extremes are products of extremes.
    """
    t = tuning_matrix(weight, params)
    s = spatial_matrix(height, width, params)
    c, hw = t.shape[0], s.shape[0]
    n = c * hw
    if n < 2:
        raise AnalysisError("a layer with fewer than 2 units has no off-diagonal pairs")
    eye_t = torch.eye(c, dtype=torch.bool)
    eye_s = torch.eye(hw, dtype=torch.bool)
    td, sd = t.diagonal(), s.diagonal()
    # sums over all n^2 entries of T⊗S + c, then remove the n diagonal entries
    total = t.sum() * s.sum() + params.c * n * n
    total_sq = t.square().sum() * s.square().sum() + 2 * params.c * t.sum() * s.sum() + params.c ** 2 * n * n
    diag = (td[:, None] * sd[None, :] + params.c).reshape(-1)
    m_sum = float(total - diag.sum())
    m_sq = float(total_sq - diag.square().sum())
    cnt = n * (n - 1)
    mean = m_sum / cnt
    std = math.sqrt(max(m_sq / cnt - mean * mean, 0.0))
    cands_hi, cands_lo = [], []
    if c > 1:
        toff = t[~eye_t]
        cands_hi.append(toff.max() * s.max())
        cands_lo.append(toff.min() * s.min())
    if hw > 1:
        soff = s[~eye_s]
        cands_hi.append(td.max() * soff.max())
        cands_lo.append(td.min() * soff.min())
    hi = float(max(cands_hi)) + params.c
    lo = float(min(cands_lo)) + params.c
    return OffDiagStats(cnt // 2, lo, hi, mean, std)


def scale_value(scale: str | float, stride: float) -> float:
    """Eq 2.14's distance scale: ``grid`` = 1 (feature-map grid units), ``input_pixels`` = the layer's
    cumulative stride, or a number."""
    if scale == "grid":
        return 1.0
    if scale == "input_pixels":
        return stride
    try:
        return float(scale)
    except (TypeError, ValueError):
        raise AnalysisError(f"distance scale {scale!r}; valid: {', '.join(DISTANCE_SCALES)} or a "
                            "number") from None


def linear_exponential_section(weight: Tensor, height: int, width: int, stride: float,
                               scales: Sequence[str | float] = DISTANCE_SCALES,
                               params: CorrelationParams | None = None) -> dict[str, dict[str, float]]:
    """``{scale: {max, min, mean, std, distance_scale}}`` (6 decimals) for the record: eq 2.14 with
    ``params`` (default :class:`CorrelationParams`) under each distance scale."""
    base = params or CorrelationParams()
    out: dict[str, dict[str, float]] = {}
    for sc in scales:
        val = scale_value(sc, stride)
        p = CorrelationParams(a=base.a, b=base.b, c=base.c, tau=base.tau, distance_scale=val)
        st = linear_exponential_stats(weight, height, width, p)
        out[str(sc)] = {**{k: round(v, 6) for k, v in st.as_dict().items() if k != "n_pairs"},
                        "distance_scale": val}
    return out
