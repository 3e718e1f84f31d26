"""CIFAR-10 (Krizhevsky 2009), the data set of every thesis experiment (Dutta 2019 §2.4.2,
Strisciuglio et al. 2020, Singh 2023 §2.3.1), with CIFAR-10-C as its corruption suite.

Files: torchvision's ``CIFAR10`` layout ``<data_dir>/cifar-10-batches-py/`` (``data_batch_1..5``,
``test_batch``, ``batches.meta``; pickled dicts with ``data`` uint8 (N, 3072) row-major CHW and
``labels``), downloaded by torchvision from its URL with its MD5 when ``download: true``. Every
file is checked against torchvision's official MD5 list through :func:`bioreg.data._io.verify_files`
(errors name the file; successful checks are stamped so they are not repeated every run).

Images are kept as uint8 and converted to float32 in [0, 1] per item (no normalisation: the model
normalises with :attr:`mean` / :attr:`std`, the statistics of the 50 000 training images).

Augmentation (``augment``: ``none``, ``flip_crop``, ``singh2023``; :mod:`bioreg.data.augment`), applied
to the uint8 image before the conversion. With ``device_resident`` (default ``auto``: on for a GPU run)
the same preset runs batched on the device with the same distributions
(:meth:`CIFAR10DataModule.device_augmentation`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from torch.utils.data import Dataset

from ._io import FileSpec, verify_files
from .augment import BatchAugment, batch_augmentation, build_augmentation
from .base import BaseDataModule, resolve_count, stratified_split
from .cifar10c import (
    OFFICIAL_LAYOUT,
    CIFAR10CLayout,
    cifar10c_sets,
    load_cifar10c_labels,
    mismatched_label_blocks,
)
from .corruptions import CIFAR10C_CORRUPTIONS
from .errors import DataError

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR10DataModule",
    "CIFAR10Files",
    "UInt8ImageDataset",
    "verify_cifar10",
]

log = logging.getLogger(__name__)

#: per-channel mean and standard deviation of the 50 000 CIFAR-10 training images in [0, 1]
CIFAR10_MEAN: tuple[float, float, float] = (0.49139968, 0.48215841, 0.44653091)
CIFAR10_STD: tuple[float, float, float] = (0.24703223, 0.24348513, 0.26158784)

class CIFAR10Files(torchvision.datasets.CIFAR10):
    """torchvision's ``CIFAR10`` whose integrity check goes through :func:`_io.verify_files`.

    Same files and the same official MD5 list (``train_list``, ``test_list``, ``meta``; the batches
    metadata is checked too), but failures name the file and MD5 passes are cached in a stamp.
    Tests subclass this with the MD5s of the small files they write; the real list is never relaxed.
    """

    @classmethod
    def file_specs(cls) -> list[FileSpec]:
        specs = [FileSpec(name, md5) for name, md5 in [*cls.train_list, *cls.test_list]]
        return [*specs, FileSpec(cls.meta["filename"], cls.meta["md5"])]

    @classmethod
    def fix_hint(cls, root: str | os.PathLike[str]) -> str:
        return (
            f"set data.download=true (downloads {cls.url}, MD5 {cls.tgz_md5}), run "
            f"`python -m bioreg.data.cifar10 --download --data-dir {root}`, or download that file and "
            f"run `tar -xzf {cls.filename} -C {root}`"
        )

    @classmethod
    def verify(cls, root: str | os.PathLike[str], use_stamp: bool = True) -> None:
        """Raise :class:`DataError` naming every missing or mismatching file under ``root``."""
        verify_files(
            Path(root) / cls.base_folder, cls.file_specs(), dataset="CIFAR-10", fix=cls.fix_hint(root),
            use_stamp=use_stamp,
        )  # fmt: skip

    def _check_integrity(self) -> bool:
        try:
            self.verify(self.root)
        except DataError:
            return False
        return True


def verify_cifar10(
    root: str | os.PathLike[str], *, download: bool = False, dataset_cls: type[CIFAR10Files] = CIFAR10Files
) -> None:
    """Check the CIFAR-10 files under ``root``; with ``download``, fetch them first if they fail."""
    if download:
        try:
            dataset_cls.verify(root)
            return
        except DataError:
            pass
        try:
            dataset_cls(str(root), train=True, download=True)
        except Exception as exc:  # network errors of torchvision's downloader
            raise DataError(
                f"download of CIFAR-10 into {root} failed: {exc}. Fix: {dataset_cls.fix_hint(root)}"
            ) from exc
    dataset_cls.verify(root)


class UInt8ImageDataset(Dataset):
    """Items ``(x, y)`` of uint8 images ``images`` (N, C, H, W) restricted to ``indices``.

    ``x`` is float32 in [0, 1] (``uint8 / 255``) after the optional ``transform``, which acts on
    the uint8 image. Several data sets (train, train-eval, val) share one image tensor.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        indices: np.ndarray | None = None,
        transform: Any = None,
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.labels, self.transform = images, labels, transform
        self.indices = torch.as_tensor(
            np.arange(len(images)) if indices is None else np.asarray(indices), dtype=torch.long
        )

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        j = int(self.indices[index])
        x = self.images[j]
        if self.transform is not None:
            x = self.transform(x)
        return x.to(torch.float32).div_(255.0), int(self.labels[j])

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The selected uint8 images and labels, without ``transform`` (the device-resident source)."""
        return self.images.index_select(0, self.indices), self.labels.index_select(0, self.indices)


class CIFAR10DataModule(BaseDataModule):
    """CIFAR-10 with a stratified validation split, augmentation and the CIFAR-10-C suite.

    Args (besides those of :class:`~bioreg.data.base.BaseDataModule`):
        data_dir: folder holding ``cifar-10-batches-py/`` (downloaded there if ``download``).
        download: download CIFAR-10 with torchvision if the files are missing or damaged.
        val_size: validation images held out of the 50 000 training images, ``int`` count
            (10 000 in Dutta 2019 §2.4.2) or ``float`` fraction (0.1 in Singh 2023 §2.3.1);
            stratified by class, fixed by ``split_seed``.
        augment: ``none``, ``flip_crop`` or ``singh2023`` (module docstring), with the modifiers
            ``crop_padding_mode`` and ``affine_repeats`` (:mod:`bioreg.data.augment`).
        cifar10c_dir: folder holding ``CIFAR-10-C/`` (default: ``data_dir``).
        corruptions / severities: CIFAR-10-C corruptions (default all 19) and severities (1-5)
            of the ``corruption`` suite.
        corruption_seed: unused (CIFAR-10-C is precomputed); accepted for a uniform interface.
    """

    CORRUPTIONS = CIFAR10C_CORRUPTIONS
    num_classes = 10
    input_shape = (3, 32, 32)
    N_TRAIN = 50_000
    #: torchvision data set class (tests swap in one with the MD5s of their small files)
    DATASET_CLS: type[CIFAR10Files] = CIFAR10Files
    #: expected CIFAR-10-C files (tests swap in their small layout)
    CIFAR10C_LAYOUT: CIFAR10CLayout = OFFICIAL_LAYOUT

    def __init__(
        self,
        data_dir: str = "data",
        download: bool = True,
        batch_size: int = 128,
        eval_batch_size: int = 512,
        num_workers: int = 4,
        pin_memory: bool = False,
        val_size: int | float = 5000,
        split_seed: int = 0,
        augment: str = "flip_crop",
        cifar10c_dir: str | None = None,
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
        super().__init__(
            data_dir=data_dir, batch_size=batch_size, eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            pin_memory=pin_memory, val_size=val_size, split_seed=split_seed, occlusion=occlusion,
            occlusions=occlusions, corruptions=corruptions, severities=severities,
            corruption_seed=corruption_seed,
            device_resident=device_resident, select_on=select_on, crop_padding_mode=crop_padding_mode,
            affine_repeats=affine_repeats,
        )  # fmt: skip
        self.download = bool(download)
        self.augment = str(augment)
        # fails early on an unknown name
        self._augmentation = build_augmentation(self.augment, **self._modifiers())
        self.cifar10c_dir = str(cifar10c_dir) if cifar10c_dir is not None else self.data_dir
        self.check_selection(resolve_count(val_size, self.N_TRAIN, "val_size"))  # fail early on a bad size
        self._mean = CIFAR10_MEAN
        self._std = CIFAR10_STD
        self.split_indices: dict[str, np.ndarray] = {}

    def prepare_data(self) -> None:
        """Download (if ``download``) and verify the CIFAR-10 files (Lightning calls this on rank 0)."""
        verify_cifar10(self.data_dir, download=self.download, dataset_cls=self.DATASET_CLS)

    def _load(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        ds = self.DATASET_CLS(self.data_dir, train=train, download=False)
        x = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).contiguous()  # uint8 NCHW
        y = torch.as_tensor(np.asarray(ds.targets, dtype=np.int64))
        return x, y

    def _build(self) -> None:
        verify_cifar10(self.data_dir, download=self.download, dataset_cls=self.DATASET_CLS)
        x, y = self._load(train=True)
        n_val = resolve_count(self.val_size, len(y), "val_size")
        train_idx, val_idx = stratified_split(y.numpy(), n_val, self.split_seed)
        self.split_indices = {"train": train_idx, "val": val_idx}
        self._train = UInt8ImageDataset(x, y, train_idx, self._augmentation)
        self._train_eval = UInt8ImageDataset(x, y, train_idx)
        self._val = UInt8ImageDataset(x, y, val_idx)
        xt, yt = self._load(train=False)
        self._test = UInt8ImageDataset(xt, yt)

    def _modifiers(self) -> dict[str, Any]:
        return {"crop_padding_mode": self.crop_padding_mode, "affine_repeats": self.affine_repeats}

    def device_augmentation(self) -> BatchAugment | None:
        """:attr:`augment` batched on the device, same distributions (:mod:`bioreg.data.augment`)."""
        return batch_augmentation(self.augment, **self._modifiers())

    def corruption_sets(self) -> dict[str, Dataset]:
        """CIFAR-10-C per corruption and severity; verifies the files first (MD5 stamped), loads nothing.

        Raises:
            DataError: a file is missing, wrong-sized or fails its checksum (names it and the fix),
                or CIFAR-10-C's labels do not match the CIFAR-10 test labels.
        """
        if not self.corruptions or not self.severities:
            return {}
        sets = cifar10c_sets(
            self.cifar10c_dir, self.corruptions, self.severities, layout=self.CIFAR10C_LAYOUT
        )
        test = self.test_set()
        assert isinstance(test, UInt8ImageDataset)
        folder = next(iter(sets.values())).path.parent
        # every severity block of labels.npy, not only the ones requested
        bad = mismatched_label_blocks(load_cifar10c_labels(folder, self.CIFAR10C_LAYOUT), test.labels.numpy(),
                                      self.CIFAR10C_LAYOUT)
        if bad:
            raise DataError(
                f"the labels of CIFAR-10-C in {folder} do not match the CIFAR-10 test labels in "
                f"{self.data_dir} (severity block(s) {', '.join(map(str, bad))} of labels.npy differ: "
                "different order or data set); re-download both"
            )
        return dict(sets)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bioreg.data.cifar10 --download|--verify --data-dir DIR``."""
    p = argparse.ArgumentParser(
        prog="python -m bioreg.data.cifar10", description="Download and/or verify CIFAR-10 under DATA_DIR."
    )
    p.add_argument(
        "--data-dir", default="data", help="folder that holds cifar-10-batches-py/ (default: data)"
    )
    p.add_argument("--download", action="store_true", help="download with torchvision if missing or damaged")
    p.add_argument("--verify", action="store_true", help="check the MD5 of every file")
    args = p.parse_args(argv)
    if not (args.download or args.verify):
        p.error("give --download and/or --verify")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        verify_cifar10(args.data_dir, download=args.download)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"CIFAR-10 OK: {Path(args.data_dir) / CIFAR10Files.base_folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
