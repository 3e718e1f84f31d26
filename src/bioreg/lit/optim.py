"""Optimizers and learning-rate schedules from config.

Weight decay is applied to weights only — never to biases, BatchNorm affine
parameters or other 1-D parameters (e.g. a push-pull layer's α) — following the
regularisation notes of the EPFL lecture slides "Convolutional Nets, Regularization, Data
augmentation, Dropout" (docs/references.md). Schedules step once per epoch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

__all__ = ["OPTIMIZERS", "SCHEDULERS", "param_groups", "build_optimizer", "build_scheduler"]

OPTIMIZERS = ("sgd", "adam")
SCHEDULERS = ("constant", "multistep", "cosine")


def param_groups(model: nn.Module, weight_decay: float, decay_bias_and_norm: bool = False) -> list[dict]:
    """Split parameters into a decayed group (≥2-D weights) and an undecayed one."""
    decay, no_decay = [], []
    seen: set[int] = set()
    for p in model.parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (decay if (p.ndim > 1 or decay_bias_and_norm) else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def build_optimizer(model: nn.Module, cfg: Mapping[str, Any]) -> torch.optim.Optimizer:
    name = str(cfg.get("name", "sgd")).lower()
    groups = param_groups(model, float(cfg.get("weight_decay", 0.0)), bool(cfg.get("decay_bias_and_norm", False)))
    lr = float(cfg["lr"])
    if lr <= 0:
        raise ValueError(f"optim.lr must be positive, got {lr}")
    if name == "sgd":
        momentum = float(cfg.get("momentum", 0.0))
        nesterov = bool(cfg.get("nesterov", False))
        if nesterov and momentum <= 0:
            raise ValueError("optim.nesterov=true needs optim.momentum > 0")
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov)
    if name == "adam":
        betas = tuple(cfg.get("betas", (0.9, 0.999)))
        return torch.optim.Adam(groups, lr=lr, betas=betas)  # type: ignore[arg-type]
    raise ValueError(f"unknown optimizer {name!r}; valid choices: {', '.join(OPTIMIZERS)}")


def build_scheduler(opt: torch.optim.Optimizer, cfg: Mapping[str, Any] | None, max_epochs: int):
    cfg = cfg or {}
    name = str(cfg.get("name", "constant")).lower()
    if name == "constant":
        return None
    if name == "multistep":
        milestones: Iterable[int] = cfg.get("milestones", [])
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(milestones), gamma=float(cfg.get("gamma", 0.1)))
    if name == "cosine":
        t_max = cfg.get("t_max") or max(max_epochs, 1)
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=int(t_max), eta_min=float(cfg.get("eta_min", 0.0)))
    raise ValueError(f"unknown scheduler {name!r}; valid choices: {', '.join(SCHEDULERS)}")
