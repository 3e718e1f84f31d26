"""What a composed config may hold: the schemas of the fixed groups and the parameters of ``_target_``s.

* fixed groups (``optim``, ``trainer``, ``logger``, ``eval`` and the top level) are described by the
  dataclasses below (:data:`FIXED_GROUPS`, :data:`TOP_KEYS`);
* ``_target_`` groups (``model``, ``data``, every ``reg`` entry, every ``eval.evaluators`` /
  ``callbacks`` entry, ``optim.optimizer`` and ``optim.scheduler``) by the signature of their
  target (:func:`target_params`), so a new model, regularizer or optimizer needs no schema of its own.

:func:`unknown_key` words the one error of a misspelt key (the valid keys, and a close match).
Checked at start-up by :mod:`bioreg.config.validate` (the composed config) and before Hydra runs by
:mod:`bioreg.config.overrides` (the command line).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from bioreg.config.legacy import renamed_hint
from bioreg.errors import ConfigError

__all__ = [
    "ON_EXISTING", "SEED_MAX", "TOP_KEYS", "FIXED_GROUPS", "SCHEMAS", "SET_BY_BIOREG", "TrainerConfig",
    "OptimConfig", "ProtocolConfig",
    "LoggerConfig", "EvalConfig", "unknown_key", "target_params", "signature_params", "resolve_target",
]

ON_EXISTING = ("skip", "overwrite", "error")
SEED_MAX = 2**32 - 1  # the range numpy (and so seed_everything) accepts


@dataclass
class OptimConfig:
    # {_target_: <a torch.optim.Optimizer class>, _partial_: true, lr: …}: called with the parameter groups
    optimizer: Any = None
    # {} (constant) or {_target_: <a torch.optim.lr_scheduler class>, _partial_: true, …}: called with the
    # optimizer, stepped once per epoch (the group optim/scheduler: constant | multistep | cosine)
    scheduler: Any = None
    decay_bias_and_norm: bool = False  # weight decay on biases and norm parameters too
    # the schedule runs this many epochs ahead: the push-pull authors' train.py steps its MultiStepLR
    # before every epoch (and once more before the loop), so their drops at 80/120/160 fall at 78/118/158
    scheduler_lead: int = 0


@dataclass
class ProtocolConfig:
    # thesis (the text; the default) | authors (the authors' public code: conf/protocol/authors.yaml)
    reading: str = "thesis"
    # the family recipe that protocol=authors applied (conf/protocol_recipe/<family>_authors.yaml); set by it
    recipe: Any = None


@dataclass
class TrainerConfig:
    max_epochs: int = 1
    accelerator: str = "auto"
    devices: Any = "auto"
    precision: Any = "32-true"
    deterministic: bool = False
    benchmark: bool = False
    fast_dev_run: Any = False
    limit_train_batches: Any = 1.0
    limit_val_batches: Any = 1.0
    log_every_n_steps: int = 50
    gradient_clip_val: Any = None
    enable_progress_bar: bool = True
    check_val_every_n_epoch: int = 1
    num_sanity_val_steps: int = 0
    accumulate_grad_batches: int = 1
    max_time: Any = None
    # not Trainer arguments: applied to the network by bioreg.lit.perf.configure_performance
    channels_last: bool = False
    compile: Any = False  # false | true | reduce-overhead (CUDA graphs) | an Inductor mode | a backend


@dataclass
class LoggerConfig:
    csv: bool = True
    wandb: Any = None  # null, or a mapping of wandb.init/WandbLogger arguments (mode defaults to offline)


@dataclass
class EvalConfig:
    suites: list[str] = field(default_factory=lambda: ["clean", "occlusion", "corruption"])
    progress: bool = True
    train_acc: bool = False  # also evaluate the best model on the training set in eval mode
    evaluators: Any = field(default_factory=dict)


#: the keys of the top level of a composed config
TOP_KEYS = frozenset({
    "name", "seed", "data_dir", "results_dir", "ckpt_dir", "on_existing", "ckpt", "ckpt_required",
    "callbacks", "sweep_ablations", "model", "reg", "data", "optim", "trainer", "logger", "eval", "launcher",
    "hydra",
    "protocol",
})
#: the groups with a fixed schema (a dataclass above)
FIXED_GROUPS: dict[str, type] = {"optim": OptimConfig, "trainer": TrainerConfig, "logger": LoggerConfig,
                                 "eval": EvalConfig, "protocol": ProtocolConfig}
#: every dataclass-backed node by its dotted path (the fixed groups and their nested nodes)
SCHEMAS: dict[str, type] = dict(FIXED_GROUPS)
#: parameters of a ``_target_`` node's class that bioreg passes itself (not settable in the config)
SET_BY_BIOREG: dict[str, tuple[str, ...]] = {"optim.optimizer": ("params",),
                                             "optim.scheduler": ("optimizer", "last_epoch")}


def unknown_key(path: str, key: str, valid: Iterable[str]) -> ConfigError:
    """The error of a key ``path.key`` that is not among ``valid``: the valid keys and a close match (or,
    for a key of the bioreg 0.1 spelling such as ``optim.lr``, what replaced it)."""
    valid = sorted(valid)
    where = f"{path}.{key}" if path else key
    renamed = renamed_hint(where)
    close = difflib.get_close_matches(key, valid, n=1)
    if renamed:
        hint = f" — since bioreg 0.2 {renamed}."
    else:
        hint = f" — did you mean {close[0]!r}?" if close else ""
    of = f" of {path}" if path else ""
    return ConfigError(f"unknown config key {where!r}{hint} Valid keys{of}: {', '.join(valid)}")


def resolve_target(target: str) -> Any:
    """The object a ``_target_`` names (a module attribute, or a nested one such as
    ``package.Class.from_conv``); a :class:`ConfigError` when there is none."""
    mod, _, attr = target.rpartition(".")
    try:
        return getattr(importlib.import_module(mod), attr)
    except (ImportError, AttributeError, ValueError):
        pass
    parts = target.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for a in parts[i:]:
                obj = getattr(obj, a)
        except AttributeError as e:
            raise ConfigError(f"cannot find _target_ {target!r}: {e}") from None
        return obj
    raise ConfigError(f"cannot import _target_ {target!r}") from None


def target_params(target: str) -> tuple[set[str], bool]:
    """Parameter names accepted by a ``_target_`` (and whether it takes ``**kwargs``)."""
    return signature_params(resolve_target(target))


def signature_params(obj: Any) -> tuple[set[str], bool]:
    """Names a callable accepts; a class whose ``__init__`` passes ``**kwargs`` on to its base
    class (``super().__init__(*args, **kwargs)``) accepts the base's names too, so the walk goes up
    the MRO until an ``__init__`` without ``**kwargs``. Only a callable that really takes any
    keyword (no such base to follow) reports ``var_kw=True`` and is not checked."""
    if inspect.isclass(obj):
        names: set[str] = set()
        for klass in obj.__mro__:
            init = klass.__dict__.get("__init__")
            if init is None:
                continue
            if klass is object:
                return names, False
            params = inspect.signature(init).parameters
            names |= {n for n, p in params.items()
                      if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
            if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
                return names, False
        return names, True
    sig = inspect.signature(obj)
    names = {n for n, p in sig.parameters.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    var_kw = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
    return names, var_kw
