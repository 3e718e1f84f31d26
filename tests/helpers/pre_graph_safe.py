"""Frozen copies of code paths as they were before the training step became graph-safe (issue 18).

The new code must give the very same numbers as these under the same seed (tests/test_graph_safe.py):
the host readbacks were removed, not the arithmetic. Kept only as references for those tests.
"""

from __future__ import annotations

import math

import torch

from bioreg.layers.correlation import StructuredSampler
from bioreg.layers.correlation.ncm import _sym
from bioreg.layers.correlation.structure import tuning_matrix
from bioreg.layers.dropout import similarity_rows


@torch.no_grad()
def most_similar_maps_v0(
    weight: torch.Tensor, chosen: torch.Tensor, k: int, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """bioreg.layers.dropout.most_similar_maps with ``torch.unique`` of the chosen maps."""
    channels = weight.shape[0]
    rows, inverse = torch.unique(chosen.to(weight.device), return_inverse=True)
    sim = similarity_rows(weight, rows)
    sim[torch.arange(len(rows), device=sim.device), rows] = 2.0
    perm = torch.randperm(channels, device=sim.device, generator=generator)
    order = torch.argsort(sim[:, perm], dim=1, descending=True, stable=True)[:, :k]
    return perm[order][inverse].to(chosen.device)


def spectral_parts_v0(sigma: torch.Tensor, c: float):
    """bioreg.layers.correlation.ncm._spectral_parts with the clipped count read back (``int``)."""
    n = sigma.shape[0]
    chol, info = torch.linalg.cholesky_ex(sigma)
    if int(info) == 0 and bool(torch.isfinite(chol).all()):
        if c == 0:
            return chol, None, 0
        y = torch.linalg.solve_triangular(
            chol, torch.ones(n, 1, dtype=chol.dtype, device=chol.device), upper=False
        )
        if c * float(y.square().sum()) < 1.0:
            return chol, None, 0
    del chol
    a = sigma.sub_(c)
    w, f = torch.linalg.eigh(_sym(a))
    del a, sigma
    n_clipped = int((w < 0).sum())
    f.mul_(w.clamp_min(0.0).sqrt())
    var = f.square().sum(dim=1) + c
    if not bool((var > 0).all()):
        raise RuntimeError("spectral correlation repair produced a unit with zero variance")
    inv_std = var.rsqrt()
    f.mul_(inv_std[:, None])
    shared = math.sqrt(c) * inv_std if c > 0 else None
    return f, shared, n_clipped


class StructuredSamplerV0(StructuredSampler):
    """StructuredSampler whose refresh reads the clipped count back, as before (spectral path only)."""

    @torch.no_grad()
    def refresh(self, weight: torch.Tensor) -> None:
        dev, dt = weight.device, weight.dtype
        blocks, q_y, q_xt, v2, mu = self._spatial_on(dev, dt)
        t = tuning_matrix(weight, self.params)
        lam, u = torch.linalg.eigh(t)
        g2 = lam[:, None] * mu[None, :] + self.params.delta
        neg = g2 < 0
        n_clipped = int(neg.sum())
        assert not (n_clipped and self.ncm_method != "spectral" and self.n <= self.ncm_max_units)
        self._dense = None
        g2 = g2.clamp_min(0.0)
        var = (u.square() @ g2) @ v2.T + self.params.c
        if not bool((var > 0).all()):
            raise RuntimeError("structured correlation repair produced a unit with zero variance")
        self._u = u.to(dtype=dt)
        self._g = g2.sqrt().to(dtype=dt)
        self._g2, self._u64, self._var = g2, u, var
        self._inv_std = var.rsqrt().to(dtype=dt).reshape(self.shape)
        self._blocks, self._q_y, self._q_xt = blocks, q_y, q_xt
        self._sqrt_c = math.sqrt(self.params.c)
        self._ready = True
