"""Device-resident data: images kept on the training device, batched augmentation, streamed evaluation.

With ``data.device_resident`` on (default ``auto``: on when the Trainer's device is a GPU, off on
the CPU) a data module hands Lightning these loaders instead of ``torch.utils.data.DataLoader``:

* :class:`DeviceTrainLoader` -- the training images live on the device (CIFAR-10 as uint8,
  150 MB); every epoch draws a permutation and the augmentation parameters from generators
  seeded by ``(seed, epoch)`` only, so the same seed gives the same batch order and the same
  augmentation on any run, and a run resumed at an epoch boundary continues with exactly the
  order the uninterrupted run would have used (the seed is part of the data module's
  ``state_dict``, saved in every checkpoint).
* :class:`BatchAugment` -- the per-image augmentations of :mod:`bioreg.data.cifar10` and
  :mod:`bioreg.data.digits`, batched, with the same distributions: random crop after zero
  padding and horizontal flip (one ``gather``), Singh's rotation of up to 15 deg and, with
  p = 0.5, a random affine map (translation rounded to whole pixels as torchvision does, scale
  0.9-1.1), both by ``affine_grid``-style sampling grids and ``grid_sample`` with nearest
  interpolation and zero fill (the per-image path's torchvision ``v2`` settings). Sampling
  (:meth:`BatchAugment.sample`) and application (:meth:`BatchAugment.apply`) are separate, so
  tests compare the batched result with torchvision's per-image functions for the same
  parameters.
* :class:`DeviceEvalLoader` -- validation and evaluation sets in batches on the device:
  in-memory sets are copied once (and cached), CIFAR-10-C's memory-mapped files are read in
  large chunks that go to the device through pinned memory without blocking; images are
  converted to float on the device (``uint8 / 255``, bit-identical to the per-image path) and
  occlusions are applied there too.

Nothing here synchronises the device with the host in the training loop: the permutation and
augmentation are drawn with device generators, indexing uses index tensors, no value is read
back (see ``tests/test_device_data.py`` and its GPU test under ``set_sync_debug_mode("error")``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .errors import DataError

__all__ = [
    "DEVICE_RESIDENT_CHOICES",
    "BatchAugment",
    "DeviceEvalLoader",
    "DeviceTrainLoader",
    "check_device_resident",
    "epoch_seed",
    "resolve_device_resident",
]

DEVICE_RESIDENT_CHOICES = ("auto", True, False)


def check_device_resident(value: Any) -> bool | str:
    """``true``, ``false`` or ``"auto"`` (strings ``"true"``/``"false"`` accepted), else a DataError."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("auto", "true", "false"):
        v = value.lower()
        return "auto" if v == "auto" else v == "true"
    raise DataError(f"device_resident={value!r} is invalid; valid values: auto, true, false")


def resolve_device_resident(value: bool | str, device: torch.device) -> bool:
    """``auto`` means: on for a CUDA device, off otherwise (the CPU path stays the DataLoader one)."""
    if value == "auto":
        return device.type == "cuda"
    return bool(value)


def epoch_seed(seed: int, epoch: int, stream: int) -> int:
    """A 63-bit seed for ``(seed, epoch, stream)``, independent across the three (NumPy SeedSequence)."""
    s = np.random.SeedSequence([int(seed) % 2**63, int(epoch), int(stream)]).generate_state(2, dtype=np.uint32)
    return int(s[0]) | (int(s[1] & 0x7FFFFFFF) << 32)


def _generator(device: torch.device, seed: int) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


# ---------------------------------------------------------------------------------------------
# batched augmentation
# ---------------------------------------------------------------------------------------------
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
        """The batched form of :func:`bioreg.data.cifar10.build_augmentation` ``(name)``."""
        if name == "none":
            return None
        if name == "flip_crop":
            return cls(crop_padding=4, flip=True)
        if name == "singh2023":
            return cls(crop_padding=4, flip=True, rotation=15.0, affine_p=0.5, translate=(0.1, 0.1), scale=(0.9, 1.1))
        from .cifar10 import AUGMENTATIONS

        raise DataError(f"augment={name!r} is invalid; valid augmentations: {', '.join(AUGMENTATIONS)}")

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
            x = src.reshape(n, c, -1).gather(2, idx.reshape(n, 1, h * w).expand(n, c, h * w)).reshape(n, c, h, w)
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


