"""Tests of the Dropout family of Dutta (2019) Ch. 4 (bioreg.layers.dropout).

Tolerances: empirical fractions are compared with their expectation within ~5 binomial
standard deviations (stated per test); deterministic properties are exact.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn
from torchvision.ops import drop_block2d

from bioreg.layers.base import (
    ContextError,
    InsertionContext,
    RegularizerConfigError,
    TrainingState,
    kernel_similarity,
)
from bioreg.layers.dropout import (
    CorrDrop,
    DropBlock,
    DropBlockRandom,
    Dropout,
    SpatialDropout,
    SpatialDropoutMod,
    block_gamma,
    block_keep_mask,
    n_selected,
    similarity_rows,
)

ROOT = Path(__file__).resolve().parents[1]


def conv_ctx(channels: int, h: int, w: int, *, cin: int = 3, epoch: int = 1, max_epochs: int = 1,
             weight: torch.Tensor | None = None) -> InsertionContext:
    if weight is None:
        conv = nn.Conv2d(cin, channels, 3)
    else:
        conv = nn.Conv2d(weight.shape[1], channels, tuple(weight.shape[2:]))
    if weight is not None:
        with torch.no_grad():
            conv.weight.copy_(weight)
    return InsertionContext(point="layerX", producer=conv, shape=(channels, h, w),
                            state=TrainingState(epoch=epoch, max_epochs=max_epochs))


def bound(module: nn.Module, ctx: InsertionContext) -> nn.Module:
    module.bind(ctx)
    return module.train()


def expected_block_fraction(drop_prob: float, b: int, h: int, w: int) -> float:
    """Closed form of E[fraction of units dropped] by one DropBlock mask.

    A unit (r, c) is covered by the seeds i in [max(0, r-b+1), min(r, H-b)] (and the same for
    columns); it is kept iff none of them fires, each independently with probability gamma.
    """
    g = block_gamma(drop_prob, b, h, w)

    def cover(r: int, n: int) -> int:
        return min(r, n - b) - max(0, r - b + 1) + 1

    tot = sum(1 - (1 - g) ** (cover(r, h) * cover(c, w)) for r in range(h) for c in range(w))
    return tot / (h * w)


# ---- hand-built kernels whose similarities are known: unit vectors at these angles (degrees),
# cos(angle difference) = kernel similarity. With k = 3 most similar maps (itself included):
#   r=0 -> {0,1,2}, r=1 -> {0,1,2}, r=2 -> {0,1,2}  (cos 10=.98, cos 15=.97, cos 25=.91 beat cos 65=.42)
#   r=3 -> {2,3,4} (cos 10=.98, cos 65=.42 beat cos 80=.17), r=4 -> {2,3,4} (cos 75=.26 beats 0, -.17)
#   r=5 -> {3,4,5} (cos 100=-.17, cos 110=-.34 beat cos 175=-.996, cos 190=-.98, cos 200=-.94)
ANGLES = [0.0, 10.0, 25.0, 90.0, 100.0, 200.0]
EXPECTED_SETS = {frozenset({0, 1, 2}): 3 / 6, frozenset({2, 3, 4}): 2 / 6, frozenset({3, 4, 5}): 1 / 6}


def angle_kernels(angles=ANGLES, scale: float = 1.0) -> torch.Tensor:
    t = torch.tensor(angles, dtype=torch.float64) * math.pi / 180
    # (C, 2, 1, 1); lengths differ per kernel, which cosine similarity must ignore
    lengths = torch.linspace(0.5, 2.0, len(angles), dtype=torch.float64) * scale
    return (torch.stack([t.cos(), t.sin()], 1) * lengths[:, None]).float()[:, :, None, None]


def dropped_sets(zero: torch.Tensor) -> list[frozenset[int]]:
    """zero: (N, C) bool -> the set of maps per example."""
    return [frozenset(torch.nonzero(row).flatten().tolist()) for row in zero]


# --------------------------------------------------------------------------- fractions
@pytest.mark.parametrize("p", [0.2, 0.5])
def test_dropout_fraction_and_scale(p):
    torch.manual_seed(0)
    x = torch.ones(100, 32, 8, 8)  # 204800 units: binomial sd <= 0.0011
    y = Dropout(p).train()(x)
    assert abs((y == 0).float().mean().item() - p) < 0.006
    assert torch.allclose(y[y != 0], torch.full_like(y[y != 0], 1 / (1 - p)))


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_spatialdropout_drops_whole_maps_at_rate_p(p):
    torch.manual_seed(1)
    x = torch.rand(400, 64, 4, 4) + 0.1  # 25600 maps: binomial sd <= 0.0032
    y = bound(SpatialDropout(p), conv_ctx(64, 4, 4))(x)
    zero = (y == 0).flatten(2)
    assert (zero.all(2) | ~zero.any(2)).all(), "a map is either wholly dropped or wholly kept"
    assert abs(zero.all(2).float().mean().item() - p) < 0.016
    kept = ~zero.all(2)
    assert torch.allclose(y.flatten(2)[kept], x.flatten(2)[kept] / (1 - p), rtol=1e-6)


@pytest.mark.parametrize(("p", "channels", "k"), [(0.5, 64, 32), (0.3, 10, 3), (0.25, 6, 2), (0.1, 4, 0)])
def test_spatialdropoutmod_drops_exactly_round_p_c_maps(p, channels, k):
    # k = floor(p*C + 1/2): 0.25*6 = 1.5 -> 2 (half up), 0.1*4 = 0.4 -> 0
    assert n_selected(p, channels) == k
    torch.manual_seed(2)
    m = bound(SpatialDropoutMod(p), conv_ctx(channels, 4, 4))
    x = torch.rand(50, channels, 4, 4) + 0.1
    y = m(x)
    zero = (y == 0).flatten(2).all(2)
    assert (zero.sum(1) == k).all()
    assert torch.allclose(y[~zero], x[~zero] / (1 - p), rtol=1e-6)


@pytest.mark.parametrize(("drop_prob", "b", "h"), [(0.1, 3, 16), (0.3, 5, 8), (0.2, 2, 9)])
def test_dropblock_fraction_matches_closed_form(drop_prob, b, h):
    torch.manual_seed(3)
    m = bound(DropBlock(drop_prob, b, schedule="none"), conv_ctx(4, h, h))
    y = m(torch.ones(3000, 4, h, h))
    frac = (y == 0).float().mean().item()
    # exact expectation (overlaps included) within 0.01; eq 4.1 itself is only approximate:
    # it ignores overlaps, so the real fraction is somewhat below drop_prob (but close for small p)
    assert abs(frac - expected_block_fraction(drop_prob, b, h, h)) < 0.01
    assert drop_prob * 0.75 < frac <= drop_prob + 0.01


def test_dropblock_small_prob_close_to_drop_prob():
    torch.manual_seed(4)
    m = bound(DropBlock(0.05, 3, schedule="none"), conv_ctx(2, 32, 32))
    frac = (m(torch.ones(500, 2, 32, 32)) == 0).float().mean().item()
    assert abs(frac - 0.05) < 0.005


@pytest.mark.parametrize(("max_epochs", "middle"), [(2, None), (10, 4), (50, 25), (51, 25)])
def test_linear_ramp_reaches_target_in_last_real_epoch(max_epochs, middle):
    """0 in epoch 0, the full target in epoch max_epochs - 1 (0-based; the last one a Trainer runs)."""
    m = DropBlock(0.5, 3)
    m.state = TrainingState(epoch=0, max_epochs=max_epochs)
    assert m.current_drop_prob() == 0.0
    m.state.epoch = max_epochs - 1
    assert m.current_drop_prob() == pytest.approx(0.5, abs=1e-12)
    if middle is not None:
        m.state.epoch = middle
        assert m.current_drop_prob() == pytest.approx(0.5 * middle / (max_epochs - 1), abs=1e-12)
    m.state.epoch = max_epochs + 3  # past the end (e.g. resumed with a smaller max_epochs): stays at target
    assert m.current_drop_prob() == pytest.approx(0.5, abs=1e-12)
    # equal steps: every epoch adds drop_prob / (max_epochs - 1)
    steps = []
    for e in range(max_epochs):
        m.state.epoch = e
        steps.append(m.current_drop_prob())
    assert torch.allclose(torch.tensor(steps).diff(), torch.full((max_epochs - 1,), 0.5 / (max_epochs - 1),
                                                                 dtype=torch.float64).float(), atol=1e-7)


def test_linear_ramp_single_epoch_and_unbound():
    m = DropBlock(0.3, 3)
    x = torch.ones(4, 2, 5, 5)
    assert m.train()(x) is x  # unbound: the start of training, drops nothing
    assert m.current_drop_prob() == 0.0
    m.state = TrainingState(epoch=0, max_epochs=1)  # one-epoch run: its only epoch is the last one
    assert m.current_drop_prob() == pytest.approx(0.3)
    assert DropBlock(0.3, 3, schedule="none").current_drop_prob() == 0.3


@pytest.mark.parametrize("cls", [DropBlock, DropBlockRandom, CorrDrop])
@pytest.mark.parametrize(("epoch", "max_epochs"), [(0, 10), (3, 10), (6, 10), (9, 10), (49, 50), (0, 1)])
def test_linear_schedule_per_epoch(cls, epoch, max_epochs):
    torch.manual_seed(5)
    c, h, b, target = 8, 12, 3, 0.4
    ctx = conv_ctx(c, h, h, epoch=epoch, max_epochs=max_epochs)
    m = bound(cls(target, b), ctx)
    p_now = target * (epoch / (max_epochs - 1) if max_epochs > 1 else 1.0)
    assert m.current_drop_prob() == pytest.approx(p_now)
    x = torch.ones(1500, c, h, h)
    y = m(x)
    if epoch == 0 and max_epochs > 1:
        assert y is x  # drop_prob 0 at the start of training
        return
    frac = (y == 0).float().mean().item()
    if cls is DropBlock:
        expected = expected_block_fraction(p_now, b, h, h)
    else:  # half of the maps, drop_prob doubled on them
        expected = n_selected(0.5, c) / c * expected_block_fraction(2 * p_now, b, h, h)
    # 1500 independent masks: sd of the fraction <= 0.004
    assert abs(frac - expected) < 0.012
    # the state object is shared: moving the epoch changes the rate without re-binding
    ctx.state.epoch, ctx.state.max_epochs = 0, 10
    assert m.current_drop_prob() == 0.0


def test_dropblock_mask_equals_torchvision_construction():
    """Same sampling as torchvision.ops.drop_block2d for one channel (odd block sizes)."""
    for b, h in [(3, 16), (5, 9), (1, 4)]:
        torch.manual_seed(6)
        tv = drop_block2d(torch.ones(20, 1, h, h), 0.3, b) > 0
        torch.manual_seed(6)
        ours = block_keep_mask(20, h, h, b, block_gamma(0.3, b, h, h)) > 0
        assert torch.equal(tv, ours)


# --------------------------------------------------------------------------- structure
@pytest.mark.parametrize("b", [2, 3, 4])
def test_dropblock_blocks_are_contiguous_squares_shared_across_maps(b):
    torch.manual_seed(7)
    h = 11
    m = bound(DropBlock(0.15, b, schedule="none"), conv_ctx(5, h, h))
    x = torch.rand(64, 5, h, h) + 0.1
    y = m(x)
    dropped = (y == 0)
    assert (dropped == dropped[:, :1]).all(), "one mask per example, shared by every map"
    d = dropped[:, :1].float()
    # morphological opening with a b x b square: every dropped unit lies in a b x b dropped
    # square fully inside the map
    seeds = -F.max_pool2d(-d, b, stride=1)  # erosion over valid windows
    opened = F.max_pool2d(F.pad(seeds, [b - 1] * 4), b, stride=1)
    assert torch.equal(opened, d)
    assert d.sum() > 0
    # the dropped count of every example is a union of b x b squares: at least b*b when non-empty
    per = d.flatten(1).sum(1)
    assert ((per == 0) | (per >= b * b)).all()


@pytest.mark.parametrize("cls", [DropBlock, DropBlockRandom, CorrDrop])
def test_normalisation_keeps_activation_sum(cls):
    torch.manual_seed(8)
    m = bound(cls(0.3, 3, schedule="none"), conv_ctx(8, 10, 10))
    x = torch.full((64, 8, 10, 10), 2.0)
    # constant input: count(M)/count_ones(M) makes the sum exact
    assert m(x).sum().item() == pytest.approx(x.sum().item(), rel=1e-5)
    # positive random input: the expected sum is kept; average of 40 draws within 1 %
    xr = torch.rand(64, 8, 10, 10)
    sums = torch.stack([m(xr).sum() for _ in range(40)])
    assert sums.mean().item() == pytest.approx(xr.sum().item(), rel=0.01)


def test_dropblockrandom_touches_only_selected_half():
    torch.manual_seed(9)
    c, h = 10, 8
    m = bound(DropBlockRandom(0.3, 3, schedule="none"), conv_ctx(c, h, h))
    x = torch.rand(500, c, h, h) + 0.5
    y = m(x)
    changed = (y != x).flatten(2).any(2)  # (N, C)
    # the mask of this batch drops something, so count(M)/count_ones(M) > 1: every selected map changes
    assert (changed.sum(1) == 5).all()
    # selected maps of one example carry the same mask; unselected maps are exactly the input
    for n in range(20):
        sel = changed[n]
        ratio = (y[n, sel] / x[n, sel])
        assert torch.allclose(ratio, ratio[:1].expand_as(ratio), atol=1e-5)
        assert torch.equal(y[n, ~sel], x[n, ~sel])
    # the selection is uniform: each map selected with probability 1/2 (sd 0.022 per map)
    assert torch.allclose(changed.float().mean(0), torch.full((c,), 0.5), atol=0.08)


def test_spatialdropoutmod_drops_the_most_similar_maps():
    torch.manual_seed(10)
    m = bound(SpatialDropoutMod(0.5), conv_ctx(6, 3, 3, weight=angle_kernels()))
    y = m(torch.rand(3000, 6, 3, 3) + 0.1)
    sets = dropped_sets((y == 0).flatten(2).all(2))
    assert set(sets) <= set(EXPECTED_SETS)
    for s, prob in EXPECTED_SETS.items():  # chosen map uniform; sd <= 0.0091
        assert sum(t == s for t in sets) / len(sets) == pytest.approx(prob, abs=0.04)


def test_corrdrop_masks_the_most_similar_maps():
    torch.manual_seed(11)
    m = bound(CorrDrop(0.4, 2, schedule="none"), conv_ctx(6, 6, 6, weight=angle_kernels()))
    x = torch.rand(3000, 6, 6, 6) + 0.5
    y = m(x)
    sets = dropped_sets((y != x).flatten(2).any(2))
    assert set(sets) <= set(EXPECTED_SETS)
    for s, prob in EXPECTED_SETS.items():
        assert sum(t == s for t in sets) / len(sets) == pytest.approx(prob, abs=0.04)


def test_similarity_rows_are_eq_2_16():
    torch.manual_seed(15)
    w = torch.randn(12, 5, 3, 3)
    w[4] = 0.0  # a zero kernel: similarity 0 to everything else
    rows = torch.tensor([4, 0, 7, 7])
    got = similarity_rows(w, rows)
    ref = kernel_similarity(w)[rows]
    off = torch.ones_like(ref, dtype=torch.bool)
    off[torch.arange(4), rows] = False  # the diagonal is replaced by 2 in the ranking anyway
    assert torch.allclose(got[off], ref[off], atol=1e-6)
    # against the closed form from the angle kernels: cos(angle difference)
    t = torch.tensor(ANGLES) * math.pi / 180
    assert torch.allclose(similarity_rows(angle_kernels(), torch.arange(6)), torch.cos(t[:, None] - t[None]),
                          atol=1e-6)


def test_similarity_ranking_follows_live_weights():
    """Changing the producer's kernels after bind changes which maps are dropped."""
    torch.manual_seed(12)
    ctx = conv_ctx(6, 3, 3, weight=angle_kernels())
    m = bound(SpatialDropoutMod(0.5), ctx)
    with torch.no_grad():  # reversed angles: map i now has angle ANGLES[5 - i]
        ctx.producer.weight.copy_(angle_kernels(ANGLES[::-1]))
    y = m(torch.rand(2000, 6, 3, 3) + 0.1)
    sets = set(dropped_sets((y == 0).flatten(2).all(2)))
    assert sets == {frozenset(5 - i for i in s) for s in EXPECTED_SETS}


