"""Start-up checks of a composed config: every key known, every value of the right type and range.

:func:`validate_config` is the first stage of a run (:func:`bioreg.app.run.validate`): a misspelt
key, a value of the wrong type or out of range, a missing group or an unknown ``_target_`` parameter
raises one :class:`~bioreg.errors.ConfigError` that names the valid choices, before anything is
written. What is valid comes from :mod:`bioreg.config.schema`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import fields
from types import ModuleType
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from bioreg.config.schema import (
    FIXED_GROUPS,
    ON_EXISTING,
    SCHEMAS,
    SEED_MAX,
    SET_BY_BIOREG,
    TOP_KEYS,
    resolve_target,
    signature_params,
    target_params,
    unknown_key,
)
from bioreg.errors import ConfigError
from bioreg.layers.base import reg_entries
from bioreg.lit.optim import build_optimizer, build_scheduler
from bioreg.lit.perf import check_compile

__all__ = ["READINGS", "validate_config", "check_protocol", "check_training_length", "check_target",
           "check_fields", "check_optim", "torch_classes"]


def check_fields(path: str, node: Mapping, schema) -> None:
    """Every key of ``node`` (and of its nested dataclass nodes) is a field of ``schema``."""
    names = {f.name: f for f in fields(schema)}
    for k in node:
        if k not in names:
            raise unknown_key(path, str(k), names)
    for k in names:
        sub = node.get(k)
        nested = SCHEMAS.get(f"{path}.{k}")
        if isinstance(sub, Mapping) and nested is not None:
            check_fields(f"{path}.{k}", sub, nested)


def check_target(path: str, node: Mapping, extra_ok: frozenset[str] | set[str] = frozenset()) -> None:
    """``node`` has a ``_target_`` whose parameters include every key of ``node`` (``extra_ok`` too)."""
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
            raise unknown_key(path, k, names | set(extra_ok))


def _type_check(group: str, node: Mapping, schema) -> None:
    """Merge ``node`` onto the schema; a value of the wrong type becomes one :class:`ConfigError` line."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        OmegaConf.merge(OmegaConf.structured(schema), node)
    except OmegaConfBaseException as e:
        key = f"{group}.{e.full_key}" if getattr(e, "full_key", None) else group
        msg = str(getattr(e, "msg", "") or e).splitlines()[0]
        raise ConfigError(f"{key}: {msg} (override it with a value of that type, e.g. {key}=<value>)"
                          ) from None


_TIME_UNITS = {"days": 86400, "hours": 3600, "minutes": 60, "seconds": 1, "milliseconds": 1e-3,
               "microseconds": 1e-6, "weeks": 604800}


def _max_time_s(v: Any) -> float | None:
    """Seconds of Lightning's ``max_time`` ("DD:HH:MM:SS" or a mapping of days/hours/…); None if unset."""
    if v is None:
        return None
    if isinstance(v, Mapping):
        bad = set(v) - set(_TIME_UNITS)
        if bad:
            raise ConfigError(f"trainer.max_time: unknown unit(s) {sorted(bad)}; "
                              f"valid: {', '.join(_TIME_UNITS)}")
        return sum(float(x) * _TIME_UNITS[k] for k, x in v.items())
    parts = str(v).split(":")
    try:
        if len(parts) != 4:
            raise ValueError
        d, h, m, sec = (float(x) for x in parts)
    except ValueError:
        raise ConfigError(f"trainer.max_time must be 'DD:HH:MM:SS' (e.g. 00:12:00:00) or null; "
                          f"got {v!r}") from None
    return d * 86400 + h * 3600 + m * 60 + sec


def check_training_length(t: Mapping) -> None:
    """A run must train: ``max_epochs`` >= 1, a positive ``limit_train_batches`` and ``max_time``, and a
    ``fast_dev_run`` that is false, true or a positive number of batches. Otherwise a completed
    record of untrained weights would reach the tables."""
    me = t.get("max_epochs", 1)
    if isinstance(me, bool) or not isinstance(me, int) or me < 1:
        raise ConfigError(f"trainer.max_epochs must be an integer >= 1 (a run that trains nothing must not "
                          f"write a completed record); got {me!r}")
    fdr = t.get("fast_dev_run", False)
    if not isinstance(fdr, bool) and (not isinstance(fdr, int) or fdr < 0):
        raise ConfigError(f"trainer.fast_dev_run must be false, true or a number of batches >= 1; "
                          f"got {fdr!r}")
    ltb = t.get("limit_train_batches", 1.0)
    if ltb is not None and (isinstance(ltb, bool) or not isinstance(ltb, (int, float)) or ltb <= 0):
        raise ConfigError(f"trainer.limit_train_batches must be a fraction in (0, 1] or a number of "
                          f"batches >= 1; got {ltb!r}")
    secs = _max_time_s(t.get("max_time"))
    if secs is not None and secs <= 0:
        raise ConfigError(f"trainer.max_time must be a positive duration 'DD:HH:MM:SS' or null; "
                          f"got {t.get('max_time')!r}")


