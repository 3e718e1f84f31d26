"""The tiled product ``Σ′ = ZᵀZ / n`` and its on-the-fly reduction into the off-diagonal statistics
(Table 3.2) and the (map pair, distance) bins of the smoother; nothing ``N × N`` is ever held."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from bioreg.evaluate.correlation_analysis.collect import Blocks
from bioreg.evaluate.correlation_analysis.common import OffDiagStats, check_zero_variance
from bioreg.evaluate.correlation_analysis.smooth import LayerBins
from bioreg.layers.base import kernel_similarity


def distance_index(height: int, width: int) -> tuple[Tensor, Tensor]:
    """``(didx, d)``: for positions ``p, q`` (row-major), ``didx[p, q]`` indexes the distinct grid
    distances ``d`` (ascending, ``d[0] = 0``) of eq 2.15."""
    yy, xx = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    y, x = yy.reshape(-1), xx.reshape(-1)
    sq = (y[:, None] - y[None, :]) ** 2 + (x[:, None] - x[None, :]) ** 2
    keys, inv = torch.unique(sq, sorted=True, return_inverse=True)
    return inv, keys.double().sqrt()


class TiledReducer:
    """``Σ′ = ZᵀZ / n`` tile by tile, each tile reduced on the fly into the off-diagonal statistics
    and the (map pair, distance) bins; nothing ``N × N`` is ever held.

    Tiles are blocks of *positions* ``P × Q`` (``P ≤ Q``, all maps): with ``Zᵀ`` stored
    position-major (:class:`Blocks`), a tile is ``(|P|·C) × (|Q|·C)`` in ``(p, c₁, q, c₂)`` order,
    so regrouping it into one row per position pair ``(p, q)`` (whose distance is ``d(p, q)``)
    moves contiguous runs of ``C`` values, and the bins are one ``index_add`` of rows of ``C²``.
    Accumulators are float64; the product runs in ``Zᵀ``'s dtype. ``tile_units`` bounds a tile's
    side (whole positions, at least one), so the working memory is a few tiles besides ``Z``.
    """

    def __init__(self, blocks: Blocks, zero_variance: str = "zero", tile_units: int = 2048) -> None:
        check_zero_variance(zero_variance)
        self.b = blocks
        self.mode = zero_variance
        c, h, w = blocks.shape
        self.c, self.hw = c, h * w
        self.pos_per_tile = max(1, min(self.hw, int(tile_units) // c))
        didx, self.d = distance_index(h, w)
        self.nd = int(self.d.numel())
        dev = blocks.zt.device
        self.didx = didx.to(dev)  # (HW, HW)
        self.vf = blocks.valid.to(blocks.zt.dtype) if zero_variance == "exclude" else None
        self.acc_sum = torch.zeros(self.nd, c * c, dtype=torch.float64, device=dev)
        self.acc_cnt = torch.zeros(self.nd, c * c, dtype=torch.float64, device=dev)
        self._n = 0.0
        self._sum = 0.0
        self._sq = 0.0
        self._min = math.inf
        self._max = -math.inf
        self.matmul_s = 0.0
        self.total_s = 0.0

    def tiles(self) -> list[tuple[int, int, int, int]]:
        """``(p0, p1, q0, q1)`` position ranges of the tiles (upper block triangle)."""
        m = self.pos_per_tile
        starts = list(range(0, self.hw, m))
        return [(p0, min(p0 + m, self.hw), q0, min(q0 + m, self.hw)) for p0 in starts for q0 in starts
                if q0 >= p0]

    @torch.no_grad()
    def run(self, progress: Any = None, sync: Any = None) -> TiledReducer:
        import time

        for p0, p1, q0, q1 in self.tiles():
            t0 = time.perf_counter()
            self._tile(p0, p1, q0, q1, sync)
            self.total_s += time.perf_counter() - t0
            if progress is not None:
                progress()
        return self

    def _tile(self, p0: int, p1: int, q0: int, q1: int, sync: Any = None) -> None:
        diag = p0 == q0
        r = self._pair_rows(p0, p1, q0, q1, sync)
        if diag:  # the unit diagonal (p == q, c1 == c2) is not a pair
            pr = torch.arange(p1 - p0, device=r.device) * (p1 - p0 + 1)
            cc = torch.arange(self.c, device=r.device) * (self.c + 1)
            r[pr[:, None], cc[None, :]] = math.nan
        undef = r.isnan() if (diag or self.mode == "exclude") else None
        n_undef = int(undef.count_nonzero()) if undef is not None else 0
        wgt = 0.5 if diag else 1.0  # a diagonal tile holds each unordered pair twice
        self._add_stats(r, undef, n_undef, wgt)
        self._add_bins(r, undef, n_undef, wgt, self.didx[p0:p1, q0:q1].reshape(-1))

    def _pair_rows(self, p0: int, p1: int, q0: int, q1: int, sync: Any = None) -> Tensor:
        """The ``Σ′`` tile of positions ``P × Q`` as one row of ``C²`` values per position pair ``(p, q)``;
        NaN where a pair never varies together (``exclude``)."""
        import time

        c, zt = self.c, self.b.zt
        np_, nq = p1 - p0, q1 - q0
        rows, cols = slice(p0 * c, p1 * c), slice(q0 * c, q1 * c)
        t0 = time.perf_counter()
        g = zt[rows] @ zt[cols].T  # (ZᵀZ) tile, units (p, c1) x (q, c2)
        if sync is not None:
            sync()
        self.matmul_s += time.perf_counter() - t0
        if self.mode == "zero":
            g.div_(self.b.samples)
        else:
            n = self.vf[:, rows].T @ self.vf[:, cols]  # images in which both units vary
            g.div_(n)  # 0 / 0 = NaN marks a pair that never varies together: undefined
            del n
        # one row per position pair (p, q): contiguous runs of C values
        return g.view(np_, c, nq, c).transpose(1, 2).contiguous().view(np_ * nq, c * c)

    def _add_stats(self, r: Tensor, undef: Tensor | None, n_undef: int, wgt: float) -> None:
        """Count, sum, sum of squares, min and max of the defined entries of ``r``; leaves the undefined
        ones 0 (so that they add nothing to the bins)."""
        cnt = r.numel() - n_undef
        if cnt:
            if n_undef:
                flat = r.view(-1)
                und = undef.view(-1)
                ref = flat[0] if not bool(und[0]) else flat[int(und.logical_not().byte().argmax())]
                r.masked_fill_(undef, ref)  # a defined value leaves min / max unchanged
            lo, hi = torch.aminmax(r)
            if n_undef:
                r.masked_fill_(undef, 0.0)
            flat = r.view(-1)
            self._n += wgt * cnt
            self._sum += wgt * float(flat.sum())
            self._sq += wgt * float(torch.dot(flat, flat))
            self._min = min(self._min, float(lo))
            self._max = max(self._max, float(hi))
        elif n_undef:
            r.zero_()

    def _add_bins(self, r: Tensor, undef: Tensor | None, n_undef: int, wgt: float, idx: Tensor) -> None:
        """Sums and counts of the defined entries per (distance, map pair); ``idx`` the distance index of
        each row."""
        c = self.c
        part = torch.zeros(self.nd, c * c, dtype=r.dtype, device=r.device).index_add_(0, idx, r)
        self.acc_sum.add_(part.double(), alpha=wgt)
        per_d = torch.bincount(idx, minlength=self.nd).double()
        self.acc_cnt.add_(per_d[:, None], alpha=wgt)
        if n_undef:
            pu = torch.zeros(self.nd, c * c, dtype=r.dtype, device=r.device).index_add_(0, idx,
                                                                                        undef.to(r.dtype))
            self.acc_cnt.sub_(pu.double(), alpha=wgt)

    def stats(self) -> OffDiagStats:
        n = self._n
        if n == 0:
            return OffDiagStats(0, math.nan, math.nan, math.nan, math.nan)
        mean = self._sum / n
        var = max(self._sq / n - mean * mean, 0.0)
        return OffDiagStats(int(round(n)), self._min, self._max, mean, math.sqrt(var))

    def n_undefined(self) -> int:
        n_all = self.b.zt.shape[0] * (self.b.zt.shape[0] - 1) // 2
        return int(n_all - round(self._n))

    def bins(self, kernels: Tensor) -> LayerBins:
        """Unordered map pairs ``c1 ≤ c2``: ``(c1, c2)`` and ``(c2, c1)`` summed (the same-map pair
        holds every unordered unit pair once already); ``k`` from the layer's kernels (eq 2.16)."""
        c = self.c
        iu = torch.triu_indices(c, c, device=self.acc_sum.device)
        s = self.acc_sum.view(self.nd, c, c)
        n = self.acc_cnt.view(self.nd, c, c)
        same = (iu[0] == iu[1]).to(s.dtype)
        s_pairs = s[:, iu[0], iu[1]] + s[:, iu[1], iu[0]] * (1 - same)
        n_pairs = n[:, iu[0], iu[1]] + n[:, iu[1], iu[0]] * (1 - same)
        k = kernel_similarity(kernels.detach().double().cpu())
        iu_c = iu.cpu()
        return LayerBins(d=self.d.cpu(), k=k[iu_c[0], iu_c[1]], maps=iu_c.T.contiguous(),
                         sums=s_pairs.T.contiguous().cpu(), counts=n_pairs.T.round().contiguous().cpu())


