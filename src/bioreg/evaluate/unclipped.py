"""FGSM and PGD as CleverHans runs them, with optional [0, 1] clipping: the Singh authors' attacks.

The authors' public code (``evaluate.py``, ``adversarial_attacks/attacks.py``) called CleverHans'
``fast_gradient_method`` and ``projected_gradient_descent`` without ``clip_min``/``clip_max``, so
their adversarial images could leave [0, 1]. torchattacks (bioreg's implementation of the thesis's
attacks) always clips; these functions follow CleverHans' update rules with clipping optional:

* FGSM: ``x + ε·sign(∇ₓ L)``;
* PGD: start at ``x + η``, ``η ~ U(−ε, ε)`` projected onto the ε-ball; each step adds ``step·sign(∇)``
  (L∞) or ``step·∇/‖∇‖₂`` (L2, per example) and projects ``x' − x`` back onto the ball (L∞: clamp;
  L2: scale down to norm ε);
* ``L`` = cross-entropy of the given labels; targeted: minus the cross-entropy of the targets;
* ``clip=True`` clamps every iterate to [0, 1] (then PGD-L∞ equals torchattacks' ``PGD`` step for
  step, ``tests/test_protocols.py``).

Used by :class:`bioreg.evaluate.attacks.AdversarialEvaluator` when ``clip: false``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["fgsm_unclipped", "pgd_unclipped", "project"]

_TINY = 1e-12  # CleverHans' avoid_zero_div


def _loss_grad(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, targeted: bool) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(x), labels)
        if targeted:
            loss = -loss
        (grad,) = torch.autograd.grad(loss, x)
    return grad


def _dims(x: torch.Tensor) -> tuple[int, ...]:
    return tuple(range(1, x.dim()))


def project(eta: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """``eta`` onto the ε-ball: clamp (L∞) or per-example scaling to norm ≤ ε (L2)."""
    if norm == "linf":
        return eta.clamp(-eps, eps)
    length = torch.sqrt(torch.clamp((eta * eta).sum(_dims(eta), keepdim=True), min=_TINY))
    return eta * torch.clamp(eps / length, max=1.0)


def _ascent(grad: torch.Tensor, step: float, norm: str) -> torch.Tensor:
    if norm == "linf":
        return step * grad.sign()
    return step * grad / torch.sqrt(torch.clamp((grad * grad).sum(_dims(grad), keepdim=True), min=_TINY))


def fgsm_unclipped(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, eps: float,
                   targets: torch.Tensor | None = None, clip: bool = False) -> torch.Tensor:
    """One L∞ step of size ε (towards ``targets`` when given), clipped to [0, 1] only with ``clip``."""
    grad = _loss_grad(model, x, labels if targets is None else targets, targets is not None)
    adv = x.detach() + eps * grad.sign()
    return adv.clamp(0.0, 1.0) if clip else adv


def pgd_unclipped(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, *, eps: float, step: float,
                  steps: int, norm: str = "linf", targets: torch.Tensor | None = None,
                  random_start: bool = True, clip: bool = False) -> torch.Tensor:
    """PGD with CleverHans' update and projection (module docstring); returns the last iterate."""
    x = x.detach()
    adv = x.clone()
    if random_start:
        adv = x + project(torch.empty_like(x).uniform_(-eps, eps), eps, norm)
        if clip:
            adv = adv.clamp(0.0, 1.0)
    goal = labels if targets is None else targets
    for _ in range(int(steps)):
        adv = adv + _ascent(_loss_grad(model, adv, goal, targets is not None), step, norm)
        adv = x + project(adv - x, eps, norm)
        if clip:
            adv = adv.clamp(0.0, 1.0)
    return adv.detach()
