"""Config schemas and start-up validation.

Every config group is backed by a schema, so that a misspelt key fails at
start-up with the valid keys named (and a close match suggested):

* fixed groups (``optim``, ``optim.scheduler``, ``trainer``, ``logger``,
  ``eval``, the top level) by the dataclasses below — merged with
  :func:`omegaconf.OmegaConf.structured` for type checking too;
* ``_target_`` groups (``model``, ``data``, every ``reg`` entry, every
  ``eval.evaluators`` / ``callbacks`` entry) by the signature of their target,
  so a new model or regularizer needs no schema of its own.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from omegaconf import DictConfig, OmegaConf

from bioreg.errors import UserError

__all__ = ["ConfigError", "validate_config", "check_training_length", "SEED_MAX", "TrainerConfig", "OptimConfig", "SchedulerConfig", "EvalConfig",
           "LoggerConfig", "ON_EXISTING"]

ON_EXISTING = ("skip", "overwrite", "error")
SEED_MAX = 2**32 - 1  # the range numpy (and so seed_everything) accepts


class ConfigError(UserError, ValueError):
    """A bad key or value in the composed config (a :class:`bioreg.errors.UserError`)."""


@dataclass
class SchedulerConfig:
    name: str = "constant"  # constant | multistep | cosine
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    t_max: int | None = None
    eta_min: float = 0.0


@dataclass
class OptimConfig:
    name: str = "sgd"  # sgd | adam
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    decay_bias_and_norm: bool = False
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)


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


_TOP = {
    "name", "seed", "data_dir", "results_dir", "ckpt_dir", "on_existing", "ckpt", "ckpt_required", "callbacks",
    "model", "reg", "data", "optim", "trainer", "logger", "eval", "launcher", "hydra",
}
_FIXED = {"optim": OptimConfig, "trainer": TrainerConfig, "logger": LoggerConfig, "eval": EvalConfig}


def _unknown(path: str, key: str, valid) -> ConfigError:
    valid = sorted(valid)
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" — did you mean {close[0]!r}?" if close else ""
    where = f"{path}.{key}" if path else key
    return ConfigError(f"unknown config key {where!r}{hint} Valid keys{' of ' + path if path else ''}: {', '.join(valid)}")


def _check_dataclass(path: str, node: Mapping, schema) -> None:
    names = {f.name: f for f in fields(schema)}
    for k in node:
        if k not in names:
            raise _unknown(path, str(k), names)
    for k, f in names.items():
        sub = node.get(k)
        if isinstance(sub, Mapping) and hasattr(f.type, "__dataclass_fields__"):
            _check_dataclass(f"{path}.{k}", sub, f.type)
    if path == "optim":
        sch = node.get("scheduler")
        if isinstance(sch, Mapping):
            _check_dataclass("optim.scheduler", sch, SchedulerConfig)


def target_params(target: str) -> tuple[set[str], bool]:
    """Parameter names accepted by a ``_target_`` (and whether it takes ``**kwargs``)."""
    mod, _, attr = target.rpartition(".")
    try:
        obj: Any = importlib.import_module(mod)
        obj = getattr(obj, attr)
    except (ImportError, AttributeError):
        # nested attribute, e.g. package.Class.from_conv
        parts = target.split(".")
        for i in range(len(parts) - 1, 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:i]))
            except ImportError:
                continue
            try:
                for a in parts[i:]:
                    obj = getattr(obj, a)
            except AttributeError as e:
                raise ConfigError(f"cannot find _target_ {target!r}: {e}") from None
            break
        else:
            raise ConfigError(f"cannot import _target_ {target!r}") from None
    return _signature_params(obj)


def _signature_params(obj: Any) -> tuple[set[str], bool]:
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


def _check_target(path: str, node: Mapping, extra_ok: set[str] = frozenset()) -> None:
    target = node.get("_target_")
    if not target:
        raise ConfigError(f"{path} needs a `_target_` (the class or function to build)")
    names, var_kw = target_params(str(target))
    if var_kw:
        return
    for k in node:
        k = str(k)
        if k.startswith("_") or k in extra_ok:
            continue
        if k not in names:
            raise _unknown(path, k, names | extra_ok)


def _type_check(group: str, node: Mapping, schema) -> None:
    """Merge ``node`` onto the schema; a value of the wrong type becomes one :class:`ConfigError` line."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        OmegaConf.merge(OmegaConf.structured(schema), node)
    except OmegaConfBaseException as e:
        key = f"{group}.{e.full_key}" if getattr(e, "full_key", None) else group
        msg = str(getattr(e, "msg", "") or e).splitlines()[0]
        raise ConfigError(f"{key}: {msg} (override it with a value of that type, e.g. {key}=<value>)") from None


