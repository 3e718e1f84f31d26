"""Why a run stopped: the failure section of a ``failed`` record (signal, stage, epoch, batch).

A run killed by SIGTERM (a SLURM time limit, ``scancel``, ``kill``) ends in Lightning's
``SIGTERMException``, which carries no message: its record used to read ``"SIGTERMException: "``.
:func:`describe_failure` reads the trainer's progress at the moment of failure, so the record says
*what* stopped the run and *where*::

    {"error": "killed by SIGTERM during training: epoch 3 of 350, after batch 120 of 352 (global step 1176)",
     "failure": {"exception": "SIGTERMException", "signal": "SIGTERM", "stage": "train", "epoch": 3,
                 "max_epochs": 350, "batch": 120, "batches": 352, "global_step": 1176}}

The one-line text comes from :func:`bioreg.results.records.failure_text`, which the report also
uses for records written before this section existed.
"""

from __future__ import annotations

import math
from typing import Any

from bioreg.results.records import failure_text

__all__ = ["describe_failure"]

#: exceptions that mean a signal, not a bug
_SIGNALS = {"SIGTERMException": "SIGTERM", "KeyboardInterrupt": "SIGINT"}


def _progress(trainer: Any) -> dict[str, Any]:
    """Stage, epoch, batch within the epoch and global step of a Lightning trainer (what it has)."""
    out: dict[str, Any] = {}
    if trainer is None:
        return out
    state = getattr(trainer, "state", None)
    # Lightning clears ``state.stage`` when it hands an exception on; ``fn`` (fit) and ``status`` remain:
    # interrupted = the exception came out of fit, finished = it came after (our evaluation)
    status = str(getattr(getattr(state, "status", None), "value", "") or "")
    stage = getattr(state, "stage", None) or getattr(state, "fn", None)
    if status == "finished":
        out["stage"] = "evaluation"
    elif stage is not None:
        name = str(getattr(stage, "value", stage))
        out["stage"] = {"fit": "train"}.get(name, name)
    for key, get in (("epoch", lambda t: t.current_epoch), ("max_epochs", lambda t: t.max_epochs),
                     ("batch", lambda t: t.fit_loop.epoch_loop.batch_progress.current.completed),
                     ("batches", lambda t: t.num_training_batches), ("global_step", lambda t: t.global_step)):
        try:
            v = get(trainer)
        except Exception:  # noqa: BLE001 - a trainer that never started has no loops yet
            continue
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out[key] = int(v)
    return out


def describe_failure(exc: BaseException, trainer: Any = None) -> dict[str, Any]:
    """The ``error`` line and ``failure`` section of a failed run's record."""
    name = type(exc).__name__
    failure: dict[str, Any] = {"exception": name, **_progress(trainer)}
    if name in _SIGNALS:
        failure["signal"] = _SIGNALS[name]
    msg = " ".join(str(exc).split())
    if msg:
        failure["message"] = msg
    return {"error": failure_text({"failure": failure}), "failure": failure}
