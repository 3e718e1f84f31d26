"""Dense references for small layers (tests and the benchmark's exactness check): ``Σ′`` by
``numpy.corrcoef``, the all-points data set of eqs 3.4–3.5 and the off-diagonal statistics of a dense
matrix. They materialise ``N × N``; the analysis itself never does."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from bioreg.evaluate.correlation_analysis.collect import layer_tap
from bioreg.evaluate.correlation_analysis.common import OffDiagStats, mix_lambdas, unit_coords
from bioreg.layers.base import kernel_similarity


@torch.no_grad()
def naive_sigma_prime(model: nn.Module, layer: str, images: Tensor, fixed: Tensor, partners: Tensor,
                      zero_variance: str = "zero") -> np.ndarray:
    """The reference Σ′ for small layers: ``numpy.corrcoef`` of each image's mixed batch, averaged
    (``zero``: an undefined correlation counts 0; ``exclude``: the mean where defined, NaN where never).
    Materialises ``N × N`` (tests and the benchmark's exactness check only)."""
    batch = partners.shape[1]
    lam = mix_lambdas(batch, images.dtype).view(-1, 1, 1, 1)
    mats = []
    with layer_tap(model, layer) as forward:
        for s in range(len(fixed)):
            a = forward(lam * images[fixed[s]][None] + (1 - lam) * images[partners[s]])
            with np.errstate(all="ignore"):
                mats.append(np.corrcoef(a.reshape(batch, -1).double().cpu().numpy().T))
    stack = np.stack(mats)
    if zero_variance == "zero":
        return np.nan_to_num(stack, nan=0.0).mean(0)
    with np.errstate(all="ignore"):
        return np.nansum(stack, 0) / np.isfinite(stack).sum(0)


def naive_pairs(sigma: np.ndarray, shape: Sequence[int], weight: Tensor) -> tuple[Tensor, Tensor]:
    """The data set of eqs 3.4–3.5 from a dense ``Σ′``: ``X (n, 2) = (d, k)`` and ``Y (n,)`` over its
    defined off-diagonal pairs ``i < j`` (the all-points reference of the binned smoother)."""
    _, h, w = shape
    iu = np.triu_indices(sigma.shape[0], 1)
    y = sigma[iu]
    ok = np.isfinite(y)
    xi, yi, zi = unit_coords(iu[0][ok], h, w)
    xj, yj, zj = unit_coords(iu[1][ok], h, w)
    k = kernel_similarity(weight.detach().double().cpu()).numpy()
    x = np.stack([np.sqrt((xi - xj) ** 2 + (yi - yj) ** 2), k[zi, zj]], 1)
    return torch.from_numpy(x), torch.from_numpy(y[ok])


def offdiag_stats(dense: Tensor) -> OffDiagStats:
    """Min, max, mean, std of the off-diagonal entries of a small dense matrix (tests, benchmark)."""
    n = dense.shape[0]
    m = dense[~torch.eye(n, dtype=torch.bool, device=dense.device)].double()
    m = m[torch.isfinite(m)]
    return OffDiagStats(int(m.numel() // 2), float(m.min()), float(m.max()), float(m.mean()),
                        float(m.std(correction=0)))
