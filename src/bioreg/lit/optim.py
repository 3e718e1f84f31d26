"""Optimizers and learning-rate schedules from config (``optim.optimizer``, ``optim.scheduler``).

Both are ``_target_`` nodes with ``_partial_: true``, as in lightning-hydra-template::

    optim:
      optimizer: {_target_: torch.optim.SGD, _partial_: true, lr: 0.1, momentum: 0.9, weight_decay: 1e-4}
      scheduler: {_target_: torch.optim.lr_scheduler.MultiStepLR, _partial_: true, milestones: [80, 120]}
      decay_bias_and_norm: false

so any ``torch.optim`` optimizer or LR scheduler (or a class of one's own) is chosen by config and
its keys are checked against its signature at start-up (:mod:`bioreg.config.validate`).
:func:`build_optimizer` calls the optimizer with bioreg's parameter groups: weight decay
(``optimizer.weight_decay``) is applied to weights only — never to biases, BatchNorm affine
parameters or other 1-D parameters (e.g. a push-pull layer's α) — following the regularisation notes
of the EPFL lecture slides "Convolutional Nets, Regularization, Data augmentation, Dropout"
(docs/references.md), unless ``decay_bias_and_norm: true``. An empty ``scheduler`` (``optim/scheduler=
constant``) keeps the learning rate constant; schedules step once per epoch, and a scheduler that
takes ``T_max`` and is not given one gets ``trainer.max_epochs``. ``optim.scheduler_lead: k`` steps
the new scheduler ``k`` times before the first epoch, so the schedule runs ``k`` epochs ahead: the
push-pull authors' ``train.py`` (``scheduler.step(epoch)`` before the loop, ``scheduler.step()`` at the
start of every epoch) is ``k = 2``, its drops at 80/120/160 falling at epochs 78/118/158.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from bioreg.errors import ConfigError, instantiate

__all__ = ["param_groups", "build_optimizer", "build_scheduler", "optimizer_factory", "scheduler_factory"]


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


def _partial(node: Mapping[str, Any], where: str, called_with: str) -> functools.partial:
    factory = instantiate(dict(node))
    if not isinstance(factory, functools.partial):
        raise ConfigError(f"{where} must be built with `_partial_: true` (bioreg calls it with "
                          f"{called_with})")
    return factory


def optimizer_factory(cfg: Mapping[str, Any]) -> functools.partial:
    """``optim.optimizer`` built with ``_partial_: true``: the optimizer class with its settings."""
    node = cfg.get("optimizer") if isinstance(cfg, Mapping) else None
    if not isinstance(node, Mapping):
        hint = (" (a config in the bioreg 0.1 spelling: bioreg.config.legacy.upgrade_optim translates it)"
                if isinstance(cfg, Mapping) and "name" in cfg else "")
        raise ConfigError("optim needs an `optimizer` node "
                          f"({{_target_: torch.optim.SGD, _partial_: true, lr: …}}){hint}")
    factory = _partial(node, "optim.optimizer", "the parameter groups")
    # YAML gives lists; torch's own type for betas and the like is a tuple (as bioreg 0.1 passed them)
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in factory.keywords.items()}
    return functools.partial(factory.func, *factory.args, **kw)


def build_optimizer(model: nn.Module, cfg: Mapping[str, Any]) -> torch.optim.Optimizer:
    """The optimizer of ``cfg`` (the ``optim`` node) over ``model``'s parameter groups."""
    factory = optimizer_factory(cfg)
    decay = float(factory.keywords.get("weight_decay", 0.0))
    return factory(param_groups(model, decay, bool(cfg.get("decay_bias_and_norm", False))))


def scheduler_factory(cfg: Mapping[str, Any] | None, max_epochs: int) -> functools.partial | None:
    """``optim.scheduler`` built with ``_partial_: true`` (``T_max`` filled from ``max_epochs`` when the
    class takes one and none is given); None for no schedule (an empty or null node)."""
    if not cfg:
        return None
    factory = _partial(cfg, "optim.scheduler", "the optimizer")
    if "T_max" in inspect.signature(factory.func).parameters and not factory.keywords.get("T_max"):
        factory = functools.partial(factory, T_max=max(int(max_epochs), 1))
    return factory


def build_scheduler(opt: torch.optim.Optimizer, cfg: Mapping[str, Any] | None, max_epochs: int,
                    lead: int = 0):
    """The LR scheduler of ``cfg`` (the ``optim.scheduler`` node) on ``opt``, or None (constant);
    ``lead`` = ``optim.scheduler_lead``: steps taken before the first epoch (module docstring)."""
    factory = scheduler_factory(cfg, max_epochs)
    if factory is None:
        return None
    if isinstance(lead, bool) or not isinstance(lead, int) or lead < 0:
        raise ConfigError(f"optim.scheduler_lead must be an integer >= 0, got {lead!r}")
    sched = factory(opt)
    with warnings.catch_warnings():  # "lr_scheduler.step() before optimizer.step()": on purpose here
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(lead):
            sched.step()
    return sched
