"""Non-finite loss detection without a device-to-host sync per training step.

``if not torch.isfinite(loss)`` reads the loss back to the host, which on a GPU stalls the
pipeline every step. :class:`NonFiniteWatch` instead keeps, on the loss's device, a step counter
and the first step whose loss was not finite (-1 while none was); :meth:`NonFiniteWatch.check`
reads that single number back, once per epoch (before validation and the epoch's checkpoints,
so a diverged model is never saved as ``last.ckpt``), and raises ``FloatingPointError`` naming
the step. On the CPU there is no sync to avoid, and the LitClassifier checks every step as
before (same error, same moment).
"""

from __future__ import annotations

import torch

__all__ = ["NonFiniteWatch"]


class NonFiniteWatch:
    """Remembers, on the device, the first training step with a non-finite loss."""

    def __init__(self) -> None:
        self._first: torch.Tensor | None = None  # first bad step (global), -1 = none
        self._step: torch.Tensor | None = None  # global step of the next update
        self._loss: torch.Tensor | None = None  # the first non-finite loss value

    def update(self, loss: torch.Tensor, global_step: int) -> None:
        """Record ``loss`` of the step ``global_step`` (no host sync: tensor ops on the device only)."""
        loss = loss.detach().float()
        if self._first is None or self._first.device != loss.device:
            self._first = torch.full((), -1, dtype=torch.long, device=loss.device)
            self._step = torch.full((), global_step, dtype=torch.long, device=loss.device)
            self._loss = torch.zeros((), dtype=torch.float32, device=loss.device)
        assert self._step is not None and self._loss is not None
        new = (self._first < 0) & ~torch.isfinite(loss)
        self._first = torch.where(new, self._step, self._first)
        self._loss = torch.where(new, loss, self._loss)
        self._step = self._step + 1

    def check(self) -> None:
        """One host read: raise ``FloatingPointError`` if a recorded loss was not finite."""
        if self._first is None:
            return
        step = int(self._first)
        if step >= 0:
            raise FloatingPointError(f"non-finite training loss {float(self._loss):g} at step {step} "
                                     "(detected at the end of the epoch's training steps)")

    def reset(self) -> None:
        self._first = self._step = self._loss = None
