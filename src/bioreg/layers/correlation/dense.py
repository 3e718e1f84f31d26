"""The thesis's sampler (§2.2.2, §2.3.3): dense Sigma, repair if needed, Cholesky, ``L z``."""

from __future__ import annotations

import torch
from torch import Tensor

from bioreg.layers.correlation.ncm import (
    DEFAULT_REPAIR,
    _spectral_parts,
    nearest_correlation,
    safe_factor,
)
from bioreg.layers.correlation.sampler import (
    CorrelatedNormalSampler,
    _check_batch,
    _check_repair,
)
from bioreg.layers.correlation.structure import CorrelationParams, _check_weight, correlation_matrix

__all__ = ["DenseSampler"]


class DenseSampler(CorrelatedNormalSampler):
    """Thesis-faithful sampler (§2.2.2, §2.3.3): dense ``Sigma`` -> repair if needed -> factor -> ``L z``.

    ``ncm_method`` chooses the repair of an invalid ``Sigma``:

    * ``"higham"`` (default) / ``"cvxpy"`` / ``"clip"`` -- the thesis's procedure: when the Cholesky
      factorisation of ``Sigma`` fails, replace it by :func:`nearest_correlation` (eq 2.17; Higham
      reaches the CVXPY optimum, ``clip`` is an approximation) and factor that (:func:`safe_factor`).
      :class:`StructuredSampler` with the same method samples the same distribution up to
      :data:`NCM_MAX_UNITS` units.
    * ``"spectral"`` (fast option) -- :func:`spectral_repair`, the structured sampler's spectral
      repair computed with a dense eigendecomposition; applied when ``A = Sigma - c 11^T`` is not
      positive definite (tested with the Cholesky factor of ``Sigma`` and the matrix determinant
      lemma), so the sampled covariance equals that of ``StructuredSampler(..., "spectral")`` for
      every parameter set; about 2 % further from ``Sigma`` (Frobenius) than eq 2.17's optimum in
      the tests.

    When ``Sigma`` is valid both use the Cholesky factor of eq 2.14's ``Sigma``, as in the thesis.

    ``dtype`` is the precision of the construction and factorisation (float64 default; float32
    halves memory and time at large ``n``). ``ncm_kw`` are passed to :func:`nearest_correlation`.
    After a refresh ``n_clipped`` is the number of clipped eigenvalues (spectral repair only).
    """

    def __init__(
        self,
        shape: tuple[int, int, int],
        params: CorrelationParams | None = None,
        ncm_method: str = DEFAULT_REPAIR,
        *,
        dtype: torch.dtype = torch.float64,
        ncm_kw: dict | None = None,
    ) -> None:
        super().__init__(shape, params)
        _check_repair(ncm_method, ncm_kw)
        self.ncm_method = ncm_method
        self.ncm_kw = dict(ncm_kw or {})
        self.dtype = dtype
        self._factor: Tensor | None = None
        self._shared: Tensor | None = None

    @torch.no_grad()
    def refresh(self, weight: Tensor) -> None:
        _check_weight(weight, self.shape[0])
        _, h, w = self.shape
        sigma = correlation_matrix(weight, h, w, self.params, dtype=self.dtype)
        shared = None
        if self.ncm_method == "spectral":
            factor, shared, self._n_clipped = _spectral_parts(sigma, self.params.c)
            self._repaired = self._n_clipped > 0  # a device tensor: not read back here
        else:  # the Cholesky outcome chooses the procedure of eq 2.17: a host read, by necessity
            factor, info = torch.linalg.cholesky_ex(sigma)
            self._repaired = int(info) != 0
            if self._repaired:
                sigma = nearest_correlation(sigma, self.ncm_method, **self.ncm_kw)
                factor = safe_factor(sigma)
        del sigma
        self._factor_t = factor.T.to(device=weight.device, dtype=weight.dtype).contiguous()
        self._shared_w = None if shared is None else shared.to(device=weight.device, dtype=weight.dtype)
        self._factor, self._shared = factor, shared
        self._ready = True

    def sample(self, batch: int, *, generator: torch.Generator | None = None) -> Tensor:
        self._check_ready()
        batch = _check_batch(batch)
        ft = self._factor_t
        z = torch.randn(batch, ft.shape[0], generator=generator, device=ft.device, dtype=ft.dtype)
        x = z @ ft
        if self._shared_w is not None:  # spectral repair: + sqrt(c) z0 1, rescaled per unit
            z0 = torch.randn(batch, 1, generator=generator, device=ft.device, dtype=ft.dtype)
            x.addcmul_(z0, self._shared_w[None, :])
        return x.reshape(batch, *self.shape)

    def covariance(self) -> Tensor:
        """``L L^T`` (+ the shared term of the spectral repair), float64: the matrix actually sampled."""
        self._check_ready()
        f = self._factor.double()
        cov = f @ f.T
        if self._shared is not None:
            s = self._shared.double()
            cov = cov + s[:, None] * s[None, :]
        return cov