def test_identical_kernels_still_drop_the_chosen_map_and_exact_count():
    torch.manual_seed(13)
    w = torch.ones(8, 3, 3, 3)  # every similarity is 1 (ties everywhere)
    m = bound(SpatialDropoutMod(0.25), conv_ctx(8, 1, 1, weight=w))
    # ties are broken by a random order drawn once per forward pass: many small batches
    zero = torch.cat([(m(torch.ones(10, 8, 1, 1)) == 0).flatten(1) for _ in range(150)])
    assert (zero.sum(1) == 2).all()
    # no map is favoured by its index (1500 examples: sd of each frequency 0.011; with ties broken
    # by index, map 0 would be dropped in 100 % of the examples)
    assert torch.allclose(zero.float().mean(0), torch.full((8,), 0.25), atol=0.055)


# --------------------------------------------------------------------------- eval / gradients
def all_modules(c=8, h=8, epoch=1):
    ctx = conv_ctx(c, h, h, epoch=epoch, max_epochs=1)
    return [Dropout(0.5), bound(SpatialDropout(0.5), ctx), bound(SpatialDropoutMod(0.5), ctx),
            bound(DropBlock(0.3, 3), ctx), bound(DropBlockRandom(0.3, 3), ctx), bound(CorrDrop(0.3, 3), ctx)]