# ---------------------------------------------------------------------------------------------
# loaders
# ---------------------------------------------------------------------------------------------
def _to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 -> float32 in [0, 1] (``/ 255``, as :class:`~bioreg.data.cifar10.UInt8ImageDataset`)."""
    if x.dtype == torch.uint8:
        return x.to(torch.float32).div_(255.0)
    return x.to(torch.float32)


class DeviceTrainLoader:
    """Shuffled, augmented training batches of device-resident images (see the module docstring).

    Args:
        images: (N, C, H, W) uint8 or float in [0, 1], already on the device.
        labels: (N,) int64 on the same device.
        batch_size: batch size (the last batch may be smaller, as the DataLoader's).
        seed: base seed; epoch ``e`` uses the generators seeded by ``epoch_seed(seed, e, 0|1)``.
        epoch: callable returning the current epoch (the Trainer's ``current_epoch``); without it
            the loader counts its own iterations.
        augment: a :class:`BatchAugment` or ``None``.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        seed: int,
        epoch: Callable[[], int] | None = None,
        augment: BatchAugment | None = None,
    ) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.labels = images, labels
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self._epoch_fn = epoch
        self._count = 0
        self.augment = augment
        self.device = images.device

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.batch_size)

    def order(self, epoch: int) -> torch.Tensor:
        """The permutation of epoch ``epoch`` (on the device)."""
        g = _generator(self.device, epoch_seed(self.seed, epoch, 0))
        return torch.randperm(len(self.images), generator=g, device=self.device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = int(self._epoch_fn()) if self._epoch_fn is not None else self._count
        self._count += 1
        perm = self.order(epoch)
        gen = _generator(self.device, epoch_seed(self.seed, epoch, 1))
        bs = self.batch_size
        for start in range(0, len(perm), bs):
            idx = perm[start : start + bs]
            x = self.images.index_select(0, idx)
            if self.augment is not None:
                x = self.augment(x, gen)
            yield _to_float(x), self.labels.index_select(0, idx)


class DeviceEvalLoader:
    """Unshuffled evaluation batches ``(x float on device, y)`` read from ``source`` in large chunks.

    ``source(start, stop)`` returns ``(images, labels)`` of rows ``start..stop-1`` (uint8 or
    float images, on the host or already on the device); host chunks are pinned (CUDA) and copied
    without blocking, converted to float and cut into ``batch_size`` batches on the device;
    ``transform`` (e.g. an occlusion) then acts on each float batch.
    """

    def __init__(
        self,
        source: Callable[[int, int], tuple[torch.Tensor, torch.Tensor]],
        n: int,
        batch_size: int,
        device: torch.device,
        chunk: int = 10_000,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.source, self.n, self.batch_size, self.device = source, int(n), int(batch_size), device
        self.chunk = max(int(chunk) // self.batch_size, 1) * self.batch_size  # whole batches per chunk
        self.transform = transform

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def _fetch(self, start: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.source(start, min(start + self.chunk, self.n))
        if x.device != self.device:
            if self.device.type == "cuda":
                x, y = x.pin_memory(), y.pin_memory()
            x = x.to(self.device, non_blocking=True)
            y = y.to(self.device, non_blocking=True)
        return x, y

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        bs = self.batch_size
        nxt = self._fetch(0) if self.n else None
        for start in range(0, self.n, self.chunk):
            x, y = nxt  # type: ignore[misc]
            # the next chunk's host read and copy overlap this chunk's batches
            nxt = self._fetch(start + self.chunk) if start + self.chunk < self.n else None
            for b in range(0, len(x), bs):
                xb = _to_float(x[b : b + bs])
                if self.transform is not None:
                    xb = self.transform(xb)
                yield xb, y[b : b + bs]


def eval_source(ds: Dataset, device: torch.device, cache: dict | None = None
                ) -> tuple[Callable[[int, int], tuple[torch.Tensor, torch.Tensor]], Callable | None] | None:
    """``(source, transform)`` for a :class:`DeviceEvalLoader` over ``ds``, or ``None`` if ``ds`` has
    no batched form (then the caller keeps the DataLoader). Understood: data sets with
    ``tensors()`` (in-memory, copied to ``device`` once and kept in ``cache``), with ``read_rows``
    (CIFAR-10-C, streamed), and :class:`~bioreg.data.occlusion.OccludedDataset` over either."""
    from .occlusion import OccludedDataset, occlusion_mask

    transform = None
    if isinstance(ds, OccludedDataset):
        base, kind, params = ds.base, ds.kind, ds.params
        masks: dict[tuple[int, int], torch.Tensor] = {}

        def transform(x: torch.Tensor) -> torch.Tensor:
            key = (int(x.shape[-2]), int(x.shape[-1]))
            if key not in masks:
                masks[key] = occlusion_mask(kind, key[0], key[1], params).to(x.device)
            return torch.where(masks[key], torch.as_tensor(params.fill, dtype=x.dtype, device=x.device), x)

        ds = base
    if hasattr(ds, "tensors"):
        key = id(ds)
        if cache is not None and key in cache:
            x, y = cache[key][1:]
        else:
            x, y = ds.tensors()
            x, y = x.to(device), y.to(device)
            if cache is not None:
                cache[key] = (ds, x, y)  # keeps ds alive, so its id is not reused
        return (lambda a, b: (x[a:b], y[a:b])), transform
    if hasattr(ds, "read_rows"):
        return ds.read_rows, transform
    return None
