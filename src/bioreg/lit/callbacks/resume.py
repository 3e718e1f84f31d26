"""Bit-exact resumption: the random-number generators travel inside every checkpoint.

Lightning's checkpoint restores the weights, optimizer, scheduler and loop
counters, but not the global RNGs. After a relaunch the run is re-seeded from
``seed`` (``bioreg.app.run.run``), so without this callback the next epoch would be
shuffled (and its noise / dropout masks drawn) from the *start-of-run* RNG state
instead of the state the interrupted run had reached: a resumed run would end
with other numbers than an uninterrupted one. :class:`RNGStateCheckpoint` saves
the Python, NumPy, torch CPU and CUDA generator states with each checkpoint
(``last.ckpt`` is written at the end of every validated epoch) and restores them
when ``fit(ckpt_path=last.ckpt)`` loads it. With ``trainer.deterministic=true`` on
CPU a killed-and-resumed run then reproduces the uninterrupted run exactly
(``tests/test_resume.py``). The states are stored as plain lists and tensors so the
checkpoint stays loadable with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import random
from typing import Any

import lightning as L
import numpy as np
import torch

__all__ = ["RNGStateCheckpoint", "capture_rng_state", "restore_rng_state"]


def capture_rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": _to_lists(random.getstate()),
        "numpy": [str(np_state[0]), np_state[1].tolist(), int(np_state[2]), int(np_state[3]),
                  float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    if "python" in state:
        v, internal, gauss = state["python"]
        random.setstate((v, tuple(internal), gauss))
    if "numpy" in state:
        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_lists(x: Any) -> Any:
    return [_to_lists(i) for i in x] if isinstance(x, (tuple, list)) else x


class RNGStateCheckpoint(L.Callback):
    """Save the global RNG states in each checkpoint; restore them when training resumes from one."""

    def state_dict(self) -> dict[str, Any]:
        return capture_rng_state()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        restore_rng_state(state_dict)
