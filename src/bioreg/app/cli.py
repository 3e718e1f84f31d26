"""Command-line glue for ``train.py``: early checks of the overrides and the one user-error exit.

Hydra rejects an override of a key that does not exist (``trainer.max_epoch=3``) but does not say
which keys do exist; :func:`precheck_overrides` catches, before Hydra starts, such misspellings for
the schema-backed groups (``trainer``, ``optim``, ``logger``, ``eval`` and the top level), unknown
options of a config group (``reg=[nosuchreg]``, naming the valid ones), and overrides of keys the
chosen options do not set (``reg.cg.tua=2``, naming the valid keys, or the ``+`` a key needs).
Everything else is checked after composition by :func:`bioreg.config.validate_config` and the run's
start-up stages (:mod:`bioreg.app.run`).

Every :class:`bioreg.errors.UserError` ends the same way (:func:`explain`): exit status 2, one line
``error: <message>`` on stderr, no traceback, no record.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import NoReturn

from omegaconf import DictConfig

from bioreg.config import _FIXED, _TOP, ConfigError, SchedulerConfig, _unknown, target_params
from bioreg.errors import UserError

__all__ = ["USER_ERRORS", "precheck_overrides", "run_or_explain", "explain"]

log = logging.getLogger("bioreg")

#: kept for callers that catch "the user errors": every one is a :class:`UserError`
USER_ERRORS: tuple[type[BaseException], ...] = (UserError,)

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


def explain(e: UserError) -> NoReturn:
    """The one exit of a user error: one line on stderr (and in the run's log file), status 2."""
    line = " ".join(str(e).split())
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, "%s: %s", (type(e).__name__, line), None)
    for h in logging.getLogger().handlers:  # Hydra's log file, not the console: the line below is the one
        if isinstance(h, logging.FileHandler):
            h.handle(record)
    print(f"error: {line}", file=sys.stderr, flush=True)
    sys.exit(2)


def precheck_overrides(argv: list[str], conf_dir: str | Path | None = None) -> None:
    """Exit with a clear message for overrides that Hydra would reject without naming the valid
    choices (before Hydra runs): keys no schema knows, unknown group options (with ``conf_dir``,
    the config folder) and overrides of keys the chosen options do not set."""
    args = [a for a in argv if not a.startswith("-") and "=" in a]
    try:
        for arg in args:
            key = arg.split("=", 1)[0].lstrip("+~")
            if "@" in key or "/" in key:  # package or group-path overrides (e.g. hydra/launcher=slurm)
                continue
            check_override_key(key)
        if conf_dir is not None:
            check_group_options(args, Path(conf_dir))
        # Hydra creates its run dir before bioreg runs: probe it now (an explicit one, else the
        # fixed part of the config's default, e.g. ``outputs/`` of ``outputs/${name}/${now:...}``)
        from bioreg.app.run import probe_writable

        which = "hydra.sweep.dir" if any(a in ("-m", "--multirun") for a in argv) else "hydra.run.dir"
        given = {a.split("=", 1)[0].lstrip("+"): a.split("=", 1)[1] for a in args}
        for key in ("hydra.run.dir", "hydra.sweep.dir"):
            if key in given and "${" not in given[key]:
                probe_writable(Path(given[key]), key)
        if which not in given and conf_dir is not None:
            default = _default_hydra_dir(Path(conf_dir), which)
            if default:
                probe_writable(Path(default), which)
    except UserError as e:
        explain(e)


def _parse(args: list[str]) -> list:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_overrides(args)
    except Exception:  # a syntax error: Hydra reports it with its own message
        return []


def _values(o) -> list[str]:
    if o.is_sweep_override():
        return [str(v) for v in o.sweep_string_iterator()]
    v = o.value()
    return [str(x) for x in v] if isinstance(v, list) else [str(v)]


def _default_hydra_dir(conf_dir: Path, key: str) -> str | None:
    """The fixed leading part of ``hydra.run.dir`` / ``hydra.sweep.dir`` in the primary config (the
    part before the first interpolation), or None when it has none."""
    import yaml

    try:
        node = yaml.safe_load((conf_dir / "config.yaml").read_text())
        for part in key.split("."):
            node = node[part]
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        return None
    fixed = str(node).split("${", 1)[0]
    return fixed.rstrip("/") or None


#: Hydra's own config groups whose options are checked too (the project's files + what Hydra and its
#: plugins register, e.g. ``basic``, ``submitit_slurm``)
HYDRA_GROUPS = ("hydra/launcher",)


