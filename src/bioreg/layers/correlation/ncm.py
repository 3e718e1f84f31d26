"""Repair of an invalid Sigma: the nearest correlation matrix (eq 2.17) and the spectral repair.

``nearest_correlation`` (Higham's alternating projections, eigenvalue clipping, or CVXPY — imported
only when ``method="cvxpy"``, from the ``cvxpy`` extra), ``spectral_repair`` (eq 2.14's structure,
what the structured sampler samples) and ``safe_factor``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from bioreg.errors import require_extra
from bioreg.layers.base import RegularizerConfigError

__all__ = [
    "NCM_METHODS",
    "REPAIR_METHODS",
    "DEFAULT_REPAIR",
    "nearest_correlation",
    "spectral_repair",
    "safe_factor",
]

NCM_METHODS = ("higham", "clip", "cvxpy")
#: Repairs of an invalid Sigma both samplers accept: a nearest correlation matrix (eq 2.17; ``higham``
#: is the default) or the fast spectral repair of eq 2.14's structure.
REPAIR_METHODS = ("spectral", *NCM_METHODS)
#: Default repair of both samplers and of the CG/CP modules: Higham's nearest correlation matrix, which
#: solves eq 2.17.
DEFAULT_REPAIR = "higham"


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
    require_extra("cvxpy", "cvxpy", "nearest_correlation(method='cvxpy')")
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


def _check_positive_variance(var: Tensor, what: str) -> None:
    """Every unit of a repaired Sigma must keep a positive variance: raise on the CPU; elsewhere a
    device-side assert (no host read in the refresh)."""
    if var.device.type == "cpu":
        if not bool((var > 0).all()):
            raise RuntimeError(f"{what} produced a unit with zero variance")
        return
    torch._assert_async((var > 0).all(), f"{what} produced a unit with zero variance")


def _spectral_parts(sigma: Tensor, c: float) -> tuple[Tensor, Tensor | None, int | Tensor]:
    """Factor ``(F, s, n_clipped)`` with ``F F^T + s s^T`` = the spectral repair of ``sigma``.

    ``sigma`` must have unit diagonal and ``c`` is eq 2.14's floor. If ``A = sigma - c 11^T`` is
    positive definite (Cholesky of ``sigma`` succeeds and ``c 1^T sigma^-1 1 < 1``, the matrix
    determinant lemma) nothing is repaired: ``F`` is the Cholesky factor of ``sigma``, ``s`` is
    ``None``. Otherwise ``A = W diag(w) W^T`` (dense ``eigh``), ``F = D^-1/2 W diag(sqrt(max(w, 0)))``,
    ``s = D^-1/2 sqrt(c) 1`` with ``D = diag(P+(A)) + c``. ``sigma`` is overwritten in that case.
    ``n_clipped`` is then a 0-dim tensor on ``sigma``'s device (not read back here); the test of
    ``A`` (Cholesky + lemma) does read two numbers back, since it chooses the factor.
    """
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
    a = sigma.sub_(c)  # T (x) S + delta I (the diagonal 1 - c = a + delta)
    w, f = torch.linalg.eigh(_sym(a))
    del a, sigma
    n_clipped = (w < 0).sum()
    f.mul_(w.clamp_min(0.0).sqrt())
    var = f.square().sum(dim=1) + c
    _check_positive_variance(var, "spectral correlation repair")
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
