"""Activation statistics of the Dropout / NormOut slots during training (Singh 2023, §2.3.1, §3.2).

The thesis "recorded the average activation sparsity per batch for each custom
layer" and "the mean, maximum, and standard deviation of the activations in each
custom layer", and reports (Tables 3.2–3.3) the *exponentially weighted moving
average* of the maximum, mean, standard deviation, variance and sparsity at the
end of training; Figs 3.3–3.10 show the same quantities over training.

:class:`ActivationStats` measures what a point **outputs** in training steps,
i.e. the activations after every regularizer inserted there (for NormOut /
Dropout: after the mask). This is what the thesis logs: it reports absolute
sparsity "of the elements in the final tensor" and swapped ReLU and Dropout in
its baseline "to correctly log sparsity" (docs/decisions/normout.md). For a
point without an inserted module (the baseline's identity slots 48 / 51) the
point's own output is measured, so every model is comparable.

Per training step and point, on the device and without synchronisation:
``mean``, ``max``, ``std`` (population, over all elements of the batch tensor)
and ``sparsity`` (% of exact zeros). Each is smoothed over steps by
``ewma <- momentum * ewma + (1 - momentum) * x`` (the first step initialises
``ewma = x``).

``var`` follows the thesis's definition: it is **reported as the square of the
reported std** (``var = std**2`` of the smoothed, or epoch-averaged, std), as in
every row of Singh (2023), Tables 3.2–3.3 — the thesis logs "the mean, maximum,
and standard deviation" (§2.3.1), so its variance is the square of that std.
Averaging the per-batch variances separately would not give the square of the
averaged std (the mean of squares exceeds the square of the mean: a short run
recorded var 3.58 against std² 1.62), so it is not done (docs/decisions/normout.md). The values are logged as
``act/<point>/<stat>`` every
``log_every_n_steps`` steps, and once per epoch the EWMA and the epoch mean are
appended to a per-epoch history (one transfer per epoch).

**The authors' definition** (Singh's public code, ``custom_layers/custom_layer.py`` ``log_stats`` and
``custom_layers/custom_dropout.py``; docs/decisions/protocols.md, item 2) is recorded beside it, smoothed
the same way, under ``activation_stats_authors``: ``std`` is the standard deviation *across units* of
each unit's standard deviation over the batch (:func:`unit_std`, both with Bessel's correction, as
``torch.std``), ``var = std**2``; ``mean``, ``max`` and ``sparsity`` are those of all elements (their
``mean``/``max`` of a ``(N, F)`` batch reduce over the batch and then the units, their sparsity averages
the per-example zero fraction). For a point whose inserted module is a **Dropout** the authors' layer
logged mean, max and std of its *input* and the sparsity of its *output*: so does this definition
(the tap's own output is captured by a hook that runs before the inserted modules). A unit of a
``(N, C, H, W)`` map is one of its ``C·H·W`` positions (the authors' code logged a tensor there, no
number; no printed table uses such a point).

``to_record()`` returns ``{"activation_stats": {point: {mean, max, std, var,
sparsity}}, "activation_stats_authors": {point: {...}}, "activation_stats_history": {point: {...}}}``
(final EWMA values; the history, of the all-element definition, is what
``scripts/fig_activation_stats.py`` plots).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from torch import nn

from bioreg.layers.dropout import Dropout
from bioreg.models.points import resolve_point

__all__ = ["ActivationStats", "STATS", "batch_stats", "unit_std", "authors_stats", "INPUT_SIDE"]

#: inserted modules whose statistics the authors took on their input (``CustomDropout.forward``)
INPUT_SIDE: tuple[type, ...] = (Dropout, nn.Dropout)

STATS = ("mean", "max", "std", "var", "sparsity")
_STD, _VAR = STATS.index("std"), STATS.index("var")


def _var_from_std(v: torch.Tensor) -> torch.Tensor:
    """Set the ``var`` entry of a statistics vector to the square of its ``std`` entry (in place)."""
    v[_VAR] = v[_STD] * v[_STD]
    return v


@torch.no_grad()
def batch_stats(x: torch.Tensor) -> torch.Tensor:
    """``[mean, max, std, var, sparsity %]`` of all elements of ``x`` as one float32 tensor on its device."""
    x = x.detach().float()
    var, mean = torch.var_mean(x, correction=0)
    sparsity = (x == 0).float().mean() * 100.0
    return torch.stack([mean, x.amax(), var.sqrt(), var, sparsity])


@torch.no_grad()
def unit_std(x: torch.Tensor) -> torch.Tensor:
    """The authors' "standard deviation" of a batch ``x`` (batch first): the std over the units of each
    unit's std over the batch, both with Bessel's correction (``torch.std``); a batch of one example
    uses the population std (no NaN)."""
    u = x.detach().float().reshape(x.shape[0], -1)
    per_unit = u.std(dim=0, correction=1 if u.shape[0] > 1 else 0)
    return per_unit.std(correction=1 if per_unit.numel() > 1 else 0)


@torch.no_grad()
def authors_stats(out: torch.Tensor, inp: torch.Tensor | None = None) -> torch.Tensor:
    """``[mean, max, std, var, sparsity %]`` as the Singh authors logged them: ``std`` = :func:`unit_std`,
    ``var = std**2``; mean, max and std of ``inp`` when given (a Dropout point), sparsity of ``out``."""
    src = (out if inp is None else inp).detach().float()
    sd = unit_std(src)
    sparsity = (out.detach() == 0).float().mean() * 100.0
    return torch.stack([src.mean(), src.amax(), sd, sd * sd, sparsity])


class ActivationStats(L.Callback):
    """EWMA statistics of the activations that regularizer points output during training.

    Parameters
    ----------
    points:
        Insertion points to measure (names as in the model, e.g. ``["48", "51"]``;
        ints are accepted). Points with an inserted regularizer are added unless
        ``include_inserted`` is false; ``None`` = only those.
    momentum:
        EWMA momentum in [0, 1): weight of the past per training step. The
        default 0.99 averages over roughly the last 100 steps (an epoch of
        CIFAR-10 at batch 256 with a 90/10 split is 176 steps).
    include_inserted:
        Also measure every point that has a module in ``net.regularizers``.
    """

    def __init__(
        self, points: Sequence[str | int] | None = None, momentum: float = 0.99, include_inserted: bool = True
    ) -> None:
        super().__init__()
        if not (0.0 <= float(momentum) < 1.0):
            raise ValueError(f"ActivationStats momentum must be in [0, 1), got {momentum!r}")
        if isinstance(points, (str, int)):
            points = [points]
        self.points = [str(p) for p in points] if points is not None else None
        self.momentum = float(momentum)
        self.include_inserted = bool(include_inserted)
        self._handles: list[Any] = []
        self._active = False
        self._pending: dict[str, torch.Tensor] = {}
        self._pending_authors: dict[str, torch.Tensor] = {}
        self._inputs: dict[str, torch.Tensor] = {}  # the tap's own output at input-side points, this step
        self.ewma: dict[str, torch.Tensor] = {}
        self.ewma_authors: dict[str, torch.Tensor] = {}
        self._epoch_sum: dict[str, torch.Tensor] = {}
        self._epoch_n: dict[str, int] = {}
        self.history: dict[str, dict[str, Any]] = {}

    # -- which points, which modules
    @staticmethod
    def _net(pl_module: nn.Module) -> nn.Module:
        model = getattr(pl_module, "model", pl_module)
        return getattr(model, "net", model)

    def resolve(self, net: nn.Module) -> dict[str, nn.Module]:
        """``{point: module whose forward hooks see the point's final output}``; one entry per tap."""
        names = list(self.points or [])
        if self.include_inserted:
            for m in getattr(net, "regularizers", {}).values():
                p = getattr(m, "_bioreg_point", None)
                if p is not None and p not in names:
                    names.append(str(p))
        out: dict[str, nn.Module] = {}
        seen: set[str] = set()
        for name in names:
            key, spec = resolve_point(net, name)  # unknown point -> InsertionError naming the valid ones
            if spec.tap in seen:
                continue
            seen.add(spec.tap)
            out[key] = net.get_submodule(spec.tap)
        return out

    @staticmethod
    def input_side_points(net: nn.Module) -> set[str]:
        """Points whose inserted modules include a Dropout (:data:`INPUT_SIDE`)."""
        return {str(m._bioreg_point) for m in getattr(net, "regularizers", {}).values()
                if getattr(m, "_bioreg_point", None) is not None and isinstance(m, INPUT_SIDE)}

    def attach(self, net: nn.Module) -> list[str]:
        """Register the forward hooks (appended after any insertion hook; at a Dropout point also one
        before them, for its input); returns the measured points."""
        self.detach()
        taps = self.resolve(net)
        inputs = self.input_side_points(net)
        for point, tap in taps.items():
            self._handles.append(tap.register_forward_hook(self._hook(point)))
            if point in inputs:
                self._handles.append(tap.register_forward_hook(self._input_hook(point), prepend=True))
        return list(taps)

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        self._active = False

    def _hook(self, point: str):
        def hook(module: nn.Module, _inp: tuple, out: torch.Tensor) -> None:
            if self._active and module.training and isinstance(out, torch.Tensor):
                self._pending[point] = batch_stats(out)
                self._pending_authors[point] = authors_stats(out, self._inputs.pop(point, None))

        return hook

    def _input_hook(self, point: str):
        def hook(module: nn.Module, _inp: tuple, out: torch.Tensor) -> None:
            if self._active and module.training and isinstance(out, torch.Tensor):
                self._inputs[point] = out.detach()

        return hook

    # -- bookkeeping (usable without a Trainer)
    def begin_step(self) -> None:
        self._pending, self._pending_authors, self._inputs = {}, {}, {}
        self._active = True

    def _smooth(self, ewma: dict[str, torch.Tensor], point: str, x: torch.Tensor) -> None:
        m = self.momentum
        if point in ewma:
            ewma[point].mul_(m).add_(x, alpha=1.0 - m)
        else:
            ewma[point] = x.clone()
        _var_from_std(ewma[point])  # var = std² of the smoothed std (Singh 2023, Tables 3.2-3.3)

    def end_step(self) -> dict[str, torch.Tensor]:
        """Fold the statistics of this step into the EWMAs and the epoch sums; returns the current EWMA."""
        self._active = False
        for point, x in self._pending.items():
            self._smooth(self.ewma, point, x)
            if point in self._epoch_sum:
                self._epoch_sum[point].add_(x)
            else:
                self._epoch_sum[point] = x.clone()
            self._epoch_n[point] = self._epoch_n.get(point, 0) + 1
        for point, x in self._pending_authors.items():
            self._smooth(self.ewma_authors, point, x)
        self._pending, self._pending_authors, self._inputs = {}, {}, {}
        return self.ewma

    def end_epoch(self, epoch: int, step: int) -> None:
        """Append the EWMA and the epoch mean of every point to the history (one host transfer)."""
        for point, n in self._epoch_n.items():
            if n == 0:
                continue
            both = torch.stack([self.ewma[point], _var_from_std(self._epoch_sum[point] / n)]).tolist()
            h = self.history.setdefault(
                point, {"epoch": [], "step": [], "ewma": {s: [] for s in STATS},
                        "epoch_mean": {s: [] for s in STATS}}
            )
            h["epoch"].append(int(epoch))
            h["step"].append(int(step))
            for i, s in enumerate(STATS):
                h["ewma"][s].append(float(both[0][i]))
                h["epoch_mean"][s].append(float(both[1][i]))
        self._epoch_sum, self._epoch_n = {}, {}

    def summary(self, authors: bool = False) -> dict[str, dict[str, float]]:
        ewma = self.ewma_authors if authors else self.ewma
        return {p: dict(zip(STATS, (float(v) for v in e.tolist()), strict=True)) for p, e in ewma.items()}

    def to_record(self) -> dict[str, Any]:
        return {"activation_stats": self.summary(), "activation_stats_authors": self.summary(authors=True),
                "activation_stats_history": self.history}

    # -- Lightning hooks
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.attach(self._net(pl_module))

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.detach()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule,
                     exception: BaseException) -> None:
        self.detach()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.begin_step()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        ewma = self.end_step()
        every = max(int(getattr(trainer, "log_every_n_steps", 1) or 1), 1)
        if ewma and int(trainer.global_step) % every == 0:
            logs = {f"act/{p}/{s}": v[i] for p, v in ewma.items() for i, s in enumerate(STATS)}
            pl_module.log_dict(logs, on_step=True, on_epoch=False, logger=True, prog_bar=False, batch_size=1)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.end_epoch(int(trainer.current_epoch), int(trainer.global_step))

    # -- checkpointing: a resumed run continues its averages and history
    def state_dict(self) -> dict[str, Any]:
        return {
            "ewma": {p: v.detach().cpu().tolist() for p, v in self.ewma.items()},
            "ewma_authors": {p: v.detach().cpu().tolist() for p, v in self.ewma_authors.items()},
            "history": self.history,
            "momentum": self.momentum,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        def tensors(key: str) -> dict[str, torch.Tensor]:
            return {p: torch.tensor(v, dtype=torch.float32) for p, v in state_dict.get(key, {}).items()}

        self.ewma, self.ewma_authors = tensors("ewma"), tensors("ewma_authors")
        self.history = state_dict.get("history", {})

    def on_train_start(self, trainer, pl_module) -> None:
        # averages restored from a checkpoint arrive on the CPU
        dev = pl_module.device
        self.ewma = {p: v.to(dev) for p, v in self.ewma.items()}
        self.ewma_authors = {p: v.to(dev) for p, v in self.ewma_authors.items()}
