"""``RunIf``: one marker helper for tests that need something of the machine (as Lightning's ``RunIf``).

    @RunIf(min_cuda_gpus=1)          # marked ``gpu``; skipped without a CUDA GPU
    def test_on_gpu(): ...

    @RunIf(executables=("make",), skip_root=True)
    def test_make_as_a_user(): ...

``RunIf(...)`` is a list of pytest marks (usable as ``pytest.param(..., marks=RunIf(...))``) and a
decorator that applies them. Every condition that fails is named in the skip reason.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable
from typing import Any

import pytest

__all__ = ["RunIf"]


class RunIf(list):
    """Skip marks for the machine a test needs.

    Args:
        min_cuda_gpus: at least this many CUDA devices; a test that asks for one is also marked ``gpu``.
        executables: programs that must be on ``PATH`` (e.g. ``make``).
        skip_root: skip when running as root (who writes into read-only folders, say).
    """

    def __init__(self, *, min_cuda_gpus: int = 0, executables: Iterable[str] = (), skip_root: bool = False):
        reasons = []
        if min_cuda_gpus:
            import torch

            if torch.cuda.device_count() < min_cuda_gpus:
                reasons.append(f"needs {min_cuda_gpus} CUDA GPU{'s' if min_cuda_gpus > 1 else ''}")
        reasons += [f"{exe} not installed" for exe in executables if shutil.which(exe) is None]
        if skip_root and hasattr(os, "geteuid") and os.geteuid() == 0:
            reasons.append("root writes into read-only folders")
        marks: list[Any] = [pytest.mark.gpu] if min_cuda_gpus else []
        marks.append(pytest.mark.skipif(bool(reasons), reason="; ".join(reasons) or "runs here"))
        super().__init__(marks)

    def __call__(self, fn: Callable) -> Callable:
        for mark in self:
            fn = mark(fn)
        return fn
