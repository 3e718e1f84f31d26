"""Tests of the noise modules of Dutta (2019) §2.2 (src/bioreg/layers/noise.py).

Tolerances are stated per test; statistical ones are 5 standard errors of the estimator at the
given sample count (with the fixed seeds the tests are deterministic).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from scipy import stats
from torch import nn

from bioreg.layers.base import ContextError, InsertionContext, RegularizerConfigError
from bioreg.layers.correlation import CorrelationParams, correlation_matrix
from bioreg.layers.noise import (
    DENSE_MAX_UNITS,
    CorrelatedGaussian,
    CorrelatedPoisson,
    UncorrelatedGaussian,
    UncorrelatedPoisson,
    gumbel_softmax_poisson,
    poisson_icdf,
    poisson_icdf_from_normal,
)
from bioreg.lit.module import place_regularizers
from bioreg.models import AllConvNet

CONF = Path(__file__).resolve().parents[1] / "conf"


def _bound(cls, shape=(3, 4, 5), seed=0, **kw):
    """A correlated module bound to a small conv producing ``shape``; returns (module, conv)."""
    torch.manual_seed(seed)
    conv = nn.Conv2d(2, shape[0], 3, padding=1)
    m = cls(**kw)
    m.bind(InsertionContext(point="layer1", producer=conv, shape=shape))
    return m, conv


def _small_net() -> AllConvNet:
    return AllConvNet(layer1_width=3, width=4, width2=4)  # 16x16 inputs: layer1 is (3, 16, 16)


# ------------------------------------------------------------------------------------------------
# Poisson quantile
# ------------------------------------------------------------------------------------------------
def test_poisson_icdf_equals_scipy_ppf_on_grid():
    u = np.concatenate([np.linspace(0.0005, 0.9995, 1000), [1e-12, 1e-6, 1 - 1e-6, 1 - 1e-10]])
    lam = np.array([0.0, 1e-4, 0.01, 0.3, 1.0, 2.0, 3.7, 10.0, 42.0, 300.0, 5e3, 1e6])
    uu, ll = np.meshgrid(u, lam)
    got = poisson_icdf(torch.tensor(uu), torch.tensor(ll)).numpy()
    np.testing.assert_array_equal(got, stats.poisson.ppf(uu, ll))  # exact integers
    # float32 rates keep their dtype; u = 1 is +inf (scipy's convention), u = 0 is 0 (smallest k >= 0)
    out = poisson_icdf(torch.tensor([0.0, 0.5, 1.0]), torch.tensor([2.0, 2.0, 2.0], dtype=torch.float32))
    assert out.dtype == torch.float32
    assert out.tolist() == [0.0, 2.0, math.inf]


def test_poisson_icdf_from_normal_is_the_copula_step():
    torch.manual_seed(1)
    x = torch.randn(20000)
    lam = torch.rand(20000) * 8.0
    lam[::5] = 0.0
    k = poisson_icdf_from_normal(x, lam)
    ref = stats.poisson.ppf(stats.norm.cdf(x.double().numpy()), lam.double().numpy())
    np.testing.assert_array_equal(k.numpy(), ref)
    assert (k[::5] == 0).all()


# ------------------------------------------------------------------------------------------------
# UG
# ------------------------------------------------------------------------------------------------
def test_ug_variance_equals_activation_and_gradient_reaches_a():
    torch.manual_seed(0)
    n = 20000
    rates = torch.tensor([0.0, 0.5, 3.0])
    a = rates.repeat(n, 1).requires_grad_(True)
    m = UncorrelatedGaussian().train()
    h = m(a)
    var = (h - a).detach().var(0)
    target = rates + 1e-6
    # sample variance of a normal: standard error sigma^2 sqrt(2 / (n - 1)); 5 standard errors
    assert torch.all((var - target).abs() <= 5 * target * math.sqrt(2 / (n - 1)))
    assert torch.allclose((h - a).detach().mean(0), torch.zeros(3), atol=5 * math.sqrt(3.0 / n))
    # re-parameterised: dh/da = 1 + xi / (2 sqrt(a + eps)) with xi = (h - a) / sqrt(a + eps)
    h.sum().backward()
    xi = (h - a).detach() / torch.sqrt(a.detach() + 1e-6)
    expected = 1 + xi / (2 * torch.sqrt(a.detach() + 1e-6))
    assert torch.allclose(a.grad, expected, rtol=1e-4, atol=1e-3)
    assert (a.grad[:, 1:] - 1).abs().mean() > 0.1  # the sigma path is really there


def test_ug_fixed_sigma():
    torch.manual_seed(0)
    n = 20000
    a = torch.full((n, 2), 4.0, requires_grad=True)
    h = UncorrelatedGaussian(sigma=0.5).train()(a)
    assert abs(float((h - a).detach().var()) - 0.25) <= 5 * 0.25 * math.sqrt(2 / (2 * n))
    h.sum().backward()
    assert torch.equal(a.grad, torch.ones_like(a))


# ------------------------------------------------------------------------------------------------
# UP and the Gumbel-softmax relaxation
# ------------------------------------------------------------------------------------------------
def test_up_mean_and_variance_equal_rate_and_gradient_is_identity():
    torch.manual_seed(0)
    n = 20000
    rates = torch.tensor([0.5, 2.0, 7.0])
    a = rates.repeat(n, 1).requires_grad_(True)
    h = UncorrelatedPoisson().train()(a)
    hd = h.detach()
    assert torch.equal(hd, hd.round()) and (hd >= 0).all()  # integer counts
    # standard errors: mean sqrt(lam / n); sample variance sqrt((mu4 - lam^2) / n) = sqrt((lam + 2 lam^2) / n)
    assert torch.all((hd.mean(0) - rates).abs() <= 5 * torch.sqrt(rates / n))
    assert torch.all((hd.var(0) - rates).abs() <= 5 * torch.sqrt((rates + 2 * rates**2) / n))
    w = torch.randn_like(a)
    (h * w).sum().backward()
    assert torch.equal(a.grad, w)  # straight-through: backward as if h = a


def _tv_to_poisson(samples: torch.Tensor, lam: float) -> float:
    counts = np.bincount(samples.long().numpy().ravel(), minlength=60)[:60] / samples.numel()
    return 0.5 * float(np.abs(counts - stats.poisson.pmf(np.arange(60), lam)).sum()) + 0.5 * float(
        stats.poisson.sf(59, lam)
    )


def test_gumbel_softmax_histogram_approaches_poisson_as_k_grows():
    torch.manual_seed(0)
    lam, n = 2.0, 20000
    tvs = []
    for k in (2, 4, 8):
        s = gumbel_softmax_poisson(torch.full((n,), lam), k, temperature=0.5)
        assert s.min() >= 0 and s.max() <= k - 1
        tvs.append(_tv_to_poisson(s, lam))
        # the forward sample is exactly the Poisson truncated to {0..K-1}: TV to Poisson = P(X >= K)
        assert abs(tvs[-1] - stats.poisson.sf(k - 1, lam)) < 0.02
    assert tvs[0] > tvs[1] > tvs[2]
    assert tvs[2] < 0.02


def test_up_gumbel_module_gradient_flows_through_relaxation():
    torch.manual_seed(0)
    a = torch.full((4000,), 1.5, requires_grad=True)
    m = UncorrelatedPoisson(relaxation="gumbel", categories=12, temperature=1.0).train()
    h = m(a)
    assert abs(float(h.detach().mean()) - 1.5) < 5 * math.sqrt(1.5 / 4000)
    h.sum().backward()
    assert torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0
    assert not torch.equal(a.grad, torch.ones_like(a))  # not straight-through: softmax gradient


# ------------------------------------------------------------------------------------------------
# CG and CP
# ------------------------------------------------------------------------------------------------
def test_cg_gradient_through_sigma_and_noise_has_unit_correlation_structure():
    m, _ = _bound(CorrelatedGaussian, seed=0)
    m.train()
    torch.manual_seed(3)
    a = (torch.rand(8, 3, 4, 5) * 2).requires_grad_(True)
    h = m(a)
    h.sum().backward()
    xi = (h - a).detach() / torch.sqrt(a.detach() + 1e-6)
    assert torch.allclose(a.grad, 1 + xi / (2 * torch.sqrt(a.detach() + 1e-6)), rtol=1e-4, atol=1e-3)
    # noise covariance: x ~ N(0, Sigma) with Sigma the sampler's matrix (n = 60; 20000 samples)
    torch.manual_seed(4)
    ones = torch.ones(20000, 3, 4, 5)
    x = ((m(ones) - ones) / math.sqrt(1 + 1e-6)).reshape(20000, -1).double()
    emp = torch.corrcoef(x.T)
    sigma = m.sampler.covariance()
    # correlation estimate: standard error (1 - rho^2) / sqrt(n) <= 0.0071
    assert (emp - sigma).abs().max() < 5 * 0.0071


def test_cg_sigma_follows_weights_after_refresh():
    m, conv = _bound(CorrelatedGaussian, shape=(3, 3, 3), refresh_every=2)
    m.train()
    a = torch.ones(2, 3, 3, 3)
    m(a)  # call 0: refresh
    s1 = m.sampler.covariance().clone()
    p = CorrelationParams()
    assert torch.allclose(s1, correlation_matrix(conv.weight, 3, 3, p), atol=1e-10)
    with torch.no_grad():
        conv.weight[1] = conv.weight[0]  # kernels 0 and 1 identical: tuning similarity 1
    m(a)  # call 1: no refresh
    assert torch.equal(m.sampler.covariance(), s1)
    m(a)  # call 2: refresh from the changed live kernel
    s2 = m.sampler.covariance()
    assert m.refreshes == 2
    assert torch.allclose(s2, correlation_matrix(conv.weight, 3, 3, p), atol=1e-10)
    # unit (map 0, y 0, x 0) vs (map 1, y 0, x 0): distance 0, k = 1 -> a + c (eq 2.14)
    assert s2[0, 9].item() == pytest.approx(p.a + p.c, abs=1e-10)
    assert s1[0, 9].item() < s2[0, 9].item()


def test_cp_marginals_are_poisson_and_gradient_is_straight_through():
    m, _ = _bound(CorrelatedPoisson, shape=(2, 3, 3), seed=1)
    m.train()
    torch.manual_seed(5)
    n = 6000
    rates = torch.tensor([0.7, 3.0]).view(1, 2, 1, 1).expand(n, 2, 3, 3).contiguous().requires_grad_(True)
    h = m(rates)
    hd = h.detach()
    for c, lam in enumerate((0.7, 3.0)):
        s = hd[:, c].reshape(-1)  # 9 correlated units, each marginally Poisson(lam)
        counts = np.bincount(s.long().numpy(), minlength=30)[:30] / s.numel()
        pmf = stats.poisson.pmf(np.arange(30), lam)
        # per-category standard error sqrt(p (1 - p) / n) (one unit's n samples, conservative)
        assert np.all(np.abs(counts - pmf) <= 5 * np.sqrt(pmf * (1 - pmf) / n) + 1e-3)
    w = torch.randn_like(rates)
    (h * w).sum().backward()
    assert torch.equal(rates.grad, w)


def test_copula_correlation_is_below_target_and_increasing():
    """Fig 2.2: the achieved Poisson correlation is below the Gaussian one and grows with it."""
    torch.manual_seed(0)
    n = 40000
    z1, z2 = torch.randn(n, dtype=torch.float64), torch.randn(n, dtype=torch.float64)
    for lam in (0.5, 2.0):
        achieved = []
        for rho in (0.2, 0.5, 0.8):
            x2 = rho * z1 + math.sqrt(1 - rho**2) * z2
            p1 = poisson_icdf_from_normal(z1, torch.full((n,), lam, dtype=torch.float64))
            p2 = poisson_icdf_from_normal(x2, torch.full((n,), lam, dtype=torch.float64))
            r = float(torch.corrcoef(torch.stack([p1, p2]))[0, 1])
            assert r < rho  # a transformation lowers the correlation
            achieved.append(r)
        assert achieved[0] < achieved[1] < achieved[2]
        assert achieved[2] > 0.5  # but stays of the same order (Fig 2.2)


def test_cp_module_correlation_tracks_sigma_from_below():
    m, _ = _bound(CorrelatedPoisson, shape=(2, 3, 3), seed=2)
    m.train()
    torch.manual_seed(6)
    n = 8000
    h = m(torch.full((n, 2, 3, 3), 2.0)).reshape(n, -1).double()
    emp = torch.corrcoef(h.T)
    target = m.sampler.covariance()
    off = ~torch.eye(18, dtype=torch.bool)
    assert torch.all(emp[off] < target[off] + 5 / math.sqrt(n))
    assert torch.corrcoef(torch.stack([emp[off], target[off]]))[0, 1] > 0.8


# ------------------------------------------------------------------------------------------------
# placement, eval mode, the whole model
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["ug", "cg", "up", "cp"])
def test_config_entries_place_on_any_layer_identity_in_eval_and_gradients_reach_conv(key):
    entry = OmegaConf.to_container(OmegaConf.load(CONF / "reg" / f"{key}.yaml"), resolve=True)
    assert list(entry) == [key] and entry[key]["at"] == "layer1"
    entry[key]["at"] = "layer3"  # reg.<key>.at=layer3
    torch.manual_seed(0)
    net = _small_net()
    ref = _small_net()
    ref.load_state_dict(net.state_dict())
    place_regularizers(net, entry, (3, 16, 16))
    x = torch.rand(4, 3, 16, 16)
    net.eval()
    ref.eval()
    assert torch.equal(net(x), ref(x))  # identity in eval mode
    net.train()
    out = net(x)
    assert not torch.equal(out, ref(x))
    out.sum().backward()
    g = net.layer3.conv.weight.grad
    assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0


def test_eval_identity_passes_any_input_through():
    for mod in (UncorrelatedGaussian(), UncorrelatedPoisson(), _bound(CorrelatedGaussian)[0],
                _bound(CorrelatedPoisson)[0]):
        a = torch.randn(2, 3, 4, 5)  # even negative values: eval mode does not look at them
        assert mod.eval()(a) is a


# ------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls",
                         [UncorrelatedGaussian, UncorrelatedPoisson, CorrelatedGaussian, CorrelatedPoisson])
@pytest.mark.parametrize("bad", [-0.5, float("nan"), float("inf")])
def test_negative_or_nonfinite_activations_are_rejected(cls, bad):
    mod = _bound(cls)[0] if cls in (CorrelatedGaussian, CorrelatedPoisson) else cls()
    a = torch.rand(2, 3, 4, 5)
    a[1, 2, 3, 4] = bad
    with pytest.raises(RegularizerConfigError, match="after a ReLU"):
        mod.train()(a)


@pytest.mark.parametrize("cls", [CorrelatedGaussian, CorrelatedPoisson])
def test_correlated_noise_needs_a_producing_convolution(cls):
    with pytest.raises(ContextError, match="'input'"):
        place_regularizers(_small_net(),
                           {"n": {"at": "input", "_target_": f"bioreg.layers.noise.{cls.__name__}"}},
                           (3, 16, 16))


@pytest.mark.parametrize(
    ("cls", "kw", "match"),
    [
        (CorrelatedGaussian, {"refresh_every": 0}, "refresh_every must be an integer >= 1"),
        (CorrelatedPoisson, {"refresh_every": 1.5}, "refresh_every must be an integer >= 1"),
        (CorrelatedGaussian, {"sampler": "fast"}, "sampler must be one of"),
        (CorrelatedGaussian, {"ncm_method": "x"}, "ncm_method must be one of"),
        (CorrelatedGaussian, {"tau": 0.0}, "tau must be > 0"),
        (CorrelatedGaussian, {"sigma": -1.0}, "sigma must be null"),
        (UncorrelatedGaussian, {"sigma": -0.1}, "sigma must be null"),
        (UncorrelatedGaussian, {"eps": 0.0}, "eps must be a finite number > 0"),
        (UncorrelatedPoisson, {"categories": 1}, r"categories \(K.*>= 2"),
        (UncorrelatedPoisson, {"temperature": 0.0}, "temperature .* > 0"),
        (UncorrelatedPoisson, {"temperature": -1.0}, "temperature .* > 0"),
        (UncorrelatedPoisson, {"relaxation": "concrete"}, r"relaxation must be one of \('none', 'gumbel'\)"),
    ],
)
def test_invalid_parameters_name_the_valid_range(cls, kw, match):
    with pytest.raises(RegularizerConfigError, match=match):
        cls(**kw)


def test_dense_sampler_refuses_large_layers_and_names_structured():
    conv = nn.Conv2d(3, 64, 3, padding=1)  # VGG-16 layer 1: 64 x 32 x 32 = 65 536 units
    m = CorrelatedGaussian(sampler="dense")
    with pytest.raises(RegularizerConfigError, match=r"n = 65536 units > 16384.*sampler=structured"):
        m.bind(InsertionContext(point="features.2", producer=conv, shape=(64, 32, 32)))
    assert 64 * 32 * 32 > DENSE_MAX_UNITS


def test_unbound_correlated_module_says_how_to_bind():
    with pytest.raises(RuntimeError, match="not bound"):
        CorrelatedGaussian().train()(torch.rand(1, 3, 4, 5))


# ------------------------------------------------------------------------------------------------
# large layer (VGG-16 layer 1) and dense = structured through the module
# ------------------------------------------------------------------------------------------------
def _tensor_numel(obj, seen: set[int] | None = None) -> int:
    """Total numel of all tensors reachable from ``obj`` (attributes, dicts, tuples, dataclasses)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        return obj.numel()
    if isinstance(obj, dict):
        return sum(_tensor_numel(v, seen) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_numel(v, seen) for v in obj)
    if hasattr(obj, "__dict__"):
        return _tensor_numel(vars(obj), seen)
    return 0


