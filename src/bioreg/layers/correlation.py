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
"""

from __future__ import annotations

import math
import warnings
from dataclasses import astuple, dataclass
from functools import lru_cache
from typing import Any

import torch
from torch import Tensor

from bioreg.layers.base import RegularizerConfigError, kernel_similarity

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

NCM_METHODS = ("higham", "clip", "cvxpy")
#: Repairs of an invalid Sigma both samplers accept: a nearest correlation matrix (eq 2.17; ``higham``
#: is the default) or the fast spectral repair of eq 2.14's structure.
REPAIR_METHODS = ("spectral", *NCM_METHODS)
#: Default repair of both samplers and of the CG/CP modules: Higham's nearest correlation matrix, which
#: solves eq 2.17.
DEFAULT_REPAIR = "higham"
#: Largest layer (C*H*W units) on which the structured sampler applies a nearest-correlation repair
#: (dense n x n Sigma, one O(n^3) eigendecomposition per Higham iteration); above it, it falls back
#: to the spectral repair with a warning.
NCM_MAX_UNITS = 4096
SAMPLER_KINDS = ("dense", "structured")
#: Named meanings of ``distance_scale`` (eq 2.14's "scaled Euclidean distance"); a number > 0 is accepted too.
DISTANCE_SCALES = ("grid", "input")


def check_distance_scale(value: Any) -> float | str:
    """``"grid"``, ``"input"`` or a finite number > 0 (returned as float); anything else is an error."""
    if isinstance(value, str):
        if value in DISTANCE_SCALES:
            return value
        try:
            value = float(value)
        except ValueError:
            raise RegularizerConfigError(
                f"distance_scale must be one of {DISTANCE_SCALES} or a number > 0 (grid: units of the layer's "
                f"own grid, = 1; input: input pixels, = the layer's cumulative stride), got {value!r}"
            ) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise RegularizerConfigError(
            f"distance_scale must be one of {DISTANCE_SCALES} or a finite number > 0, got {value!r}"
        )
    return float(value)


def resolve_distance_scale(value: float | str, ctx: Any = None, who: str = "distance_scale=input") -> float:
    """The number ``d`` is scaled by: ``grid`` -> 1, a number -> itself, ``input`` -> the cumulative
    stride of the insertion point (``ctx.cumulative_stride(who)``, input pixels between neighbouring
    units); an anisotropic stride (sy != sx) is an error, since eq 2.14 has one scale."""
    value = check_distance_scale(value)
    if value == "grid":
        return 1.0
    if isinstance(value, float):
        return value
    if ctx is None:
        raise RegularizerConfigError(f"{who}: distance_scale=input needs the insertion context (bind it first)")
    sy, sx = ctx.cumulative_stride(who)
    if sy != sx:
        raise RegularizerConfigError(
            f"{who}: the point {ctx.point!r} has different strides along y and x ({sy}, {sx}); eq 2.14 has one "
            "distance scale: give distance_scale a number"
        )
    return float(sy)


@dataclass(frozen=True)
class CorrelationParams:
    """Hyper-parameters of eq 2.14; the defaults are those of Fig 2.3 (Dutta 2019).

    ``a`` (>= 0): spatial correlation at distance 0; ``b`` (>= 0): its decay per unit of distance;
    ``c`` in [0, 1]: correlation floor shared by every pair; ``tau`` (> 0): tuning temperature;
    ``distance_scale`` (> 0): ``d = distance_scale * (Euclidean distance in feature-map pixels)``.
    The thesis calls ``d`` "the scaled Euclidean distance" but eq 2.15 is the plain Euclidean
    distance of feature-map coordinates, so the default scale is 1 (one unit per pixel; the modules'
    ``distance_scale: grid``; ``input`` resolves to the layer's cumulative stride, see
    :func:`resolve_distance_scale`). With the
    defaults the spatial term ``a - b d`` reaches 0 at ``d = 52.3`` pixels, i.e. it stays positive
    over a whole 32 x 32 map (largest distance 43.8), matching "every neuron is correlated to
    every other neuron in the same layer" (§2.3).
    """

    a: float = 0.225
    b: float = 0.0043
    c: float = 0.09
    tau: float = 1.87
    distance_scale: float = 1.0

    def __post_init__(self) -> None:
        for name, value in zip(("a", "b", "c", "tau", "distance_scale"), astuple(self), strict=True):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise RegularizerConfigError(
                    f"CorrelationParams.{name} must be a finite number, got {value!r}"
                )
        if self.a < 0:
            raise RegularizerConfigError(f"CorrelationParams.a must be >= 0, got {self.a!r}")
        if self.b < 0:
            raise RegularizerConfigError(f"CorrelationParams.b must be >= 0, got {self.b!r}")
        if not 0 <= self.c <= 1:
            raise RegularizerConfigError(f"CorrelationParams.c must be in [0, 1], got {self.c!r}")
        if self.tau <= 0:
            raise RegularizerConfigError(f"CorrelationParams.tau must be > 0, got {self.tau!r}")
        if self.distance_scale <= 0:
            raise RegularizerConfigError(
                f"CorrelationParams.distance_scale must be > 0, got {self.distance_scale!r}"
            )

    @property
    def delta(self) -> float:
        """Diagonal slack ``1 - a - c``: what eq 2.14's diagonal ``a + c`` lacks to reach 1."""
        return 1.0 - self.a - self.c

    def value(self, distance: Tensor, similarity: Tensor) -> Tensor:
        """Eq 2.14 evaluated element-wise (``distance`` already in units of ``d``, i.e. scaled)."""
        spatial = (self.a - self.b * distance).clamp_min(0.0)
        return spatial * torch.exp((similarity - 1.0) / self.tau) + self.c


