"""Correlation structure of Dutta (2019) §2.3 and the correlated-normal samplers (§2.2.2)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bioreg.layers.base import RegularizerConfigError
from bioreg.layers.correlation import (
    CorrelationParams,
    DenseSampler,
    StructuredSampler,
    build_sampler,
    correlation_matrix,
    nearest_correlation,
    safe_factor,
    spatial_eigh,
    spatial_matrix,
    spectral_repair,
    tuning_matrix,
)

# Parameter sets.
# DEFAULT: Fig 2.3. With these S is PSD on small grids and Sigma needs no repair.
DEFAULT = CorrelationParams()
# INDEF_S: S = [a - b d]^+ is indefinite on a 6x6 grid (checked below), but the diagonal slack
# 1 - a - c = 0.41 keeps T (x) S + (1 - a - c) I positive definite: no repair, exact eq 2.14.
INDEF_S = CorrelationParams(a=0.5, b=0.35, c=0.09, tau=1.87)
# REPAIR: S indefinite and slack only 0.05, with two nearly identical kernels: eq 2.14 itself is
# not PSD and both samplers must repair it.
REPAIR = CorrelationParams(a=0.9, b=0.636, c=0.05, tau=1.87)


def _weight(c: int, seed: int, similar: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(c, 3, 3, 3, generator=g)
    if similar:  # kernels that are small perturbations of one kernel: k_ij close to 1
        w = w[:1].repeat(c, 1, 1, 1) + 0.1 * w
    return w


def _close(a: torch.Tensor, b: torch.Tensor, atol: float) -> None:
    # (torch.testing.assert_close costs seconds of import time on first use)
    assert a.shape == b.shape and a.dtype == b.dtype
    err = float((a - b).abs().max()) if a.numel() else 0.0
    assert err <= atol, f"max abs difference {err:.3g} > {atol:.3g}"


def _is_correlation(m: torch.Tensor, tol: float) -> None:
    n = m.shape[0]
    assert torch.allclose(m, m.T, atol=1e-12)
    assert torch.allclose(m.diagonal(), torch.ones(n, dtype=m.dtype), atol=1e-10)
    assert float(torch.linalg.eigvalsh(m).min()) >= -tol


# ---------------------------------------------------------------------------------- eq 2.14


def test_sigma_matches_eq_2_14_double_loop():
    # two hand-chosen 1-input-channel 2x2 kernels with cosine similarity 1/sqrt(2)
    w = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]], [[[1.0, 1.0], [0.0, 0.0]]]])
    p = CorrelationParams(a=0.3, b=0.05, c=0.1, tau=1.5, distance_scale=1.5)
    h = wd = 3
    k = np.array([[1.0, 1 / math.sqrt(2)], [1 / math.sqrt(2), 1.0]])
    n = 2 * h * wd
    expected = np.zeros((n, n))
    for i in range(n):
        m1, y1, x1 = i // (h * wd), (i % (h * wd)) // wd, (i % (h * wd)) % wd  # eq 3.3 ordering
        for j in range(n):
            m2, y2, x2 = j // (h * wd), (j % (h * wd)) // wd, (j % (h * wd)) % wd
            if i == j:
                expected[i, j] = 1.0
                continue
            d = 1.5 * math.sqrt((x1 - x2) ** 2 + (y1 - y2) ** 2)
            expected[i, j] = max(0.3 - 0.05 * d, 0.0) * math.exp((k[m1, m2] - 1) / 1.5) + 0.1
    got = correlation_matrix(w, h, wd, p).numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    # [.]^+ : with b = 0.1 the spatial term vanishes beyond d = 3, i.e. 2 pixels at scale 1.5
    s = spatial_matrix(3, 3, CorrelationParams(a=0.3, b=0.1, distance_scale=1.5)).numpy()
    assert s[0, 8] == 0.0 and s[0, 1] == pytest.approx(0.3 - 0.15)


def test_tuning_matrix_is_eq_2_16_through_exp():
    w = _weight(4, 0)
    flat = w.reshape(4, -1).double()
    k = (flat @ flat.T) / (flat.norm(dim=1)[:, None] * flat.norm(dim=1)[None, :])
    expected = torch.exp((k - 1) / DEFAULT.tau)
    _close(tuning_matrix(w, DEFAULT), expected, atol=1e-12)


def test_indefinite_s_parameter_sets_are_indefinite():
    assert float(torch.linalg.eigvalsh(spatial_matrix(6, 6, INDEF_S)).min()) < -0.01
    assert float(torch.linalg.eigvalsh(spatial_matrix(6, 6, REPAIR)).min()) < -0.04
    sigma = correlation_matrix(_weight(2, 1, similar=True), 6, 6, REPAIR)
    assert float(torch.linalg.eigvalsh(sigma).min()) < -0.01


@pytest.mark.parametrize("shape", [(6, 6), (5, 4), (1, 3), (7, 7)])
def test_spatial_eigh_blocks_reconstruct_s(shape):
    e = spatial_eigh(*shape, INDEF_S)
    s = spatial_matrix(*shape, INDEF_S)
    n = shape[0] * shape[1]
    assert e.max_offblock < 1e-12  # reflection symmetry makes Q^T S Q block diagonal
    _close(e.v @ torch.diag(e.mu) @ e.v.T, s, atol=1e-12)
    _close(e.v.T @ e.v, torch.eye(n, dtype=torch.float64), atol=1e-12)


# ---------------------------------------------------------------------------------- samplers


@pytest.mark.parametrize("params", [DEFAULT, INDEF_S], ids=["default", "indefinite_S"])
def test_samplers_reproduce_eq_2_14_when_no_repair_is_needed(params):
    w = _weight(2, 2)
    sigma = correlation_matrix(w, 6, 6, params)
    dense, struct = build_sampler("dense", (2, 6, 6), params), build_sampler("structured", (2, 6, 6), params)
    dense.refresh(w)
    struct.refresh(w)
    assert not dense.repaired and not struct.repaired and struct.n_clipped == 0
    _close(dense.covariance(), sigma, atol=1e-10)
    _close(struct.covariance(), sigma, atol=1e-10)


# a + c > 1: negative diagonal slack, repaired as well
NEG_SLACK = CorrelationParams(a=0.95, b=0.05, c=0.1)


@pytest.mark.parametrize(
    "params,similar,repaired",
    [(DEFAULT, False, False), (INDEF_S, False, False), (REPAIR, True, True), (NEG_SLACK, True, True)],
    ids=["default", "indefS", "repair", "negative_slack"],
)
def test_dense_and_structured_spectral_repair_sample_the_same_matrix(params, similar, repaired):
    # both samplers "must produce the same distribution" -- zero-mean normals, so equal covariance
    # matrices; with ncm_method=spectral the dense sampler applies the structured repair densely
    w = _weight(2, 1, similar=similar)
    sigma = correlation_matrix(w, 6, 6, params)
    dense = build_sampler("dense", (2, 6, 6), params, ncm_method="spectral")
    struct = build_sampler("structured", (2, 6, 6), params, ncm_method="spectral")
    dense.refresh(w)
    struct.refresh(w)
    assert dense.repaired == struct.repaired == repaired
    assert dense.n_clipped == struct.n_clipped
    r_dense, r_struct = dense.covariance(), struct.covariance()
    _close(r_dense, r_struct, atol=1e-12)  # measured <= 2e-15
    _close(spectral_repair(sigma, params.c), r_struct, atol=1e-12)
    _is_correlation(r_dense, 1e-10)
    if not repaired:
        _close(r_dense, sigma, atol=1e-12)
    else:
        assert float((r_dense - sigma).abs().max()) > 1e-3  # the repair really changed Sigma


def test_thesis_ncm_repair_is_nearest_and_spectral_repair_is_close_to_it():
    w = _weight(2, 1, similar=True)
    sigma = correlation_matrix(w, 6, 6, REPAIR)
    higham, struct = DenseSampler((2, 6, 6), REPAIR, "higham"), StructuredSampler((2, 6, 6), REPAIR,
                                                                                  "spectral")
    higham.refresh(w)
    struct.refresh(w)
    assert higham.repaired and struct.repaired and struct.n_clipped > 0
    r_ncm, r_struct = higham.covariance(), struct.covariance()
    _is_correlation(r_ncm, 1e-10)
    dist_ncm = float(torch.linalg.norm(sigma - r_ncm))
    dist_struct = float(torch.linalg.norm(sigma - r_struct))
    # Higham's answer is the nearest; the spectral repair is within 5 % of it (measured 1.9 %):
    # ncm_method=higham is the thesis's procedure, not the structured sampler's distribution
    assert dist_ncm <= dist_struct + 1e-9
    assert dist_struct <= 1.05 * dist_ncm
    assert 1e-4 < float((r_ncm - r_struct).abs().max()) < 0.01  # measured 0.0018


def test_spectral_repair_closed_form_when_only_the_rank_one_floor_keeps_sigma_psd():
    # A = H diag(w) H^T with H the normalised 4x4 Hadamard basis (constant diagonal sum(w)/4 = 0.5)
    # and the negative eigenvalue on the all-ones direction; Sigma = A + c 11^T with c = 0.5 has
    # unit diagonal and is positive definite (eigenvalue -0.1 + 4c = 1.9), but A is not PSD. The
    # repair clips A (not Sigma): (P+(A) + c 11^T) / (2.1 / 4 + c).
    h = torch.tensor([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]],
                     dtype=torch.float64).T / 2
    lam = torch.tensor([-0.1, 0.5, 0.7, 0.9], dtype=torch.float64)
    c = 0.5
    sigma = (h * lam) @ h.T + c
    assert int(torch.linalg.cholesky_ex(sigma)[1]) == 0  # Cholesky of Sigma alone would not repair
    expected = ((h * lam.clamp_min(0)) @ h.T + c) / (2.1 / 4 + c)
    _close(spectral_repair(sigma, c), expected, atol=1e-14)
    # the repair is of eq 2.14's structure, not a projection: Sigma is kept iff A = Sigma - c 11^T is PSD
    valid = (h * lam.abs()) @ h.T + (1 - 2.2 / 4)
    _close(spectral_repair(valid, 1 - 2.2 / 4), valid, atol=1e-14)


@pytest.mark.parametrize("params,similar", [(INDEF_S, False), (REPAIR, True)], ids=["indefS", "repair"])
def test_samples_of_each_sampler_match_the_other_samplers_covariance(params, similar):
    # N samples per sampler; each sample correlation has sd <= 1 / sqrt(N). Cross check: dense
    # samples against the structured covariance and vice versa with 5 / sqrt(N) (= 0.035); the
    # two empirical matrices differ by sd <= sqrt(2 / N): bound 5 sqrt(2 / N) (= 0.05).
    n_samples = 20000
    w = _weight(2, 3, similar=similar)
    dense, struct = build_sampler("dense", (2, 6, 6), params), build_sampler("structured", (2, 6, 6), params)
    dense.refresh(w)
    struct.refresh(w)
    emp = {}
    for name, smp, seed in (("dense", dense, 8), ("struct", struct, 9)):
        x = smp.sample(n_samples, generator=torch.Generator().manual_seed(seed))
        emp[name] = torch.corrcoef(x.reshape(n_samples, -1).double().T)
    bound = 5 / math.sqrt(n_samples)
    assert float((emp["dense"] - struct.covariance()).abs().max()) < bound
    assert float((emp["struct"] - dense.covariance()).abs().max()) < bound
    assert float((emp["dense"] - emp["struct"]).abs().max()) < 5 * math.sqrt(2 / n_samples)
    # the check is not vacuous: both targets are far from independence
    assert float((dense.covariance() - torch.eye(72, dtype=torch.float64)).abs().max()) > 0.2


@pytest.mark.parametrize("kind", ["dense", "structured"])
@pytest.mark.parametrize(
    "params,similar",
    [(DEFAULT, False), (INDEF_S, False), (REPAIR, True)],
    ids=["default", "indefS", "repair"],
)
def test_empirical_correlation_matches_covariance(kind, params, similar):
    # N samples; the sample correlation of a pair has standard deviation (1 - rho^2) / sqrt(N) <=
    # 1 / sqrt(N), so 5 / sqrt(N) is a 5-sigma bound for each of the 2556 pairs (two-sided tail
    # 5.7e-7 per pair, union bound 1.5e-3 for the whole matrix). Variances: sd sqrt(2 / N).
    n_samples = 20000
    w = _weight(2, 3, similar=similar)
    sampler = build_sampler(kind, (2, 6, 6), params)
    sampler.refresh(w)
    x = sampler.sample(n_samples, generator=torch.Generator().manual_seed(7))
    assert x.shape == (n_samples, 2, 6, 6) and x.dtype == torch.float32
    flat = x.reshape(n_samples, -1).double()
    cov = sampler.covariance()
    emp = torch.corrcoef(flat.T)
    assert float((emp - cov).abs().max()) < 5 / math.sqrt(n_samples)
    var = flat.var(dim=0)
    assert float((var - 1).abs().max()) < 5 * math.sqrt(2 / n_samples)
    assert float(flat.mean(dim=0).abs().max()) < 5 / math.sqrt(n_samples)
    # the target is far from independence, so the bound above is a real check
    assert float((cov - torch.eye(cov.shape[0], dtype=cov.dtype)).abs().max()) > 0.2


def test_dense_and_structured_covariances_agree_on_larger_layer():
    w = _weight(3, 4)
    d, s = DenseSampler((3, 8, 7)), StructuredSampler((3, 8, 7))
    d.refresh(w)
    s.refresh(w)
    _close(d.covariance(), s.covariance(), atol=1e-10)


def test_generator_makes_samples_reproducible_and_refresh_tracks_weights():
    s = StructuredSampler((2, 4, 4))
    s.refresh(_weight(2, 0))
    a = s.sample(5, generator=torch.Generator().manual_seed(3))
    b = s.sample(5, generator=torch.Generator().manual_seed(3))
    _close(a, b, atol=0)
    cov0 = s.covariance()
    s.refresh(_weight(2, 1, similar=True))
    assert float((s.covariance() - cov0).abs().max()) > 0.01
    s.refresh(_weight(2, 0).double())
    assert s.sample(2).dtype == torch.float64


# ---------------------------------------------------------------------------------- NCM


def _random_invalid(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(n, n, generator=g, dtype=torch.float64) * 2 - 1
    a = (a + a.T) / 2
    a.fill_diagonal_(1.0)
    assert float(torch.linalg.eigvalsh(a).min()) < -1.0
    return a


def test_higham_reproduces_published_example():
    # Higham (2002), IMA J. Numer. Anal. 22, §4: nearest correlation matrix of this 3x3 matrix
    a = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 1.0]], dtype=torch.float64)
    expected = torch.tensor(
        [[1.0, 0.7607, 0.1573], [0.7607, 1.0, 0.7607], [0.1573, 0.7607, 1.0]], dtype=torch.float64
    )
    _close(nearest_correlation(a, "higham"), expected, atol=1e-4)


@pytest.mark.parametrize(
    "n,seed",
    # n = 200: CVXPY/SCS alone takes about 8 s on the shared 2-core CPU -> marked slow
    [(50, 0), (100, 1), pytest.param(200, 2, marks=pytest.mark.slow)],
)
def test_fast_ncm_matches_cvxpy(n, seed):
    a = _random_invalid(n, seed)
    ref = nearest_correlation(a, "cvxpy")  # SCS, the thesis's CVXPY formulation (eq 2.17)
    d_ref = float(torch.linalg.norm(a - ref))
    for method in ("higham", "clip"):
        b = nearest_correlation(a, method)
        _is_correlation(b, 1e-8 * n)
    d_h = float(torch.linalg.norm(a - nearest_correlation(a, "higham")))
    d_c = float(torch.linalg.norm(a - nearest_correlation(a, "clip")))
    assert abs(d_h - d_ref) <= 0.03 * d_ref  # measured |diff| < 1e-5 relative (SCS tolerance)
    assert d_h <= d_c  # clipping is not the nearest: measured about 4 % further here (3.5 % at n = 200)
    assert d_c <= 1.10 * d_ref
    # SCS leaves eigenvalues of about -1e-5: unit diagonal, symmetric, nearly PSD
    assert torch.allclose(ref.diagonal(), torch.ones(n, dtype=ref.dtype))
    assert float(torch.linalg.eigvalsh(ref).min()) > -1e-4


def test_ncm_leaves_a_valid_correlation_matrix_unchanged():
    w = _weight(2, 2)
    sigma = correlation_matrix(w, 4, 4, DEFAULT)
    for method in ("higham", "clip"):
        _close(nearest_correlation(sigma, method), sigma, atol=1e-7)


# ---------------------------------------------------------------------------------- safe_factor


def test_safe_factor_handles_slightly_negative_eigenvalue():
    n = 30
    g = torch.Generator().manual_seed(5)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    lam = torch.linspace(0.1, 3.0, n, dtype=torch.float64)
    lam[0] = -1e-5
    m = (q * lam) @ q.T
    assert int(torch.linalg.cholesky_ex(m)[1]) != 0  # plain Cholesky fails
    f = safe_factor(m)
    assert torch.isfinite(f).all()
    psd_part = (q * lam.clamp_min(0)) @ q.T
    _close(f @ f.T, psd_part, atol=1e-12)
    pd = psd_part + 0.5 * torch.eye(n, dtype=torch.float64)
    _close(safe_factor(pd), torch.linalg.cholesky(pd), atol=1e-12)


# ---------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("kind", ["dense", "structured"])
def test_refresh_rejects_bad_weights(kind):
    s = build_sampler(kind, (2, 4, 4), DEFAULT)
    with pytest.raises(RuntimeError, match="refresh"):
        s.sample(1)
    with pytest.raises(RegularizerConfigError, match="4-D"):
        s.refresh(torch.randn(2, 27))
    with pytest.raises(RegularizerConfigError, match="C=2"):
        s.refresh(torch.randn(3, 3, 3, 3))
    bad = torch.randn(2, 3, 3, 3)
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(RegularizerConfigError, match="non-finite"):
        s.refresh(bad)


def test_unknown_choices_and_bad_parameters_raise_clear_errors():
    with pytest.raises(RegularizerConfigError, match="dense.*structured"):
        build_sampler("cholesky", (2, 4, 4), DEFAULT)
    with pytest.raises(RegularizerConfigError, match="higham.*clip.*cvxpy"):
        nearest_correlation(torch.eye(3, dtype=torch.float64), "newton")
    with pytest.raises(RegularizerConfigError, match="spectral.*higham.*clip.*cvxpy"):
        build_sampler("dense", (2, 4, 4), DEFAULT, ncm_method="newton")
    with pytest.raises(RegularizerConfigError, match="spectral.*higham.*clip.*cvxpy"):
        build_sampler("structured", (2, 4, 4), DEFAULT, ncm_method="newton")
    with pytest.raises(RegularizerConfigError, match="ncm_kw.*not to 'spectral'"):
        DenseSampler((2, 4, 4), DEFAULT, "spectral", ncm_kw={"tol": 1e-6})
    with pytest.raises(RegularizerConfigError, match=r"c must be in \[0, 1\]"):
        spectral_repair(torch.eye(3, dtype=torch.float64), 1.5)
    with pytest.raises(RegularizerConfigError, match="cvxpy solver"):
        nearest_correlation(torch.eye(3, dtype=torch.float64), "cvxpy", solver="NOPE")
    for field, value in [("a", float("nan")), ("b", float("inf")), ("tau", 0.0), ("c", 1.5), ("b", -1.0)]:
        with pytest.raises(RegularizerConfigError, match=f"CorrelationParams.{field}"):
            CorrelationParams(**{field: value})
    with pytest.raises(RegularizerConfigError, match="distance_scale"):
        CorrelationParams(distance_scale=0.0)
    with pytest.raises(RegularizerConfigError, match=r"\(C, H, W\)"):
        build_sampler("structured", (2, 4), DEFAULT)
    with pytest.raises(RegularizerConfigError, match="square"):
        nearest_correlation(torch.zeros(2, 3, dtype=torch.float64))


def test_negative_diagonal_slack_is_repaired_not_rejected():
    # a + c > 1: eq 2.14 asks for correlations above 1 between identical kernels; both samplers
    # must still produce a valid correlation matrix
    p = CorrelationParams(a=0.95, b=0.05, c=0.1)
    w = _weight(1, 0).repeat(2, 1, 1, 1)
    assert float(torch.linalg.eigvalsh(correlation_matrix(w, 3, 3, p)).min()) < 0
    for kind in ("dense", "structured"):
        s = build_sampler(kind, (2, 3, 3), p)
        s.refresh(w)
        assert s.repaired
        _is_correlation(s.covariance(), 1e-10)
        assert torch.isfinite(s.sample(4)).all()


@pytest.mark.parametrize("shape", [(3, 6, 6), (2, 5, 4)])
def test_structured_sample_path_equals_dense_eigenvector_formula(shape):
    # sample() uses the reflection blocks; recompute the same draw with the full eigenvectors V of S:
    # x = (U (G o Z) V^T + sqrt(c) z0) / std, with Z, z0 drawn in the same order from the same seed
    c, h, w = shape
    s = StructuredSampler(shape, REPAIR, "spectral")
    s.refresh(_weight(c, 6, similar=True).double())
    x = s.sample(3, generator=torch.Generator().manual_seed(11))
    g = torch.Generator().manual_seed(11)
    z = torch.randn(3, c, h * w, generator=g, dtype=torch.float64)
    z0 = torch.randn(3, 1, 1, generator=g, dtype=torch.float64)
    e = spatial_eigh(h, w, REPAIR)
    lam, u = torch.linalg.eigh(tuning_matrix(_weight(c, 6, similar=True).double(), REPAIR))
    g2 = (lam[:, None] * e.mu[None, :] + REPAIR.delta).clamp_min(0)
    ref = u @ (g2.sqrt() * z) @ e.v.T + math.sqrt(REPAIR.c) * z0
    std = ((u.square() @ g2) @ e.v.square().T + REPAIR.c).sqrt()
    _close(x, (ref / std).reshape(3, c, h, w), 1e-10)


# ------------------------------------------------------------------------- eq 2.17 as the default repair


def test_default_repair_solves_eq_2_17_cvxpy_reference_and_spectral_is_further():
    # eq 2.17 (minimise ||Sigma - B||_F over correlation matrices B) solved by CVXPY is the reference.
    # Measured: Higham (the default of both samplers) 0.04959275465, CVXPY/SCS(eps 1e-9) 0.04959275507
    # (8e-9 relative), spectral 0.05053891 (1.9 % further).
    from bioreg.layers.correlation import DEFAULT_REPAIR

    assert DEFAULT_REPAIR == "higham"
    w = _weight(2, 1, similar=True)
    sigma = correlation_matrix(w, 6, 6, REPAIR)
    ref = nearest_correlation(sigma, "cvxpy", solver="SCS", eps=1e-9, max_iters=100000)
    d_ref = float(torch.linalg.norm(sigma - ref))
    dense, struct = build_sampler("dense", (2, 6, 6), REPAIR), build_sampler("structured", (2, 6, 6), REPAIR)
    assert dense.ncm_method == struct.ncm_method == "higham"
    dense.refresh(w)
    struct.refresh(w)
    assert dense.repaired and struct.repaired and struct.repair_used == "higham"
    d_h = float(torch.linalg.norm(sigma - dense.covariance()))
    assert abs(d_h - d_ref) <= 1e-6 * d_ref
    _close(dense.covariance(), ref, atol=1e-5)  # the minimiser is unique (strictly convex): measured 2e-11
    _is_correlation(dense.covariance(), 1e-10)
    # both samplers sample the same (eq 2.17) matrix by default
    _close(struct.covariance(), dense.covariance(), atol=1e-12)
    # the fast option is further from Sigma than the optimum
    spectral = build_sampler("structured", (2, 6, 6), REPAIR, ncm_method="spectral")
    spectral.refresh(w)
    d_s = float(torch.linalg.norm(sigma - spectral.covariance()))
    assert d_s > 1.01 * d_ref


def test_structured_sampler_above_ncm_max_units_falls_back_to_spectral_and_says_so():
    w = _weight(2, 1, similar=True)
    sigma = correlation_matrix(w, 6, 6, REPAIR)
    s = StructuredSampler((2, 6, 6), REPAIR, "higham", ncm_max_units=71)  # n = 72
    with pytest.warns(RuntimeWarning, match=r"n = 72 > ncm_max_units = 71.*spectral repair"):
        s.refresh(w)
    assert s.repaired and s.repair_used == "spectral"
    _close(s.covariance(), spectral_repair(sigma, REPAIR.c), atol=1e-12)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s.refresh(w)  # warned once per sampler
    # no repair needed: Sigma itself, no warning, whatever the limit
    ok = StructuredSampler((2, 6, 6), DEFAULT, "higham", ncm_max_units=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ok.refresh(_weight(2, 2))
    assert ok.repair_used is None and not ok.repaired
    _close(ok.covariance(), correlation_matrix(_weight(2, 2), 6, 6, DEFAULT), atol=1e-10)
    with pytest.raises(RegularizerConfigError, match="ncm_max_units must be an integer >= 0"):
        StructuredSampler((2, 6, 6), REPAIR, ncm_max_units=-1)
    with pytest.raises(RegularizerConfigError, match=r"valid: \['ncm_kw', 'ncm_max_units'\]"):
        build_sampler("structured", (2, 6, 6), REPAIR, dtype=torch.float32)


# ------------------------------------------------------------------------- the distance scale of eq 2.14


def test_distance_scale_names_and_numbers():
    from bioreg.layers.base import ContextError, InsertionContext
    from bioreg.layers.correlation import check_distance_scale, resolve_distance_scale

    assert check_distance_scale("grid") == "grid" and check_distance_scale("input") == "input"
    assert check_distance_scale(2) == 2.0 and check_distance_scale("2.5") == 2.5
    for bad in ("pixels", 0, -1.0, float("nan"), True, None):
        with pytest.raises(RegularizerConfigError, match="distance_scale must be one of"):
            check_distance_scale(bad)
    ctx = InsertionContext(point="layer3", producer=None, shape=(4, 8, 8), stride=(2, 2))
    assert resolve_distance_scale("grid", ctx) == 1.0
    assert resolve_distance_scale(3.0, ctx) == 3.0
    assert resolve_distance_scale("input", ctx) == 2.0
    lazy = InsertionContext(point="layer3", producer=None, shape=(4, 8, 8), stride=lambda: (4, 4))
    assert resolve_distance_scale("input", lazy) == 4.0
    with pytest.raises(ContextError, match="cumulative stride of point 'p'.*give distance_scale a number"):
        resolve_distance_scale("input", InsertionContext(point="p", producer=None, shape=(1, 2, 2)))
    with pytest.raises(RegularizerConfigError, match=r"different strides along y and x \(2, 1\)"):
        resolve_distance_scale("input",
                               InsertionContext(point="p", producer=None, shape=(1, 2, 2), stride=(2, 1)))
