"""The LightningModule every experiment trains: a classifier with regularizers placed by config."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from bioreg.layers.base import (
    BatchMixer,
    MixPlan,
    RegularizerConfigError,
    TrainingState,
    prepare_step,
    reg_entries,
)
from bioreg.lit.finite import NonFiniteWatch
from bioreg.lit.optim import build_optimizer, build_scheduler
from bioreg.lit.perf import fused_if_possible
from bioreg.models.points import bind_all, distinct_points, insert, replace

__all__ = ["Classifier", "LitClassifier", "find_mixer", "mixed_loss", "place_regularizers"]


class Classifier(nn.Module):
    """Normalisation + network. Inputs are images in [0, 1]; attacks work in that space."""

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


def _instantiate(name: str, entry: Mapping[str, Any]):
    from hydra.errors import InstantiationException
    from omegaconf import OmegaConf

    from bioreg.errors import instantiate  # unwraps a UserError the regularizer raised

    body = {k: v for k, v in (OmegaConf.to_container(entry, resolve=True) if not isinstance(entry, dict)
                              else entry).items()
            if k not in ("at", "mode")}
    try:
        return instantiate(body)
    except InstantiationException as e:  # no user error inside: e.g. an unknown target or argument
        raise RegularizerConfigError(
            f"cannot build regularizer {name!r} ({body.get('_target_')}): {e.__cause__ or e}") from e


def place_regularizers(net: nn.Module, reg_cfg: Any, input_shape: Sequence[int],
                       state: TrainingState | None = None):
    """Build every regularizer of ``reg_cfg`` and place it in ``net``; returns the shared TrainingState.

    Replacements are done first (so that a module inserted after a replaced
    convolution sees the replacement as its producer), then insertions, then
    every module is bound to its :class:`~bioreg.layers.base.InsertionContext`.
    A :class:`~bioreg.layers.base.BatchMixer` (input / manifold mixup) is not
    inserted itself: its ``tap(point)`` goes after each eligible point that the
    entry's ``at`` names (after the other entries' modules at that point).
    """
    entries = reg_entries(reg_cfg)
    built = [(name, e, _instantiate(name, e)) for name, e in entries]
    mixers = [name for name, _, obj in built if isinstance(obj, BatchMixer)]
    if len(mixers) > 1:
        raise RegularizerConfigError(
            "at most one batch-mixing regularizer (mixup, manifold_mixup) per model; got entries "
            f"{', '.join(mixers)}"
        )
    for name, e, obj in built:
        if e.get("mode", "after") == "replace":
            if not callable(obj) or isinstance(obj, nn.Module):
                raise RegularizerConfigError(
                    f"regularizer entry {name!r} has mode: replace, so it must describe a factory "
                    "(`_partial_: true`) that takes the module being replaced"
                )
            replace(net, e["at"], obj)
    for name, e, obj in built:
        if e.get("mode", "after") == "after" and not isinstance(obj, BatchMixer):
            if not isinstance(obj, nn.Module):
                raise RegularizerConfigError(
                    f"regularizer entry {name!r} did not build an nn.Module (got {obj!r})")
            insert(net, e["at"], obj)
    for name, e, obj in built:
        if isinstance(obj, BatchMixer):
            if e.get("mode", "after") != "after":
                raise RegularizerConfigError(
                    f"regularizer entry {name!r} mixes batches: it takes no `mode: replace`")
            for point in obj.eligible_points(e["at"], distinct_points(net)):
                insert(net, point, obj.tap(point))
    return bind_all(net, tuple(input_shape), state)


def find_mixer(net: nn.Module) -> BatchMixer | None:
    """The batch-mixing regularizer placed in ``net`` (reached through its taps), or None."""
    found = {id(m): m for m in net.modules() if isinstance(m, BatchMixer)}
    return next(iter(found.values()), None)


def mixed_loss(logits: torch.Tensor, y: torch.Tensor, plan: MixPlan | None, label_smoothing: float = 0.0):
    """Loss and accuracy of a batch; under a mixing plan ``λ·CE(y) + (1 − λ)·CE(y[perm])`` (Dutta 2019
    eq 3.1 with one-hot labels) and the accuracy against the *dominant* label (``y`` when λ ≥ 0.5, else
    ``y[perm]``). Without a plan: plain cross-entropy and accuracy."""
    ce = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
    if plan is None:
        return ce, (logits.argmax(1) == y).float().mean()
    y2 = y[plan.perm.to(y.device)]
    loss = plan.lam * ce + (1.0 - plan.lam) * F.cross_entropy(logits, y2, label_smoothing=label_smoothing)
    dominant = y if plan.lam >= 0.5 else y2
    return loss, (logits.argmax(1) == dominant).float().mean()


def check_mix_applied(plan: MixPlan, expected: int) -> None:
    """After a mixed forward pass: the plan was applied once (graph-safe mode: every eligible tap
    passed once), else the model's forward does not go through its points exactly once."""
    if plan.applied != expected:
        times = "once" if expected == 1 else f"{expected} times, once per eligible point"
        raise RuntimeError(
            f"the mixing plan for point {plan.point!r} was applied {plan.applied} times in one forward pass "
            f"(expected {times}): does the model's forward pass go through that point exactly once?"
        )


