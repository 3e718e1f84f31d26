"""Data modules, occlusions and corruptions (interface: ``docs/interfaces.md``; user doc: ``docs/data.md``).

Names are imported lazily, so ``bioreg.data.occlusion`` / ``corruptions`` can be used without
importing Lightning or scikit-learn.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "EVAL_SUITES": "base",
    "BaseDataModule": "base",
    "TensorImageDataset": "base",
    "stratified_split": "base",
    "CIFAR10DataModule": "cifar10",
    "CIFAR10CDataset": "cifar10c",
    "CIFAR10C_CORRUPTIONS": "corruptions",
    "ON_THE_FLY_CORRUPTIONS": "corruptions",
    "SEVERITIES": "corruptions",
    "CorruptedDataset": "corruptions",
    "corrupt": "corruptions",
    "DigitsDataModule": "digits",
    "DataError": "errors",
    "OCCLUSION_KINDS": "occlusion",
    "OccludedDataset": "occlusion",
    "OcclusionParams": "occlusion",
    "occlude": "occlusion",
    "occlusion_mask": "occlusion",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
