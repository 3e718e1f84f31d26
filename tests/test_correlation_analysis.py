"""Activation-correlation analysis of Dutta (2019) §3.2 (src/bioreg/evaluate/correlation_analysis/)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bioreg.evaluate.correlation_analysis import (
    AnalysisError,
    Blocks,
    CorrelationAnalysis,
    LayerBins,
    TiledReducer,
    analyse_layer,
    check_checkpoint_model,
    collect_blocks,
    draw_inputs,
    linear_exponential_stats,
    mix_lambdas,
    nadaraya_watson,
    naive_pairs,
    naive_sigma_prime,
    offdiag_stats,
    resolve_layer,
    smooth_grid,
    unit_coords,
    zscore_block,
)
from bioreg.layers.base import kernel_similarity
from bioreg.layers.correlation import CorrelationParams, correlation_matrix
from bioreg.models import VGG11


@pytest.fixture(scope="module")
def small_vgg():
    torch.manual_seed(0)
    return VGG11().double().eval()


# ---------------------------------------------------------------------------- eq 3.3, λ


def test_index_map_is_eq_3_3_on_the_fig_3_1_example():
    # Fig 3.1: 2 feature maps of 4 x 4, Σ' is 32 x 32
    c, h, w = 2, 4, 4
    assert unit_coords(0, h, w) == (0, 0, 0)
    assert unit_coords(5, h, w) == (1, 1, 0)
    assert unit_coords(7, h, w) == (1, 3, 0)
    assert unit_coords(16, h, w) == (0, 0, 1)
    assert unit_coords(19, h, w) == (0, 3, 1)
    assert unit_coords(31, h, w) == (3, 3, 1)
    idx = np.arange(c * h * w)
    x, y, z = unit_coords(idx, h, w)
    zz, xx, yy = np.unravel_index(idx, (c, h, w))  # the flatten of a (C, H, W) activation
    assert (x == xx).all() and (y == yy).all() and (z == zz).all()


def test_lambdas_are_evenly_spaced_over_0_1():
    lam = mix_lambdas(5, torch.float64)
    assert lam.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]


# ---------------------------------------------------------------------------- tiled = naive


@pytest.mark.parametrize("mode", ["exclude", "zero"])
def test_tiled_statistics_and_bins_equal_the_naive_full_matrix(small_vgg, mode):
    torch.manual_seed(1)
    images = torch.rand(30, 3, 6, 6, dtype=torch.float64)  # layer 3: 128 maps of 3 x 3, N = 1152
    fixed, partners = draw_inputs(len(images), 3, 8, seed=2)
    blocks = collect_blocks(small_vgg, "layer3", images, fixed, partners, dtype=torch.float64)
    red = TiledReducer(blocks, mode, tile_units=512).run()  # 4 positions per tile: 3 x 3 blocks, partial last
    assert len(red.tiles()) == 6
    sig = naive_sigma_prime(small_vgg, "layer3", images, fixed, partners, mode)
    n = sig.shape[0]
    iu = np.triu_indices(n, 1)
    y = sig[iu]
    ok = np.isfinite(y)
    st = red.stats()
    assert st.n == ok.sum() and red.n_undefined() == (~ok).sum()
    if mode == "exclude":
        assert (~ok).any()  # some dead ReLU units: the zero-variance path is exercised
    assert st.max == pytest.approx(y[ok].max(), abs=1e-10)
    assert st.min == pytest.approx(y[ok].min(), abs=1e-10)
    assert st.mean == pytest.approx(y[ok].mean(), abs=1e-10)
    assert st.std == pytest.approx(y[ok].std(), abs=1e-10)
    # bins: sum and count per (map pair, distance)
    bins = red.bins(small_vgg.layer3.conv.weight)
    xi, yi, zi = unit_coords(iu[0], 3, 3)
    xj, yj, zj = unit_coords(iu[1], 3, 3)
    sq = (xi - xj) ** 2 + (yi - yj) ** 2
    pair = {tuple(m): t for t, m in enumerate(bins.maps.tolist())}
    dpos = {round(float(d) ** 2): t for t, d in enumerate(bins.d.tolist())}
    want_s = np.zeros(tuple(bins.sums.shape))
    want_n = np.zeros(tuple(bins.sums.shape))
    rows = np.array([pair[(a, b)] for a, b in zip(np.minimum(zi, zj), np.maximum(zi, zj), strict=True)])
    cols = np.array([dpos[int(v)] for v in sq])
    np.add.at(want_s, (rows[ok], cols[ok]), y[ok])
    np.add.at(want_n, (rows[ok], cols[ok]), 1)
    np.testing.assert_allclose(bins.sums.numpy(), want_s, atol=1e-9)
    np.testing.assert_array_equal(bins.counts.numpy(), want_n)
    # the binned smoother is the all-pairs smoother (eq 3.6), both kernel forms
    x_all, y_all = naive_pairs(sig, blocks.shape, small_vgg.layer3.conv.weight)
    np.testing.assert_allclose(x_all[:, 0].numpy(), np.sqrt(sq[ok]))
    dg = torch.linspace(0, float(bins.d.max()), 4, dtype=torch.float64)
    kg = torch.linspace(-1, 1, 5, dtype=torch.float64)
    q = torch.stack(torch.meshgrid(dg, kg, indexing="xy"), -1).reshape(-1, 2)
    for kernel in ("gaussian", "norm"):
        ref = nadaraya_watson(q, x_all, y_all, torch.ones_like(y_all), 0.3, kernel, chunk=1 << 24)
        got = smooth_grid(bins, dg, kg, 0.3, kernel).reshape(-1)
        np.testing.assert_allclose(got.numpy(), ref.numpy(), atol=1e-10)


# ---------------------------------------------------------------------------- known structure


def test_synthetic_layer_with_eq_2_14_correlations_gives_them_back():
    # activations drawn from N(0, Σ) with Σ of eq 2.14 for 3 maps of 4 x 4: Σ' must recover Σ,
    # its Table 3.2 statistics, and the binned mean of every (map pair, distance)
    torch.manual_seed(3)
    c, h, w = 3, 4, 4
    weight = torch.randn(c, 2, 3, 3, dtype=torch.float64)
    p = CorrelationParams(a=0.6, b=0.12, c=0.1, tau=1.0)
    sigma = correlation_matrix(weight, h, w, p)
    chol = torch.linalg.cholesky(sigma)
    samples, batch = 40, 250
    zs, vs = [], []
    for _ in range(samples):
        a = torch.randn(batch, c * h * w, dtype=torch.float64) @ chol.T
        zb, vb = zscore_block(a)
        zs.append(zb)
        vs.append(vb)
    blocks = Blocks.from_blocks(zs, vs, (c, h, w))
    red = TiledReducer(blocks, "exclude", tile_units=16).run()  # 5 positions per tile
    st, want = red.stats(), linear_exponential_stats(weight, h, w, p)
    tol = 4.0 / math.sqrt(samples * batch)  # 4 standard errors of a correlation near 0
    assert st.mean == pytest.approx(want.mean, abs=tol / 4)
    assert st.max == pytest.approx(want.max, abs=tol)
    assert st.min == pytest.approx(want.min, abs=tol)
    bins = red.bins(weight)
    means = bins.sums / bins.counts
    k = kernel_similarity(weight)[bins.maps[:, 0], bins.maps[:, 1]]
    truth = p.value(bins.d[None, :], k[:, None])
    has = bins.counts > 0
    assert int((~has).sum()) == c  # only (same map, distance 0) = the unit diagonal is empty
    assert (means - truth)[has].abs().max() < tol
    # and the smoother at a data point with a tiny bandwidth is that bin's mean
    g = smooth_grid(bins, bins.d[1:2], bins.k[1:2], bandwidth=1e-3)
    assert float(g) == pytest.approx(float(means[1, 1]), abs=1e-9)


def test_zero_variance_units_as_documented():
    # 2 images x 4 observations of 3 units; unit 0 is constant in image 0, unit 2 in both images
    a0 = torch.tensor([[1.0, 1.0, 5.0], [1.0, 2.0, 5.0], [1.0, 0.0, 5.0], [1.0, 3.0, 5.0]],
                      dtype=torch.float64)
    a1 = torch.tensor([[0.0, 1.0, 5.0], [1.0, 3.0, 5.0], [2.0, 4.0, 5.0], [4.0, 4.0, 5.0]],
                      dtype=torch.float64)
    z0, v0 = zscore_block(a0)
    z1, v1 = zscore_block(a1)
    assert v0.tolist() == [False, True, False] and v1.tolist() == [True, True, False]
    assert float(z0[:, 0].abs().sum()) == 0.0
    blocks = Blocks.from_blocks([z0, z1], [v0, v1], (3, 1, 1))
    r1 = float(np.corrcoef(a1[:, 0], a1[:, 1])[0, 1])
    ex = TiledReducer(blocks, "exclude").run()
    st = ex.stats()
    assert st.n == 1 and ex.n_undefined() == 2  # (0, 1) defined in image 1 only; unit 2 never varies
    assert st.mean == pytest.approx(r1) and st.max == pytest.approx(r1)
    zero = TiledReducer(blocks, "zero").run().stats()
    assert zero.n == 3  # every pair; undefined correlations count as 0
    assert zero.max == pytest.approx(r1 / 2) and zero.min == pytest.approx(0.0)
    assert zero.mean == pytest.approx(r1 / 6)


# ---------------------------------------------------------------------------- Linear Exponential column


@pytest.mark.parametrize("scale", [1.0, 2.0, 8.0])
def test_linear_exponential_stats_equal_the_dense_eq_2_14(scale):
    torch.manual_seed(4)
    weight = torch.randn(6, 4, 3, 3)
    p = CorrelationParams(distance_scale=scale)
    got = linear_exponential_stats(weight, 5, 4, p)
    want = offdiag_stats(correlation_matrix(weight, 5, 4, p))
    assert got.n == want.n
    for k in ("max", "min", "mean", "std"):
        assert getattr(got, k) == pytest.approx(getattr(want, k), abs=1e-12)


def test_linear_exponential_peak_at_the_thesis_parameters_is_0_31_in_grid_units():
    # a same-map neighbour: a - b + c = 0.3107; Table 3.2 prints 0.27 (see docs/decisions)
    st = linear_exponential_stats(torch.randn(8, 3, 3, 3), 16, 16, CorrelationParams())
    assert st.max == pytest.approx(0.225 - 0.0043 + 0.09)


# ---------------------------------------------------------------------------- smoother


def test_separable_gaussian_grid_equals_the_direct_sum_and_merging_equal_inputs_is_exact():
    torch.manual_seed(5)
    counts = torch.randint(0, 5, (4, 4)).double()
    bins = LayerBins(d=torch.tensor([0.0, 1.0, 2.0 ** 0.5, 2.0], dtype=torch.float64),
                     k=torch.tensor([1.0, 0.3, 0.3, -0.2], dtype=torch.float64),  # two pairs share k
                     maps=torch.tensor([[0, 0], [0, 1], [0, 2], [1, 2]]),
                     sums=torch.randn(4, 4, dtype=torch.float64) * counts, counts=counts)
    x, ys, cs = bins.points()
    assert len(x) < int((bins.counts > 0).sum())  # identical X merged
    dg = torch.linspace(0, 2, 7, dtype=torch.float64)
    kg = torch.linspace(-1, 1, 9, dtype=torch.float64)
    q = torch.stack(torch.meshgrid(dg, kg, indexing="xy"), -1).reshape(-1, 2)
    for kernel in ("gaussian", "norm"):
        direct = nadaraya_watson(q, x, ys, cs, 0.4, kernel).reshape(len(kg), len(dg))
        torch.testing.assert_close(smooth_grid(bins, dg, kg, 0.4, kernel), direct, atol=1e-12, rtol=0)
    # far from the data the log-space weights still give a finite estimate
    assert torch.isfinite(smooth_grid(bins, torch.tensor([60.0]), torch.tensor([-1.0]), 0.05)).all()


# ---------------------------------------------------------------------------- errors


def test_bad_inputs_give_one_line_errors_naming_the_choices(small_vgg):
    with pytest.raises(AnalysisError, match=r"unknown layer 'layer42'.*valid layers.*layer3, .*layer9") as e:
        resolve_layer(small_vgg, "layer42")
    assert "\n" not in str(e.value)
    with pytest.raises(AnalysisError, match="unknown layer 14"):
        resolve_layer(small_vgg, 14)  # the linear head is no conv layer
    assert resolve_layer(small_vgg, 3) == resolve_layer(small_vgg, "layer3") == "layer3"
    images = torch.rand(10, 3, 8, 8, dtype=torch.float64)
    for kw in ({"samples": 1}, {"batch": 1}):
        with pytest.raises(AnalysisError, match=r"must be an integer >= 2"):
            analyse_layer(small_vgg, 3, images, **kw)
    with pytest.raises(AnalysisError, match="valid: zero, exclude"):
        CorrelationAnalysis(zero_variance="nan")
    with pytest.raises(AnalysisError, match="valid: gaussian, norm"):
        CorrelationAnalysis(kernel="box")
    with pytest.raises(AnalysisError, match="must not exceed the 10 test images"):
        draw_inputs(10, 20, 4)
    from bioreg.models import AllConvNet

    other = AllConvNet().state_dict()
    with pytest.raises(AnalysisError, match=r"not a checkpoint of VGG11 .*one of: vgg11_ch3_vanilla") as e:
        check_checkpoint_model(other, small_vgg, "best.ckpt", valid=["vgg11_ch3_vanilla"])
    assert "\n" not in str(e.value)
    check_checkpoint_model(small_vgg.state_dict(), small_vgg)  # its own weights pass
    from bioreg.lit.module import Classifier

    wrapped = Classifier(small_vgg, [0.5] * 3, [0.25] * 3)
    with pytest.raises(AnalysisError, match="not a checkpoint of VGG11"):
        check_checkpoint_model({"net." + k: v for k, v in other.items()}, wrapped)


# ---------------------------------------------------------------------------- evaluator


def test_evaluator_sections_have_the_table_3_2_statistics(small_vgg, tmp_path):
    torch.manual_seed(6)
    images = torch.rand(12, 3, 8, 8, dtype=torch.float64)
    ev = CorrelationAnalysis(layers=[3], samples=2, batch=4, grid=(5, 7), dtype="float64")
    res = ev.run(small_vgg, images)
    sec = res["layer3"].section()
    assert {"max", "min", "mean", "std", "n_pairs", "smoothed", "linear_exponential", "settings"} <= set(sec)
    assert -1.0 - 1e-9 <= sec["min"] <= sec["mean"] <= sec["max"] <= 1.0 + 1e-9
    assert len(sec["smoothed"]["g"]) == 7 and len(sec["smoothed"]["g"][0]) == 5
    le = sec["linear_exponential"]
    assert le["grid"]["distance_scale"] == 1.0 and le["input_pixels"]["distance_scale"] == 2.0
    # the bins file round-trips and re-smooths to the record's grid
    from bioreg.evaluate.correlation_analysis import load_bins, save_bins

    path = tmp_path / "b.npz"
    save_bins(str(path), res)
    back = load_bins(str(path), "layer3")
    g = smooth_grid(back, res["layer3"].d_grid, res["layer3"].k_grid, 0.25)
    np.testing.assert_allclose(g.numpy(), np.asarray(sec["smoothed"]["g"]), atol=1e-5)
    with pytest.raises(AnalysisError, match="no bins of 'layer9'; it has: layer3"):
        load_bins(str(path), "layer9")


# ---------------------------------------------------------------------------- end to end (digits)


@pytest.mark.slow
def test_digits_end_to_end_table_3_2_and_figures(tmp_path):
    """Train the three Ch. 3 networks briefly on digits, run the analysis, then `make table-3.2 DATA=digits`
    and `make figures-ch3` write Table 3.2 (beside the printed numbers) and Figures 3.2-3.7."""
    import json
    import shutil
    import subprocess
    import sys

    from bioreg.app.run import run
    from helpers.configs import REPO, compose

    runs, ckpts, figs, tables = (tmp_path / d for d in ("runs", "ckpt", "figures", "tables"))
    for exp in ("vgg11_ch3_vanilla", "vgg11_ch3_mixup", "vgg11_ch3_manifold_mixup"):
        run(compose([f"+experiment={exp}", "data=digits", "trainer.max_epochs=1",
                     "trainer.limit_train_batches=4",
                     "trainer.enable_progress_bar=false", "eval.progress=false", "logger=none",
                     f"results_dir={runs}", f"ckpt_dir={ckpts}"]))
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "correlation_analysis.py"),
                          "--results-dir", str(runs),
                          "--data", "digits", "--samples", "4", "--batch", "8", "--layers", "3", "9",
                          "--fig-dir", str(figs), "--quiet"], capture_output=True, text=True, cwd=REPO,
                         timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    (rec_path,) = sorted((runs / "vgg11_ch3_mixup").rglob("seed0.json"))
    sec = json.loads(rec_path.read_text())["extra"]["correlation_analysis"]
    assert set(sec["layers"]) == {"layer3", "layer9"}
    l3 = sec["layers"]["layer3"]
    assert l3["shape"] == [128, 16, 16] and l3["n_pairs"] + l3["n_undefined"] == 32768 * 32767 // 2
    assert -1 <= l3["min"] <= l3["mean"] <= l3["max"] <= 1 + 1e-6
    assert (rec_path.parent / "seed0.correlation_bins.npz").is_file()
    assert {f"fig_3_{i}.{e}" for i in (2, 6, 7) for e in ("png", "pdf")} <= {p.name for p in figs.iterdir()}
    assert "Linear Exponential column" in out.stdout
    if shutil.which("make") is None:
        pytest.skip("make not installed")
    py = f"{sys.executable}"
    mk = subprocess.run(["make", "-s", "table-3.2", "DATA=digits", f"RESULTS_DIR={runs}",
                         f"TABLES_DIR={tables}",
                         f"PY={py}"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert mk.returncode == 0, mk.stderr[-3000:]
    md = (tables / "table_3_2.md").read_text()
    assert "| Layer 3 Max. |" in md and "Linear Exponential" in md
    assert "(1/5)" in md  # one seed of five, shown as such
    fig = subprocess.run(["make", "-s", "figures-ch3", "DATA=digits", f"RESULTS_DIR={runs}",
                          f"FIG_DIR={tmp_path / 'f2'}",
                          f"PY={py}"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert fig.returncode == 0, fig.stderr[-3000:]
    assert (tmp_path / "f2" / "fig_3_7.pdf").is_file() and (tmp_path / "f2" / "fig_3_2.png").is_file()