def test_identity_in_eval_mode():
    x = torch.rand(4, 8, 8, 8)
    for m in all_modules():
        m.eval()
        assert m(x) is x, type(m).__name__


def test_gradients_flow_through_kept_units_only():
    torch.manual_seed(14)
    for m in all_modules():
        x = (torch.rand(16, 8, 8, 8) + 0.1).requires_grad_()
        y = m(x)
        y.sum().backward()
        factor = (y / x).detach()  # per-unit multiplier: 0 where dropped
        assert torch.allclose(x.grad, factor, atol=1e-6), type(m).__name__
        assert (x.grad[y == 0] == 0).all() and (x.grad[y != 0] > 0).all()
        assert (y == 0).any(), type(m).__name__


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("cls", [Dropout, SpatialDropout, SpatialDropoutMod])
@pytest.mark.parametrize("p", [1.0, -0.1, 1.5, float("nan")])
def test_bad_probability(cls, p):
    with pytest.raises(RegularizerConfigError, match=r"p must be in \[0, 1\)"):
        cls(p)


@pytest.mark.parametrize("cls", [DropBlock, DropBlockRandom, CorrDrop])
def test_bad_block_parameters(cls):
    with pytest.raises(RegularizerConfigError, match=r"drop_prob must be in \[0, 1\)"):
        cls(1.0, 3)
    with pytest.raises(RegularizerConfigError, match=r"block_size must be an integer >= 1"):
        cls(0.1, 0)
    with pytest.raises(RegularizerConfigError, match="schedule must be one of linear, none"):
        cls(0.1, 3, schedule="cosine")
    # larger than the feature map: at bind (from ctx.shape) ...
    with pytest.raises(RegularizerConfigError,
                       match=r"block_size must be in \[1, 4\].*'layerX'.*4x4\), got 5"):
        cls(0.1, 5).bind(conv_ctx(8, 4, 4))
    # ... and at forward time
    m = bound(cls(0.1, 5), conv_ctx(8, 8, 8))
    with pytest.raises(RegularizerConfigError, match=r"block_size must be in \[1, 4\]"):
        m(torch.rand(2, 8, 4, 4))
    with pytest.raises(RegularizerConfigError, match=r"\(N, C, H, W\)"):
        m(torch.rand(2, 8))