def group_options(conf_dir: Path, group: str) -> list[str]:
    own = {p.stem for p in (conf_dir / group).glob("*.yaml")}
    if group in HYDRA_GROUPS:
        from hydra.core.config_store import ConfigStore
        from hydra.core.plugins import Plugins

        Plugins.instance()  # plugins register their options in the ConfigStore when they are loaded
        try:
            own |= {Path(n).stem for n in ConfigStore.instance().list(group)}
        except OSError:  # no such group in the store
            pass
    return sorted(own)


def check_group_options(args: list[str], conf_dir: Path) -> None:
    """Unknown options of a config group (``reg=[nosuchreg]``) and overrides of keys that the chosen
    options do not set (``reg.cg.tua=2``) raise :class:`ConfigError` naming the valid ones."""
    parsed = _parse(args)
    groups = {p.name for p in conf_dir.iterdir() if p.is_dir() and p.name != "hydra"} | set(HYDRA_GROUPS)
    for o in parsed:
        if o.key_or_group in groups and not o.is_delete():
            valid = group_options(conf_dir, o.key_or_group)
            for v in _values(o):
                if v not in valid and v != "null":
                    raise ConfigError(f"unknown {o.key_or_group} option {v!r} ({o.input_line}); valid options: "
                                      f"{', '.join(valid)}")
    from hydra.core.override_parser.types import OverrideType

    targets = [o for o in parsed if o.type == OverrideType.CHANGE and o.package is None and "." in o.key_or_group
               and o.key_or_group.split(".")[0] in ("reg", "model", "data", "callbacks")]
    if not targets:
        return
    base = _compose_without(conf_dir, parsed, targets)
    if base is None:
        return
    for o in targets:
        _check_key_exists(base, o, conf_dir)


def _compose_without(conf_dir: Path, parsed: list, skip: list):
    """The config the other overrides compose to (first value of a sweep); None if that fails."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    lines = []
    for o in parsed:
        if o in skip or o.key_or_group.startswith("hydra"):
            continue
        if o.is_sweep_override():
            first = next(iter(o.sweep_string_iterator()), None)
            prefix = "+" if o.is_add() else ("++" if o.is_force_add() else "")
            lines.append(f"{prefix}{o.get_key_element()}={first}")
        else:
            lines.append(o.input_line)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf_dir.resolve()), version_base="1.3"):
            return compose(config_name="config", overrides=lines)
    except Exception:
        return None
    finally:
        GlobalHydra.instance().clear()


def _check_key_exists(base: DictConfig, o, conf_dir: Path) -> None:
    parts = o.key_or_group.split(".")
    node, path = base, []
    for part in parts[:-1]:
        if not isinstance(node, Mapping) or part not in node:
            where = ".".join(path)
            entries = sorted(str(k) for k in node) if isinstance(node, Mapping) else []
            hint = ""
            if where == "reg":
                hint = f"; choose it with reg=<option> (options: {', '.join(group_options(conf_dir, 'reg'))})"
            raise ConfigError(f"cannot override {o.key_or_group}: {where or 'the config'} has no entry {part!r} "
                              f"(entries: {', '.join(entries) or 'none'}){hint}")
        node = node[part]
        path.append(part)
    last, where = parts[-1], ".".join(path)
    if not isinstance(node, Mapping) or last in node:
        return
    valid = {str(k) for k in node if not str(k).startswith("_")}
    accepted: set[str] = set()
    if node.get("_target_"):
        try:
            accepted, _ = target_params(str(node["_target_"]))
        except ConfigError:
            pass
    if last in accepted:
        raise ConfigError(f"{o.key_or_group} is not set by the chosen {where} option: add it with "
                          f"+{o.key_or_group}={o.get_value_element_as_str()}")
    raise _unknown(where, last, valid | accepted)


def _one_console_handler() -> None:
    """Print each log line once. ``lightning`` adds its own console handler at import; under Hydra
    the root logger has one too, so each Lightning line was printed twice. Drop Lightning's when
    the root logger has handlers (Hydra's console and log file then carry every line)."""
    root = logging.getLogger()
    if not root.handlers:
        return
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        lg = logging.getLogger(name)
        for h in list(lg.handlers):
            if type(h) is logging.StreamHandler:
                lg.removeHandler(h)
        lg.propagate = True


def run_or_explain(cfg: DictConfig) -> float:
    """Run; a user error (bad config, unknown point, missing data, a run already running) becomes
    one clear message, exit 2."""
    from bioreg.app.run import run

    _one_console_handler()
    try:
        return run(cfg)
    except UserError as e:
        explain(e)
