"""Base class of the bioreg data modules (the seam is described in ``docs/interfaces.md``).

A subclass implements :meth:`BaseDataModule._build` (load the data and set the four splits) and,
if it has a corruption suite, :meth:`BaseDataModule.corruption_sets`. The base class provides the
Lightning data loaders, the evaluation suites (clean test set, the six occlusions of Dutta 2019
§2.4.3 built from :meth:`test_set`, corruptions), deterministic splitting and worker seeding.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .augment import BatchAugment, check_modifiers
from .corruptions import SEVERITIES, check_corruptions, check_severities
from .device import (
    DeviceEvalLoader,
    DeviceTrainLoader,
    check_device_resident,
    eval_source,
    resolve_device_resident,
)
from .errors import DataError
from .occlusion import OCCLUSION_KINDS, OccludedDataset, OcclusionParams

__all__ = [
    "EVAL_SUITES",
    "SELECT_ON",
    "BaseDataModule",
    "TensorImageDataset",
    "resolve_count",
    "seed_worker",
    "stratified_split",
]

EVAL_SUITES: tuple[str, ...] = ("clean", "occlusion", "corruption")
#: the split the best epoch is chosen on (Lightning's validation loader): the held-out validation images,
#: or -- as the authors' public codes did (docs/decisions/protocols.md) -- the test set
SELECT_ON: tuple[str, ...] = ("validation", "test")


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed ``random`` and NumPy from the worker's torch seed.

    PyTorch gives each worker the seed ``base_seed + worker_id`` where ``base_seed`` is drawn from
    the main process' RNG (seeded by ``seed_everything``), so augmentation that uses torch, NumPy
    or ``random`` is reproducible for a given run seed and worker count.
    """
    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


def resolve_count(size: int | float, total: int, what: str = "val_size") -> int:
    """An ``int`` count, or a ``float`` fraction of ``total`` (rounded), checked to be in 0..total-1."""
    if isinstance(size, bool):
        raise DataError(
            f"{what}={size!r} is invalid; valid values: an int count or a float fraction in [0, 1)"
        )
    if isinstance(size, float):
        if not 0.0 <= size < 1.0:
            raise DataError(f"{what}={size!r} is invalid; a fraction must be in [0, 1)")
        n = int(round(size * total))
    elif isinstance(size, int | np.integer):
        n = int(size)
    else:
        raise DataError(
            f"{what}={size!r} is invalid; valid values: an int count or a float fraction in [0, 1)"
        )
    if not 0 <= n < total:
        raise DataError(f"{what}={size!r} gives {n} of {total} examples; valid range: 0..{total - 1}")
    return n


