"""The scalable sampler: Sigma = T (x) S + delta I + c 11^T sampled in the eigenbases of T and S."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

from bioreg.layers.base import RegularizerConfigError
from bioreg.layers.correlation.dense import DenseSampler
from bioreg.layers.correlation.ncm import DEFAULT_REPAIR, _check_positive_variance, _sym
from bioreg.layers.correlation.sampler import (
    NCM_MAX_UNITS,
    CorrelatedNormalSampler,
    _check_batch,
    _check_repair,
)
from bioreg.layers.correlation.structure import (
    CorrelationParams,
    _check_shape,
    _check_weight,
    _tuning,
    spatial_matrix,
)

__all__ = ["SpatialEig", "spatial_eigh", "StructuredSampler"]


def _reflection_basis(n: int) -> Tensor:
    """Orthonormal ``n x n`` basis of vectors even / odd under ``i -> n - 1 - i`` (columns: even first).

    Even: ``(e_k + e_{n-1-k}) / sqrt 2`` for ``k < n // 2`` (then ``e_{n//2}`` when ``n`` is odd);
    odd: ``(e_k - e_{n-1-k}) / sqrt 2`` for ``k < n // 2``.
    """
    half, r = n // 2, math.sqrt(0.5)
    q = torch.zeros(n, n, dtype=torch.float64)
    for k in range(half):
        q[k, k] = q[n - 1 - k, k] = r
        q[k, n - half + k] = r
        q[n - 1 - k, n - half + k] = -r
    if n % 2:
        q[half, half] = 1.0
    return q


@dataclass(frozen=True)
class SpatialEig:
    """Eigendecomposition ``S = V diag(mu) V^T`` of :func:`spatial_matrix`, block by symmetry.

    ``S[p, q]`` depends only on ``|y_p - y_q|`` and ``|x_p - x_q|``, so it commutes with the
    reflections ``y -> H-1-y`` and ``x -> W-1-x``. In the basis ``Q = Q_y (x) Q_x`` of vectors that
    are even/odd under both (:func:`_reflection_basis`) it is block diagonal with four blocks
    (even-even, even-odd, odd-even, odd-odd) of about ``HW / 4`` each, which makes both the
    eigendecomposition (16x) and the product with the eigenvectors when sampling (4x) cheaper.

    ``mu`` (HW,) and ``v`` (HW, HW) list the eigenpairs block after block; ``blocks`` holds, for
    each non-empty block, ``(offset, (y0, y1), (x0, x1), w_b)``: its eigenpairs are
    ``mu[offset:offset + n_b]`` and, in pixel space, ``Q[:, coefficients (y0:y1, x0:x1)] @ w_b``.
    """

    mu: Tensor
    v: Tensor
    q_y: Tensor
    q_x: Tensor
    blocks: tuple[tuple[int, tuple[int, int], tuple[int, int], Tensor], ...]
    max_offblock: float  # largest |entry| of Q^T S Q outside the blocks (0 up to round-off)


@lru_cache(maxsize=16)
def _spatial_eigh_cached(height: int, width: int, a: float, b: float, scale: float) -> SpatialEig:
    s = spatial_matrix(height, width, CorrelationParams(a=a, b=b, c=0.0, distance_scale=scale))
    q_y, q_x = _reflection_basis(height), _reflection_basis(width)
    # Q^T S Q with Q = Q_y (x) Q_x, applied axis by axis on S viewed as (H, W, H, W)
    s4 = s.reshape(height, width, height, width)
    s4 = torch.einsum("ya,yxYX->axYX", q_y, s4)
    s4 = torch.einsum("xb,axYX->abYX", q_x, s4)
    s4 = torch.einsum("abYX,Yc->abcX", s4, q_y)
    s_coef = torch.einsum("abcX,Xd->abcd", s4, q_x).reshape(height * width, -1)
    ey, ex = height - height // 2, width - width // 2
    coef_index = torch.arange(height * width).reshape(height, width)
    blocks, mus, cols = [], [], []
    inside = torch.zeros(height * width, height * width, dtype=torch.bool)
    offset = 0
    for ys in ((0, ey), (ey, height)):
        for xs in ((0, ex), (ex, width)):
            idx = coef_index[ys[0] : ys[1], xs[0] : xs[1]].reshape(-1)
            if idx.numel() == 0:
                continue
            inside[idx[:, None], idx[None, :]] = True
            mu_b, w_b = torch.linalg.eigh(_sym(s_coef[idx][:, idx]))
            blocks.append((offset, ys, xs, w_b))
            mus.append(mu_b)
            # pixel-space eigenvectors (Q_y[:, ys] (x) Q_x[:, xs]) @ w_b
            w3 = w_b.reshape(ys[1] - ys[0], xs[1] - xs[0], -1)
            cols.append(
                torch.einsum("Yy,Xx,yxk->YXk", q_y[:, ys[0] : ys[1]], q_x[:, xs[0] : xs[1]], w3).reshape(
                    height * width, -1
                )
            )
            offset += idx.numel()
    max_off = float(s_coef[~inside].abs().max()) if bool((~inside).any()) else 0.0
    return SpatialEig(torch.cat(mus), torch.cat(cols, dim=1).contiguous(), q_y, q_x, tuple(blocks), max_off)


def spatial_eigh(height: int, width: int, params: CorrelationParams) -> SpatialEig:
    """Cached float64 CPU eigendecomposition of :func:`spatial_matrix` (per shape and a, b, scale)."""
    _check_shape(height, width)
    return _spatial_eigh_cached(height, width, float(params.a), float(params.b), float(params.distance_scale))


class StructuredSampler(CorrelatedNormalSampler):
    """Scalable sampler exploiting ``Sigma = T (x) S + delta I + c 11^T`` (module docstring).

    Refresh: ``C x C`` eigendecomposition of ``T`` plus an ``O(C^2 HW + C (HW)^2)`` diagonal; the
    eigendecomposition of ``S`` is cached per (H, W, a, b, distance_scale) and split into four
    reflection-symmetry blocks (:class:`SpatialEig`). Sample: ``U (G o Z)`` (one batched
    ``C x C`` product), four block products with the eigenvectors of ``S`` (``~(HW)^2 / 4`` per
    map) and two small ``H x H`` / ``W x W`` products back to pixels. Nothing ``n x n`` is formed
    (except in :meth:`covariance`, meant for tests on small layers).

    After a refresh ``n_clipped`` is the number of eigenvalues ``lambda_i mu_j + delta < 0`` of
    ``T (x) S + delta I`` (zero means Sigma is valid and sampled exactly) and ``clip_fro`` the
    Frobenius norm of the negative part.

    Repair (``ncm_method``, default ``"higham"``) when ``n_clipped > 0``:

    * a nearest-correlation method (``higham`` / ``cvxpy`` / ``clip``, eq 2.17) and ``n <=
      ncm_max_units``: the dense procedure of :class:`DenseSampler` with the same method (a dense
      ``n x n`` Sigma, Cholesky, else the nearest correlation matrix), so both samplers sample the
      same distribution; refresh and sampling then cost as much as the dense sampler's;
    * a nearest-correlation method and ``n > ncm_max_units``: eq 2.17's solution has no Kronecker
      structure, so the sampler uses the spectral repair instead, warns (once per sampler) and sets
      ``repair_used = "spectral"``;
    * ``"spectral"``: :func:`spectral_repair`, done in the eigenbases of ``T`` and ``S`` at any size.

    ``repair_used`` is ``None`` (no repair), ``"spectral"`` or the nearest-correlation method.
    """

    def __init__(
        self,
        shape: tuple[int, int, int],
        params: CorrelationParams | None = None,
        ncm_method: str = DEFAULT_REPAIR,
        *,
        ncm_max_units: int = NCM_MAX_UNITS,
        ncm_kw: dict | None = None,
    ) -> None:
        super().__init__(shape, params)
        _check_repair(ncm_method, ncm_kw)
        if isinstance(ncm_max_units, bool) or not isinstance(ncm_max_units, int) or ncm_max_units < 0:
            raise RegularizerConfigError(f"ncm_max_units must be an integer >= 0, got {ncm_max_units!r}")
        self.ncm_method = ncm_method
        self.ncm_max_units = ncm_max_units
        self.ncm_kw = dict(ncm_kw or {})
        _, h, w = self.shape
        self._eig = spatial_eigh(h, w, self.params)
        self._dev_cache: dict[tuple[torch.device, torch.dtype], tuple] = {}
        self._clip_fro: float | Tensor = 0.0
        self._dense: DenseSampler | None = None  # the dense nearest-correlation procedure, when in use
        self._warned = False
        self._warn_checked = False  # off the CPU the fallback warning is looked for at the first refresh only

    @property
    def clip_fro(self) -> float:
        """Frobenius norm of the clipped (negative) part of ``T (x) S + delta I`` (a host read)."""
        return float(self._clip_fro)

    @property
    def repair_used(self) -> str | None:
        """``None`` (no repair), ``"spectral"`` or the nearest-correlation method (a host read)."""
        if not self.repaired:
            return None
        return self.ncm_method if self._dense is not None else "spectral"

    def _spatial_on(self, device: torch.device, dtype: torch.dtype) -> tuple:
        key = (device, dtype)
        if key not in self._dev_cache:
            e = self._eig
            blocks = tuple(
                (off, ys, xs, w_b.T.to(device=device, dtype=dtype).contiguous())
                for off, ys, xs, w_b in e.blocks
            )
            self._dev_cache[key] = (
                blocks,
                e.q_y.to(device=device, dtype=dtype),
                e.q_x.T.to(device=device, dtype=dtype).contiguous(),
                e.v.square().to(device),
                e.mu.to(device),
            )
        return self._dev_cache[key]

    @torch.no_grad()
    def refresh(self, weight: Tensor) -> None:
        """Recompute Sigma's factors from ``weight``. Nothing is read back to the host (a GPU does not
        wait) except where the procedure must choose on the host: the dense eq 2.17 repair of a layer
        of at most ``ncm_max_units`` units (is it needed?) and, off the CPU at the first refresh only,
        whether to warn about the spectral fallback. ``torch.linalg.eigh`` itself checks its result
        on the host on a GPU (PyTorch's error check), so a refresh still costs one wait there;
        ``refresh_every`` spaces them out."""
        _check_weight(weight, self.shape[0], finite=weight.device.type == "cpu")
        dev, dt = weight.device, weight.dtype
        blocks, q_y, q_xt, v2, mu = self._spatial_on(dev, dt)
        lam, u = torch.linalg.eigh(_tuning(weight, self.params))  # T: float64, on weight's device
        g2 = lam[:, None] * mu[None, :] + self.params.delta  # eigenvalues of T (x) S + delta I
        self._n_clipped = (g2 < 0).sum()
        self._clip_fro = g2.clamp_max(0.0).square().sum().sqrt()
        self._dense = None
        if self.ncm_method != "spectral":
            if self.n <= self.ncm_max_units:
                if self.n_clipped:  # the one host read: eq 2.17's repair is a host-side algorithm
                    self._refresh_dense_ncm(weight)
                    return
            else:
                self._warn_spectral_fallback(dev)
        self._repaired = self._n_clipped > 0
        g2 = g2.clamp_min(0.0)
        # diagonal of (U (x) V) diag(g2) (U (x) V)^T + c 11^T, as a (C, HW) map
        var = (u.square() @ g2) @ v2.T + self.params.c
        _check_positive_variance(var, "structured correlation repair")
        self._u = u.to(dtype=dt)
        self._g = g2.sqrt().to(dtype=dt)
        self._g2, self._u64, self._var = g2, u, var
        self._inv_std = var.rsqrt().to(dtype=dt).reshape(self.shape)
        self._blocks, self._q_y, self._q_xt = blocks, q_y, q_xt
        self._sqrt_c = math.sqrt(self.params.c)
        self._ready = True

    def _warn_spectral_fallback(self, device: torch.device) -> None:
        """Warn (once) that Sigma needs a repair that eq 2.17 cannot give at this size. Looked for at
        every refresh on the CPU, at the first refresh only elsewhere (a host read)."""
        if self._warned or (self._warn_checked and device.type != "cpu"):
            return
        self._warn_checked = True
        if not self.n_clipped:
            return
        warnings.warn(
            f"StructuredSampler{self.shape}: Sigma needs repair ({self.n_clipped} negative eigenvalues) "
            f"and n = {self.n} > ncm_max_units = {self.ncm_max_units}, where the nearest correlation "
            f"matrix (ncm_method={self.ncm_method!r}, eq 2.17) is not computed; using the spectral "
            "repair instead (about 2 % further from Sigma). For eq 2.17 use sampler=dense; to choose the "
            "spectral repair explicitly, ncm_method=spectral. See docs/decisions/correlation.md.",
            RuntimeWarning,
            stacklevel=3,
        )
        self._warned = True

    def _refresh_dense_ncm(self, weight: Tensor) -> None:
        """The dense nearest-correlation procedure (:class:`DenseSampler`) for this refresh."""
        dense = DenseSampler(self.shape, self.params, self.ncm_method, ncm_kw=self.ncm_kw or None)
        dense.refresh(weight)
        self._dense = dense
        self._repaired = dense.repaired
        self._ready = True

    def sample(self, batch: int, *, generator: torch.Generator | None = None) -> Tensor:
        self._check_ready()
        if self._dense is not None:
            return self._dense.sample(batch, generator=generator)
        batch = _check_batch(batch)
        c, h, w = self.shape
        dev, dt = self._g.device, self._g.dtype
        z = torch.randn(batch, c, h * w, generator=generator, device=dev, dtype=dt)
        e = torch.matmul(self._u, z.mul_(self._g))  # (C, C) @ (B, C, HW): eigen-coordinates -> maps
        coef = torch.empty(batch, c, h, w, device=dev, dtype=dt)
        for off, (y0, y1), (x0, x1), w_bt in self._blocks:  # 4 blocks: eigen -> symmetry coefficients
            n_b = w_bt.shape[0]
            part = e[:, :, off : off + n_b].reshape(batch * c, n_b) @ w_bt
            coef[:, :, y0:y1, x0:x1] = part.reshape(batch, c, y1 - y0, x1 - x0)
        x = torch.matmul(self._q_y, torch.matmul(coef, self._q_xt))  # coefficients -> pixels
        if self._sqrt_c > 0:
            z0 = torch.randn(batch, 1, 1, 1, generator=generator, device=dev, dtype=dt)
            x.add_(z0, alpha=self._sqrt_c)
        return x.mul_(self._inv_std)

    def covariance(self) -> Tensor:
        """Dense float64 correlation matrix actually sampled (small layers only)."""
        self._check_ready()
        if self._dense is not None:
            return self._dense.covariance()
        q = torch.kron(self._u64.contiguous(), self._eig.v.to(self._u64.device).contiguous())
        m = (q * self._g2.reshape(-1)) @ q.T + self.params.c
        d = self._var.reshape(-1).rsqrt()
        return _sym(m * d[:, None] * d[None, :])
