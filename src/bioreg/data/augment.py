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

Two modifiers apply to every preset (keys of the data modules, docs/decisions/protocols.md):
``crop_padding_mode`` (``zeros``, the default, or ``reflect``: the push-pull authors' code pads by
reflection) and ``affine_repeats`` (how many independent ``RandomApply([RandomAffine], p)`` stages a
preset with an affine map has: 1, or 2 as in Singh's public code, where P(>= 1 affine) = 1 - (1 - p)^2
= 0.75). Presets without a crop or an affine map are not affected by them.

The digits' own crop (:mod:`bioreg.data.digits`) uses :class:`BatchAugment` directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from .errors import DataError

__all__ = ["AUGMENTATIONS", "PADDING_MODES", "PRESETS", "BatchAugment", "batch_augmentation",
           "build_augmentation", "check_augmentation", "check_modifiers"]

#: every preset's parameters (those of :class:`BatchAugment`); ``None``: no augmentation
PRESETS: Mapping[str, Mapping[str, Any] | None] = {
    "none": None,
    "flip_crop": {"crop_padding": 4, "flip": True},
    "singh2023": {"crop_padding": 4, "flip": True, "rotation": 15.0, "affine_p": 0.5, "translate": (0.1, 0.1),
                  "scale": (0.9, 1.1)},
}
AUGMENTATIONS: tuple[str, ...] = tuple(PRESETS)
#: padding of the random crop: bioreg's name -> torchvision's ``padding_mode``
PADDING_MODES: Mapping[str, str] = {"zeros": "constant", "reflect": "reflect"}


def check_augmentation(name: str) -> Mapping[str, Any] | None:
    """The parameters of preset ``name``; a :class:`DataError` naming the valid presets otherwise."""
    if name not in PRESETS:
        raise DataError(f"augment={name!r} is invalid; valid augmentations: {', '.join(AUGMENTATIONS)}")
    return PRESETS[name]


def check_modifiers(crop_padding_mode: str = "zeros", affine_repeats: int = 1) -> tuple[str, int]:
    """``(crop_padding_mode, affine_repeats)`` checked; a :class:`DataError` naming the valid values."""
    if crop_padding_mode not in PADDING_MODES:
        raise DataError(f"crop_padding_mode={crop_padding_mode!r} is invalid; "
                        f"valid: {', '.join(PADDING_MODES)}")
    n = affine_repeats
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 4:
        raise DataError(f"affine_repeats={n!r} is invalid; valid: an integer 1..4 (Singh's code: 2)")
    return crop_padding_mode, int(affine_repeats)


def build_augmentation(name: str, size: int = 32, *, crop_padding_mode: str = "zeros",
                       affine_repeats: int = 1) -> v2.Compose | None:
    """The training augmentation ``name`` on one uint8 ``(C, size, size)`` image (per-image path), with
    the crop padded by ``crop_padding_mode`` and ``affine_repeats`` random-affine stages."""
    p = check_augmentation(name)
    mode, repeats = check_modifiers(crop_padding_mode, affine_repeats)
    if p is None:
        return None
    steps: list[Any] = []
    if p.get("crop_padding", 0) > 0:
        if mode == "zeros":  # the call as before: the same transform, the same random numbers
            steps.append(v2.RandomCrop(size, padding=p["crop_padding"]))
        else:
            steps.append(v2.RandomCrop(size, padding=p["crop_padding"], padding_mode=PADDING_MODES[mode]))
    if p.get("flip", False):
        steps.append(v2.RandomHorizontalFlip(p=0.5))
    if p.get("rotation", 0.0) > 0:
        steps.append(v2.RandomRotation(p["rotation"]))
    if p.get("affine_p", 0.0) > 0:
        for _ in range(repeats):  # independent stages, as the authors' two RandomApply entries
            affine = v2.RandomAffine(degrees=0, translate=p["translate"], scale=p["scale"])
            steps.append(v2.RandomApply([affine], p=p["affine_p"]))
    return v2.Compose(steps)


