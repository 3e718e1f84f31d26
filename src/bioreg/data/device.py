"""Device-resident data: images kept on the training device, batched augmentation, streamed evaluation.

With ``data.device_resident`` on (default ``auto``: on when the Trainer's device is a GPU, off on
the CPU) a data module hands Lightning these loaders instead of ``torch.utils.data.DataLoader``:

* :class:`DeviceTrainLoader` -- the training images live on the device (CIFAR-10 as uint8,
  150 MB); every epoch draws a permutation and the augmentation parameters from generators
  seeded by ``(seed, epoch)`` only, so the same seed gives the same batch order and the same
  augmentation on any run, and a run resumed at an epoch boundary continues with exactly the
  order the uninterrupted run would have used (the seed is part of the data module's
  ``state_dict``, saved in every checkpoint).
* the batched augmentation (:class:`~bioreg.data.augment.BatchAugment`, in
  :mod:`bioreg.data.augment` beside the per-image presets it mirrors), applied to each batch by
  the training loader;
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
from torch.utils.data import Dataset

from .augment import BatchAugment
from .errors import DataError
from .occlusion import OccludedDataset, occlusion_mask

__all__ = [
    "DEVICE_RESIDENT_CHOICES",
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
    s = np.random.SeedSequence([int(seed) % 2**63, int(epoch), int(stream)]).generate_state(2,
                                                                                            dtype=np.uint32)
    return int(s[0]) | (int(s[1] & 0x7FFFFFFF) << 32)


def _generator(device: torch.device, seed: int) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


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
