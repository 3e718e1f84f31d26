"""Configs in the spelling of earlier bioreg versions: read them, and keep the run identity they had.

Two things changed spelling in bioreg 0.2 (CHANGELOG.md):

* **the optimizer and the schedule** are ``_target_`` nodes built with ``_partial_: true``
  (``optim.optimizer: {_target_: torch.optim.SGD, _partial_: true, lr: …}``, ``optim.scheduler``
  from the group ``optim/scheduler``) instead of names (``optim.name: sgd``, ``optim.lr``,
  ``optim.scheduler.name: multistep``, ``optim.scheduler.t_max``);
* **two callbacks moved module** (:data:`MOVED_TARGETS`).

A run record stores the resolved config it ran with, so records written before hold the 0.1
spelling. :func:`upgrade_config` turns such a config into today's (used wherever a stored config is
built again: :mod:`bioreg.app.evaluate_checkpoint`, ``scripts/evaluate_checkpoint.py``,
``scripts/correlation_analysis.py``); it leaves a config already in today's spelling as it is.

A run's identity (:func:`bioreg.results.records.config_key`, which names its record and checkpoint
folder) is a hash of its resolved config. So that a run keeps its key — its completed record is
found, its ``last.ckpt`` resumed, its table cell not doubled — the key is computed on
:func:`identity_view`, the config in the 0.1 spelling wherever that spelling can express it (every
config of the 0.1 presets and experiments); a config that 0.1 could not express (another
optimizer, say) is keyed as it is. Keys added later whose value leaves a run as it was
(:data:`ADDED_DEFAULTS`: the thesis protocol, zero crop padding, one affine stage, selection on the
validation split, torchvision's VGG init, no scheduler lead) are left out of the identity at that
value, so a run under the thesis protocol keeps its key and one under ``protocol=authors`` gets its
own. ``tests/test_legacy.py`` checks the key of every experiment against the keys bioreg 0.1 computed.

This module is pure (no torch, no Hydra, no other bioreg module), so the lowest layers may use it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

__all__ = ["ADDED_DEFAULTS", "MOVED_TARGETS", "OPTIMIZER_NAMES", "SCHEDULER_NAMES", "RENAMED_KEYS",
           "is_legacy_optim", "upgrade_optim", "legacy_optim", "upgrade_config", "identity_view",
           "renamed_hint"]

#: ``_target_``s that moved: former spelling -> today's
MOVED_TARGETS: Mapping[str, str] = {
    "bioreg.lit.stopping.StopAtAccuracy": "bioreg.lit.callbacks.stopping.StopAtAccuracy",
    "bioreg.lit.activation_stats.ActivationStats": "bioreg.lit.callbacks.activation_stats.ActivationStats",
}
#: keys added after bioreg 0.1 -> the value at which the run is the one 0.1 trained (left out of the
#: identity at that value; any other value is part of it). docs/decisions/protocols.md
ADDED_DEFAULTS: Mapping[str, Any] = {
    "protocol": {"reading": "thesis"},
    "data.select_on": "validation",
    "data.crop_padding_mode": "zeros",
    "data.affine_repeats": 1,
    "model.init": "torchvision",
    "optim.scheduler_lead": 0,
}
#: the added keys that today's presets spell out, and the ``_target_``s whose node has them: a stored
#: config of an earlier version gets them back at their default (:func:`upgrade_config`)
_SPELLED_OUT: Mapping[str, tuple[str, ...]] = {
    "protocol": (),
    **{f"data.{k}": ("bioreg.data.cifar10.CIFAR10DataModule", "bioreg.data.digits.DigitsDataModule")
       for k in ("select_on", "crop_padding_mode", "affine_repeats")},
    "model.init": ("bioreg.models.VGG16", "bioreg.models.vgg.VGG16"),
}
#: ``optim.name`` of 0.1 -> the class it built, and the 0.1 keys that class took
OPTIMIZER_NAMES: Mapping[str, str] = {"sgd": "torch.optim.SGD", "adam": "torch.optim.Adam"}
_OPTIMIZER_KEYS: Mapping[str, tuple[str, ...]] = {
    "sgd": ("lr", "momentum", "nesterov", "weight_decay"),
    "adam": ("lr", "betas", "weight_decay"),
}
#: ``optim.scheduler.name`` of 0.1 -> the class it built (``constant``: none)
SCHEDULER_NAMES: Mapping[str, str] = {"multistep": "torch.optim.lr_scheduler.MultiStepLR",
                                      "cosine": "torch.optim.lr_scheduler.CosineAnnealingLR"}
#: 0.1 scheduler keys -> today's (the arguments of the torch class)
_SCHEDULER_KEYS: Mapping[str, Mapping[str, str]] = {
    "multistep": {"milestones": "milestones", "gamma": "gamma"},
    "cosine": {"t_max": "T_max", "eta_min": "eta_min"},
}
_OPTIM_KEYS_0_2 = ("optimizer", "scheduler", "decay_bias_and_norm")

#: keys of the 0.1 spelling -> what replaced them (for the error of a key that no longer exists)
RENAMED_KEYS: Mapping[str, str] = {
    "optim.name": "choose the optimizer with optim=<preset> or "
                  "optim.optimizer._target_=<a torch.optim class>",
    **{f"optim.{k}": f"it is optim.optimizer.{k}"
       for k in ("lr", "momentum", "nesterov", "weight_decay", "betas")},
    "optim.scheduler.name": "choose the schedule with optim/scheduler=<constant, multistep or cosine>",
    "optim.scheduler.t_max": "it is optim.scheduler.T_max (optim/scheduler=cosine)",
}


def renamed_hint(path: str) -> str | None:
    """What replaced the 0.1 key ``path`` (e.g. ``optim.lr``), or None if it is no 0.1 key."""
    return RENAMED_KEYS.get(path)


def is_legacy_optim(optim: Any) -> bool:
    """Whether an ``optim`` node is in the 0.1 spelling (``name``, ``lr``… at its top)."""
    return isinstance(optim, Mapping) and "optimizer" not in optim and ("name" in optim or "lr" in optim)


def upgrade_optim(old: Mapping[str, Any]) -> dict[str, Any]:
    """The ``optim`` node of 0.1 (``{name: sgd, lr, momentum, …, scheduler: {name: multistep, …}}``) in
    today's spelling: the same optimizer, parameter groups and schedule. Keys the 0.1 optimizer
    ignored (``betas`` of SGD, ``momentum`` of Adam) are dropped, as 0.1 dropped them."""
    name = str(old.get("name", "sgd")).lower()
    if name not in OPTIMIZER_NAMES:
        raise ValueError(f"optim.name={name!r} was never a bioreg optimizer; valid: "
                         f"{', '.join(OPTIMIZER_NAMES)}")
    optimizer = {"_target_": OPTIMIZER_NAMES[name], "_partial_": True,
                 **{k: copy.deepcopy(old[k]) for k in _OPTIMIZER_KEYS[name] if k in old}}
    return {"optimizer": optimizer, "scheduler": _upgrade_scheduler(old.get("scheduler")),
            "decay_bias_and_norm": bool(old.get("decay_bias_and_norm", False))}


def _upgrade_scheduler(old: Mapping[str, Any] | None) -> dict[str, Any]:
    name = str((old or {}).get("name", "constant")).lower()
    if name == "constant":
        return {}
    if name not in SCHEDULER_NAMES:
        raise ValueError(f"optim.scheduler.name={name!r} was never a bioreg schedule; valid: constant, "
                         f"{', '.join(SCHEDULER_NAMES)}")
    keys = _SCHEDULER_KEYS[name]
    out: dict[str, Any] = {"_target_": SCHEDULER_NAMES[name], "_partial_": True}
    out.update({new: copy.deepcopy(old[k]) for k, new in keys.items() if old is not None and k in old})
    return out


def legacy_optim(optim: Mapping[str, Any]) -> dict[str, Any] | None:
    """Today's ``optim`` node in the 0.1 spelling, key for key (the inverse of :func:`upgrade_optim` on
    every 0.1 config); None when 0.1 could not express it (another class, an unknown key)."""
    if set(optim) - set(_OPTIM_KEYS_0_2) or not isinstance(optim.get("optimizer"), Mapping):
        return None
    opt = dict(optim["optimizer"])
    names = {v: k for k, v in OPTIMIZER_NAMES.items()}
    name = names.get(str(opt.pop("_target_", "")))
    if name is None or opt.pop("_partial_", None) is not True or set(opt) - set(_OPTIMIZER_KEYS[name]):
        return None
    out: dict[str, Any] = {"name": name, **opt}
    if "decay_bias_and_norm" in optim:
        out["decay_bias_and_norm"] = optim["decay_bias_and_norm"]
    scheduler = _legacy_scheduler(optim.get("scheduler"))
    if scheduler is None:
        return None
    out["scheduler"] = scheduler
    return out


def _legacy_scheduler(sched: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not sched:
        return {"name": "constant"}
    sched = dict(sched)
    names = {v: k for k, v in SCHEDULER_NAMES.items()}
    name = names.get(str(sched.pop("_target_", "")))
    if name is None or sched.pop("_partial_", None) is not True:
        return None
    back = {new: old for old, new in _SCHEDULER_KEYS[name].items()}
    if set(sched) - set(back):
        return None
    return {"name": name, **{back[k]: v for k, v in sched.items()}}


def _map_targets(node: Any, table: Mapping[str, str]) -> Any:
    if isinstance(node, Mapping):
        return {k: (table.get(v, v) if k == "_target_" and isinstance(v, str) else _map_targets(v, table))
                for k, v in node.items()}
    if isinstance(node, list):
        return [_map_targets(v, table) for v in node]
    return node


def _node(cfg: Mapping[str, Any], parents: list[str]) -> Any:
    node: Any = cfg
    for p in parents:
        node = node.get(p) if isinstance(node, Mapping) else None
    return node


def _fill_added_defaults(cfg: dict[str, Any]) -> None:
    """Add (in place) the keys of :data:`_SPELLED_OUT` that a stored config lacks, at their default."""
    for path, targets in _SPELLED_OUT.items():
        *parents, leaf = path.split(".")
        node = _node(cfg, parents)
        if not isinstance(node, dict) or leaf in node or (targets and node.get("_target_") not in targets):
            continue
        node[leaf] = copy.deepcopy(ADDED_DEFAULTS[path])


def upgrade_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """A stored (resolved) config in today's spelling: moved ``_target_``s and a 0.1 ``optim`` node
    translated, keys added since filled in at the value that leaves the run as it was; a config
    already in today's spelling comes back equal. Returns a new dict."""
    out = _map_targets(copy.deepcopy(dict(cfg)), MOVED_TARGETS)
    if is_legacy_optim(out.get("optim")):
        out["optim"] = upgrade_optim(out["optim"])
    _fill_added_defaults(out)
    return out


def _drop_added_defaults(cfg: dict[str, Any]) -> None:
    """Remove (in place) every key of :data:`ADDED_DEFAULTS` that has its default value."""
    for path, default in ADDED_DEFAULTS.items():
        *parents, leaf = path.split(".")
        node = _node(cfg, parents)
        if isinstance(node, dict) and leaf in node and node[leaf] == default:
            del node[leaf]


def identity_view(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The resolved config as bioreg 0.1 spelled it, for the run identity: moved ``_target_``s by
    their former names, keys added since at their default value left out (:data:`ADDED_DEFAULTS`)
    and the ``optim`` node in the 0.1 spelling when 0.1 could express it."""
    out = _map_targets(dict(cfg), {new: old for old, new in MOVED_TARGETS.items()})
    _drop_added_defaults(out)
    optim = out.get("optim")
    if isinstance(optim, Mapping) and not is_legacy_optim(optim):
        old = legacy_optim(optim)
        if old is not None:
            out["optim"] = old
    return out