_REQUIRED_EXAMPLE = {"ckpt": "ckpt=<path to a best.ckpt>", "name": "name=<experiment name>", "seed": "seed=0"}


def _check_required(cfg: DictConfig | Mapping) -> None:
    """A ``???`` left in the config names the override that fills it (an example for ``ckpt``, ``name``
    and ``seed``)."""
    if not isinstance(cfg, DictConfig):
        return
    for key, example in _REQUIRED_EXAMPLE.items():
        if key in cfg and OmegaConf.is_missing(cfg, key):
            raise ConfigError(f"{key} is required by this experiment: add {example}")
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(f"{missing[0]} is required by the chosen options (it is ???): "
                          f"add {missing[0]}=<value>")


# ---------------------------------------------------------------------------------------- optimizer


def torch_classes(module: ModuleType, base: type, skip: Iterable[str] = ()) -> list[str]:
    """The import paths of the public subclasses of ``base`` in ``module`` (the valid choices)."""
    return sorted(f"{module.__name__}.{n}" for n, o in vars(module).items()
                  if inspect.isclass(o) and issubclass(o, base) and o is not base and not n.startswith("_")
                  and n not in skip)


#: LR schedulers that need what bioreg does not give them (a monitored metric)
_UNSUPPORTED_SCHEDULERS = ("ReduceLROnPlateau",)


def _check_partial_target(path: str, node: Mapping, kind: tuple[str, type, ModuleType], given: str,
                          skip: Iterable[str] = ()) -> None:
    """``node`` builds, with ``_partial_: true``, a class of ``kind`` (its name, its base class, the
    module of the valid ones) and sets only parameters of that class other than those bioreg sets
    itself (:data:`~bioreg.config.schema.SET_BY_BIOREG`; ``given``: what it calls the class with)."""
    what, base, module = kind
    target = str(node.get("_target_") or "")
    choices = (f"valid: {', '.join(torch_classes(module, base, skip))} (or the import path of a subclass of "
               f"{module.__name__}.{base.__name__})")
    try:
        cls = resolve_target(target) if target else None
    except ConfigError:
        cls = None
    if not (inspect.isclass(cls) and issubclass(cls, base)) or cls.__name__ in skip:
        raise ConfigError(f"{path}._target_={target or None!r} is not {what}; {choices}")
    if node.get("_partial_") is not True:
        raise ConfigError(f"{path} needs `_partial_: true`: bioreg calls it with {given}")
    names, var_kw = signature_params(cls)
    names -= set(SET_BY_BIOREG.get(path, ()))
    for k in node:
        if not str(k).startswith("_") and not var_kw and k not in names:
            raise unknown_key(path, str(k), names)


def _probe(path: str, build: Callable[[], Any]) -> Any:
    """Build it now on a stand-in model: a value the class refuses becomes one :class:`ConfigError`."""
    try:
        return build()
    except (ValueError, TypeError, KeyError, RuntimeError) as e:
        msg = " ".join(str(e).split()) or type(e).__name__
        raise ConfigError(f"{path}: its class refuses these settings: {msg} "
                          f"(check the values of {path}.*)") from None


def check_optim(optim: Mapping, max_epochs: int = 1) -> None:
    """``optim.optimizer``: a ``torch.optim.Optimizer`` built with ``_partial_: true``, keys its class
    takes, ``lr`` > 0 and values the class accepts; ``optim.scheduler``: empty (constant) or an LR
    scheduler likewise. Both are built once on a stand-in model, so what would fail in ``fit`` fails here."""
    from torch.optim import lr_scheduler

    node = optim.get("optimizer")
    if not isinstance(node, Mapping):
        raise ConfigError("optim.optimizer is missing: choose an optimizer with optim=<option> (conf/optim/)")
    _check_partial_target("optim.optimizer", node, ("an optimizer", torch.optim.Optimizer, torch.optim),
                          "the parameter groups")
    lr = node.get("lr")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise ConfigError(f"optim.optimizer.lr must be a number > 0; got {lr!r}")
    opt = _probe("optim.optimizer", lambda: build_optimizer(torch.nn.Linear(2, 2), optim))
    sched = optim.get("scheduler")
    if sched:
        if not isinstance(sched, Mapping):
            raise ConfigError(f"optim.scheduler must be a mapping or empty; got {sched!r}: choose one with "
                              "optim/scheduler=<constant, multistep or cosine>")
        kind = ("an LR scheduler", lr_scheduler.LRScheduler, lr_scheduler)
        _check_partial_target("optim.scheduler", sched, kind, "the optimizer", skip=_UNSUPPORTED_SCHEDULERS)
        lead = optim.get("scheduler_lead", 0)
        _probe("optim.scheduler", lambda: build_scheduler(opt, sched, max_epochs, lead))