class LitClassifier(L.LightningModule):
    """Cross-entropy classifier with config-placed regularizers.

    Logged metrics: ``train/loss``, ``train/acc`` (running, with the stochastic
    layers active), ``val/loss``, ``val/acc`` (eval mode; the monitored metric).
    The :class:`~bioreg.layers.base.TrainingState` shared with the inserted
    modules is updated at the start of every epoch and batch.

    With a batch-mixing regularizer (a :class:`~bioreg.layers.base.BatchMixer`:
    input / manifold mixup) each training batch gets a :class:`MixPlan` from it,
    held in ``state.mix`` for the forward pass only; the loss is
    :func:`mixed_loss` and ``train/acc`` counts the dominant label.
    """

    def __init__(
        self,
        net: nn.Module,
        mean: Sequence[float],
        std: Sequence[float],
        optim: Mapping[str, Any],
        reg: Any = None,
        input_shape: Sequence[int] = (3, 32, 32),
        label_smoothing: float = 0.0,
    ):
        super().__init__()
        self.state = place_regularizers(net, reg, input_shape)
        self.model = Classifier(net, mean, std)
        self.optim_cfg = dict(optim)
        self.label_smoothing = label_smoothing
        self.nonfinite = NonFiniteWatch()  # off the CPU: checked once per epoch, not every step
        self.last_train_acc: torch.Tensor | None = None  # the last training batch's accuracy (device)
        # a plain attribute, not a second registration: the mixer is already a sub-module (of its taps)
        self.__dict__["_mixer"] = find_mixer(net)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    # -- training state shared with the regularizers
    def on_train_epoch_start(self) -> None:
        self.state.epoch = int(self.current_epoch)
        self.state.max_epochs = int(self.trainer.max_epochs or 1) if self._trainer is not None else 1

    def on_train_batch_start(self, batch, batch_idx) -> None:
        self.state.global_step = int(self.global_step)
        if self.state.graph_safe:  # per-step host work, outside the compiled forward (layers/base.py)
            prepare_step(list(self.model.modules()))

    def _step(self, batch, stage: str):
        x, y = batch
        plan = None
        if stage == "train" and self._mixer is not None and self.training:
            plan = self._mixer.plan_mix(len(y), y.device)
            if self.state.graph_safe:
                plan.with_tensors(y.device)
            self.state.mix = plan
            try:
                logits = self(x)
            finally:
                self.state.mix = None
            check_mix_applied(plan, len(self._mixer.points) if self.state.graph_safe else 1)
        else:
            logits = self(x)
        loss, acc = mixed_loss(logits, y, plan, self.label_smoothing if stage == "train" else 0.0)
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, prog_bar=stage != "train",
                 batch_size=len(y))
        self.log(f"{stage}/acc", acc, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y))
        return loss, acc

    def training_step(self, batch, batch_idx):
        loss, acc = self._step(batch, "train")
        if loss.device.type != "cpu":  # no host sync per step: checked before validation / at epoch end
            self.nonfinite.update(loss, self.global_step)
        elif not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite training loss {loss.item()} at step {self.global_step}")
        # the batch's accuracy (train mode) stays on the device: EpochHistory sums it per epoch
        self.last_train_acc = acc.detach()
        return loss

    def on_validation_epoch_start(self) -> None:
        if not self.trainer.sanity_checking:
            self.nonfinite.check()  # before this epoch's checkpoints are written

    def on_train_epoch_end(self) -> None:
        self.nonfinite.check()

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def configure_optimizers(self):
        opt = build_optimizer(self.model, self.optim_cfg)
        if self.state.graph_safe:  # a compiled step: the fused update where the parameters are on a GPU
            opt = fused_if_possible(opt)
        sched = build_scheduler(opt, self.optim_cfg.get("scheduler"), int(self.trainer.max_epochs or 1),
                                int(self.optim_cfg.get("scheduler_lead", 0) or 0))
        if sched is None:
            return opt
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