def stratified_split(
    labels: Sequence[int] | np.ndarray, n_holdout: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into ``(keep, holdout)`` with ``len(holdout) == n_holdout``, stratified by label.

    Class ``k`` with ``n_k`` examples contributes ``n_holdout * n_k / n`` examples to the holdout,
    rounded by the largest-remainder method so the total is exact. Within each class the examples
    are drawn with ``numpy.random.default_rng(seed)``, so the split depends only on ``seed`` (not on
    the run seed). Both index arrays are sorted.
    """
    y = np.asarray(labels)
    n = len(y)
    if not 0 <= n_holdout <= n:
        raise DataError(f"cannot hold out {n_holdout} of {n} examples")
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    quota = n_holdout * counts / n
    take = np.floor(quota).astype(int)
    rest = n_holdout - take.sum()
    order = np.argsort(-(quota - take), kind="stable")
    take[order[:rest]] += 1
    holdout = []
    for k, t in zip(classes, take, strict=True):
        idx = np.flatnonzero(y == k)
        holdout.append(rng.permutation(idx)[:t])
    hold = np.sort(np.concatenate(holdout)) if holdout else np.zeros(0, dtype=int)
    keep = np.setdiff1d(np.arange(n), hold)
    return keep, hold


class TensorImageDataset(Dataset):
    """Images ``x`` (N, C, H, W) float in [0, 1] and labels ``y`` (N,); items ``(x[i], int(y[i]))``.

    ``transform`` (optional) is applied to the image of each item (training augmentation).
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, transform=None):
        if len(x) != len(y):
            raise ValueError(f"{len(x)} images but {len(y)} labels")
        self.x, self.y, self.transform = x, y, transform

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int):
        x = self.x[index]
        if self.transform is not None:
            x = self.transform(x)
        return x, int(self.y[index])

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All images and labels, without ``transform`` (the device-resident path's source)."""
        return self.x, self.y


def _check_occlusions(occlusions: Sequence[str] | None) -> tuple[str, ...]:
    """The occlusion kinds to evaluate (``None``: all of them); an unknown kind is a DataError."""
    if occlusions is None:
        return OCCLUSION_KINDS
    for k in occlusions:
        if k not in OCCLUSION_KINDS:
            raise DataError(f"unknown occlusion kind {k!r}; valid kinds: {', '.join(OCCLUSION_KINDS)}")
    return tuple(occlusions)


class BaseDataModule(L.LightningDataModule):
    """Common part of every bioreg data module.

    Args:
        data_dir: where the data set lives (or is downloaded to).
        batch_size: training batch size.
        eval_batch_size: batch size of validation and evaluation loaders.
        num_workers: DataLoader worker processes (0 = load in the main process).
        pin_memory: pin host memory in the loaders (useful with a GPU).
        val_size: validation examples taken from the training pool: an ``int`` count or a ``float``
            fraction of the pool.
        split_seed: seed of the train/val(/test) split; fixed, independent of the run seed, so all
            runs and seeds see the same split.
        occlusion: occlusion geometry, keys of :class:`~bioreg.data.occlusion.OcclusionParams`.
        occlusions: occlusion kinds evaluated by the ``occlusion`` suite (``None`` = all six).
        corruptions: corruption names evaluated by the ``corruption`` suite (``None`` = all the
            data set supports, :attr:`CORRUPTIONS`).
        severities: corruption severities (``None`` = 1..5).
        corruption_seed: seed of on-the-fly random corruptions.
        device_resident: keep the images on the training device and augment batches there
            (:mod:`bioreg.data.device`): ``true``, ``false`` or ``"auto"`` (default) = on when the
            Trainer's device is a GPU, off on the CPU (where the DataLoader path is unchanged).
        select_on: ``validation`` (default) or ``test``: the set the validation loader gives, i.e.
            the one the best epoch is chosen on. ``test`` is what the authors' public codes did; it
            is optimistic, and records say so (``protocol.selected_on``).
        crop_padding_mode, affine_repeats: modifiers of the training augmentation
            (:func:`bioreg.data.augment.check_modifiers`: ``zeros``/``reflect``; 1..4 affine stages).
    """

    #: names the ``corruption`` suite can evaluate (set by subclasses)
    CORRUPTIONS: tuple[str, ...] = ()
    num_classes: int = 0
    input_shape: tuple[int, int, int] = (0, 0, 0)

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 128,
        eval_batch_size: int = 512,
        num_workers: int = 0,
        pin_memory: bool = False,
        val_size: int | float = 0.1,
        split_seed: int = 0,
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
        super().__init__()
        if select_on not in SELECT_ON:
            raise DataError(f"select_on={select_on!r} is invalid; valid: {', '.join(SELECT_ON)}")
        self.select_on = select_on
        self.crop_padding_mode, self.affine_repeats = check_modifiers(crop_padding_mode, affine_repeats)
        for name, v, lo in (
            ("batch_size", batch_size, 1),
            ("eval_batch_size", eval_batch_size, 1),
            ("num_workers", num_workers, 0),
        ):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise DataError(f"{name}={v!r} is invalid; valid values: integers >= {lo}")
        self.data_dir = str(data_dir)
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size)
        self.num_workers = int(num_workers)
        self.pin_memory = bool(pin_memory)
        self.val_size = val_size
        self.split_seed = int(split_seed)
        self.occlusion = OcclusionParams.from_dict(occlusion)
        self.occlusions = _check_occlusions(occlusions)
        self.corruptions = check_corruptions(corruptions, self.CORRUPTIONS) if self.CORRUPTIONS else ()
        if corruptions and not self.CORRUPTIONS:
            raise DataError(f"{type(self).__name__} has no corruption suite; set corruptions: null")
        self.severities = check_severities(severities) if severities is not None else SEVERITIES
        self.corruption_seed = int(corruption_seed)
        self.device_resident = check_device_resident(device_resident)
        self.device: torch.device | None = None  # the Trainer's device, once a loader was asked for
        self.data_seed: int | None = None  # base seed of the device-resident order (resumable state)
        self._device_cache: dict = {}
        self._mean: tuple[float, ...] | None = None
        self._std: tuple[float, ...] | None = None
        self._train: Dataset | None = None
        self._val: Dataset | None = None
        self._test: Dataset | None = None
        self._train_eval: Dataset | None = None
        self._built = False

    # ----------------------------------------------------------------- subclass hooks
    def _build(self) -> None:
        """Load the data; set ``_train``, ``_val``, ``_test``, ``_train_eval`` (and ``_mean``/``_std``)."""
        raise NotImplementedError

    def corruption_sets(self) -> dict[str, Dataset]:
        """``{f"corruption/{name}/{severity}": dataset}`` for the configured corruptions."""
        raise DataError(f"{type(self).__name__} has no corruption suite; valid suites here: clean, occlusion")

    # ----------------------------------------------------------------- setup
    def setup(self, stage: str | None = None) -> None:
        self._ensure_built()

    def _ensure_built(self) -> None:
        if not self._built:
            self._build()
            self._built = True

    @property
    def mean(self) -> tuple[float, ...]:
        """Per-channel mean used by the model's normalisation."""
        if self._mean is None:
            self._ensure_built()
        assert self._mean is not None
        return self._mean

    @property
    def std(self) -> tuple[float, ...]:
        """Per-channel standard deviation used by the model's normalisation."""
        if self._std is None:
            self._ensure_built()
        assert self._std is not None
        return self._std

    # ----------------------------------------------------------------- data sets
    def train_set(self) -> Dataset:
        self._ensure_built()
        assert self._train is not None
        return self._train

    def val_set(self) -> Dataset:
        self._ensure_built()
        assert self._val is not None
        return self._val

    def test_set(self) -> Dataset:
        """The clean test set: items ``(x, y)``, ``x`` float (C, H, W) in [0, 1], not normalised."""
        self._ensure_built()
        assert self._test is not None
        return self._test

    def train_eval_set(self) -> Dataset:
        """The training images without augmentation."""
        self._ensure_built()
        assert self._train_eval is not None
        return self._train_eval

    def eval_sets(self, suites: Sequence[str]) -> dict[str, Dataset]:
        """Evaluation sets of the given suites: ``test``, ``occlusion/<kind>``,
        ``corruption/<name>/<sev>``."""
        if isinstance(suites, str):
            suites = [suites]
        for s in suites:
            if s not in EVAL_SUITES:
                raise DataError(f"unknown evaluation suite {s!r}; valid suites: {', '.join(EVAL_SUITES)}")
        out: dict[str, Dataset] = {}
        if "clean" in suites:
            out["test"] = self.test_set()
        if "occlusion" in suites:
            test = self.test_set()
            for kind in self.occlusions:
                out[f"occlusion/{kind}"] = OccludedDataset(test, kind, self.occlusion)
        if "corruption" in suites:
            out.update(self.corruption_sets())
        return out

    # ----------------------------------------------------------------- loaders
    def _loader(self, ds: Dataset, *, batch_size: int, shuffle: bool, drop_last: bool = False) -> DataLoader:
        return DataLoader(
            ds,
            batch_size=batch_size,
            shuffle=shuffle,
            drop_last=drop_last,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            worker_init_fn=seed_worker if self.num_workers > 0 else None,
            persistent_workers=self.num_workers > 0 and shuffle,
        )

    def train_dataloader(self) -> DataLoader | DeviceTrainLoader:
        """Shuffled with the global torch RNG, which ``seed_everything(seed)`` seeds per run; with
        ``device_resident`` a :class:`~bioreg.data.device.DeviceTrainLoader` (order and augmentation
        from ``(data_seed, epoch)``, see :meth:`state_dict`)."""
        if self.uses_device():
            return self.device_train_loader()
        return self._loader(self.train_set(), batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader | DeviceEvalLoader:
        """The set the best epoch is chosen on: the validation split, or with ``select_on: test`` the
        test set (the authors' protocol)."""
        return self.eval_dataloader(self.test_set() if self.select_on == "test" else self.val_set())

    def check_selection(self, n_val: int) -> None:
        """Selection on a validation split needs one: ``n_val`` = 0 with ``select_on: validation`` is a
        :class:`DataError` naming the two fixes."""
        if n_val == 0 and self.select_on == "validation":
            raise DataError("val_size=0 leaves no validation images to choose the best epoch on; hold some "
                            "out (data.val_size=5000) or select on the test set (data.select_on=test, "
                            "as the authors' codes did: protocol=authors)")

    def test_dataloader(self) -> DataLoader | DeviceEvalLoader:
        return self.eval_dataloader(self.test_set())

    def eval_dataloader(self, ds: Dataset) -> DataLoader | DeviceEvalLoader:
        """A deterministic, unshuffled loader over ``ds`` (batch size ``eval_batch_size``); with
        ``device_resident`` batches come on the device (:class:`~bioreg.data.device.DeviceEvalLoader`)
        for every set that has a batched form (the rest keep the DataLoader)."""
        if self.uses_device():
            assert self.device is not None
            src = eval_source(ds, self.device, self._device_cache)
            if src is not None:
                source, transform = src
                return DeviceEvalLoader(source, len(ds), self.eval_batch_size, self.device,
                                        transform=transform)  # fmt: skip
        return self._loader(ds, batch_size=self.eval_batch_size, shuffle=False)

    # ----------------------------------------------------------------- device-resident path
    def device_augmentation(self) -> BatchAugment | None:
        """The batched form of this data module's training augmentation (subclasses override)."""
        return None

    def uses_device(self) -> bool:
        """Whether loaders are device-resident: ``device_resident`` resolved against :attr:`device`
        (the attached Trainer's device; without a Trainer the device last set, else the CPU)."""
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            self.device = trainer.strategy.root_device
        if self.device is None:
            self.device = torch.device("cpu")
        return resolve_device_resident(self.device_resident, self.device)

    def device_train_loader(self) -> DeviceTrainLoader:
        """The device-resident training loader (images copied to :attr:`device` once)."""
        self.uses_device()
        assert self.device is not None
        if self.data_seed is None:
            self.data_seed = _run_seed()
        ds = self.train_set()
        key = ("train", id(ds))
        if key not in self._device_cache:
            x, y = ds.tensors()  # type: ignore[attr-defined]
            self._device_cache[key] = (ds, x.to(self.device), y.to(self.device))
        _, x, y = self._device_cache[key]
        trainer = getattr(self, "trainer", None)
        epoch = (lambda: trainer.current_epoch) if trainer is not None else None
        return DeviceTrainLoader(x, y, self.batch_size, self.data_seed, epoch, self.device_augmentation())

    def state_dict(self) -> dict[str, Any]:
        """Saved in every checkpoint: the base seed of the device-resident data order."""
        return {} if self.data_seed is None else {"data_seed": int(self.data_seed)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "data_seed" in state_dict:
            self.data_seed = int(state_dict["data_seed"])


def _run_seed() -> int:
    """The run's seed: ``PL_GLOBAL_SEED`` set by ``seed_everything``, else torch's initial seed."""
    import os

    env = os.environ.get("PL_GLOBAL_SEED")
    return int(env) if env is not None else int(torch.initial_seed())
