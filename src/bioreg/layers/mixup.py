"""Input mixup and manifold mixup (Dutta 2019 §3.1.1–3.1.2, eq 3.1; Zhang et al. 2018; Verma et al. 2019).

Both mix a training batch with a permutation of itself,
``ã = λ·a + (1 − λ)·a[perm]`` with ``λ ~ Beta(alpha, alpha)`` drawn once per batch, and train on
``λ·CE(f(ã), y) + (1 − λ)·CE(f(ã), y[perm])`` (eq 3.1 with one-hot labels: the cross-entropy of
the mixed label is the mixture of the two cross-entropies). They differ only in *where* ``a`` is
taken:

* :class:`Mixup` — at one point, the input (``at: input``): eq 3.1 on the images. The model
  normalises before its ``input`` point, and mixing is affine, so mixing normalised images is
  mixing raw images.
* :class:`ManifoldMixup` — per batch a random point ``k`` among the eligible ones (input
  included), chosen uniformly; the forward pass continues from the mixed activations.

They are :class:`~bioreg.layers.base.BatchMixer` s: the entry's ``at`` names the eligible points,
a :class:`MixTap` is inserted after each, and the LitClassifier asks :meth:`plan_mix` for the
batch's λ, permutation and point (docs/interfaces.md, "Batch mixing"). In ``eval()`` mode and
outside a training step every tap is the identity.

Defaults (docs/decisions/mixup.md): ``alpha = 1`` for input mixup (Zhang et al. 2018 on CIFAR-10;
the authors' CIFAR code), ``alpha = 2`` for manifold mixup (Verma et al. 2019, CIFAR-10); the
thesis gives neither. ``at: all`` = every insertion point of the model, input included, except
the last one (which feeds the classifier head or is the output itself), following the thesis's
"select a random layer k in the network"; Verma et al.'s own choice (input and the outputs of
the first two ResNet stages) is ``at: [input, layer2, layer4]`` on VGG-11 / ``[input, conv1,
layer1]`` on the CIFAR ResNets.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from bioreg.layers.base import InsertionContext, MixPlan, RegularizerConfigError

__all__ = ["ManifoldMixup", "Mixup", "MixTap"]

ALL = "all"


class MixTap(nn.Module):
    """The module inserted after one eligible point: mixes there when the batch's plan chose it.

    Identity in ``eval()`` mode, outside a training step (``state.mix is None``) and when the plan
    names another point. Holds a reference to its mixer (shown in ``print(model)``; the mixers
    have no parameters).
    """

    def __init__(self, mixer: nn.Module, point: str):
        super().__init__()
        self.mixer = mixer
        self.point = point
        self.ctx: InsertionContext | None = None

    def bind(self, ctx: InsertionContext) -> None:
        if ctx.point != self.point:  # placed by the machinery from eligible_points(); a mismatch is a bug
            raise RegularizerConfigError(f"mixing tap for point {self.point!r} was placed at {ctx.point!r}")
        self.ctx = ctx

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        plan = self.ctx.state.mix if self.ctx is not None else None
        if not self.training or plan is None:
            return a
        if self.ctx.state.graph_safe:  # compiled step: blend by the plan's tensor choice, no branch on it
            return plan.mix_at(a, self.mixer.points.index(self.point))
        if plan.point != self.point:
            return a
        return plan.mix(a)

    def extra_repr(self) -> str:
        return f"point={self.point!r}"


def _check_alpha(alpha: Any, kind: str) -> float:
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        a = float("nan")
    if not (a > 0 and math.isfinite(a)):
        raise RegularizerConfigError(
            f"{kind}: alpha must be a finite number > 0 (lambda ~ Beta(alpha, alpha); 1.0 = uniform lambda, "
            f"small alpha = lambda near 0 or 1), got {alpha!r}"
        )
    return a


def _check_lam(lam: Any, kind: str) -> float | None:
    if lam is None:
        return None
    try:
        v = float(lam)
    except (TypeError, ValueError):
        v = float("nan")
    if not 0.0 <= v <= 1.0:
        raise RegularizerConfigError(
            f"{kind}: lam must be null (draw from Beta(alpha, alpha)) or in [0, 1], got {lam!r}")
    return v


class ManifoldMixup(nn.Module):
    """Manifold mixup (Dutta 2019 §3.1.2; Verma et al. 2019): mix at a random eligible point per batch.

    Args:
        alpha: ``λ ~ Beta(alpha, alpha)`` per batch; > 0. Default 2.0 (Verma et al.'s CIFAR-10 value).
        lam: a fixed λ in [0, 1] instead of the Beta draw (ablations and tests; ``λ = 1`` is plain
            training). Default ``None`` (draw).

    The entry's ``at`` (not an argument of this class) names the eligible points: ``all``, one
    point, or a list of the model's points; see :meth:`eligible_points`.
    """

    kind = "manifold mixup"

    def __init__(self, alpha: float = 2.0, lam: float | None = None):
        super().__init__()
        self.alpha = _check_alpha(alpha, self.kind)
        self.lam = _check_lam(lam, self.kind)
        self.points: list[str] = []

    # -- BatchMixer protocol
    def eligible_points(self, at: Any, points: Sequence[str]) -> list[str]:
        """Resolve ``at`` against the model's points (forward order, aliases removed).

        ``all`` = every point except the last (which feeds the head or is the output); a name or a
        list of names is checked and kept in the model's order, duplicates removed.
        """
        points = list(points)
        if isinstance(at, str) and at == ALL:
            chosen = points[:-1] if len(points) > 1 else points
        else:
            names = [at] if isinstance(at, (str, int)) else list(at) if isinstance(at, Sequence) else None
            if not names:
                raise RegularizerConfigError(
                    f"{self.kind}: `at` must be '{ALL}', a point or a non-empty list of points, got {at!r}; "
                    f"valid points: {', '.join(points)}"
                )
            unknown = [str(n) for n in names if str(n) not in points]
            if unknown:
                raise RegularizerConfigError(
                    f"{self.kind}: unknown eligible point(s) {', '.join(map(repr, unknown))}; valid: "
                    f"'{ALL}' or points among {', '.join(points)}"
                )
            wanted = {str(n) for n in names}
            chosen = [p for p in points if p in wanted]
        self.points = chosen
        return list(chosen)

    def tap(self, point: str) -> nn.Module:
        return MixTap(self, point)

    def plan_mix(self, batch_size: int, device: torch.device | str = "cpu") -> MixPlan:
        """λ, the partner permutation and the point for one batch (torch's global RNG, on the CPU, so
        a run draws the same plans on any device and a resumed run continues the stream)."""
        if not self.points:
            raise RegularizerConfigError(f"{self.kind} has no eligible points (was it placed in a model?)")
        if self.lam is not None:
            lam = self.lam
        else:
            lam = float(torch.distributions.Beta(self.alpha, self.alpha).sample())
        perm = torch.randperm(batch_size)
        k = int(torch.randint(len(self.points), ())) if len(self.points) > 1 else 0
        return MixPlan(lam=lam, perm=perm.to(device), point=self.points[k], index=k)

    def forward(self, a: torch.Tensor) -> torch.Tensor:  # never in the forward path itself: the taps are
        return a

    def extra_repr(self) -> str:
        lam = f", lam={self.lam}" if self.lam is not None else ""
        return f"alpha={self.alpha}{lam}, points={self.points}"


class Mixup(ManifoldMixup):
    """Input mixup (Dutta 2019 eq 3.1; Zhang et al. 2018): mix the images of each training batch.

    Place it with ``at: input`` (what ``reg=mixup`` does); another single point gives mixup at that
    fixed hidden layer. Args as :class:`ManifoldMixup`; default ``alpha = 1.0`` (Zhang et al.'s
    CIFAR-10 value: λ uniform on [0, 1]).
    """

    kind = "mixup"

    def __init__(self, alpha: float = 1.0, lam: float | None = None):
        super().__init__(alpha=alpha, lam=lam)

    def eligible_points(self, at: Any, points: Sequence[str]) -> list[str]:
        if not isinstance(at, (str, int)) or str(at) == ALL:
            raise RegularizerConfigError(
                f"mixup mixes at one point (usually `at: input`), got at={at!r}; for a random point per "
                f"batch use reg=manifold_mixup. Valid points: {', '.join(points)}"
            )
        return super().eligible_points(at, points)
