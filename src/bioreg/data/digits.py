"""scikit-learn's bundled handwritten digits as a small, offline CIFAR-shaped data set.

``sklearn.datasets.load_digits``: 1797 real 8x8 grey images (values 0..16) of the digits 0-9
(the UCI optical-recognition test set). They are scaled to [0, 1], resized to 32x32 (bilinear)
and replicated to 3 channels, so every CIFAR-10 model and regularizer runs on them unchanged.
Used for quick CPU checks and tests; the thesis experiments use CIFAR-10 (§2.4.2).

Split (fixed by ``split_seed``, stratified by class): ``test_size`` of the whole set is the test
set (default 0.2 -> 359 images); ``val_size`` of the remaining 1438 is the validation set
(default 0.25 -> 360); the rest trains (1078), i.e. 60/20/20. Counts are ``round(fraction * n)``
(Python rounding), each class contributing in proportion to its size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from bioreg.errors import require_extra

from .augment import BatchAugment, check_modifiers
from .base import BaseDataModule, TensorImageDataset, resolve_count, stratified_split
from .corruptions import ON_THE_FLY_CORRUPTIONS, CorruptedDataset
from .errors import DataError

__all__ = ["DigitsDataModule", "RandomCropPad", "load_digits_tensor"]


def load_digits_tensor(size: int = 32, channels: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """All 1797 digits as ``(x, y)``: ``x`` float32 (N, channels, size, size) in [0, 1], ``y`` int64."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(np.asarray(d.images, dtype=np.float32) / 16.0)[:, None]
    if size != x.shape[-1]:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = x.clamp_(0.0, 1.0).repeat(1, channels, 1, 1).contiguous()
    y = torch.from_numpy(np.asarray(d.target, dtype=np.int64))
    return x, y


class RandomCropPad:
    """Random crop of the original size after padding by ``padding`` px (zeros, or ``mode="reflect"``;
    global torch RNG)."""

    def __init__(self, padding: int, mode: str = "zeros") -> None:
        self.padding = int(padding)
        self.mode = check_modifiers(mode)[0]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        p = self.padding
        if p == 0:
            return x
        h, w = x.shape[-2:]
        pad = (p, p, p, p)
        xp = F.pad(x, pad) if self.mode == "zeros" else F.pad(x[None], pad, mode="reflect")[0]
        i, j = (int(v) for v in torch.randint(0, 2 * p + 1, (2,)))
        return xp[..., i : i + h, j : j + w]


class DigitsDataModule(BaseDataModule):
    """The sklearn digits as 3x32x32 RGB images in [0, 1] (see the module docstring).

    Args (besides those of :class:`~bioreg.data.base.BaseDataModule`):
        test_size: test examples, ``int`` count or ``float`` fraction of all 1797 (default 0.2).
        val_size: validation examples, count or fraction of the non-test pool (default 0.25).
        augment: random crop with zero padding during training (never flips: digits are not
            mirror-symmetric). Default off.
        crop_padding: padding of the random crop in px (at 32x32); ``crop_padding_mode`` pads with
            zeros or by reflection. ``affine_repeats`` has no effect here (no affine stage).
        data_dir: unused (the data ships with scikit-learn); accepted for a uniform config.
    """

    CORRUPTIONS = ON_THE_FLY_CORRUPTIONS
    num_classes = 10
    input_shape = (3, 32, 32)
    N_TOTAL = 1797

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 64,
        eval_batch_size: int = 512,
        num_workers: int = 0,
        pin_memory: bool = False,
        val_size: int | float = 0.25,
        test_size: int | float = 0.2,
        split_seed: int = 0,
        augment: bool = False,
        crop_padding: int = 2,
        occlusion: Mapping[str, Any] | None = None,
        occlusions: Sequence[str] | None = None,
        corruptions: Sequence[str] | None = None,
        severities: Sequence[int] | None = None,
        corruption_seed: int = 0,
        device_resident: bool | str = "auto",
        select_on: str = "validation",
        crop_padding_mode: str = "zeros",
        affine_repeats: int = 1,
    ) -> None:
        require_extra("sklearn", "digits", "data=digits (scikit-learn's bundled digits)")
        super().__init__(
            data_dir=data_dir, batch_size=batch_size, eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            pin_memory=pin_memory, val_size=val_size, split_seed=split_seed, occlusion=occlusion,
            occlusions=occlusions, corruptions=corruptions, severities=severities,
            corruption_seed=corruption_seed,
            device_resident=device_resident, select_on=select_on, crop_padding_mode=crop_padding_mode,
            affine_repeats=affine_repeats,
        )  # fmt: skip
        if isinstance(crop_padding, bool) or not isinstance(crop_padding, int) or not 0 <= crop_padding <= 16:
            raise DataError(f"crop_padding={crop_padding!r} is invalid; valid range: integers 0..16")
        self.test_size = test_size
        self.augment = bool(augment)
        self.crop_padding = int(crop_padding)
        n_test = resolve_count(test_size, self.N_TOTAL, "test_size")
        self.check_selection(resolve_count(val_size, self.N_TOTAL - n_test, "val_size"))  # fail early
        self.split_indices: dict[str, np.ndarray] = {}

    def _build(self) -> None:
        x, y = load_digits_tensor(self.input_shape[-1], self.input_shape[0])
        labels = y.numpy()
        n_test = resolve_count(self.test_size, len(y), "test_size")
        pool, test_idx = stratified_split(labels, n_test, self.split_seed)
        n_val = resolve_count(self.val_size, len(pool), "val_size")
        keep, val_rel = stratified_split(labels[pool], n_val, self.split_seed + 1)
        train_idx, val_idx = pool[keep], pool[val_rel]
        self.split_indices = {"train": train_idx, "val": val_idx, "test": test_idx}
        t = lambda idx: torch.as_tensor(idx, dtype=torch.long)  # noqa: E731
        xtr, ytr = x[t(train_idx)], y[t(train_idx)]
        self._mean = tuple(float(v) for v in xtr.mean(dim=(0, 2, 3)))
        self._std = tuple(float(v) for v in xtr.std(dim=(0, 2, 3)))
        on = self.augment and self.crop_padding > 0
        transform = RandomCropPad(self.crop_padding, self.crop_padding_mode) if on else None
        self._train = TensorImageDataset(xtr, ytr, transform)
        self._train_eval = TensorImageDataset(xtr, ytr)
        self._val = TensorImageDataset(x[t(val_idx)], y[t(val_idx)])
        self._test = TensorImageDataset(x[t(test_idx)], y[t(test_idx)])

    def device_augmentation(self) -> BatchAugment | None:
        """The random crop batched on the device (same offsets distribution, never flips)."""
        if not (self.augment and self.crop_padding > 0):
            return None
        return BatchAugment(crop_padding=self.crop_padding, crop_padding_mode=self.crop_padding_mode)

    def corruption_sets(self) -> dict[str, Dataset]:
        test = self.test_set()
        return {
            f"corruption/{name}/{sev}": CorruptedDataset(test, name, sev, seed=self.corruption_seed)
            for name in self.corruptions
            for sev in self.severities
        }
