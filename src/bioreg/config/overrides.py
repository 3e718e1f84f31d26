"""Checks of the command line's overrides, before Hydra composes the config.

Hydra rejects an override of a key that does not exist (``trainer.max_epoch=3``) but does not say
which keys do exist. :func:`check_overrides` catches, before Hydra starts, such misspellings for the
schema-backed groups (``trainer``, ``optim``, ``logger``, ``eval`` and the top level), unknown
options of a config group (``reg=[nosuchreg]``, ``optim/scheduler=step``, naming the valid ones),
and overrides of keys the chosen options do not set (``reg.cg.tua=2``, naming the valid keys, or
the ``+`` a key needs). Everything else is checked after composition by
:func:`bioreg.config.validate.validate_config`. Used by :mod:`bioreg.app.cli`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path

from omegaconf import DictConfig

from bioreg.config.schema import SCHEMAS, SET_BY_BIOREG, TOP_KEYS, target_params, unknown_key
from bioreg.errors import ConfigError

__all__ = ["HYDRA_GROUPS", "check_override_key", "check_overrides", "check_group_options", "group_options",
           "config_groups", "default_hydra_dir", "override_args"]

#: Hydra's own config groups whose options are checked too (the project's files + what Hydra and its
#: plugins register, e.g. ``basic``, ``submitit_slurm``)
HYDRA_GROUPS = ("hydra/launcher",)
#: top-level keys whose sub-keys come from ``_target_`` signatures, not from a schema
_TARGET_GROUPS = ("reg", "model", "data", "callbacks")
#: ``_target_`` nodes inside a schema-backed group
_TARGET_NODES = ("optim.optimizer.", "optim.scheduler.")
#: the names Hydra takes on the command line besides the config's own keys
_COMMAND_GROUPS = {"experiment", "sweep"}


def override_args(argv: list[str]) -> list[str]:
    """The overrides among ``argv`` (``key=value``, not options such as ``-m`` or ``--cfg``)."""
    return [a for a in argv if not a.startswith("-") and "=" in a]


def check_override_key(key: str) -> None:
    """Raise :class:`ConfigError` if ``key`` (dotted path of an override) is not in a fixed schema."""
    parts = key.split(".")
    if parts[0] in ("hydra", "launcher", *_TARGET_GROUPS) or parts[0].startswith("hydra/"):
        return
    if len(parts) == 1:
        if parts[0] not in TOP_KEYS | _COMMAND_GROUPS:
            raise unknown_key("", parts[0], (TOP_KEYS | _COMMAND_GROUPS) - {"hydra"})
        return
    for depth in (2, 1):
        group = ".".join(parts[:depth])
        schema = SCHEMAS.get(group)
        if schema is not None and len(parts) > depth:
            names = {f.name for f in fields(schema)}
            if parts[depth] not in names:
                raise unknown_key(group, parts[depth], names)
            return
    if parts[0] not in TOP_KEYS:
        raise unknown_key("", parts[0], TOP_KEYS - {"hydra"})


def check_overrides(argv: list[str], conf_dir: str | Path | None = None) -> None:
    """Every check of this module on the command line ``argv``; ``conf_dir`` (the config folder)
    enables those that read it (group options, keys the chosen options set)."""
    args = override_args(argv)
    for arg in args:
        key = arg.split("=", 1)[0].lstrip("+~")
        if "@" in key or "/" in key:  # package or group-path overrides (e.g. hydra/launcher=slurm)
            continue
        check_override_key(key)
    if conf_dir is not None:
        check_group_options(args, Path(conf_dir))


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


def default_hydra_dir(conf_dir: Path, key: str) -> str | None:
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


def group_options(conf_dir: Path, group: str) -> list[str]:
    """The options of a config group: its YAML files (and for :data:`HYDRA_GROUPS` what Hydra and
    its plugins register)."""
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


def config_groups(conf_dir: Path) -> set[str]:
    """Every config group of the project (folders of YAML files, nested ones as ``optim/scheduler``)
    and :data:`HYDRA_GROUPS`; Hydra's own folder is left out."""
    groups = {str(p.parent.relative_to(conf_dir)) for p in conf_dir.rglob("*.yaml") if p.parent != conf_dir}
    return {g for g in groups if g.split("/")[0] != "hydra"} | set(HYDRA_GROUPS)


def _is_target_key(key: str) -> bool:
    """Whether ``key`` lies in a ``_target_`` node (checked against the composed config)."""
    return key.split(".")[0] in _TARGET_GROUPS or key.startswith(_TARGET_NODES)


def check_group_options(args: list[str], conf_dir: Path) -> None:
    """Unknown options of a config group (``reg=[nosuchreg]``) and overrides of keys that the chosen
    options do not set (``reg.cg.tua=2``) raise :class:`ConfigError` naming the valid ones."""
    parsed = _parse(args)
    groups = config_groups(conf_dir)
    for o in parsed:
        if o.key_or_group in groups and not o.is_delete():
            valid = group_options(conf_dir, o.key_or_group)
            for v in _values(o):
                if v not in valid and v != "null":
                    raise ConfigError(f"unknown {o.key_or_group} option {v!r} ({o.input_line}); "
                                      f"valid options: {', '.join(valid)}")
    from hydra.core.override_parser.types import OverrideType

    targets = [o for o in parsed if o.type == OverrideType.CHANGE and o.package is None
               and "." in o.key_or_group and _is_target_key(o.key_or_group)]
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


def _missing_entry(o, node, path: list[str], part: str, conf_dir: Path) -> ConfigError:
    where = ".".join(path)
    entries = sorted(str(k) for k in node) if isinstance(node, Mapping) else []
    hint = ""
    if where == "reg":
        hint = f"; choose it with reg=<option> (options: {', '.join(group_options(conf_dir, 'reg'))})"
    return ConfigError(f"cannot override {o.key_or_group}: {where or 'the config'} has no entry {part!r} "
                       f"(entries: {', '.join(entries) or 'none'}){hint}")


def _check_key_exists(base: DictConfig, o, conf_dir: Path) -> None:
    parts = o.key_or_group.split(".")
    node, path = base, []
    for part in parts[:-1]:
        if not isinstance(node, Mapping) or part not in node:
            raise _missing_entry(o, node, path, part, conf_dir)
        node = node[part]
        path.append(part)
    last, where = parts[-1], ".".join(path)
    if not isinstance(node, Mapping) or last in node:
        return
    if where == "optim.scheduler" and not node.get("_target_"):  # optim/scheduler=constant: no scheduler
        options = ", ".join(group_options(conf_dir, "optim/scheduler"))
        raise ConfigError(f"cannot override {o.key_or_group}: the chosen schedule is constant (no "
                          f"scheduler); choose one first with optim/scheduler=<option> (options: {options})")
    valid = {str(k) for k in node if not str(k).startswith("_")}
    accepted: set[str] = set()
    if node.get("_target_"):
        try:
            accepted, _ = target_params(str(node["_target_"]))
        except ConfigError:
            pass
        accepted -= set(SET_BY_BIOREG.get(where, ()))
    if last in accepted:
        raise ConfigError(f"{o.key_or_group} is not set by the chosen {where} option: add it with "
                          f"+{o.key_or_group}={o.get_value_element_as_str()}")
    raise unknown_key(where, last, valid | accepted)