def test_vgg16_layer1_cg_and_cp_run_structured_without_n_by_n_memory():
    shape = (64, 32, 32)  # VGG-16 layer 1: n = 65 536 units, a dense n x n float32 matrix is 17 GB
    n = 64 * 32 * 32
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 64, 3, padding=1)
    for cls in (CorrelatedGaussian, CorrelatedPoisson):
        m = cls()  # default sampler: structured
        m.bind(InsertionContext(point="features.2", producer=conv, shape=shape))
        m.train()
        a = torch.relu(conv(torch.rand(2, 3, 32, 32))).detach().requires_grad_(True)
        h = m(a)
        assert h.shape == (2, *shape) and torch.isfinite(h).all()
        assert m.refreshes == 1 and not torch.equal(h, a)
        h.sum().backward()
        assert torch.isfinite(a.grad).all()
        if cls is CorrelatedPoisson:
            assert torch.equal(h, h.round())  # counts
        # everything the sampler keeps (eigenvectors of S, eigen-factors of T, per-unit scales)
        # is O(C^2 + C HW + (HW)^2): measured 2.9e6 numbers, vs n^2 = 4.3e9
        total = _tensor_numel(m.sampler)
        assert 0 < total < n * n / 1000
        m.eval()
        assert m(a) is a


def test_cg_module_dense_default_and_structured_have_the_same_covariance_when_repair_is_needed():
    kw = dict(a=0.9, b=0.636, c=0.05)  # S indefinite on 6x6, slack 0.05: eq 2.14 needs repair
    shape = (2, 6, 6)
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 2, 3, padding=1)
    with torch.no_grad():
        conv.weight[1] = conv.weight[0] + 0.05 * conv.weight[1]  # similar kernels
    covs = []
    for sampler in ("dense", "structured"):
        m = CorrelatedGaussian(sampler=sampler, **kw)
        m.bind(InsertionContext(point="layer1", producer=conv, shape=shape))
        m.train()(torch.ones(1, *shape))
        assert m.sampler.repaired
        covs.append(m.sampler.covariance())
    assert float((covs[0] - covs[1]).abs().max()) < 1e-12
