"""Config checking: what a composed config may hold, and the checks that say so at start-up.

* :mod:`bioreg.config.schema` — the schemas of the fixed groups (``optim``, ``trainer``, ``logger``,
  ``eval``, the top level), the parameters of ``_target_``s, and the wording of a misspelt key;
* :mod:`bioreg.config.validate` — :func:`~bioreg.config.validate.validate_config`, the start-up
  check of a composed config (keys, types, ranges);
* :mod:`bioreg.config.overrides` — checks of the command line before Hydra composes.

Every error is a :class:`bioreg.errors.ConfigError` (a :class:`bioreg.errors.UserError`): exit
status 2 and one line ``error: …`` from ``train.py``.
"""

from bioreg.errors import ConfigError

__all__ = ["ConfigError"]
