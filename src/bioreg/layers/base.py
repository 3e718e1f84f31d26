"""The one interface between a model and the regularizers inserted into it.

A regularizer is an ordinary ``nn.Module``. It is placed by config at a named
*insertion point* of a model (see :mod:`bioreg.models.points`) and is either

* **inserted after** the point (default): it receives the activations that the
  point produces (for a conv layer: after its ReLU, shape ``(N, C, H, W)``; for a
  linear layer ``(N, F)``) and returns a tensor of the same shape; or
* **replacing** the module of the point (``mode: replace``): the config then
  describes a *factory* (Hydra ``_partial_: true``) that is called with the module
  being replaced and returns its replacement (e.g. a push-pull layer built from a
  trained convolution).

A module that needs context implements ``bind(ctx: InsertionContext)``; the
:class:`~bioreg.lit.module.LitClassifier` calls it once, after every module has
been placed and after a dry forward pass has measured the activation shape at
the point. The context holds:

``point``
    the insertion point's name (e.g. ``"layer1"``).
``producer``
    the live module (``nn.Conv2d`` / ``nn.Linear`` or a replacement with a
    ``weight``) whose output, after its non-linearity, reaches the point, or
    ``None`` when no weighted layer produces it (the input). Read its ``weight``
    at use time: it is the live parameter, updated by the optimizer.
``shape``
    activation shape at the point without the batch dimension.
``stride``
    the point's cumulative stride ``(sy, sx)``: input pixels between neighbouring units of
    its feature maps (1 for an un-strided layer 1, 2 after one stride-2 layer, ...), or a
    zero-argument callable that measures it on first use, or ``None`` when unknown; read it
    with ``ctx.cumulative_stride(who)`` (e.g. ``distance_scale: input`` of the correlated noise).
``state``
    a :class:`TrainingState` shared by every module of the model; the
    LitClassifier keeps ``epoch``, ``max_epochs`` and ``global_step`` up to date,
    so schedules read it (DropBlock's linear ramp: ``bioreg.layers.dropout.linear_ramp(ctx.state)``,
    which reaches its target in the last epoch, ``epoch = max_epochs - 1``), and
    ``mix``, the :class:`MixPlan` of the current training batch (or ``None``). ``graph_safe``
    is set when the network is compiled (``trainer.compile``): see below.

**Graph-safe mode** (``state.graph_safe``, set by :func:`bioreg.lit.perf.configure_performance`
when ``trainer.compile`` is on): the training forward must be one graph that ``torch.compile`` can
capture whole (CUDA graphs included): no host reads, no data-dependent shapes, and no Python number
that changes from step to step (each would be a new graph). A module whose forward needs such
per-step work implements ``prepare_step()`` (:class:`StepPrepared`): the LitClassifier calls it
before every training forward, outside the compiled graph, and the forward then reads only
tensors (the correlated noise refreshes Σ there; DropBlock writes its scheduled probability into
a device tensor). Without ``graph_safe`` nothing changes: modules do that work in their forward as
before, with the same numbers.

Regularizers that mix whole batches (input / manifold mixup) change the loss,
not only the activations: they implement the :class:`BatchMixer` protocol. Such
an entry's ``at`` names its *eligible points* (one point, a list, or ``all``);
the placement machinery inserts the module's :meth:`BatchMixer.tap` after each
of them, and the LitClassifier asks the mixer for a :class:`MixPlan` (λ, the
partner permutation and the one chosen point) per training batch, keeps it in
``state.mix`` during the forward pass, and mixes the loss with the same λ and
permutation (docs/interfaces.md, "Batch mixing").

Modules keep the context as a plain attribute (``self.ctx``; a dataclass is not
registered as a sub-module, so the producer's parameters are not duplicated in
``state_dict``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

import torch
from torch import nn

from bioreg.errors import UserError

__all__ = [
    "InsertionContext",
    "TrainingState",
    "MixPlan",
    "BatchMixer",
    "StepPrepared",
    "prepare_step",
    "ContextError",
    "RegularizerConfigError",
    "reg_entries",
    "kernel_similarity",
    "check_probability",
    "float32_internals",
]

_F = TypeVar("_F", bound=Callable[..., Any])


class RegularizerConfigError(UserError, ValueError):
    """A regularizer was given an invalid parameter."""


class ContextError(RegularizerConfigError):
    """A regularizer needs context its insertion point cannot give."""


def reg_entries(reg_cfg: Any) -> list[tuple[str, Mapping[str, Any]]]:
    """Normalise the ``reg`` config: a list of entries, or a mapping ``name -> entry``.

    The mapping form is what the config group uses (so that several ``reg``
    options compose, e.g. ``reg: [allconv_dropout, cg]``); entries whose value is
    ``null`` are switched off. Each entry holds ``at`` (the insertion point),
    optional ``mode`` (``after`` — default — or ``replace``) and the module
    config with ``_target_``.
    """
    if reg_cfg is None:
        return []
    if isinstance(reg_cfg, Mapping):
        items = [(str(k), v) for k, v in reg_cfg.items() if v is not None]
    elif isinstance(reg_cfg, Sequence) and not isinstance(reg_cfg, str):
        items = [(f"reg{i}", v) for i, v in enumerate(reg_cfg)]
    else:
        raise RegularizerConfigError(
            f"`reg` must be a list or a mapping of placements, got {type(reg_cfg).__name__}")
    for name, e in items:
        if not isinstance(e, Mapping) or "at" not in e or "_target_" not in e:
            raise RegularizerConfigError(
                f"regularizer entry {name!r} must be a mapping with `at: <point>` and `_target_: <class>`, "
                f"got {e!r}"
            )
        mode = e.get("mode", "after")
        if mode not in ("after", "replace"):
            raise RegularizerConfigError(
                f"regularizer entry {name!r}: mode must be 'after' or 'replace', got {mode!r}")
    return items


@dataclass
class MixPlan:
    """How one training batch is mixed (Dutta 2019 eq 3.1): ``lam·a + (1 − lam)·a[perm]`` at ``point``.

    ``perm`` is a permutation of the batch (each example's partner); ``point`` is the one insertion
    point where the activations are mixed (``index``: its position among the mixer's eligible
    points). The loss uses the same ``lam`` and ``perm``: ``lam·CE(y) + (1 − lam)·CE(y[perm])``.
    ``applied`` counts the taps that mixed under this plan; the LitClassifier checks that it is
    exactly one after the forward pass. In graph-safe mode (:meth:`with_tensors`) ``lam``,
    ``1 − lam`` and ``index`` are also 0-dim device tensors, every tap blends with ``torch.where``
    (the same numbers where it mixes, ``a`` itself elsewhere) and ``applied`` counts the taps passed.
    """

    lam: float
    perm: torch.Tensor
    point: str
    applied: int = 0
    index: int = 0
    lam_t: torch.Tensor | None = None
    rest_t: torch.Tensor | None = None
    choice: torch.Tensor | None = None

    def with_tensors(self, device: torch.device | str) -> MixPlan:
        """Add the graph-safe tensors (float32 ``lam`` and ``1 − lam`` as eq 3.1 computes them from
        the float ``lam``, the chosen point's index) on ``device``; returns ``self``."""
        self.lam_t = torch.tensor(self.lam, dtype=torch.float32).to(device)
        self.rest_t = torch.tensor(1.0 - self.lam, dtype=torch.float32).to(device)
        self.choice = torch.tensor(self.index).to(device)
        return self

    def _check_batch(self, a: torch.Tensor) -> None:
        if a.shape[0] != self.perm.numel():
            raise RuntimeError(
                f"mixing plan for {self.perm.numel()} examples met a batch of {a.shape[0]} at point "
                f"{self.point!r}"
            )

    def mix(self, a: torch.Tensor) -> torch.Tensor:
        """Mix a batch with its permuted self (counts one application)."""
        self._check_batch(a)
        self.applied += 1
        return self.lam * a + (1.0 - self.lam) * a[self.perm.to(a.device)]

    def mix_at(self, a: torch.Tensor, index: int) -> torch.Tensor:
        """Graph-safe mode: the mixed batch if ``index`` is the chosen point, else ``a`` (a tensor
        choice, no Python branch on the plan); counts one tap passed."""
        assert self.lam_t is not None and self.rest_t is not None and self.choice is not None
        self._check_batch(a)
        self.applied += 1
        mixed = self.lam_t * a.float() + self.rest_t * a[self.perm].float()
        return torch.where(self.choice == index, mixed.to(a.dtype), a)


@runtime_checkable
class BatchMixer(Protocol):
    """A regularizer that mixes whole training batches and so changes the loss (input / manifold mixup).

    The LitClassifier finds such modules by this protocol (never by their class):

    * ``eligible_points(at, points)`` — the points the entry's ``at`` names (one point, a list, or
      ``all``), checked against the model's ``points`` (in forward order, aliases removed); an
      unknown point raises :class:`RegularizerConfigError` naming the valid ones;
    * ``tap(point)`` — the module inserted after each eligible point: it mixes (``state.mix.mix``)
      only in training mode and only when the current plan chose its point, else it is the identity;
    * ``plan_mix(batch_size, device)`` — called once per training batch: a :class:`MixPlan`.
    """

    def eligible_points(self, at: Any, points: Sequence[str]) -> list[str]: ...

    def tap(self, point: str) -> nn.Module: ...

    def plan_mix(self, batch_size: int, device: torch.device | str = "cpu") -> MixPlan: ...


@dataclass
class TrainingState:
    """Progress of training, shared by every inserted module.

    ``epoch`` is 0-based; ``progress`` is ``epoch / max_epochs`` in [0, 1] and is
    what schedules read. Outside a Trainer (unit tests, evaluation) the values
    stay at their defaults, i.e. a schedule sees the start of training unless a
    test sets them.
    """

    epoch: int = 0
    max_epochs: int = 1
    global_step: int = 0
    mix: MixPlan | None = None  # the current training batch's mixing plan (set only during its forward pass)
    graph_safe: bool = False  # the training forward is compiled: per-step work in prepare_step (module doc)

    @property
    def progress(self) -> float:
        if self.max_epochs <= 0:
            return 1.0
        return min(max(self.epoch / self.max_epochs, 0.0), 1.0)


@runtime_checkable
class StepPrepared(Protocol):
    """A regularizer with host-side work per training step (graph-safe mode, module docstring)."""

    def prepare_step(self) -> None: ...


def prepare_step(modules: Sequence[nn.Module]) -> None:
    """Call ``prepare_step()`` of every :class:`StepPrepared` module (before a training forward)."""
    for m in modules:
        if isinstance(m, StepPrepared):
            m.prepare_step()


@dataclass
class InsertionContext:
    """What a model tells a module placed at one of its insertion points."""

    point: str
    producer: nn.Module | None
    shape: tuple[int, ...]
    state: TrainingState = field(default_factory=TrainingState)
    stride: tuple[int, int] | Callable[[], tuple[int, int]] | None = field(default=None, repr=False)

    def cumulative_stride(self, who: str = "this regularizer") -> tuple[int, int]:
        """``(sy, sx)``: input pixels between neighbouring units at this point (measured lazily).

        Raises :class:`ContextError` naming the point when the context does not know it.
        """
        if callable(self.stride):
            self.stride = self.stride()
        if self.stride is None:
            raise ContextError(
                f"{who} needs the cumulative stride of point {self.point!r} (input pixels between "
                "neighbouring units), which this insertion context does not give; give distance_scale a "
                "number instead"
            )
        sy, sx = self.stride
        return int(sy), int(sx)

    def producer_weight(self, who: str = "this regularizer") -> torch.Tensor:
        """The live 4-D kernel ``(C_out, C_in, kh, kw)`` of the producing convolution.

        Raises :class:`ContextError` naming the point when there is none (e.g. a
        module that needs kernel similarity placed at the input).
        """
        w = getattr(self.producer, "weight", None)
        if self.producer is None or w is None or w.dim() != 4:
            what = "no weighted layer" if self.producer is None else type(self.producer).__name__
            raise ContextError(
                f"{who} needs the kernels of the convolution that produces point {self.point!r}, "
                f"but that point is produced by {what}. Place it after a convolutional layer."
            )
        return w


def kernel_similarity(weight: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of the kernels of a convolution (Dutta 2019, eq 2.16).

    ``weight`` is ``(C_out, C_in, kh, kw)``; each kernel is flattened and
    normalised to unit length, and the result ``K[i, j] = <w_i, w_j>`` is a
    ``(C_out, C_out)`` matrix with ones on the diagonal (a zero kernel gets
    similarity 0 to everything, and 1 to itself).
    """
    flat = weight.reshape(weight.shape[0], -1)
    unit = flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-12)
    k = unit @ unit.T
    k = k.clamp(-1.0, 1.0)
    k.fill_diagonal_(1.0)
    return k


def check_probability(p: float, name: str = "p", *, upper_inclusive: bool = False) -> float:
    """Validate a probability, raising a clear error for values outside [0, 1)."""
    ok = 0.0 <= p <= 1.0 if upper_inclusive else 0.0 <= p < 1.0
    if not ok or p != p:  # NaN check
        rng = "[0, 1]" if upper_inclusive else "[0, 1)"
        raise RegularizerConfigError(f"{name} must be in {rng}, got {p!r}")
    return float(p)


def float32_internals(forward: _F) -> _F:
    """Decorator of a regularizer's ``forward(self, a)``: its internals run in float32.

    Under mixed precision (``trainer=gpu``: bf16 autocast) activations arrive in bfloat16 and
    autocast would run matrix products in bfloat16 too; the regularizers' internals (Σ factors
    and samples, Poisson quantiles, NormOut's softmax, kernel-similarity rows) need float32. In
    training mode with a low-precision input or autocast on, the forward runs with autocast off
    on ``a.float()`` and its result is cast back to ``a``'s dtype. In every other case (float32
    or float64 input, autocast off, or eval mode) it is called unchanged, so the float32 path is
    bit-identical.
    """

    @functools.wraps(forward)
    def wrapper(self: nn.Module, a: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        dev = a.device.type
        low = a.dtype in (torch.float16, torch.bfloat16)
        if not self.training or not (low or torch.is_autocast_enabled(dev)):
            return forward(self, a, *args, **kwargs)
        with torch.autocast(dev, enabled=False):
            out = forward(self, a.float() if low else a, *args, **kwargs)
        return out.to(a.dtype)

    return wrapper  # type: ignore[return-value]