def _check_shape(height: int, width: int) -> None:
    for name, v in (("height", height), ("width", width)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise RegularizerConfigError(f"{name} must be a positive integer, got {v!r}")


def spatial_matrix(
    height: int, width: int, params: CorrelationParams, *, dtype: torch.dtype = torch.float64
) -> Tensor:
    """``S[p, q] = [a - b d(p, q)]^+`` over the ``H W`` positions of a map (eqs 2.14-2.15).

    Positions are ordered row-major (``p = y * W + x``). ``d = distance_scale * ||p - q||_2``.
    ``S`` is symmetric with ``a`` on the diagonal but is *not* positive semi-definite in general.
    """
    _check_shape(height, width)
    yy, xx = torch.meshgrid(
        torch.arange(height, dtype=dtype), torch.arange(width, dtype=dtype), indexing="ij"
    )
    pos = torch.stack([yy.reshape(-1), xx.reshape(-1)], dim=1)
    d = params.distance_scale * torch.cdist(pos, pos)
    return (params.a - params.b * d).clamp_min(0.0)


def _check_weight(weight: Tensor, channels: int | None = None) -> None:
    if not isinstance(weight, Tensor) or weight.dim() != 4:
        shape = tuple(weight.shape) if isinstance(weight, Tensor) else type(weight).__name__
        raise RegularizerConfigError(
            f"weight must be a 4-D convolution kernel (C_out, C_in, kh, kw), got {shape}"
        )
    if channels is not None and weight.shape[0] != channels:
        raise RegularizerConfigError(
            f"weight has {weight.shape[0]} output channels but the layer has C={channels} feature maps"
        )
    if not torch.isfinite(weight).all():
        raise RegularizerConfigError("weight contains non-finite values (NaN or inf)")


def tuning_matrix(weight: Tensor, params: CorrelationParams, *, dtype: torch.dtype = torch.float64) -> Tensor:
    """``T[i, j] = exp((k_ij - 1) / tau)``, ``k`` = cosine similarity of kernels (eqs 2.14, 2.16)."""
    _check_weight(weight)
    k = kernel_similarity(weight.detach().to(dtype))
    return torch.exp((k - 1.0) / params.tau)


def correlation_matrix(
    weight: Tensor, height: int, width: int, params: CorrelationParams, *, dtype: torch.dtype = torch.float64
) -> Tensor:
    """Dense eq 2.14 for a layer: ``(C H W) x (C H W)``, units ordered ``(map, y, x)``.

    Off the diagonal ``T (x) S + c``; unit diagonal. Not necessarily positive semi-definite.
    """
    t = tuning_matrix(weight, params, dtype=dtype)
    s = spatial_matrix(height, width, params, dtype=dtype).to(t.device)
    sigma = torch.kron(t, s) + params.c
    sigma.fill_diagonal_(1.0)
    return sigma


# ----------------------------------------------------------------------------------------------
# Nearest correlation matrix (eq 2.17)
# ----------------------------------------------------------------------------------------------


def _sym(a: Tensor) -> Tensor:
    return 0.5 * (a + a.transpose(-1, -2))


def _proj_psd(a: Tensor, floor: float = 0.0) -> Tensor:
    w, v = torch.linalg.eigh(_sym(a))
    return _sym((v * w.clamp_min(floor)) @ v.T)


def _unit_diag_rescale(a: Tensor) -> Tensor:
    d = a.diagonal().clamp_min(torch.finfo(a.dtype).tiny).rsqrt()
    out = _sym(a * d[:, None] * d[None, :])
    out.fill_diagonal_(1.0)
    return out


def _check_square_symmetric(a: Tensor) -> Tensor:
    if not isinstance(a, Tensor) or a.dim() != 2 or a.shape[0] != a.shape[1]:
        shape = tuple(a.shape) if isinstance(a, Tensor) else type(a).__name__
        raise RegularizerConfigError(f"expected a square matrix, got {shape}")
    if not torch.isfinite(a).all():
        raise RegularizerConfigError("matrix contains non-finite values (NaN or inf)")
    return a


def _ncm_higham(a: Tensor, tol: float = 1e-9, max_iter: int = 1000, polish: bool = True) -> Tensor:
    """Higham (2002) alternating projections with Dykstra's correction (unweighted Frobenius).

    Alternates the projection onto the PSD cone (with Dykstra's correction) and onto the unit
    diagonal matrices until the relative change of both iterates falls below ``tol``. With
    ``polish`` the final iterate is made exactly PSD with unit diagonal (eigenvalue clip at 0 then
    ``D^-1/2 X D^-1/2``), a change of the order of ``tol``.
    """
    y = _sym(a)
    ds = torch.zeros_like(y)
    x = y
    converged = False
    for _ in range(max_iter):
        r = y - ds
        x = _proj_psd(r)
        ds = x - r
        y_new = x.clone()
        y_new.fill_diagonal_(1.0)
        ny = torch.linalg.norm(y_new)
        rel_y = torch.linalg.norm(y_new - y) / ny
        rel_xy = torch.linalg.norm(y_new - x) / ny
        y = y_new
        if max(float(rel_y), float(rel_xy)) < tol:
            converged = True
            break
    if not converged:
        import warnings

        warnings.warn(
            f"nearest_correlation(method='higham') did not reach tol={tol} in {max_iter} iterations",
            RuntimeWarning,
            stacklevel=3,
        )
    if polish:
        y = _unit_diag_rescale(_proj_psd(y))
    return y


def _ncm_clip(a: Tensor, floor: float = 1e-8) -> Tensor:
    """Eigenvalue clipping to ``floor`` then ``D^-1/2 A D^-1/2`` (fast, not the exact nearest)."""
    return _unit_diag_rescale(_proj_psd(a, floor))


def _ncm_cvxpy(a: Tensor, solver: str = "SCS", **solver_kw: object) -> Tensor:
    """Eq 2.17 with CVXPY: minimise ||A - B||_F s.t. B PSD, diag(B) = 1.

    The thesis prints only the PSD constraint; the unit diagonal is what makes ``B`` a correlation
    matrix (§2.3.3, first sentence), so it is imposed. ``solver`` is any installed conic solver
    supporting SDPs: ``SCS`` (default; first order, CVXPY's SDP solver when the thesis was written;
    fast, but leaves eigenvalues of about -1e-5) or ``CLARABEL`` (interior point, accurate, much
    slower). The raw solution is returned (symmetrised, unit diagonal); :func:`safe_factor` copes
    with its slightly negative eigenvalues.
    """
    import cvxpy as cp
    import numpy as np

    installed = cp.installed_solvers()
    if solver not in installed:
        raise RegularizerConfigError(f"cvxpy solver {solver!r} is not installed; choose one of {installed}")
    target = _sym(a).detach().cpu().double().numpy()
    n = target.shape[0]
    b = cp.Variable((n, n), PSD=True)
    problem = cp.Problem(cp.Minimize(cp.norm(b - target, "fro")), [cp.diag(b) == 1])
    problem.solve(solver=solver, **solver_kw)
    if b.value is None or problem.status not in ("optimal", "optimal_inaccurate"):
        raise RuntimeError(f"cvxpy ({solver}) failed: status {problem.status}")
    out = torch.from_numpy(np.asarray(b.value)).to(device=a.device, dtype=a.dtype)
    out = _sym(out)
    out.fill_diagonal_(1.0)
    return out


def nearest_correlation(a: Tensor, method: str = "higham", **kw: object) -> Tensor:
    """Nearest correlation matrix to a symmetric matrix ``a`` in Frobenius norm (eq 2.17).

    ``method``:

    * ``"higham"`` -- alternating projections with Dykstra's correction (Higham 2002); keywords
      ``tol`` (1e-9), ``max_iter`` (1000), ``polish`` (True). Converges to the exact minimiser.
    * ``"clip"`` -- eigenvalue clipping to ``floor`` (1e-8) and unit-diagonal rescaling: one
      eigendecomposition, close to but not exactly the nearest matrix.
    * ``"cvxpy"`` -- the thesis's convex programme; keywords ``solver`` (``"SCS"``) and any
      solver option. Slow: only for small matrices and tests.

    Computation happens in ``a``'s dtype and device (use float64 for accuracy).
    """
    if method not in NCM_METHODS:
        raise RegularizerConfigError(
            f"unknown nearest-correlation method {method!r}; choose one of {NCM_METHODS}"
        )
    _check_square_symmetric(a)
    if method == "higham":
        return _ncm_higham(a, **kw)  # type: ignore[arg-type]
    if method == "clip":
        return _ncm_clip(a, **kw)  # type: ignore[arg-type]
    return _ncm_cvxpy(a, **kw)  # type: ignore[arg-type]


def _spectral_parts(sigma: Tensor, c: float) -> tuple[Tensor, Tensor | None, int]:
    """Factor ``(F, s, n_clipped)`` with ``F F^T + s s^T`` = the spectral repair of ``sigma``.

    ``sigma`` must have unit diagonal and ``c`` is eq 2.14's floor. If ``A = sigma - c 11^T`` is
    positive definite (Cholesky of ``sigma`` succeeds and ``c 1^T sigma^-1 1 < 1``, the matrix
    determinant lemma) nothing is repaired: ``F`` is the Cholesky factor of ``sigma``, ``s`` is
    ``None``. Otherwise ``A = W diag(w) W^T`` (dense ``eigh``), ``F = D^-1/2 W diag(sqrt(max(w, 0)))``,
    ``s = D^-1/2 sqrt(c) 1`` with ``D = diag(P+(A)) + c``. ``sigma`` is overwritten in that case.
    """
    n = sigma.shape[0]
    chol, info = torch.linalg.cholesky_ex(sigma)
    if int(info) == 0 and bool(torch.isfinite(chol).all()):
        if c == 0:
            return chol, None, 0
        y = torch.linalg.solve_triangular(chol, torch.ones(n, 1, dtype=chol.dtype, device=chol.device), upper=False)
        if c * float(y.square().sum()) < 1.0:
            return chol, None, 0
    del chol
    a = sigma.sub_(c)  # T (x) S + delta I (the diagonal 1 - c = a + delta)
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


def spectral_repair(sigma: Tensor, c: float) -> Tensor:
    """The structured sampler's repair of eq 2.14, computed densely (small matrices).

    ``sigma``: a symmetric matrix with unit diagonal whose off-diagonal part is ``T (x) S + c``
    (:func:`correlation_matrix`), ``c`` in [0, 1]. Returns ``D^-1/2 (P+(A) + c 11^T) D^-1/2`` with
    ``A = sigma - c 11^T`` and ``P+`` the Frobenius projection onto the PSD cone (eigenvalue clip
    at 0), ``D`` the diagonal of the bracket; ``sigma`` itself when ``A`` is positive definite.
    The result is a correlation matrix (PSD, unit diagonal). Unlike :func:`nearest_correlation`
    it is not the nearest one (a few % further in the tests), and it is a repair of eq 2.14's
    structure rather than a projection: it keeps ``sigma`` iff ``A`` is PSD, so it can change a
    ``sigma`` that is PSD only thanks to the floor ``c 11^T``. It is what :class:`StructuredSampler`
    samples, so the dense and structured samplers agree.
    """
    _check_square_symmetric(sigma)
    if not 0 <= c <= 1:
        raise RegularizerConfigError(f"c must be in [0, 1], got {c!r}")
    f, shared, _ = _spectral_parts(sigma.clone(), float(c))
    out = f @ f.T
    if shared is not None:
        out = out + shared[:, None] * shared[None, :]
    out = _sym(out)
    out.fill_diagonal_(1.0)
    return out


def safe_factor(c: Tensor) -> Tensor:
    """A factor ``L`` with ``L L^T`` = the PSD part of the symmetric matrix ``c``; never fails.

    Tries a Cholesky factorisation (fast, triangular); if ``c`` is not numerically positive
    definite (e.g. the eigenvalues of about -1e-5 that CVXPY/SCS leaves at n = 1024) it falls back
    to ``V diag(sqrt(max(w, 0)))`` from an eigendecomposition, so ``L L^T`` is the nearest PSD
    matrix to ``c`` in Frobenius norm.
    """
    _check_square_symmetric(c)
    cs = _sym(c)
    chol, info = torch.linalg.cholesky_ex(cs)
    if int(info) == 0 and torch.isfinite(chol).all():
        return chol
    w, v = torch.linalg.eigh(cs)
    return v * w.clamp_min(0.0).sqrt()


# ----------------------------------------------------------------------------------------------
# Samplers
# ----------------------------------------------------------------------------------------------


def _check_layer_shape(shape: tuple[int, int, int]) -> tuple[int, int, int]:
    try:
        c, h, w = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise RegularizerConfigError(f"shape must be (C, H, W), got {shape!r}") from None
    if min(c, h, w) < 1 or len(tuple(shape)) != 3:
        raise RegularizerConfigError(f"shape must be (C, H, W) of positive integers, got {shape!r}")
    return c, h, w


class CorrelatedNormalSampler:
    """Draws ``(batch, C, H, W)`` samples with ``N(0, 1)`` marginals and correlation ``Sigma``.

    Call :meth:`refresh` with the producing convolution's kernel ``(C, C_in, kh, kw)`` whenever
    the kernels change (the correlation's tuning term depends on them); samples are on the
    device and in the dtype of that kernel. Plain object (not an ``nn.Module``): it holds no
    parameters and nothing that belongs in a checkpoint.
    """

    def __init__(self, shape: tuple[int, int, int], params: CorrelationParams | None = None) -> None:
        self.shape = _check_layer_shape(shape)
        self.params = params if params is not None else CorrelationParams()
        if not isinstance(self.params, CorrelationParams):
            raise RegularizerConfigError(
                f"params must be a CorrelationParams, got {type(self.params).__name__}"
            )
        self.n = self.shape[0] * self.shape[1] * self.shape[2]
        self._ready = False
        self.repaired = False  # whether the last refresh had to repair an invalid Sigma

    def _check_ready(self) -> None:
        if not self._ready:
            raise RuntimeError(f"{type(self).__name__}: call refresh(weight) before sampling")

    def refresh(self, weight: Tensor) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def sample(self, batch: int, *, generator: torch.Generator | None = None) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def covariance(self) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={self.shape}, params={self.params})"


