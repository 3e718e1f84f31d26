"""NormOut (Singh 2023, §2.2): keep probabilities, sampling, eval identity, numerics, config errors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from bioreg.layers.base import RegularizerConfigError, reg_entries
from bioreg.layers.normout import METHODS, POOLS, NormOut, keep_probability
from bioreg.lit.module import place_regularizers
from bioreg.models.points import InsertionError
from bioreg.models.vgg import VGG16

CONF = Path(__file__).resolve().parents[1] / "conf"

# The worked example of §2.2.4: a layer of 2 neurons (columns) and a batch of 5 inputs (rows);
# neuron 1 saw {2, 3, 4, 5}, neuron 2 saw {4, 6, 8, 10}, and the input of interest (last row) gives {1, 2}.
WORKED = torch.tensor([[2.0, 4.0], [3.0, 6.0], [4.0, 8.0], [5.0, 10.0], [1.0, 2.0]])


def test_worked_example_temporal_max():
    p = keep_probability(WORKED, "max", "temporal")
    torch.testing.assert_close(p[-1], torch.tensor([0.2, 0.2]), rtol=0, atol=1e-7)  # thesis: [0.2, 0.2]


def test_worked_example_temporal_softmax():
    p1 = keep_probability(WORKED, "softmax", "temporal", temperature=1.0)[-1]
    torch.testing.assert_close(p1, torch.tensor([math.exp(-4), math.exp(-8)]), rtol=1e-6, atol=0)
    # the thesis rounds these to [0.02, 0.0003]
    assert round(p1[0].item(), 2) == 0.02 and round(p1[1].item(), 4) == 0.0003
    p25 = keep_probability(WORKED, "softmax", "temporal", temperature=2.5)[-1]
    torch.testing.assert_close(p25, torch.tensor([math.exp(-1.6), math.exp(-3.2)]), rtol=1e-6, atol=0)
    assert round(p25[0].item(), 1) == 0.2  # thesis: 0.2
    # thesis prints 0.02 for neuron 2, which its own formula does not give (exp(-3.2) = 0.041)
    assert abs(p25[1].item() - 0.0408) < 1e-4


def test_hand_computed_linear_all_variants():
    a = torch.tensor([[1.0, -4.0, 2.0], [-2.0, 1.0, 0.0]])  # |a| = [[1, 4, 2], [2, 1, 0]]
    exp = {
        ("max", "temporal"): [[1 / 2, 4 / 4, 2 / 2], [2 / 2, 1 / 4, 0 / 2]],
        ("max", "spatial"): [[1 / 4, 4 / 4, 2 / 4], [2 / 2, 1 / 2, 0 / 2]],
        ("max", "spatiotemporal"): [[1 / 4, 1, 2 / 4], [2 / 4, 1 / 4, 0]],
    }
    for (method, pool), e in exp.items():
        torch.testing.assert_close(keep_probability(a, method, pool), torch.tensor(e), rtol=0, atol=1e-7)
    t = 2.0
    mx = {"temporal": [[2, 4, 2], [2, 4, 2]], "spatial": [[4, 4, 4], [2, 2, 2]],
          "spatiotemporal": [[4] * 3] * 2}
    m = a.abs()
    for pool, mxv in mx.items():
        want = torch.exp((m - torch.tensor(mxv, dtype=torch.float32)) / t)
        got = keep_probability(a, "softmax", pool, temperature=t)
        torch.testing.assert_close(got, want, rtol=1e-6, atol=0)
        # the thesis's unshifted form, fine at these magnitudes
        torch.testing.assert_close(got,
                                   torch.exp(m / t) / torch.exp(torch.tensor(mxv, dtype=torch.float32) / t))


def test_conv_maps_pool_over_units_of_the_layer():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 2, 4, 5, generator=g)
    m = a.abs()
    sp = keep_probability(a, "max", "spatial")
    for j in range(3):  # "the layer" of one example = all C*H*W values
        torch.testing.assert_close(sp[j], m[j] / m[j].max())
    tp = keep_probability(a, "max", "temporal")
    torch.testing.assert_close(tp, m / m.max(dim=0, keepdim=True).values)  # per (c, h, w) over the batch
    stp = keep_probability(a, "softmax", "spatiotemporal", temperature=0.5)
    torch.testing.assert_close(stp, torch.exp((m - m.max()) / 0.5))


@pytest.mark.parametrize("method,pool,t", [("max", "spatial", None), ("softmax", "temporal", 3.0)])
def test_keep_rate_matches_p_and_kept_units_untouched(method, pool, t):
    torch.manual_seed(123)
    n, f = 4000, 5
    a = torch.arange(1, f + 1, dtype=torch.float32).repeat(n + 1, 1)
    if pool == "spatial":  # rows [1, ..., 5] * s: column k has p = k / 5
        a = a * (torch.rand(n + 1, 1) + 0.5)
    else:  # row 0 holds the batch maximum 6 of every unit: column k has p = exp((k - 6) / T)
        a[0] = 6.0
    mod = NormOut(method, pool, t).train()
    p = mod.keep_probability(a)[1]
    want = torch.arange(1, f + 1) / 5 if pool == "spatial" else torch.exp((torch.arange(1, f + 1) - 6.0) / t)
    torch.testing.assert_close(p, want.float())
    out = mod(a)[1:]
    kept = out != 0
    assert torch.equal(out[kept], a[1:][kept])  # no inverted scaling
    rate = kept.float().mean(0)
    sigma = (p * (1 - p) / n).sqrt()
    assert torch.all((rate - p).abs() <= 5 * sigma + 1e-6), (rate, p)  # binomial, 5 sigma


def _expected_keep_probability(a: torch.Tensor, method: str, pool: str, t: float | None) -> torch.Tensor:
    """The thesis's formulas (§2.2.1-2.2.4) element by element in float64, independent of the layer's code:
    the pool of element (n, i) is unit i over the batch (temporal), example n's whole layer (spatial), or
    everything (spatiotemporal); p = |a| / max(pool), or exp(|a|/T) / exp(max(pool)/T)."""
    m = a.double().abs().reshape(a.shape[0], -1)
    n_ex, n_units = m.shape
    out = torch.empty_like(m)
    for n in range(n_ex):
        for i in range(n_units):
            if pool == "temporal":
                pool_vals = [float(m[k, i]) for k in range(n_ex)]
            elif pool == "spatial":
                pool_vals = [float(m[n, j]) for j in range(n_units)]
            else:
                pool_vals = [float(v) for v in m.flatten()]
            mx = max(pool_vals)
            out[n, i] = float(m[n, i]) / mx if method == "max" else math.exp(float(m[n, i]) / t) / math.exp(
                mx / t)
    return out.reshape(a.shape)


ALL_VARIANTS = [(method, pool) for method in ("max", "softmax")
                for pool in ("temporal", "spatial", "spatiotemporal")]


@pytest.mark.parametrize("shape", [(4, 3), (3, 2, 2, 1)], ids=["linear", "conv"])
@pytest.mark.parametrize("method,pool", ALL_VARIANTS)
def test_empirical_keep_rate_of_every_variant(method, pool, shape):
    # The same activations are passed R times in train mode (fresh masks each time, seed 7); per element
    # the keep rate is Binomial(R, p) / R. Tolerance: |rate - p| <= 5 sqrt(p (1 - p) / R) + 1e-9, i.e.
    # exact for p = 1 (the pool maximum). A zero activation's mask cannot be seen in the output (0 either
    # way), so it only enters through keep_probability (p = 0 under the max form).
    assert len(ALL_VARIANTS) == 6 and {(m, p) for m in METHODS for p in POOLS} == set(ALL_VARIANTS)
    t = 2.0 if method == "softmax" else None
    g = torch.Generator().manual_seed(11)
    a = (torch.rand(shape, generator=g) * 6 - 3).round(decimals=2)  # signs mixed: p uses |a|
    a.view(-1)[1] = 0.0
    want = _expected_keep_probability(a, method, pool, t)
    mod = NormOut(method, pool, t).train()
    torch.testing.assert_close(mod.keep_probability(a).double(), want, rtol=1e-6, atol=1e-7)
    assert float(want.max()) == 1.0 and 0.05 < float(want.mean()) < 0.95
    assert (float(want.min()) == 0.0) == (method == "max")  # softmax: exp(-max/T) > 0 for a zero activation
    torch.manual_seed(7)
    r = 3000
    kept = torch.zeros(shape, dtype=torch.float64)
    for _ in range(r):
        out = mod(a)
        k = out != 0
        assert torch.equal(out[k], a[k])  # kept units untouched, dropped ones exactly 0
        kept += k.double()
    rate = kept / r
    tol = 5 * (want * (1 - want) / r).sqrt() + 1e-9
    seen = a != 0
    assert int(seen.sum()) == a.numel() - 1
    assert torch.all((rate - want).abs()[seen] <= tol[seen]), (method, pool, rate, want)


def test_eval_mode_is_identity():
    a = torch.randn(8, 6)
    for method, t in (("max", None), ("softmax", 5.0)):
        for pool in POOLS:
            mod = NormOut(method, pool, t).eval()
            assert torch.equal(mod(a), a)


@pytest.mark.parametrize("pool", POOLS)
def test_no_overflow_at_small_temperature_and_huge_activations(pool):
    a = torch.tensor([[1e4, -3e4, 0.0], [2e38, 5.0, 1e-30]])
    p = keep_probability(a, "softmax", pool, temperature=1e-3)
    assert torch.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()
    assert (p == 1).any()  # the pool maximum is always kept
    out = NormOut("softmax", pool, 1e-3).train()(a)
    assert torch.isfinite(out).all()
    z = torch.zeros(4, 3)  # an all-zero pool gives p = 0 (max form), never NaN
    assert torch.equal(keep_probability(z, "max", pool), z)
    assert torch.isfinite(NormOut("softmax", pool, 1e-6).train()(z.half())).all()


def test_gradient_flows_through_kept_units_only():
    torch.manual_seed(0)
    a = (torch.rand(16, 10) + 0.1).requires_grad_(True)
    out = NormOut("max", "temporal").train()(a)
    w = torch.randn(16, 10)
    (out * w).sum().backward()
    kept = (out != 0).float()
    assert 0 < kept.mean() < 1
    torch.testing.assert_close(a.grad, w * kept)


@pytest.mark.parametrize("t", [0, -1.0, float("nan"), float("inf")])
def test_bad_temperature(t):
    with pytest.raises(RegularizerConfigError, match="temperature"):
        NormOut("softmax", "temporal", t)


def test_bad_method_pool_and_temperature_combinations():
    with pytest.raises(RegularizerConfigError, match="max, softmax"):
        NormOut("sigmoid", "temporal")
    with pytest.raises(RegularizerConfigError, match="temporal, spatial, spatiotemporal"):
        NormOut("max", "channel")
    with pytest.raises(RegularizerConfigError, match="temperature"):
        NormOut("softmax", "spatial")  # softmax needs T
    with pytest.raises(RegularizerConfigError, match="only to method 'softmax'"):
        NormOut("max", "spatial", 10.0)
    with pytest.raises(ValueError, match="at least 2 dims"):
        NormOut().train()(torch.ones(5))


class _VGG16Points(nn.Module):
    """VGG-16's insertion points without building its 134 M parameters."""

    points = VGG16.points


