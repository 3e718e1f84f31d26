"""Readings of Dutta (2019) Ch. 2 that the text leaves open, and the functional cores of the noise modules.

* the noise scale of UG/CG: ``scale: variance`` (σ² = a, §2.2.1, default) or ``std`` (σ = a,
  Table 2.1, §2.4.3), with the std reading as an ablation in the Table 2.3/2.5 sweeps and specs;
* eq 2.17 (Higham) as the default repair of every config (the sampler tests are in test_correlation.py);
* the distance scale of eq 2.14: ``grid`` | ``input`` (cumulative stride) | a number;
* ``f(x, ..., training)`` functions behind the four modules (issue 13, code shape).

Statistical tolerances are 5 standard errors at the stated sample counts, with fixed seeds.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from bioreg.layers.base import InsertionContext, RegularizerConfigError
from bioreg.layers.correlation import correlation_matrix
from bioreg.layers.noise import (
    NOISE_SCALES,
    CorrelatedGaussian,
    CorrelatedPoisson,
    UncorrelatedGaussian,
    UncorrelatedPoisson,
    correlated_gaussian,
    correlated_poisson,
    uncorrelated_gaussian,
    uncorrelated_poisson,
)

CONF = Path(__file__).resolve().parents[1] / "conf"




def _bind(m: nn.Module, shape=(3, 4, 5), seed=0, stride=None) -> nn.Conv2d:
    torch.manual_seed(seed)
    conv = nn.Conv2d(2, shape[0], 3, padding=1)
    m.bind(InsertionContext(point="layer1", producer=conv, shape=shape, stride=stride))
    return conv


# ------------------------------------------------------------------------------------------ noise scale
@pytest.mark.parametrize("scale", NOISE_SCALES)
def test_ug_per_unit_noise_std_is_sqrt_a_or_a(scale):
    # n draws per unit; the sample std of a normal has standard error ~ sigma / sqrt(2 (n - 1))
    torch.manual_seed(0)
    n = 20000
    rates = torch.tensor([0.25, 1.0, 3.0])
    a = rates.repeat(n, 1).requires_grad_(True)
    h = UncorrelatedGaussian(scale=scale).train()(a)
    std = (h - a).detach().std(0)
    target = torch.sqrt(rates + 1e-6) if scale == "variance" else rates
    assert torch.all((std - target).abs() <= 5 * target / math.sqrt(2 * (n - 1))), (std, target)
    other = rates if scale == "variance" else torch.sqrt(rates)
    assert float((std - other).abs()[[0, 2]].min()) > 0.2  # the two readings are told apart
    # re-parameterised: std reading dh/da = 1 + xi, xi = (h - a) / a
    h.sum().backward()
    if scale == "std":
        assert torch.allclose(a.grad, 1 + (h - a).detach() / a.detach(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scale", NOISE_SCALES)
def test_cg_per_unit_noise_std_is_sqrt_a_or_a(scale):
    torch.manual_seed(1)
    n = 4000
    shape = (3, 4, 5)
    m = CorrelatedGaussian(scale=scale)
    _bind(m, shape)
    m.train()
    rates = torch.linspace(0.5, 4.0, 60).reshape(shape)
    # one Σ, refreshed once per call
    z = torch.cat([m(rates.expand(500, *shape)) - rates for _ in range(n // 500)])
    std = z.std(0)
    target = torch.sqrt(rates + 1e-6) if scale == "variance" else rates
    assert float(((std - target).abs() / target).max()) <= 5 / math.sqrt(2 * (n - 1))
    # and the noise is correlated (Σ of eq 2.14), not independent, in both readings
    x = (z / target).reshape(n, -1)
    assert float(torch.corrcoef(x.T)[0, 1]) > 0.1


def test_scale_is_checked_and_not_combined_with_a_fixed_sigma():
    for cls in (UncorrelatedGaussian, CorrelatedGaussian):
        with pytest.raises(RegularizerConfigError, match=r"scale must be one of \('variance', 'std'\)"):
            cls(scale="sd")
        with pytest.raises(RegularizerConfigError,
                           match="scale='std' sets σ from the activation, but sigma=0.1"):
            cls(scale="std", sigma=0.1)
        assert cls(sigma=0.1).sigma == 0.1  # a fixed sigma with the default scale stays valid
    assert "scale=std" in repr(UncorrelatedGaussian(scale="std")) and "sigma=a," in repr(
        UncorrelatedGaussian(scale="std"))
    # the Poisson modules have no scale: their rate is the activation (eqs 2.9, 2.13)
    for cls in (UncorrelatedPoisson, CorrelatedPoisson):
        with pytest.raises(TypeError):
            cls(scale="std")


# ------------------------------------------------------------------------------------ functional cores
def test_functional_cores_are_the_modules_numerics():
    a = torch.relu(torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(0)))
    ug, up = UncorrelatedGaussian(scale="std"), UncorrelatedPoisson()
    upg = UncorrelatedPoisson(relaxation="gumbel", categories=8)
    cg, cp = CorrelatedGaussian(), CorrelatedPoisson()
    for m in (cg, cp):
        _bind(m)
    cases = [
        (ug, lambda x: uncorrelated_gaussian(x, scale="std")),
        (up, lambda x: uncorrelated_poisson(x)),
        (upg, lambda x: uncorrelated_poisson(x, relaxation="gumbel", categories=8)),
        (cg, lambda x: correlated_gaussian(x, cg.sampler)),
        (cp, lambda x: correlated_poisson(x, cp.sampler)),
    ]
    for m, f in cases:
        m.train()
        torch.manual_seed(5)
        h_mod = m(a)  # refreshes Σ first (CG/CP); the draw then follows from the seed
        torch.manual_seed(5)
        h_fun = f(a)
        assert torch.equal(h_mod, h_fun), type(m).__name__
        m.eval()
        assert m(a) is a
    # training=False is the identity, without looking at the input (eval mode)
    neg = -torch.ones(2, 3, 4, 5)
    assert uncorrelated_gaussian(neg, training=False) is neg
    assert uncorrelated_poisson(neg, training=False) is neg
    assert correlated_gaussian(neg, None, training=False) is neg
    assert correlated_poisson(neg, None, training=False) is neg
    # a generator makes a draw reproducible without touching the global RNG
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(uncorrelated_gaussian(a, generator=g1), uncorrelated_gaussian(a, generator=g2))
    assert torch.equal(correlated_gaussian(a, cg.sampler, generator=torch.Generator().manual_seed(4)),
                       correlated_gaussian(a, cg.sampler, generator=torch.Generator().manual_seed(4)))
    with pytest.raises(RegularizerConfigError, match="after a ReLU"):
        uncorrelated_gaussian(neg)


# ---------------------------------------------------------------------------------- distance scale
def test_measured_cumulative_strides_match_the_architectures():
    from bioreg.models import VGG11, AllConvNet, resnet20
    from bioreg.models.points import measure_strides

    # AllConvNet (Table 2.2): stride 2 at layers 3 and 6; layer 7 is an unpadded 3x3 conv (8 -> 6),
    # where the ratio of map sizes (32 / 6) would be wrong
    s = measure_strides(AllConvNet(), (3, 32, 32))
    assert {k: v[0] for k, v in s.items()} == {"input": 1, "layer1": 1, "layer2": 1, "layer3": 2, "layer4": 2,
                                               "layer5": 2, "layer6": 4, "layer7": 4, "layer8": 4,
                                               "layer9": 4}
    assert all(v[0] == v[1] for v in s.values())
    # VGG-11 (thesis numbering counts the pools 2, 4, 7, 10, 13); its head needs 32x32 inputs.
    # delta = 32 (the largest stride) keeps the second pass small
    v = measure_strides(VGG11(), (3, 32, 32), delta=32)
    assert [v[f"layer{i}"][0] for i in range(1, 14)] == [1, 2, 2, 4, 4, 4, 8, 8, 8, 16, 16, 16, 32]
    r = measure_strides(resnet20(), (3, 32, 32))
    assert (r["layer1"], r["layer2"], r["layer3"]) == ((1, 1), (2, 2), (4, 4))


@pytest.mark.parametrize(("distance_scale", "expected"), [("grid", 1.0), ("input", 2.0), (3.0, 3.0)])
def test_distance_scale_reaches_sigma_through_placement(distance_scale, expected):
    from bioreg.lit.module import place_regularizers
    from bioreg.models import AllConvNet

    torch.manual_seed(0)
    net = AllConvNet(layer1_width=3, width=4, width2=4)  # 16x16 inputs: layer3 is (4, 8, 8), stride 2
    entry = {"cg": {"at": "layer3", "_target_": "bioreg.layers.noise.CorrelatedGaussian",
                    "distance_scale": distance_scale, "b": 0.05}}
    place_regularizers(net, entry, (3, 16, 16))
    m = next(iter(net.regularizers.values()))
    assert m.resolved_distance_scale == expected and m.sampler.params.distance_scale == expected
    m.train()(torch.rand(2, 4, 8, 8))
    w = net.layer3.conv.weight.detach()
    ref = correlation_matrix(w, 8, 8, m.sampler.params)
    assert float((m.sampler.covariance() - ref).abs().max()) < 1e-6  # (float32 kernel) no repair needed here
    # the scale is really in Σ: units (map 0, y 0, x 0) and (0, 0, 1) are one grid step apart
    assert float(ref[0, 1]) == pytest.approx(0.225 - 0.05 * expected + 0.09, abs=1e-6)
    assert f"distance_scale={distance_scale}" in repr(m)


def test_distance_scale_input_without_a_stride_names_the_fix():
    from bioreg.layers.base import ContextError

    with pytest.raises(ContextError,
                       match="cumulative stride of point 'layer1'.*give distance_scale a number"):
        _bind(CorrelatedGaussian(distance_scale="input"))
    m = CorrelatedPoisson(distance_scale="input")
    _bind(m, stride=(4, 4))
    assert m.resolved_distance_scale == 4.0
    with pytest.raises(RegularizerConfigError, match=r"distance_scale must be one of \('grid', 'input'\)"):
        CorrelatedGaussian(distance_scale="pixels")


# ------------------------------------------------------------------------ configs, sweeps and specs
def test_configs_default_to_variance_higham_and_grid_and_the_std_experiments_compose():
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from helpers.configs import compose

    for key in ("cg", "cp"):
        e = OmegaConf.load(CONF / "reg" / f"{key}.yaml")[key]
        assert e.ncm_method == "higham" and e.distance_scale == "grid"
    assert OmegaConf.load(CONF / "reg" / "ug.yaml").ug.scale == "variance"
    assert OmegaConf.load(CONF / "reg" / "cg.yaml").cg.scale == "variance"
    for exp, key, scale in [("uncorr_gaussian_layer1", "ug", "variance"),
                            ("uncorr_gaussian_std_layer1", "ug", "std"),
                            ("corr_gaussian_layer1", "cg", "variance"),
                            ("corr_gaussian_std_layer1", "cg", "std")]:
        cfg = compose([f"+experiment={exp}"])
        assert cfg.name == exp and list(cfg.reg) == [key] and cfg.reg[key].scale == scale
        entry = OmegaConf.to_container(cfg.reg[key], resolve=True)
        entry.pop("at")
        m = instantiate(entry)
        assert m.scale == scale
        if key == "cg":
            assert m.ncm_method == "higham" and m.distance_scale == "grid"
    # the ablation differs from its variance counterpart in the noise scale only
    a = OmegaConf.to_container(compose(["+experiment=corr_gaussian_layer1"]), resolve=True)
    b = OmegaConf.to_container(compose(["+experiment=corr_gaussian_std_layer1"]), resolve=True)
    a.pop("name"), b.pop("name")
    assert b["reg"]["cg"].pop("scale") == "std" and a["reg"]["cg"].pop("scale") == "variance"
    assert a == b


def test_sweeps_and_specs_carry_the_std_ablation_against_the_printed_columns(tmp_path):
    from bioreg.results.aggregate import load_records
    from bioreg.results.compare import ablation_summary, compare_table, load_claims
    from bioreg.results.records import RecordStore
    from bioreg.results.report import build_report
    from bioreg.results.report_page import render_markdown as render_report
    from bioreg.results.sweeps import sweep_params
    from bioreg.results.tables import build_table, load_paper, load_spec, render_markdown
    from helpers.report_records import record

    for tid in ("2.3", "2.5"):
        stem = "table_" + tid.replace(".", "_")
        exps = sweep_params(CONF / "sweep" / f"{stem}.yaml")["+experiment"].split(",")  # from the spec
        assert {"uncorr_gaussian_std_layer1", "corr_gaussian_std_layer1"} <= set(exps)
        spec = load_spec(tid)
        cols = {c.label: c for c in spec.columns}
        ug, cg = cols["UG (std = a)"], cols["CG (std = a)"]
        assert ug.experiment == "uncorr_gaussian_std_layer1" and ug.compare_to == "UG"
        assert cg.experiment == "corr_gaussian_std_layer1" and cg.compare_to == "CG"

    # synthetic records: the std reading hits the printed UG/CG numbers, the variance reading is 3 points low
    spec = load_spec("2.5")
    paper = load_paper(spec).set_index(["row", "column"])
    store = RecordStore(tmp_path)
    exp_of = {c.label: c.experiment for c in spec.columns}
    for seed in range(5):
        recs = {e: record(e, seed, spec.protocol, key="k") for e in exp_of.values()}
        for r in spec.rows:
            for c in spec.columns:
                printed = float(paper.loc[(r.label, spec.paper_label(c.label)), "mean"])
                v = printed - (3.0 if c.label in ("UG", "CG") else 0.0) + 0.1 * (seed - 2)
                node = recs[exp_of[c.label]]
                *head, last = r.metric.path.split(".")
                for k in head:
                    node = node.setdefault(k, {})
                node[last] = v
        for rec in recs.values():
            store.write(rec)
    res = build_table(spec, load_records(tmp_path))
    cmp_ = compare_table(res, load_paper(spec)).set_index(["row", "column"])
    assert cmp_.loc[("Fog", "UG (std = a)"), "thesis"] == "67.7 ± 0.6 (UG)"
    assert cmp_.loc[("Fog", "UG (std = a)"), "diff"] == pytest.approx(0.0, abs=1e-9)
    assert cmp_.loc[("Fog", "UG"), "diff"] == pytest.approx(-3.0)
    summ = {s["ablation"]: s for s in ablation_summary(spec, cmp_.reset_index())}
    assert summ["UG (std = a)"]["closer"] == "UG (std = a)" and summ["CG (std = a)"]["paired"] == 20
    assert summ["CG (std = a)"]["mean_abs_diff_printed"] == pytest.approx(3.0)
    assert "Ablations (not in the paper" in render_markdown(res)
    report = build_report([load_spec("2.3"), spec], load_records(tmp_path), claims=load_claims())
    text = render_report(report)
    assert "## Readings (ablations)" in text and "| [2.5](#table_2_5) | UG | UG (std = a) | 20/20 |" in text
    assert [r.closer for r in report.readings if r.table == "2.5"][0] == "UG (std = a)"
    # claims over the printed columns ignore the ablation: CG is 3 points low, so it is no longer best
    assert {c.claim.id: c.verdict for c in report.claims}["D2.5-cg-best-14of19"] == "not reproduced"


def test_an_ablation_must_name_a_printed_label():
    from bioreg.results.tables import spec_from_dict

    d = {"id": "x", "title": "t", "rows": [{"label": "r", "metric": "summary.test_acc"}],
         "columns": [{"label": "A", "experiment": "a"}, {"label": "B", "experiment": "b", "compare_to": "Z"}]}
    with pytest.raises(ValueError, match=r"column 'B' has compare_to='Z'.*valid: \['A'\]"):
        spec_from_dict(d)
    d["columns"] = [{"label": "B", "experiment": "b", "compare_to": "A"}, {"label": "A", "experiment": "a"}]
    with pytest.raises(ValueError, match="must come after the printed ones"):
        spec_from_dict(d)
