"""Common corruptions computed on the fly (used by the digits data set).

A subset of the CIFAR-10-C corruptions of Hendrycks & Dietterich (ICLR 2019), re-implemented on
float tensors in [0, 1] with torch only. Names and severity parameters follow their CIFAR-10
definitions (constants from the authors' CIFAR-10-C generator as we know them; the reference
implementation works on uint8 PIL images with numpy/skimage, so values differ slightly):

=================  =======================================  ================================
name               operation                                parameter, severities 1..5
=================  =======================================  ================================
gaussian_noise     ``x + N(0, c^2)``                        c = .04 .06 .08 .09 .10
shot_noise         ``Poisson(c x) / c``                     c = 500 250 100 75 50
impulse_noise      salt & pepper, fraction c of the values  c = .01 .02 .03 .05 .07
speckle_noise      ``x + x N(0, c^2)``                      c = .06 .10 .12 .16 .20
gaussian_blur      Gaussian filter, std c px (edge: nearest) c = .4 .6 .7 .8 1.0
contrast           ``(x - m) c + m``, m = per-channel mean  c = .75 .5 .4 .3 .15
brightness         HSV value ``v + c``                      c = .05 .10 .15 .20 .30
=================  =======================================  ================================

Every result is clipped to [0, 1]. Random corruptions take a ``torch.Generator``;
:class:`CorruptedDataset` seeds one per item from ``(seed, name, severity, index)``, so a data set
is deterministic and independent of batching, worker count and access order.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

__all__ = [
    "CIFAR10C_CORRUPTIONS",
    "CORRUPTION_PARAMS",
    "ON_THE_FLY_CORRUPTIONS",
    "SEVERITIES",
    "CorruptedDataset",
    "check_corruptions",
    "check_severities",
    "corrupt",
    "item_seed",
]

SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)

#: the 19 CIFAR-10-C corruption names (docs/interfaces.md)
CIFAR10C_CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "defocus_blur", "glass_blur",
    "motion_blur", "zoom_blur", "gaussian_blur", "snow", "frost", "fog", "spatter", "brightness",
    "contrast", "elastic_transform", "pixelate", "jpeg_compression", "saturate",
)  # fmt: skip

#: per-corruption parameter c for severities 1..5 (see the module docstring)
CORRUPTION_PARAMS: dict[str, tuple[float, ...]] = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
    "shot_noise": (500.0, 250.0, 100.0, 75.0, 50.0),
    "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),
    "speckle_noise": (0.06, 0.10, 0.12, 0.16, 0.20),
    "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1.0),
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
    "brightness": (0.05, 0.10, 0.15, 0.20, 0.30),
}


def _gaussian_noise(x: torch.Tensor, c: float, g: torch.Generator | None) -> torch.Tensor:
    return x + c * torch.randn(x.shape, generator=g, dtype=x.dtype)


def _shot_noise(x: torch.Tensor, c: float, g: torch.Generator | None) -> torch.Tensor:
    return torch.poisson((x * c).clamp_min(0), generator=g) / c


def _impulse_noise(x: torch.Tensor, c: float, g: torch.Generator | None) -> torch.Tensor:
    hit = torch.rand(x.shape, generator=g) < c
    salt = torch.rand(x.shape, generator=g) < 0.5
    return torch.where(hit, salt.to(x.dtype), x)


def _speckle_noise(x: torch.Tensor, c: float, g: torch.Generator | None) -> torch.Tensor:
    return x + x * c * torch.randn(x.shape, generator=g, dtype=x.dtype)


def _gaussian_blur(x: torch.Tensor, sigma: float, g: torch.Generator | None) -> torch.Tensor:
    radius = max(1, int(math.ceil(4.0 * sigma)))  # scipy/skimage default truncate=4
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    n, ch, h, w = x.shape
    y = x.reshape(n * ch, 1, h, w)
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1))
    return y.reshape(n, ch, h, w)


def _contrast(x: torch.Tensor, c: float, g: torch.Generator | None) -> torch.Tensor:
    m = x.mean(dim=(-2, -1), keepdim=True)
    return (x - m) * c + m


def _brightness(x: torch.Tensor, c: float, g: torch.Generator | None) -> torch.Tensor:
    # HSV: with hue and saturation fixed, RGB scales linearly with V = max over channels.
    v = x.amax(dim=1, keepdim=True)
    v_new = (v + c).clamp(0.0, 1.0)
    ratio = torch.where(v > 0, v_new / v.clamp_min(1e-12), torch.zeros_like(v))
    return torch.where(v > 0, x * ratio, v_new.expand_as(x))


_FUNCS: dict[str, Callable[[torch.Tensor, float, torch.Generator | None], torch.Tensor]] = {
    "gaussian_noise": _gaussian_noise,
    "shot_noise": _shot_noise,
    "impulse_noise": _impulse_noise,
    "speckle_noise": _speckle_noise,
    "gaussian_blur": _gaussian_blur,
    "contrast": _contrast,
    "brightness": _brightness,
}

#: corruptions that can be computed on the fly, in CIFAR-10-C order
ON_THE_FLY_CORRUPTIONS: tuple[str, ...] = tuple(n for n in CIFAR10C_CORRUPTIONS if n in _FUNCS)


def check_corruptions(names, valid: tuple[str, ...] = ON_THE_FLY_CORRUPTIONS) -> tuple[str, ...]:
    """Validate a list of corruption names (``None`` = all of ``valid``)."""
    if names is None:
        return tuple(valid)
    if isinstance(names, str):
        names = [names]
    out = tuple(str(n) for n in names)
    for n in out:
        if n not in valid:
            extra = (
                " (a CIFAR-10-C corruption that is not computed on the fly)"
                if n in CIFAR10C_CORRUPTIONS
                else ""
            )
            raise ValueError(f"unknown corruption {n!r}{extra}; valid corruptions: {', '.join(valid)}")
    if len(set(out)) != len(out):
        raise ValueError(f"corruption list {list(out)} contains duplicates")
    return out


def check_severities(severities) -> tuple[int, ...]:
    """Validate a list of severities (``None`` = 1..5)."""
    if severities is None:
        return SEVERITIES
    if isinstance(severities, int):
        severities = [severities]
    out = tuple(severities)
    for s in out:
        if isinstance(s, bool) or not isinstance(s, int | np.integer) or int(s) not in SEVERITIES:
            raise ValueError(f"invalid corruption severity {s!r}; valid severities: 1, 2, 3, 4, 5")
    return tuple(int(s) for s in out)


def corrupt(
    x: torch.Tensor, name: str, severity: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Apply corruption ``name`` at ``severity`` (1..5) to ``x`` ((C,H,W) or (N,C,H,W), in [0, 1]).

    Random corruptions draw from ``generator`` (CPU); pass a seeded one for reproducible output.
    Returns a new tensor clipped to [0, 1].
    """
    check_corruptions([name])
    (severity,) = check_severities([severity])
    if x.dim() not in (3, 4):
        raise ValueError(f"corrupt expects a (C, H, W) or (N, C, H, W) tensor, got shape {tuple(x.shape)}")
    single = x.dim() == 3
    xb = (x[None] if single else x).detach().to("cpu", torch.float32)
    out = _FUNCS[name](xb, CORRUPTION_PARAMS[name][severity - 1], generator).clamp_(0.0, 1.0)
    out = out.to(dtype=x.dtype, device=x.device)
    return out[0] if single else out


def item_seed(seed: int, name: str, severity: int, index: int) -> int:
    """Seed of item ``index`` of corruption ``name``/``severity`` (stable across runs and processes)."""
    ss = np.random.SeedSequence(
        [int(seed) & 0xFFFFFFFF, zlib.crc32(name.encode()), int(severity), int(index)]
    )
    return int(ss.generate_state(1, dtype=np.uint64)[0] & ((1 << 63) - 1))


class CorruptedDataset(Dataset):
    """``base`` (items ``(x, y)``, ``x`` in [0, 1]) with corruption ``name`` at ``severity`` applied."""

    def __init__(self, base: Dataset, name: str, severity: int, seed: int = 0):
        check_corruptions([name])
        (self.severity,) = check_severities([severity])
        self.base = base
        self.name = name
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int):
        x, y = self.base[index]
        g = torch.Generator().manual_seed(item_seed(self.seed, self.name, self.severity, index))
        return corrupt(x, self.name, self.severity, g), y

    def __repr__(self) -> str:
        return f"CorruptedDataset(name={self.name!r}, severity={self.severity}, n={len(self)})"
