"""The per-image torchvision reference of the batched Singh augmentation (tests/test_device_data.py,
tests/test_protocols.py): the same crop, flip, rotation and affine stage(s), image by image, for the
parameters a :class:`~bioreg.data.augment.BatchAugment` sampled."""

from __future__ import annotations

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

__all__ = ["torchvision_reference"]

NEAREST = InterpolationMode.NEAREST


def torchvision_reference(x: torch.Tensor, p: dict[str, torch.Tensor], stages: tuple[str, ...] = ("",),
                          size: int = 32, pad: int = 4) -> torch.Tensor:
    """Pad by ``pad`` (zeros), crop ``size``, flip, rotate and apply the affine stage(s) named by their key
    suffix (``""``, ``"_1"``, …) where ``p`` says so; nearest interpolation, zero fill."""
    ref = []
    for k, img in enumerate(x):
        i, j = int(p["crop_i"][k]), int(p["crop_j"][k])
        y = TF.pad(img, [pad] * 4)[:, i : i + size, j : j + size]
        y = TF.horizontal_flip(y) if bool(p["flip"][k]) else y
        y = TF.rotate(y, float(p["angle"][k]), interpolation=NEAREST, fill=0)
        for s in stages:
            if bool(p[f"affine{s}"][k]):
                y = TF.affine(y, angle=0.0, translate=[int(p[f"tx{s}"][k]), int(p[f"ty{s}"][k])],
                              scale=float(p[f"scale{s}"][k]), shear=[0.0, 0.0], interpolation=NEAREST, fill=0)
        ref.append(y)
    return torch.stack(ref)