@pytest.mark.parametrize("cls", [DropBlockRandom, CorrDrop])
def test_doubled_drop_prob_must_stay_below_one(cls):
    # drop_prob / fraction is the drop probability on the selected maps at the end of the ramp
    for drop_prob, fraction, rng in [(0.51, 0.5, r"\[0, 0\.5\]"), (0.7, 0.5, r"\[0, 0\.5\]"),
                                     (0.3, 0.25, r"\[0, 0\.25\]")]:
        with pytest.raises(RegularizerConfigError,
                           match=rf"{cls.__name__}: drop_prob must be in {rng} for fraction"):
            cls(drop_prob, 3, fraction=fraction)
    assert cls(0.5, 3).prob_factor == 2.0  # the thesis's target, doubled to 1
    assert cls(0.9, 3, fraction=1.0).prob_factor == 1.0
    assert cls().drop_prob == 0.5 and cls().fraction == 0.5  # the thesis's values are valid
    # docs/dropout.md quotes the same admissible range as the code's message (0.5 included)
    with pytest.raises(RegularizerConfigError) as e:
        cls(0.51, 3)
    quoted = str(e.value).split(": ", 1)[1].split(":")[0]
    assert quoted == "drop_prob must be in [0, 0.5] for fraction=0.5"
    assert quoted in (Path(__file__).resolve().parents[1] / "docs" / "dropout.md").read_text()
    # at the end of the ramp the selected maps see probability 1; eq 4.1's seed rate stays < 1
    m = bound(cls(0.5, 3), conv_ctx(6, 4, 4, weight=angle_kernels()))
    assert m.current_gamma(4, 4) == pytest.approx(1.0 * 16 / (9 * 4)) and m.current_gamma(4, 4) < 1


