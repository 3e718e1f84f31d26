"""Per-epoch accuracies of a run, and Table 3.1's train accuracy as the Singh authors measured it.

The only train accuracy the Singh authors' code logs (``base_model.py``, ``training_step``) is the
*running* accuracy over each epoch's training batches: train mode (dropout and NormOut masks active),
augmented images, averaged over the epoch. :class:`EpochHistory` keeps that number for every epoch,
beside the epoch's validation accuracy (under ``data.select_on: test`` the test accuracy), so the record
can give it at the **selected** epoch (the best checkpoint's) and at the **last** epoch
(``train.running_acc_selected``, ``train.running_acc_last``, in %), next to bioreg's eval-mode accuracy
on the clean training images (``train.eval_acc``). docs/decisions/protocols.md, item 1.

Graph-safe: each training batch adds its accuracy (a device tensor the LitClassifier keeps as
``last_train_acc`` in ``training_step``) to a device sum; the sum is read once per epoch,
when the epoch closes -- at the end of its validation, before the checkpoints of that epoch are written
(so a resumed run has it), or at the end of the training epoch when it had no validation.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

__all__ = ["EpochHistory"]


class EpochHistory(L.Callback):
    """Running train-mode accuracy and validation accuracy of every epoch (both in %)."""

    def __init__(self) -> None:
        super().__init__()
        self.history: dict[str, list] = {"epoch": [], "train_running_acc": [], "val_acc": []}
        self._sum: torch.Tensor | None = None
        self._n = 0
        self._closed = True

    # -- accumulation (usable without a Trainer)
    def begin_epoch(self) -> None:
        self._sum, self._n, self._closed = None, 0, False

    def add_batch(self, acc: torch.Tensor, n: int) -> None:
        """Add one batch's accuracy (a fraction, any device) with its size; nothing is read back."""
        part = acc.detach().float() * n
        self._sum = part if self._sum is None else self._sum + part
        self._n += int(n)

    def close_epoch(self, epoch: int, val_acc: float | None) -> None:
        """Append the epoch's running accuracy (one host read) and its validation accuracy (%)."""
        if self._closed:
            return
        self._closed = True
        if self._sum is None or self._n == 0:
            return
        self.history["epoch"].append(int(epoch))
        self.history["train_running_acc"].append(100.0 * float(self._sum) / self._n)
        self.history["val_acc"].append(None if val_acc is None else 100.0 * float(val_acc))

    def at_epoch(self, epoch: int) -> float | None:
        """The running train accuracy (%) of ``epoch`` (0-based), or None if it was not recorded."""
        eps = self.history["epoch"]
        return self.history["train_running_acc"][eps.index(epoch)] if epoch in eps else None

    def train_fields(self, selected_epoch: int | None) -> dict[str, float]:
        """``running_acc_selected`` / ``running_acc_last`` (%) for the record's ``train`` section."""
        out: dict[str, float] = {}
        if selected_epoch is not None and (v := self.at_epoch(int(selected_epoch))) is not None:
            out["running_acc_selected"] = v
        if self.history["train_running_acc"]:
            out["running_acc_last"] = self.history["train_running_acc"][-1]
        return out

    def to_record(self) -> dict[str, Any]:
        return {"epoch_history": dict(self.history)}

    # -- Lightning hooks
    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.begin_epoch()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        acc = getattr(pl_module, "last_train_acc", None)
        if isinstance(acc, torch.Tensor):
            self.add_batch(acc, len(batch[1]))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        val = trainer.callback_metrics.get("val/acc")
        self.close_epoch(int(trainer.current_epoch), None if val is None else float(val))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.close_epoch(int(trainer.current_epoch), None)  # an epoch without validation

    # -- checkpointing: a resumed run keeps the history of the epochs before it
    def state_dict(self) -> dict[str, Any]:
        return {k: list(v) for k, v in self.history.items()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for k in self.history:
            self.history[k] = list(state_dict.get(k, []))