def _check_top_level(c: Mapping) -> None:
    """Known top-level keys, a required checkpoint, the seed's range and ``on_existing``."""
    for k in c:
        if k not in TOP_KEYS:
            raise unknown_key("", str(k), TOP_KEYS - {"hydra"})
    # `ckpt: ???` in an experiment cannot mark it required: merging MISSING onto the primary
    # config's `ckpt: null` keeps null. Experiments that need one set `ckpt_required: true`.
    if c.get("ckpt_required") and not c.get("ckpt"):
        raise ConfigError(f"ckpt is required by experiment {c.get('name')!r}: add ckpt=<path to a best.ckpt>")
    seed = c.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise ConfigError(f"seed must be an integer (0 is a real seed) from 0 to {SEED_MAX} (2**32 - 1); "
                          f"got {seed!r}")
    if not isinstance(c.get("sweep_ablations", True), bool):
        raise ConfigError(f"sweep_ablations must be true or false; got {c.get('sweep_ablations')!r}")
    if c.get("on_existing", "skip") not in ON_EXISTING:
        raise ConfigError(f"on_existing must be one of {', '.join(ON_EXISTING)}; "
                          f"got {c.get('on_existing')!r}")


#: the readings of ``protocol`` (conf/protocol/)
READINGS = ("thesis", "authors")


def check_protocol(c: Mapping) -> None:
    """``protocol.reading`` is a known reading, and ``authors`` was applied by a family recipe (only the
    families whose authors published code have one: conf/protocol_recipe/)."""
    p = c.get("protocol") or {}
    reading = p.get("reading", "thesis") if isinstance(p, Mapping) else p
    if reading not in READINGS:
        raise ConfigError(f"protocol={reading!r} is invalid; valid: {', '.join(READINGS)}")
    if reading == "authors" and not p.get("recipe"):
        raise ConfigError(f"protocol=authors: experiment {c.get('name')!r} has no authors' protocol (only "
                          "the Singh 2023 VGG-16 experiments, vgg16_*, and the push-pull ResNets, resnet*, "
                          "have public code to follow); use protocol=thesis")


def _check_fixed_groups(c: Mapping) -> None:
    """The dataclass-backed groups: known keys, types, and a training length that trains."""
    for group, schema in FIXED_GROUPS.items():
        if isinstance(c.get(group), Mapping):
            check_fields(group, c[group], schema)
            _type_check(group, c[group], schema)
    if isinstance(c.get("trainer"), Mapping):
        check_training_length(c["trainer"])
        check_compile(c["trainer"].get("compile", False))
    if isinstance(c.get("optim"), Mapping):
        check_optim(c["optim"], int((c.get("trainer") or {}).get("max_epochs", 1)))


def _check_target_groups(c: Mapping) -> None:
    """The ``_target_`` groups: model, data, every regularizer, callback and evaluator."""
    for group in ("model", "data"):
        if not isinstance(c.get(group), Mapping):
            raise ConfigError(f"config group {group!r} is missing: choose one with {group}=<option>")
        check_target(group, c[group])
    for name, entry in reg_entries(c.get("reg")):
        check_target(f"reg.{name}", entry, {"at", "mode"})
    for name, entry in (c.get("callbacks") or {}).items():
        if entry is not None:
            check_target(f"callbacks.{name}", entry)
    for name, entry in ((c.get("eval") or {}).get("evaluators") or {}).items():
        if entry is not None:
            check_target(f"eval.evaluators.{name}", entry)


def validate_config(cfg: DictConfig | Mapping) -> None:
    """Raise :class:`ConfigError` for any unknown key or bad value, naming the valid ones."""
    _check_required(cfg)
    c = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    _check_top_level(c)
    _check_fixed_groups(c)
    check_protocol(c)
    _check_target_groups(c)
