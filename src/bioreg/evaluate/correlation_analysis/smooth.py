"""The Nadaraya–Watson smoother of eq 3.6 over the binned data: the bins of one layer, the estimate at
query points and the smoothed grid ``g(d, k)``. Binned, the estimate is *exactly* the one over all
``N(N − 1)/2`` points (package docstring)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from bioreg.evaluate.correlation_analysis.common import check_kernel


@dataclass
class LayerBins:
    """Binned smoother data: for each unordered map pair ``maps[m] = (c1, c2)`` (``k[m]`` its eq 2.16
    similarity) and distance ``d[t]`` (grid units), the sum and count of ``Σ′`` over its unit pairs."""

    d: Tensor       # (nd,)
    k: Tensor       # (npairs,)
    maps: Tensor    # (npairs, 2)
    sums: Tensor    # (npairs, nd)
    counts: Tensor  # (npairs, nd)

    def points(self) -> tuple[Tensor, Tensor, Tensor]:
        """Non-empty bins as ``X (n, 2) = (d, k)``, ``Y_sum (n,)``, ``count (n,)``; bins with the same
        ``X`` (e.g. every same-map pair has ``k = 1``) merged."""
        dd = self.d[None, :].expand_as(self.sums)
        kk = self.k[:, None].expand_as(self.sums)
        keep = self.counts > 0
        x = torch.stack([dd[keep], kk[keep]], dim=1)
        uniq, inv = torch.unique(x, dim=0, return_inverse=True)
        ys = torch.zeros(len(uniq), dtype=torch.float64).index_add_(0, inv, self.sums[keep])
        cs = torch.zeros(len(uniq), dtype=torch.float64).index_add_(0, inv, self.counts[keep])
        return uniq, ys, cs

    def to_numpy(self) -> dict[str, np.ndarray]:
        """Arrays for the ``.npz`` file: sums in float32 (1e-7 relative; the record's grid is computed from
        the float64 sums), counts in int32 (≤ H²W² per bin)."""
        return {"d": self.d.numpy(), "k": self.k.numpy(), "maps": self.maps.numpy().astype(np.int32),
                "sums": self.sums.numpy().astype(np.float32), "counts": self.counts.numpy().astype(np.int32)}


def nadaraya_watson(x0: Tensor, x: Tensor, y_sum: Tensor, count: Tensor, bandwidth: float,
                    kernel: str = "gaussian", chunk: int = 1 << 22) -> Tensor:
    """Eq 3.6 at the query points ``x0 (m, 2)`` from binned data (``count`` points with sum ``y_sum``
    at each ``x``): ``Σ K(x0, x) y_sum / Σ K(x0, x) count``. ``K = exp(−‖x − x0‖^p / (2b²))``,
    ``p = 2`` (gaussian) or 1 (norm, as printed). Computed in log space (max-shifted per query),
    so no query underflows to 0/0. With ``count = 1`` and ``y_sum = y`` it is the all-points form."""
    check_kernel(kernel, bandwidth)
    x0, x = x0.double(), x.double()
    y_sum, count = y_sum.double(), count.double()
    out = torch.empty(len(x0), dtype=torch.float64)
    step = max(1, chunk // max(1, len(x)))
    for a in range(0, len(x0), step):
        q = x0[a:a + step]
        dist2 = torch.cdist(q, x).square() if kernel == "gaussian" else torch.cdist(q, x)
        logw = -dist2 / (2.0 * bandwidth ** 2)
        logw = logw - logw.amax(dim=1, keepdim=True)
        w = logw.exp()
        out[a:a + step] = (w @ y_sum) / (w @ count)
    return out


def smooth_grid(bins: LayerBins, d_grid: Tensor, k_grid: Tensor, bandwidth: float = 0.25,
                kernel: str = "gaussian") -> Tensor:
    """``g(d, k)`` of eq 3.6 on the grid ``d_grid × k_grid`` (returns ``(len(k_grid), len(d_grid))``).

    Gaussian kernel: separable, ``K = K_d K_k``, so ``Σ_bins K Y = K_d(grid_d, d) · [Σ_pairs
    K_k(grid_k, k) sums(pair, d)]`` — exact and ``O(pairs · nd · grid)``; norm kernel: the direct
    sum of :func:`nadaraya_watson` over the (merged) bins."""
    check_kernel(kernel, bandwidth)
    d_grid, k_grid = d_grid.double(), k_grid.double()
    if kernel == "norm":
        dd, kk = torch.meshgrid(d_grid, k_grid, indexing="xy")
        x, ys, cs = bins.points()
        return nadaraya_watson(torch.stack([dd.reshape(-1), kk.reshape(-1)], 1), x, ys, cs, bandwidth, kernel
                               ).reshape(len(k_grid), len(d_grid))
    two_b2 = 2.0 * bandwidth ** 2
    ld = -(d_grid[:, None] - bins.d[None, :].double()).square() / two_b2   # (gd, nd)
    lk = -(k_grid[:, None] - bins.k[None, :].double()).square() / two_b2   # (gk, npairs)
    # shift each query row by the max over *non-empty* data so the ratio never becomes 0/0
    has_d = bins.counts.sum(0) > 0
    has_k = bins.counts.sum(1) > 0
    ld = ld - ld.masked_fill(~has_d[None, :], -math.inf).amax(1, keepdim=True)
    lk = lk - lk.masked_fill(~has_k[None, :], -math.inf).amax(1, keepdim=True)
    wd, wk = ld.exp(), lk.exp()
    num = wk @ bins.sums.double() @ wd.T      # (gk, gd)
    den = wk @ bins.counts.double() @ wd.T
    return num / den