def batch_augmentation(name: str, *, crop_padding_mode: str = "zeros", affine_repeats: int = 1
                       ) -> BatchAugment | None:
    """The training augmentation ``name`` batched on the device (same distributions)."""
    p = check_augmentation(name)
    mode, repeats = check_modifiers(crop_padding_mode, affine_repeats)
    if p is None:
        return None
    return BatchAugment(**p, crop_padding_mode=mode, affine_repeats=repeats)


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
        crop_padding_mode: ``zeros`` or ``reflect`` (``v2.RandomCrop(padding_mode="reflect")``, which
            is ``F.pad(mode="reflect")``: the edge row is not repeated).
        affine_repeats: independent affine stages (each applied with ``affine_p``, one after the
            other); the parameters of stage ``k >= 1`` are drawn after all others, under the keys
            ``affine_k``, ``tx_k``, ``ty_k``, ``scale_k``, so one stage draws what it always drew.
    """

    def __init__(
        self,
        crop_padding: int = 0,
        flip: bool = False,
        rotation: float = 0.0,
        affine_p: float = 0.0,
        translate: tuple[float, float] = (0.0, 0.0),
        scale: tuple[float, float] = (1.0, 1.0),
        crop_padding_mode: str = "zeros",
        affine_repeats: int = 1,
    ) -> None:
        self.crop_padding_mode, self.affine_repeats = check_modifiers(crop_padding_mode, affine_repeats)
        self.crop_padding = int(crop_padding)
        self.flip = bool(flip)
        self.rotation = float(rotation)
        self.affine_p = float(affine_p)
        self.translate = (float(translate[0]), float(translate[1]))
        self.scale = (float(scale[0]), float(scale[1]))

    @classmethod
    def from_name(cls, name: str, **modifiers: Any) -> BatchAugment | None:
        """The batched form of the preset ``name`` (:func:`batch_augmentation`)."""
        return batch_augmentation(name, **modifiers)

    @property
    def geometric(self) -> bool:
        return self.rotation > 0 or self.affine_p > 0

    def __repr__(self) -> str:
        extra = "" if (self.crop_padding_mode, self.affine_repeats) == ("zeros", 1) else (
            f", crop_padding_mode={self.crop_padding_mode!r}, affine_repeats={self.affine_repeats}")
        return (f"BatchAugment(crop_padding={self.crop_padding}, flip={self.flip}, rotation={self.rotation}, "
                f"affine_p={self.affine_p}, translate={self.translate}, scale={self.scale}{extra})")

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
            for k in range(self.affine_repeats):  # stage 0 first, as before; later stages after it
                out.update(self._affine_params(n, height, width, "" if k == 0 else f"_{k}", kw))
        return out

    def _affine_params(self, n: int, height: int, width: int, suffix: str,
                       kw: dict) -> dict[str, torch.Tensor]:
        """One affine stage: whether it applies, the pixel shifts and the scale (keys end in ``suffix``)."""
        out = {f"affine{suffix}": torch.rand(n, **kw) < self.affine_p}
        mx, my = self.translate[0] * width, self.translate[1] * height
        out[f"tx{suffix}"] = torch.round((torch.rand(n, dtype=torch.float64, **kw) * 2.0 - 1.0) * mx)
        out[f"ty{suffix}"] = torch.round((torch.rand(n, dtype=torch.float64, **kw) * 2.0 - 1.0) * my)
        lo, hi = self.scale
        out[f"scale{suffix}"] = lo + torch.rand(n, dtype=torch.float64, **kw) * (hi - lo)
        return out

    def affine_stages(self) -> list[str]:
        """The key suffixes of the affine stages, in the order they are applied."""
        return ["" if k == 0 else f"_{k}" for k in range(self.affine_repeats)] if self.affine_p > 0 else []

    # -- application
    def apply(self, x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """Augment the batch ``x`` (N, C, H, W), uint8 or float, with the given parameters."""
        if self.crop_padding > 0 or "flip" in params:
            x = self._crop_flip(x, params)
        stages = [s for s in self.affine_stages() if f"affine{s}" in params]
        if "angle" in params or stages:
            dtype = x.dtype
            y = x.float()
            if "angle" in params:
                y = _warp(y, _rotation_inverse(params["angle"]))
            for s in stages:
                warped = _warp(y, _affine_inverse(params[f"tx{s}"], params[f"ty{s}"], params[f"scale{s}"]))
                y = torch.where(params[f"affine{s}"][:, None, None, None], warped, y)
            x = y.round_().to(dtype) if not dtype.is_floating_point else y.to(dtype)
        return x

    def _crop_flip(self, x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """Random crop (zero or reflected border) and horizontal flip as one ``gather``."""
        n, c, h, w = x.shape
        p = self.crop_padding
        ar_h = torch.arange(h, device=x.device)
        ar_w = torch.arange(w, device=x.device)
        cols = ar_w.expand(n, w)
        if "flip" in params:
            cols = torch.where(params["flip"][:, None], (w - 1 - ar_w).expand(n, w), cols)
        rows = ar_h.expand(n, h)
        if p > 0:
            rows = rows + params["crop_i"][:, None]
            cols = cols + params["crop_j"][:, None]
        if p > 0 and self.crop_padding_mode == "reflect":  # the source pixels of the reflected border
            src = x
            idx = _reflect(rows - p, h)[:, :, None] * w + _reflect(cols - p, w)[:, None, :]
        else:
            src = F.pad(x, (p, p, p, p)) if p > 0 else x
            idx = rows[:, :, None] * (w + 2 * p) + cols[:, None, :]  # (N, H, W) into the padded image
        flat = idx.reshape(n, 1, h * w).expand(n, c, h * w)
        return src.reshape(n, c, -1).gather(2, flat).reshape(n, c, h, w)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.apply(x, self.sample(x.shape[0], x.shape[-2], x.shape[-1], generator, x.device))


def _reflect(q: torch.Tensor, size: int) -> torch.Tensor:
    """Index ``q`` in ``[-size + 1, 2 size - 2]`` reflected into ``0..size-1`` without repeating the edge
    (``F.pad(mode="reflect")``: -1 -> 1, size -> size - 2)."""
    q = q.abs()
    return torch.where(q > size - 1, 2 * (size - 1) - q, q)


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
