"""Cortex-inspired correlation structure and correlated-normal samplers (Dutta 2019, §2.2.2-2.3).

The correlation between two units of a convolutional layer (eq 2.14) is

    f(x1, x2) = [a - b d(x1, x2)]^+ * exp((k(x1, x2) - 1) / tau) + c,

with ``d`` the (scaled) Euclidean distance between the units' positions in their feature maps
(eq 2.15) and ``k`` the cosine similarity of the kernels that produce their maps (eq 2.16). For a
layer with ``C`` maps of size ``H x W`` the ``n = C H W`` units are ordered ``(map, y, x)`` -- the
flatten of a ``(C, H, W)`` activation, as in eq 3.3 of the thesis -- so that off the diagonal

    Sigma = T (x) S + c 11^T,    T[i, j] = exp((k_ij - 1) / tau),    S[p, q] = [a - b d(p, q)]^+,

and the diagonal is 1 (a unit is perfectly correlated with itself; eq 2.14 would give ``a + c``).
Writing ``delta = 1 - a - c`` this is ``Sigma = T (x) S + delta I + c 11^T``.

Two samplers draw ``x ~ N(0, Sigma)`` (eq 2.8 with unit standard deviations):

* :class:`DenseSampler` -- the thesis's procedure: build the dense ``n x n`` matrix, factor it
  (Cholesky) and return ``L z``; when it needs repair, repair it densely (below) or, with
  ``ncm_method`` = ``higham`` / ``clip`` / ``cvxpy``, replace it by the nearest correlation matrix
  (eq 2.17). Cost ``O(n^3)`` per refresh and ``O(n^2)`` per sample.
* :class:`StructuredSampler` -- the same distribution without forming anything ``n x n``. ``S``
  depends only on positions; its eigendecomposition ``S = V diag(mu) V^T`` is computed once per
  shape and cached. ``T = U diag(lambda) U^T`` is ``C x C``. ``T (x) S + delta I`` has eigenvectors
  ``U (x) V`` and eigenvalues ``lambda_i mu_j + delta``; the negative ones (possible because
  ``S`` is not positive semi-definite in general) are clipped to 0, which is the nearest
  positive semi-definite matrix in Frobenius norm to ``T (x) S + delta I``. Adding the
  positive semi-definite ``c 11^T`` and rescaling every unit to unit variance gives the sampled
  correlation matrix. A sample is ``U (G o Z) V^T + sqrt(c) z0``, ``G = sqrt(max(lambda mu^T +
  delta, 0))``, divided unit-wise by the standard deviation: two batched matrix products.

Repair of an invalid Sigma (``ncm_method``, the same choices for both samplers):

* ``"higham"`` (default) -- the nearest correlation matrix of eq 2.17 (Higham's alternating
  projections; ``"cvxpy"`` solves the same problem with an SDP solver, ``"clip"`` is a one-step
  approximation). The dense sampler applies it when the Cholesky factorisation of Sigma fails (the
  thesis's procedure). The structured sampler samples Sigma exactly when ``T (x) S + delta I`` is
  PSD (then Sigma is valid); otherwise it forms the dense Sigma and applies the same dense procedure
  when ``n <= ncm_max_units`` (:data:`NCM_MAX_UNITS`), so the two samplers sample the same
  distribution there. Above that size eq 2.17 has no Kronecker structure to exploit (its solution is
  a dense ``n x n`` matrix and each Higham iteration an ``O(n^3)`` eigendecomposition): the
  structured sampler then falls back to the spectral repair, warns once, and records it in
  ``repair_used``.
* ``"spectral"`` (fast option, :func:`spectral_repair`) -- defined on the dense matrix alone:
  ``A = Sigma - c 11^T`` (off the diagonal ``T (x) S``, diagonal ``1 - c``), ``R = D^-1/2 (P+(A) +
  c 11^T) D^-1/2`` with ``P+`` the projection onto the PSD cone and ``D`` the diagonal of the
  bracket, applied whenever ``A`` is not PSD. The structured sampler computes it in its eigenbasis
  at any size, the dense one with a dense eigendecomposition; both sample the same distribution.
  It is not the nearest correlation matrix (about 2 % further from Sigma in the tests).

See ``docs/decisions/correlation.md``.

Modules of this package, by concern: :mod:`.structure` (eq 2.14's parameters, ``S``, ``T`` and the
dense Sigma), :mod:`.ncm` (the nearest correlation matrix of eq 2.17 and the spectral repair),
:mod:`.sampler` (the sampler interface), :mod:`.dense` and :mod:`.structured` (the two samplers) and
:mod:`.factory` (``build_sampler``). Every public name is importable from this package.
"""

from __future__ import annotations

from bioreg.layers.correlation.dense import DenseSampler
from bioreg.layers.correlation.factory import build_sampler
from bioreg.layers.correlation.ncm import (
    DEFAULT_REPAIR,
    NCM_METHODS,
    REPAIR_METHODS,
    nearest_correlation,
    safe_factor,
    spectral_repair,
)
from bioreg.layers.correlation.sampler import NCM_MAX_UNITS, SAMPLER_KINDS, CorrelatedNormalSampler
from bioreg.layers.correlation.structure import (
    DISTANCE_SCALES,
    CorrelationParams,
    check_distance_scale,
    correlation_matrix,
    resolve_distance_scale,
    spatial_matrix,
    tuning_matrix,
)
from bioreg.layers.correlation.structured import SpatialEig, StructuredSampler, spatial_eigh

__all__ = [
    "CorrelationParams",
    "spatial_matrix",
    "tuning_matrix",
    "correlation_matrix",
    "nearest_correlation",
    "NCM_METHODS",
    "REPAIR_METHODS",
    "spectral_repair",
    "safe_factor",
    "CorrelatedNormalSampler",
    "DenseSampler",
    "StructuredSampler",
    "SAMPLER_KINDS",
    "SpatialEig",
    "spatial_eigh",
    "build_sampler",
    "DEFAULT_REPAIR",
    "NCM_MAX_UNITS",
    "DISTANCE_SCALES",
    "check_distance_scale",
    "resolve_distance_scale",
]
