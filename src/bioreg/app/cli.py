"""Command-line glue for ``train.py``: early checks of the overrides and the one user-error exit.

:func:`precheck_overrides` runs before Hydra: the override checks of
:mod:`bioreg.config.overrides` (misspelt keys, unknown group options, keys the chosen options do not
set) and a probe of the folder Hydra will create its run dir in. Everything else is checked after
composition by :func:`bioreg.config.validate.validate_config` and the run's start-up stages
(:mod:`bioreg.app.run`).

Every :class:`bioreg.errors.UserError` ends the same way (:func:`explain`): exit status 2, one line
``error: <message>`` on stderr, no traceback, no record.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import NoReturn

from omegaconf import DictConfig

from bioreg.app.run import probe_writable, run
from bioreg.config.overrides import check_overrides, default_hydra_dir, override_args
from bioreg.errors import UserError

__all__ = ["USER_ERRORS", "precheck_overrides", "run_or_explain", "explain"]

log = logging.getLogger("bioreg")

#: kept for callers that catch "the user errors": every one is a :class:`UserError`
USER_ERRORS: tuple[type[BaseException], ...] = (UserError,)


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
    choices (before Hydra runs; :func:`bioreg.config.overrides.check_overrides`), and for a run dir
    that cannot be written."""
    try:
        check_overrides(argv, conf_dir)
        _probe_hydra_dirs(argv, Path(conf_dir) if conf_dir is not None else None)
    except UserError as e:
        explain(e)


def _probe_hydra_dirs(argv: list[str], conf_dir: Path | None) -> None:
    """Hydra creates its run dir before bioreg runs: probe it now (an explicit one, else the fixed
    part of the config's default, e.g. ``outputs/`` of ``outputs/${name}/${now:...}``)."""
    which = "hydra.sweep.dir" if any(a in ("-m", "--multirun") for a in argv) else "hydra.run.dir"
    given = {a.split("=", 1)[0].lstrip("+"): a.split("=", 1)[1] for a in override_args(argv)}
    for key in ("hydra.run.dir", "hydra.sweep.dir"):
        if key in given and "${" not in given[key]:
            probe_writable(Path(given[key]), key)
    if which not in given and conf_dir is not None:
        default = default_hydra_dir(conf_dir, which)
        if default:
            probe_writable(Path(default), which)


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
    _one_console_handler()
    try:
        return run(cfg)
    except UserError as e:
        explain(e)