def _check_repair(ncm_method: str, ncm_kw: dict | None = None) -> None:
    if ncm_method not in REPAIR_METHODS:
        raise RegularizerConfigError(
            f"unknown repair / nearest-correlation method {ncm_method!r}; choose one of {REPAIR_METHODS}"
        )
    if ncm_kw and ncm_method == "spectral":
        raise RegularizerConfigError(f"ncm_kw {sorted(ncm_kw)} apply to ncm_method in {NCM_METHODS}, not to 'spectral'")


def _check_batch(batch: int) -> int:
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 0:
        raise RegularizerConfigError(f"batch must be a non-negative integer, got {batch!r}")
    return batch


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
        self.n_clipped = 0
        self._factor: Tensor | None = None
        self._shared: Tensor | None = None

    @torch.no_grad()
    def refresh(self, weight: Tensor) -> None:
        _check_weight(weight, self.shape[0])
        _, h, w = self.shape
        sigma = correlation_matrix(weight, h, w, self.params, dtype=self.dtype)
        shared = None
        if self.ncm_method == "spectral":
            factor, shared, self.n_clipped = _spectral_parts(sigma, self.params.c)
            self.repaired = self.n_clipped > 0
        else:
            factor, info = torch.linalg.cholesky_ex(sigma)
            self.repaired = int(info) != 0
            if self.repaired:
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
        self.n_clipped = 0
        self.clip_fro = 0.0
        self.repair_used: str | None = None
        self._dense: DenseSampler | None = None  # the dense nearest-correlation procedure, when in use
        self._warned = False

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
        _check_weight(weight, self.shape[0])
        dev, dt = weight.device, weight.dtype
        blocks, q_y, q_xt, v2, mu = self._spatial_on(dev, dt)
        t = tuning_matrix(weight, self.params)  # float64, on weight's device
        lam, u = torch.linalg.eigh(t)
        g2 = lam[:, None] * mu[None, :] + self.params.delta  # eigenvalues of T (x) S + delta I
        neg = g2 < 0
        self.n_clipped = int(neg.sum())
        self.clip_fro = float(g2[neg].square().sum().sqrt()) if self.n_clipped else 0.0
        self._dense = None
        self.repair_used = None
        if self.n_clipped and self.ncm_method != "spectral":
            if self.n <= self.ncm_max_units:
                self._refresh_dense_ncm(weight)
                return
            if not self._warned:
                warnings.warn(
                    f"StructuredSampler{self.shape}: Sigma needs repair ({self.n_clipped} negative eigenvalues) "
                    f"and n = {self.n} > ncm_max_units = {self.ncm_max_units}, where the nearest correlation "
                    f"matrix (ncm_method={self.ncm_method!r}, eq 2.17) is not computed; using the spectral "
                    "repair instead (about 2 % further from Sigma). For eq 2.17 use sampler=dense; to choose the "
                    "spectral repair explicitly, ncm_method=spectral. See docs/decisions/correlation.md.",
                    RuntimeWarning,
                    stacklevel=2,
                )
                self._warned = True
        self.repaired = self.n_clipped > 0
        if self.repaired:
            self.repair_used = "spectral"
        g2 = g2.clamp_min(0.0)
        # diagonal of (U (x) V) diag(g2) (U (x) V)^T + c 11^T, as a (C, HW) map
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

    def _refresh_dense_ncm(self, weight: Tensor) -> None:
        """The dense nearest-correlation procedure (:class:`DenseSampler`) for this refresh."""
        dense = DenseSampler(self.shape, self.params, self.ncm_method, ncm_kw=self.ncm_kw or None)
        dense.refresh(weight)
        self._dense = dense
        self.repaired = dense.repaired
        self.repair_used = self.ncm_method if dense.repaired else None
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


