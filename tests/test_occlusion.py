"""Pixel-level checks of the six occlusions (Dutta 2019 §2.4.3; definitions in docs/data.md)."""

from __future__ import annotations

import pytest
import torch

from bioreg.data.occlusion import OCCLUSION_KINDS, OccludedDataset, OcclusionParams, occlude, occlusion_mask


def _const(n: int = 2, c: int = 3, h: int = 32, w: int = 32, v: float = 0.7) -> torch.Tensor:
    return torch.full((n, c, h, w), v)


def test_central_zeroes_exactly_the_central_16x16_block():
    out = occlude(_const(), "central")
    expected = torch.full((32, 32), 0.7)
    expected[8:24, 8:24] = 0.0
    assert torch.equal(out, expected.expand(2, 3, 32, 32))


def test_checkerboard_8px_cells_top_left_occluded():
    m = occlusion_mask("checkerboard", 32, 32)
    for r in range(32):
        for c in range(32):
            assert bool(m[r, c]) == ((r // 8 + c // 8) % 2 == 0), (r, c)
    assert m.sum() == 512
    m1 = occlusion_mask("checkerboard", 32, 32, OcclusionParams(checker_phase=1))
    assert torch.equal(m1, ~m)


def test_horizontal_bars_cover_rows_0_3_8_11_16_19_24_27():
    out = occlude(_const(1), "horizontal_bars")[0, 0]
    rows = [r for r in range(32) if (out[r] == 0).all()]
    assert rows == [r for r in range(32) if r % 8 < 4]
    assert all(bool((out[r] == 0.7).all()) for r in range(32) if r not in rows)


def test_vertical_bars_cover_columns():
    out = occlude(_const(1), "vertical_bars")[0, 1]
    cols = [c for c in range(32) if (out[:, c] == 0).all()]
    assert cols == [c for c in range(32) if c % 8 < 4]
    assert torch.equal(occlusion_mask("vertical_bars", 32, 32), occlusion_mask("horizontal_bars", 32, 32).T)


def test_halves_bottom_and_right_by_default_and_switchable():
    hb = occlusion_mask("horizontal_half", 32, 32)
    assert hb[16:].all() and not hb[:16].any()
    vr = occlusion_mask("vertical_half", 32, 32)
    assert vr[:, 16:].all() and not vr[:, :16].any()
    p = OcclusionParams(horizontal_half="top", vertical_half="left")
    assert torch.equal(occlusion_mask("horizontal_half", 32, 32, p), ~hb)
    assert torch.equal(occlusion_mask("vertical_half", 32, 32, p), ~vr)


@pytest.mark.parametrize(
    "kind,frac",
    [
        ("central", 0.25),
        ("checkerboard", 0.5),
        ("horizontal_bars", 0.5),
        ("vertical_bars", 0.5),
        ("horizontal_half", 0.5),
        ("vertical_half", 0.5),
    ],
)
def test_occluded_fraction_and_scaling_with_image_size(kind, frac):
    assert occlusion_mask(kind, 32, 32).float().mean().item() == frac
    assert occlusion_mask(kind, 64, 64).float().mean().item() == frac  # sizes scale with the image


def test_fill_value_3d_input_and_purity():
    x = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    x0 = x.clone()
    out = occlude(x, "central", OcclusionParams(fill=0.5))
    assert torch.equal(x, x0)  # input untouched
    assert (out[:, 8:24, 8:24] == 0.5).all()
    keep = ~occlusion_mask("central", 32, 32)
    assert torch.equal(out[:, keep], x[:, keep])


def test_occluded_dataset_matches_function():
    xs = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    base = [(xs[i], i) for i in range(4)]
    for kind in OCCLUSION_KINDS:
        ds = OccludedDataset(base, kind, {"bar_width": 2})
        assert len(ds) == 4
        for i in range(4):
            x, y = ds[i]
            assert y == i
            assert torch.equal(x, occlude(xs[i], kind, OcclusionParams(bar_width=2)))


def test_bad_inputs_name_valid_choices():
    with pytest.raises(ValueError, match="valid kinds: central, checkerboard"):
        occlusion_mask("diagonal", 32, 32)
    with pytest.raises(ValueError, match="valid kinds"):
        OccludedDataset([], "nope")
    with pytest.raises(ValueError, match="valid parameters: fill"):
        OcclusionParams.from_dict({"size": 3})
    with pytest.raises(ValueError, match="valid choices: bottom, top"):
        OcclusionParams(horizontal_half="left")
    with pytest.raises(ValueError, match=r"valid range: \[0, 1\]"):
        OcclusionParams(fill=2.0)
    with pytest.raises(ValueError, match="bar_period"):
        OcclusionParams(bar_width=9)
