"""Checkpoint files: safe loading, atomic saving, and what a relaunch does with a damaged one.

* **Safe loading.** A checkpoint is a pickle, and unpickling can run code. Every checkpoint bioreg
  reads goes through :func:`safe_load` (``torch.load(weights_only=True)``): tensors, containers and
  plain values only; anything else is refused before any of it runs. bioreg's own checkpoints need
  nothing more (Lightning's state, the optimizer, and the RNG states that
  :class:`bioreg.lit.callbacks.resume.RNGStateCheckpoint` stores as lists and tensors), so no extra
  ``safe_globals`` are allowed. Lightning reads ``last.ckpt`` through :class:`AtomicCheckpointIO`,
  which forces ``weights_only=True`` whatever its caller asks for.
* **Atomic saving.** :class:`AtomicCheckpointIO` serialises a checkpoint in memory, writes it to a
  temporary file in the checkpoint's own folder, ``fsync``\\ s it and ``os.replace``\\ s it over the
  target: a full disk or a killed process leaves the previous checkpoint intact, never a truncated
  one (Lightning's fsspec transaction writes the temporary file elsewhere and *moves* it, which is
  a copy across file systems).
* **Damaged files.** :func:`resume_point` checks ``last.ckpt`` before a relaunch resumes from it;
  an unreadable one is moved aside (``last.ckpt.corrupt-<UTC time>``) with one log line, and the
  run resumes from the newest readable checkpoint of the run (``best.ckpt`` holds the full training
  state of its epoch too) or from scratch.
"""

from __future__ import annotations

import datetime as _dt
import io
import logging
import os
import pickle
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from bioreg.errors import ConfigError
from bioreg.io import atomic_write_bytes

__all__ = ["safe_load", "UnsafeCheckpointError", "AtomicCheckpointIO", "move_aside", "resume_point",
           "load_for_eval", "check_fits"]

log = logging.getLogger("bioreg")


class UnsafeCheckpointError(ConfigError):
    """A checkpoint holds objects other than tensors and plain values (it could run code)."""


def safe_load(path: str | os.PathLike, what: str = "checkpoint") -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``; a file that is not a readable
    PyTorch file, or that would need arbitrary objects (code) to unpickle, raises :class:`ConfigError`
    naming ``what`` (e.g. ``"ckpt='x.ckpt'"``) instead of running anything."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what}: no such file {str(path)!r}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Weights only load failed" in str(e):
            first = _unsupported_global(str(e))
            raise UnsafeCheckpointError(
                f"{what}: refused to load {str(path)!r}: it holds {first}, not only tensors and plain values "
                "(a crafted pickle can run code; bioreg loads checkpoints with weights_only=True). "
                "Give a .ckpt written by a bioreg run or a plain state_dict") from None
        raise ConfigError(
            f"{what}: {str(path)!r} is not a readable PyTorch checkpoint ({_short(e)})") from None
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError, ImportError, IndexError,
            KeyError) as e:
        raise ConfigError(f"{what}: {str(path)!r} is not a readable PyTorch checkpoint ({_short(e)}); "
                          "give a .ckpt written by a bioreg run (e.g. its best.ckpt) or a plain "
                          "state_dict") from None


def _short(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:160]}"


def _unsupported_global(msg: str) -> str:
    """The object name in torch's 'Unsupported global: GLOBAL x.y' message (else a generic phrase)."""
    for line in msg.splitlines():
        if "GLOBAL" in line:
            name = line.split("GLOBAL", 1)[1].strip().split()[0]
            return f"a reference to {name}"
    return "arbitrary Python objects"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint I/O with atomic local saves and ``weights_only=True`` loads (see module doc)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any,
                        storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not take storage_options")
        buf = io.BytesIO()
        torch.save(checkpoint, buf)
        atomic_write_bytes(path, buf.getbuffer())

    def load_checkpoint(self, path: Any, map_location: Any | None = None,
                        weights_only: bool | None = None) -> dict:
        # Lightning passes weights_only=None (its default: False) on resume: force the safe load
        return safe_load(path, what=f"checkpoint {Path(path).name}")


def move_aside(path: Path) -> Path:
    """Rename a damaged file to ``<name>.corrupt-<UTC time>`` beside it; returns the new path."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
        n += 1
    os.replace(path, target)
    return target


def _training_state(path: Path) -> dict:
    state = safe_load(path)
    if not (isinstance(state, dict) and "state_dict" in state and "loops" in state):
        raise ConfigError(f"{str(path)!r} is not a Lightning training checkpoint")
    return state


def resume_point(ckpt_dir: Path) -> Path | None:
    """The checkpoint a relaunched run resumes from: ``last.ckpt`` when it exists and loads, else
    ``None`` (start from scratch). An unreadable ``last.ckpt`` is moved aside (:func:`move_aside`)
    and the run resumes from the newest readable other checkpoint of the run (by ``global_step``),
    or from scratch; one warning line says which."""
    last = ckpt_dir / "last.ckpt"
    if not last.is_file():
        return None
    try:
        _training_state(last)
        return last
    except ConfigError as e:
        reason = str(e).split(" (", 1)[-1].rstrip(")")[:160] if " (" in str(e) else str(e)[:160]
        moved = move_aside(last)
    best: tuple[int, Path] | None = None
    for p in sorted(ckpt_dir.glob("*.ckpt")):
        try:
            step = int(_training_state(p).get("global_step", -1))
        except ConfigError:
            continue
        if best is None or step > best[0]:
            best = (step, p)
    then = (f"resuming from {best[1].name} (global step {best[0]})" if best else
            "no other readable checkpoint: training starts from scratch")
    log.warning("last.ckpt is unreadable (%s): moved aside to %s; %s", reason, moved.name, then)
    return best[1] if best else None


def check_fits(module: torch.nn.Module, sd: dict[str, Any], what: str) -> None:
    """Raise :class:`ConfigError` when the state dict ``sd`` does not fit ``module`` exactly (missing or
    unexpected keys, other shapes): ``what`` names the file, e.g. ``"ckpt='x.ckpt'"``."""
    want = module.state_dict()
    shapes = [f"{k} {tuple(v.shape)} vs {tuple(want[k].shape)}" for k, v in sd.items()
              if k in want and isinstance(v, torch.Tensor) and tuple(v.shape) != tuple(want[k].shape)]
    missing = [k for k in want if k not in sd]
    unexpected = [k for k in sd if k not in want]
    if missing or unexpected or shapes:
        raise ConfigError(
            f"{what} does not fit model {type(module).__name__}: missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}, shape mismatch {shapes[:3]} (was it written by a run of this model config?)"
        )


def load_for_eval(lit: torch.nn.Module, path: str | os.PathLike) -> dict[str, Any]:
    """Load the weights of a bioreg checkpoint (or a plain ``state_dict``) into ``lit`` (a
    ``LitClassifier``) for evaluation; returns the checkpoint's metadata (``epoch``, ``global_step``
    when present). The one reload used after training (:mod:`bioreg.app.run`) and by
    :func:`bioreg.app.evaluate_checkpoint.evaluate_checkpoint`."""
    state = safe_load(path)
    sd = state["state_dict"] if isinstance(state, dict) and "state_dict" in state else state
    if not isinstance(sd, dict):
        raise ConfigError(
            f"checkpoint {str(path)!r} holds no state_dict (give a .ckpt written by a bioreg run)")
    check_fits(lit, sd, f"checkpoint {str(path)!r}")
    lit.load_state_dict(sd)
    return {k: state[k] for k in ("epoch", "global_step") if isinstance(state, dict) and k in state}
