"""Importable probes for tests/test_lit_training.py (Hydra ``_target_``s must be importable).

``tests/`` is on ``sys.path`` under pytest (rootdir conftest), so this is ``helpers.lit_probes``.
"""

from __future__ import annotations

import lightning as L
import torch
from torch import nn

from bioreg.layers.base import InsertionContext


def last_weighted_layer(module: nn.Module) -> nn.Module:
    return [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))][-1]


class PeakThenCorrupt(L.Callback):
    """Makes validation accuracy peak at ``peak_epoch``. The final layer (weight and bias) is set to zero
    (every prediction becomes class 0) while validating the epochs before the peak (and restored
    afterwards, so training goes on), and for good before validating every epoch after it, so the
    final weights are the corrupted ones. Records val/acc of every epoch (``to_record``)."""

    def __init__(self, peak_epoch: int = 1) -> None:
        self.peak_epoch = int(peak_epoch)
        self.val_acc: list[float] = []
        self._saved: list[torch.Tensor] | None = None

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        epoch = trainer.current_epoch
        if epoch == self.peak_epoch:
            return
        params = list(last_weighted_layer(pl_module).parameters())
        if epoch < self.peak_epoch:
            self._saved = [p.detach().clone() for p in params]
        with torch.no_grad():
            for p in params:
                p.zero_()

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if self._saved is not None:
            with torch.no_grad():
                for p, v in zip(last_weighted_layer(pl_module).parameters(), self._saved, strict=True):
                    p.copy_(v)
            self._saved = None

    def on_validation_end(self, trainer, pl_module) -> None:
        self.val_acc.append(float(trainer.callback_metrics["val/acc"]))

    def to_record(self) -> dict:
        return {"peak_probe": {"peak_epoch": self.peak_epoch, "val_acc": self.val_acc}}


class StateProbe(nn.Module):
    """Identity regularizer that records the TrainingState it is bound to at every training forward."""

    def __init__(self) -> None:
        super().__init__()
        self.ctx: InsertionContext | None = None
        self.seen: list[dict] = []

    def bind(self, ctx: InsertionContext) -> None:
        self.ctx = ctx

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.ctx is not None:
            s = self.ctx.state
            self.seen.append({"epoch": s.epoch, "max_epochs": s.max_epochs, "global_step": s.global_step,
                              "progress": s.progress})
        return x


class ValAccLog(L.Callback):
    """Records val/acc after every validation pass (``to_record``: ``{"val_acc_log": [...]}``, fractions)."""

    def __init__(self) -> None:
        self.val_acc: list[float] = []

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.val_acc.append(float(trainer.callback_metrics["val/acc"]))

    def to_record(self) -> dict:
        return {"val_acc_log": list(self.val_acc)}