def _max_time_s(v: Any) -> float | None:
    """Seconds of Lightning's ``max_time`` ("DD:HH:MM:SS" or a mapping of days/hours/…); None if unset."""
    if v is None:
        return None
    if isinstance(v, Mapping):
        units = {"days": 86400, "hours": 3600, "minutes": 60, "seconds": 1, "milliseconds": 1e-3,
                 "microseconds": 1e-6, "weeks": 604800}
        bad = set(v) - set(units)
        if bad:
            raise ConfigError(f"trainer.max_time: unknown unit(s) {sorted(bad)}; valid: {', '.join(units)}")
        return sum(float(x) * units[k] for k, x in v.items())
    parts = str(v).split(":")
    try:
        if len(parts) != 4:
            raise ValueError
        d, h, m, sec = (float(x) for x in parts)
    except ValueError:
        raise ConfigError(f"trainer.max_time must be 'DD:HH:MM:SS' (e.g. 00:12:00:00) or null; got {v!r}") from None
    return d * 86400 + h * 3600 + m * 60 + sec


def check_training_length(t: Mapping) -> None:
    """A run must train: ``max_epochs`` >= 1, a positive ``limit_train_batches`` and ``max_time``, and a
    ``fast_dev_run`` that is false, true or a positive number of batches. Otherwise a completed
    record of untrained weights would reach the tables."""
    me = t.get("max_epochs", 1)
    if isinstance(me, bool) or not isinstance(me, int) or me < 1:
        raise ConfigError(f"trainer.max_epochs must be an integer >= 1 (a run that trains nothing must not write "
                          f"a completed record); got {me!r}")
    fdr = t.get("fast_dev_run", False)
    if not isinstance(fdr, bool) and (not isinstance(fdr, int) or fdr < 0):
        raise ConfigError(f"trainer.fast_dev_run must be false, true or a number of batches >= 1; got {fdr!r}")
    ltb = t.get("limit_train_batches", 1.0)
    if ltb is not None and (isinstance(ltb, bool) or not isinstance(ltb, (int, float)) or ltb <= 0):
        raise ConfigError(f"trainer.limit_train_batches must be a fraction in (0, 1] or a number of batches >= 1; "
                          f"got {ltb!r}")
    secs = _max_time_s(t.get("max_time"))
    if secs is not None and secs <= 0:
        raise ConfigError(f"trainer.max_time must be a positive duration 'DD:HH:MM:SS' or null; got {t.get('max_time')!r}")


def validate_config(cfg: DictConfig | Mapping) -> None:
    """Raise :class:`ConfigError` for any unknown key, naming the valid ones."""
    if isinstance(cfg, DictConfig):
        for key in ("ckpt", "name", "seed"):
            if key in cfg and OmegaConf.is_missing(cfg, key):
                example = {"ckpt": "ckpt=<path to a best.ckpt>", "name": "name=<experiment name>",
                           "seed": "seed=0"}[key]
                raise ConfigError(f"{key} is required by this experiment: add {example}")
    c = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    for k in c:
        if k not in _TOP:
            raise _unknown("", str(k), _TOP - {"hydra"})
    # `ckpt: ???` in an experiment cannot mark it required: merging MISSING onto the primary
    # config's `ckpt: null` keeps null. Experiments that need one set `ckpt_required: true`.
    if c.get("ckpt_required") and not c.get("ckpt"):
        raise ConfigError(f"ckpt is required by experiment {c.get('name')!r}: add ckpt=<path to a best.ckpt>")
    seed = c.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise ConfigError(f"seed must be an integer (0 is a real seed) from 0 to {SEED_MAX} (2**32 - 1); got {seed!r}")
    for group, schema in _FIXED.items():
        if isinstance(c.get(group), Mapping):
            _check_dataclass(group, c[group], schema)
            _type_check(group, c[group], schema)
    if isinstance(c.get("trainer"), Mapping):
        check_training_length(c["trainer"])
        from bioreg.lit.perf import check_compile

        check_compile(c["trainer"].get("compile", False))
    if c.get("on_existing", "skip") not in ON_EXISTING:
        raise ConfigError(f"on_existing must be one of {', '.join(ON_EXISTING)}; got {c.get('on_existing')!r}")
    for group in ("model", "data"):
        if not isinstance(c.get(group), Mapping):
            raise ConfigError(f"config group {group!r} is missing: choose one with {group}=<option>")
        _check_target(group, c[group])
    from bioreg.lit.module import reg_entries

    for name, entry in reg_entries(c.get("reg")):
        _check_target(f"reg.{name}", entry, {"at", "mode"})
    for section in ("callbacks",):
        for name, entry in (c.get(section) or {}).items():
            if entry is not None:
                _check_target(f"{section}.{name}", entry)
    for name, entry in ((c.get("eval") or {}).get("evaluators") or {}).items():
        if entry is not None:
            _check_target(f"eval.evaluators.{name}", entry)
