"""On-the-fly corruptions (CIFAR-10-C names, Hendrycks & Dietterich 2019) used by the digits data set."""

from __future__ import annotations

import pytest
import torch

from bioreg.data.corruptions import (
    CIFAR10C_CORRUPTIONS,
    CORRUPTION_PARAMS,
    ON_THE_FLY_CORRUPTIONS,
    CorruptedDataset,
    corrupt,
)
from bioreg.data.digits import load_digits_tensor


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    x, _ = load_digits_tensor()
    return x[:64]


def test_names_are_cifar10c_names():
    assert set(ON_THE_FLY_CORRUPTIONS) <= set(CIFAR10C_CORRUPTIONS)
    assert len(CIFAR10C_CORRUPTIONS) == 19
    assert all(len(CORRUPTION_PARAMS[n]) == 5 for n in ON_THE_FLY_CORRUPTIONS)


@pytest.mark.parametrize("name", ON_THE_FLY_CORRUPTIONS)
def test_range_shape_and_monotone_severity(images, name):
    devs = []
    for sev in range(1, 6):
        out = corrupt(images, name, sev, torch.Generator().manual_seed(0))
        assert out.shape == images.shape and out.dtype == images.dtype
        assert out.min() >= 0.0 and out.max() <= 1.0
        devs.append((out - images).abs().mean().item())
    assert devs[0] > 0
    assert all(a < b for a, b in zip(devs, devs[1:], strict=False)), devs


@pytest.mark.parametrize("name", ON_THE_FLY_CORRUPTIONS)
def test_deterministic_given_generator_seed(images, name):
    a = corrupt(images[:4], name, 3, torch.Generator().manual_seed(5))
    b = corrupt(images[:4], name, 3, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_gaussian_noise_std_matches_parameter():
    x = torch.full((1, 3, 64, 64), 0.5)
    out = corrupt(x, "gaussian_noise", 5, torch.Generator().manual_seed(0))
    assert abs((out - x).std().item() - 0.10) < 0.005


def test_gaussian_blur_matches_scipy(images):
    from scipy.ndimage import gaussian_filter

    out = corrupt(images[:2], "gaussian_blur", 5)
    ref = gaussian_filter(images[:2].numpy(), sigma=(0, 0, 1.0, 1.0), mode="nearest", truncate=4.0)
    assert torch.allclose(out, torch.from_numpy(ref).clamp(0, 1), atol=1e-5)


def test_contrast_and_brightness_closed_forms():
    x = torch.tensor([[[[0.2, 0.6]]]]).repeat(1, 3, 1, 1)
    assert torch.allclose(
        corrupt(x, "contrast", 2), torch.tensor([0.3, 0.5]).view(1, 1, 1, 2).expand(1, 3, 1, 2)
    )
    y = torch.zeros(3, 2, 2)
    y[0, 0, 0], y[1, 0, 0] = 0.5, 0.25  # a coloured pixel keeps its hue/saturation; black becomes grey
    out = corrupt(y, "brightness", 5)
    assert torch.allclose(out[:, 0, 0], torch.tensor([0.8, 0.4, 0.0]))
    assert torch.allclose(out[:, 1, 1], torch.full((3,), 0.3))


def test_corrupted_dataset_is_per_item_deterministic(images):
    base = [(images[i], i) for i in range(6)]
    ds = CorruptedDataset(base, "impulse_noise", 4, seed=3)
    a = [ds[i][0] for i in range(6)]
    b = [ds[i][0] for i in reversed(range(6))][::-1]  # access order does not matter
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    assert not torch.equal(a[0], CorruptedDataset(base, "impulse_noise", 4, seed=4)[0][0])
    assert ds[2][1] == 2


def test_bad_inputs_name_valid_choices(images):
    with pytest.raises(ValueError, match="valid corruptions: gaussian_noise"):
        corrupt(images, "fog", 1)
    with pytest.raises(ValueError, match="not computed on the fly"):
        CorruptedDataset([], "frost", 1)
    with pytest.raises(ValueError, match="valid corruptions"):
        corrupt(images, "blur", 1)
    with pytest.raises(ValueError, match="valid severities: 1, 2, 3, 4, 5"):
        corrupt(images, "contrast", 6)