def build_sampler(
    kind: str,
    shape: tuple[int, int, int],
    params: CorrelationParams | None = None,
    ncm_method: str = DEFAULT_REPAIR,
    **kw: object,
) -> CorrelatedNormalSampler:
    """Build a sampler: ``kind`` in ``{"dense", "structured"}``; ``shape = (C, H, W)``.

    ``ncm_method`` (one of :data:`REPAIR_METHODS`, default ``higham``: eq 2.17) applies to both;
    with the same method both sample the same distribution (the structured sampler up to
    ``ncm_max_units`` units for the nearest-correlation methods, see :class:`StructuredSampler`).
    Extra keywords: ``dtype``, ``ncm_kw`` (dense); ``ncm_max_units``, ``ncm_kw`` (structured).
    """
    if kind == "dense":
        return DenseSampler(shape, params, ncm_method, **kw)  # type: ignore[arg-type]
    if kind == "structured":
        bad = sorted(set(kw) - {"ncm_max_units", "ncm_kw"})
        if bad:
            raise RegularizerConfigError(
                f"unexpected options for the structured sampler: {bad}; valid: ['ncm_kw', 'ncm_max_units']"
            )
        return StructuredSampler(shape, params, ncm_method, **kw)  # type: ignore[arg-type]
    raise RegularizerConfigError(f"unknown sampler kind {kind!r}; choose one of {SAMPLER_KINDS}")
