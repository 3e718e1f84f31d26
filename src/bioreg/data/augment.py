"""The training augmentations of the image data sets: their names, and each preset in both forms.

A preset is named once (:data:`AUGMENTATIONS`) and described once (:data:`PRESETS`: the parameters
of a random crop after zero padding, a horizontal flip, a rotation and a random affine map). From
that description come

* the per-image form, :func:`build_augmentation`: torchvision ``v2`` transforms on one uint8
  ``(C, H, W)`` image, applied by the DataLoader path (:class:`~bioreg.data.cifar10.UInt8ImageDataset`);
* the batched form, :func:`batch_augmentation`: a :class:`BatchAugment` applied on the device by
  :class:`~bioreg.data.device.DeviceTrainLoader`, with the same distributions: random crop and
  flip as one ``gather``, Singh's rotation of up to 15 deg and, with p = 0.5, a random affine map
  (translation rounded to whole pixels as torchvision does, scale 0.9-1.1), both by
  ``affine_grid``-style sampling grids and ``grid_sample`` with nearest interpolation and zero
  fill (the per-image path's ``v2`` settings). Sampling (:meth:`BatchAugment.sample`) and
  application (:meth:`BatchAugment.apply`) are separate, so tests compare the batched result with
  torchvision's per-image functions for the same parameters.

Presets (``augment`` of :class:`~bioreg.data.cifar10.CIFAR10DataModule`):

* ``none``;
* ``flip_crop``: random crop after 4 px zero padding, horizontal flip with p = 0.5
  (Strisciuglio et al. 2020);
* ``singh2023``: the authors' public code for Singh (2023) §2.3.1 -- random crop (padding 4),
  horizontal flip, random rotation up to 15 deg, and with p = 0.5 a random affine map
  (translation up to 10 % of the size, scale 0.9-1.1). Nearest-neighbour interpolation and
  zero fill, as torchvision's defaults on PIL images.

The digits' own crop (:mod:`bioreg.data.digits`) uses :class:`BatchAugment` directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from .errors import DataError

__all__ = ["AUGMENTATIONS", "PRESETS", "BatchAugment", "batch_augmentation", "build_augmentation",
           "check_augmentation"]

#: every preset's parameters (those of :class:`BatchAugment`); ``None``: no augmentation
PRESETS: Mapping[str, Mapping[str, Any] | None] = {
    "none": None,
    "flip_crop": {"crop_padding": 4, "flip": True},
    "singh2023": {"crop_padding": 4, "flip": True, "rotation": 15.0, "affine_p": 0.5, "translate": (0.1, 0.1),
                  "scale": (0.9, 1.1)},
}
AUGMENTATIONS: tuple[str, ...] = tuple(PRESETS)


def check_augmentation(name: str) -> Mapping[str, Any] | None:
    """The parameters of preset ``name``; a :class:`DataError` naming the valid presets otherwise."""
    if name not in PRESETS:
        raise DataError(f"augment={name!r} is invalid; valid augmentations: {', '.join(AUGMENTATIONS)}")
    return PRESETS[name]


def build_augmentation(name: str, size: int = 32) -> v2.Compose | None:
    """The training augmentation ``name`` on one uint8 ``(C, size, size)`` image (per-image path)."""
    p = check_augmentation(name)
    if p is None:
        return None
    steps: list[Any] = []
    if p.get("crop_padding", 0) > 0:
        steps.append(v2.RandomCrop(size, padding=p["crop_padding"]))
    if p.get("flip", False):
        steps.append(v2.RandomHorizontalFlip(p=0.5))
    if p.get("rotation", 0.0) > 0:
        steps.append(v2.RandomRotation(p["rotation"]))
    if p.get("affine_p", 0.0) > 0:
        affine = v2.RandomAffine(degrees=0, translate=p["translate"], scale=p["scale"])
        steps.append(v2.RandomApply([affine], p=p["affine_p"]))
    return v2.Compose(steps)


def batch_augmentation(name: str) -> BatchAugment | None:
    """The training augmentation ``name`` batched on the device (same distributions)."""
    p = check_augmentation(name)
    return None if p is None else BatchAugment(**p)


class BatchAugment:
    """Batched training augmentation with the distributions of the per-image path.

    Args:
        crop_padding: zero padding of the random crop (0 = no crop); offsets uniform on
            ``0..2*crop_padding`` in each direction, as ``v2.RandomCrop(size, padding=p)``.
        flip: horizontal flip with probability 0.5 (after the crop, as ``v2.RandomHorizontalFlip``).
        rotation: maximal rotation in degrees (0 = none); angle uniform on ``[-rotation, rotation]``
            (``v2.RandomRotation``, nearest, zero fill).
        affine_p: probability of the random affine map (``v2.RandomApply([...], p)``).
        translate: maximal translation as a fraction of the width/height; the pixel shift is
            ``round(U(-t*W, t*W))`` (torchvision's ``RandomAffine``).
        scale: ``(lo, hi)`` of the affine map's uniform scale.
    """

    def __init__(
        self,
        crop_padding: int = 0,
        flip: bool = False,
        rotation: float = 0.0,
        affine_p: float = 0.0,
        translate: tuple[float, float] = (0.0, 0.0),
        scale: tuple[float, float] = (1.0, 1.0),
    ) -> None:
        self.crop_padding = int(crop_padding)
        self.flip = bool(flip)
        self.rotation = float(rotation)
        self.affine_p = float(affine_p)
        self.translate = (float(translate[0]), float(translate[1]))
        self.scale = (float(scale[0]), float(scale[1]))

    @classmethod
    def from_name(cls, name: str) -> BatchAugment | None:
        """The batched form of the preset ``name`` (:func:`batch_augmentation`)."""
        return batch_augmentation(name)

    @property
    def geometric(self) -> bool:
        return self.rotation > 0 or self.affine_p > 0

    def __repr__(self) -> str:
        return (f"BatchAugment(crop_padding={self.crop_padding}, flip={self.flip}, rotation={self.rotation}, "
                f"affine_p={self.affine_p}, translate={self.translate}, scale={self.scale})")

    # -- parameters
    def sample(self, n: int, height: int, width: int, generator: torch.Generator, device: torch.device
               ) -> dict[str, torch.Tensor]:
        """Random parameters of ``n`` images (all tensors on ``device``; no host round trip)."""
        kw = {"generator": generator, "device": device}
        out: dict[str, torch.Tensor] = {}
        p = self.crop_padding
        if p > 0:
            out["crop_i"] = torch.randint(0, 2 * p + 1, (n,), **kw)
            out["crop_j"] = torch.randint(0, 2 * p + 1, (n,), **kw)
        if self.flip:
            out["flip"] = torch.rand(n, **kw) < 0.5
        if self.rotation > 0:
            out["angle"] = (torch.rand(n, dtype=torch.float64, **kw) * 2.0 - 1.0) * self.rotation
        if self.affine_p > 0:
            out["affine"] = torch.rand(n, **kw) < self.affine_p
            mx, my = self.translate[0] * width, self.translate[1] * height
            out["tx"] = torch.round((torch.rand(n, dtype=torch.float64, **kw) * 2.0 - 1.0) * mx)
            out["ty"] = torch.round((torch.rand(n, dtype=torch.float64, **kw) * 2.0 - 1.0) * my)
            lo, hi = self.scale
            out["scale"] = lo + torch.rand(n, dtype=torch.float64, **kw) * (hi - lo)
        return out

    # -- application
    def apply(self, x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """Augment the batch ``x`` (N, C, H, W), uint8 or float, with the given parameters."""
        n, c, h, w = x.shape
        p = self.crop_padding
        if p > 0 or "flip" in params:
            ar_h = torch.arange(h, device=x.device)
            ar_w = torch.arange(w, device=x.device)
            cols = ar_w.expand(n, w)
            if "flip" in params:
                cols = torch.where(params["flip"][:, None], (w - 1 - ar_w).expand(n, w), cols)
            src = F.pad(x, (p, p, p, p)) if p > 0 else x
            rows = ar_h.expand(n, h)
            if p > 0:
                rows = rows + params["crop_i"][:, None]
                cols = cols + params["crop_j"][:, None]
            idx = rows[:, :, None] * (w + 2 * p) + cols[:, None, :]  # (N, H, W) into the padded image
            flat = idx.reshape(n, 1, h * w).expand(n, c, h * w)
            x = src.reshape(n, c, -1).gather(2, flat).reshape(n, c, h, w)
        if "angle" in params or "affine" in params:
            dtype = x.dtype
            y = x.float()
            if "angle" in params:
                y = _warp(y, _rotation_inverse(params["angle"]))
            if "affine" in params:
                warped = _warp(y, _affine_inverse(params["tx"], params["ty"], params["scale"]))
                y = torch.where(params["affine"][:, None, None, None], warped, y)
            x = y.round_().to(dtype) if not dtype.is_floating_point else y.to(dtype)
        return x

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.apply(x, self.sample(x.shape[0], x.shape[-2], x.shape[-1], generator, x.device))


def _rotation_inverse(angle_deg: torch.Tensor) -> torch.Tensor:
    """(N, 2, 3) inverse maps (output pixel -> input pixel, centred coordinates) of a rotation.

    ``v2.functional.rotate(img, angle)`` samples the input at ``R(-angle)^-1``-mapped points of
    torchvision's convention; for the centred grid this is ``[[cos, -sin, 0], [sin, cos, 0]]``
    of ``angle`` (counter-clockwise on screen for positive angles).
    """
    a = torch.deg2rad(angle_deg)
    cos, sin = torch.cos(a), torch.sin(a)
    z = torch.zeros_like(a)
    return torch.stack([torch.stack([cos, -sin, z], 1), torch.stack([sin, cos, z], 1)], 1)


def _affine_inverse(tx: torch.Tensor, ty: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """(N, 2, 3) inverse maps of ``x -> scale * x + t`` (no rotation, no shear): ``(x - t) / scale``."""
    inv = 1.0 / scale
    z = torch.zeros_like(inv)
    return torch.stack([torch.stack([inv, z, -tx * inv], 1), torch.stack([z, inv, -ty * inv], 1)], 1)


def _warp(x: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """Resample ``x`` (N, C, H, W float) at ``inverse`` (N, 2, 3, float64) of each output pixel centre.

    Coordinates are pixel units relative to the image centre (pixel centres at ``k - W/2 + 0.5``),
    normalised by ``W/2``, ``H/2`` for ``grid_sample(align_corners=False)``; nearest neighbour,
    zeros outside -- torchvision's tensor implementation of ``rotate``/``affine``.
    """
    n, _, h, w = x.shape
    dev = x.device
    gx = torch.arange(w, device=dev, dtype=torch.float64) - (w * 0.5 - 0.5)
    gy = torch.arange(h, device=dev, dtype=torch.float64) - (h * 0.5 - 0.5)
    yy, xx = torch.meshgrid(gy, gx, indexing="ij")
    base = torch.stack([xx, yy, torch.ones_like(xx)], -1).reshape(1, h * w, 3)  # (1, HW, 3)
    pts = base @ inverse.to(device=dev, dtype=torch.float64).transpose(1, 2)  # (N, HW, 2)
    pts = pts / torch.tensor([w * 0.5, h * 0.5], device=dev, dtype=torch.float64)
    grid = pts.reshape(n, h, w, 2).to(x.dtype)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)
