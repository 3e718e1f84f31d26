"""Command-line glue for ``train.py``: early checks of the overrides and readable user errors.

Hydra rejects an override of a key that does not exist (``trainer.max_epoch=3``) but does not say
which keys do exist; :func:`precheck_overrides` catches such misspellings for the schema-backed
groups (``trainer``, ``optim``, ``logger``, ``eval`` and the top level) before Hydra starts and names
the valid keys. Everything else is checked after composition by
:func:`bioreg.config.validate_config`.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import fields

from omegaconf import DictConfig

from bioreg.config import _FIXED, _TOP, ConfigError, SchedulerConfig, _unknown

__all__ = ["USER_ERRORS", "precheck_overrides", "run_or_explain"]

log = logging.getLogger("bioreg")


def _user_errors() -> tuple[type[BaseException], ...]:
    from bioreg.data.errors import DataError
    from bioreg.layers.base import RegularizerConfigError
    from bioreg.models.points import InsertionError

    return (ConfigError, RegularizerConfigError, InsertionError, DataError)


USER_ERRORS = _user_errors()

_SCHEMAS = dict(_FIXED)
_SCHEMAS["optim.scheduler"] = SchedulerConfig


def check_override_key(key: str) -> None:
    """Raise :class:`ConfigError` if ``key`` (dotted path of an override) is not in a fixed schema."""
    parts = key.split(".")
    if parts[0] in ("hydra", "reg", "model", "data", "callbacks", "launcher") or parts[0].startswith("hydra/"):
        return
    if len(parts) == 1:
        if parts[0] not in _TOP and parts[0] not in ("experiment", "sweep"):
            raise _unknown("", parts[0], (_TOP | {"experiment", "sweep"}) - {"hydra"})
        return
    for depth in (2, 1):
        group = ".".join(parts[:depth])
        schema = _SCHEMAS.get(group)
        if schema is not None and len(parts) > depth:
            names = {f.name for f in fields(schema)}
            if parts[depth] not in names:
                raise _unknown(group, parts[depth], names)
            return
    if parts[0] not in _TOP:
        raise _unknown("", parts[0], _TOP - {"hydra"})


def precheck_overrides(argv: list[str]) -> None:
    """Exit with a clear message for overrides of keys that no schema knows (before Hydra runs)."""
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        key = arg.split("=", 1)[0].lstrip("+~")
        if "@" in key or "/" in key:  # package or group-path overrides (e.g. hydra/launcher=slurm)
            continue
        try:
            check_override_key(key)
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)


def run_or_explain(cfg: DictConfig) -> float:
    """Run; a user error (bad config, unknown point, missing data) becomes one clear message, exit 2."""
    from bioreg.run import run

    try:
        return run(cfg)
    except USER_ERRORS as e:
        log.error("%s: %s", type(e).__name__, e)
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