@pytest.mark.parametrize("name", ["SpatialDropoutMod", "CorrDrop"])
def test_no_producing_convolution(name):
    from bioreg.lit.module import place_regularizers
    from bioreg.models import VGG11

    with pytest.raises(ContextError, match=rf"{name} needs the kernels .* point 'input'.*no weighted layer"):
        place_regularizers(VGG11(), {"x": {"at": "input", "_target_": f"bioreg.layers.dropout.{name}"}},
                           (3, 32, 32))
    lin = InsertionContext(point="fc", producer=nn.Linear(4, 4), shape=(4, 2, 2))
    with pytest.raises(ContextError, match="point 'fc'.*Linear"):
        bound(SpatialDropoutMod(0.5) if name == "SpatialDropoutMod" else CorrDrop(0.1, 1), lin)


def test_unbound_similarity_module_explains():
    with pytest.raises(RegularizerConfigError, match="needs the kernels"):
        SpatialDropoutMod(0.5).train()(torch.rand(2, 4, 3, 3))


# --------------------------------------------------------------------------- configs
METHODS = ["dropout", "spatialdropout", "spatialdropoutmod", "dropblock", "dropblockrandom", "corrdrop"]


def test_reg_configs_build_and_place_in_vgg11():
    from bioreg.lit.module import place_regularizers
    from bioreg.models import VGG11

    entries = {}
    for m in METHODS:
        cfg = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "reg" / f"{m}.yaml"))
        assert list(cfg) == [m] and cfg[m]["at"] == "layer1"
        entries.update(cfg)
    for name in entries:
        entries[name]["at"] = "layer8"
    net = VGG11()
    state = place_regularizers(net, entries, (3, 32, 32))
    state.epoch, state.max_epochs = 5, 10
    net.train()
    net(torch.rand(2, 3, 32, 32)).sum().backward()
    assert len(net.regularizers) == len(METHODS)


@pytest.mark.parametrize("method", METHODS[1:])
@pytest.mark.parametrize("k", [1, 3, 5, 6, 8])
def test_experiment_files(method, k):
    path = ROOT / "conf" / "experiment" / f"vgg11_{method}_layer{k}.yaml"
    text = path.read_text()
    assert text.startswith("# @package _global_")
    cfg = OmegaConf.load(path)
    assert cfg.name == path.stem
    assert list(cfg.defaults) == ["vgg11_base", {"override /reg": [method]}, "_self_"]
    assert cfg.reg[method].at == f"layer{k}"