def test_normout_slot_on_unknown_point_lists_valid_points():
    reg = {"normout99": {"at": "99", "_target_": "bioreg.layers.normout.NormOut", "method": "max",
                         "pool": "temporal"}}
    with pytest.raises(InsertionError) as e:
        place_regularizers(_VGG16Points(), reg, (3, 32, 32))
    msg = str(e.value)
    assert "'99'" in msg and "valid points" in msg and "48" in msg and "51" in msg and "features.4" in msg


def test_bad_temperature_through_config_is_a_config_error():
    reg = {"n": {"at": "48", "_target_": "bioreg.layers.normout.NormOut", "method": "softmax",
                 "pool": "temporal",
                 "temperature": 0}}
    with pytest.raises(RegularizerConfigError, match="temperature"):
        place_regularizers(_VGG16Points(), reg, (3, 32, 32))


@pytest.mark.parametrize("variant,method,pool,temp", [
    ("temporalmax", "max", "temporal", None), ("spatialmax", "max", "spatial", None),
    ("spatiotemporalmax", "max", "spatiotemporal", None), ("temporal_softmax", "softmax", "temporal", 100),
    ("spatial_softmax", "softmax", "spatial", 100),
    ("spatiotemporal_softmax", "softmax", "spatiotemporal", 80),
])
def test_reg_options_build_normout_at_48_and_51(variant, method, pool, temp):
    from hydra.utils import instantiate

    cfg = OmegaConf.to_container(OmegaConf.load(CONF / "reg" / f"normout_{variant}.yaml"))
    entries = dict(reg_entries(cfg))
    assert {k: e["at"] for k, e in entries.items()} == {"normout48": "48", "normout51": "51"}
    cfg["normout51"] = None  # "at 48 only" as the experiments do it
    (name, entry), = reg_entries(cfg)
    mod = instantiate({k: v for k, v in entry.items() if k != "at"})
    assert isinstance(mod, NormOut) and (mod.method, mod.pool, mod.temperature) == (method, pool, temp)


def test_dropout_option_has_thesis_p():
    cfg = OmegaConf.to_container(OmegaConf.load(CONF / "reg" / "dropout_48_51.yaml"))
    assert {k: (e["at"], e["p"]) for k, e in reg_entries(cfg)} == {"dropout48": ("48", 0.5),
                                                                   "dropout51": ("51", 0.5)}
