"""The one base class of every mistake a user can fix, and the one place Hydra's wrapping is undone.

Every configuration, command-line or data error of the package derives from :class:`UserError`
(:class:`ConfigError` here, ``RegularizerConfigError``, ``InsertionError``, ``DataError``,
``EvaluatorConfigError``, ``AnalysisError``; each keeps its name and its ``ValueError``/``KeyError``
base). ``train.py`` turns a ``UserError`` into exit status 2 and one line on stderr,
``error: <message>``, with no traceback and no run record (:func:`bioreg.app.cli.run_or_explain`). Every
other exception is a bug or a fault of the machine and keeps its traceback.

Hydra wraps whatever a ``_target_`` raises in an ``InstantiationException``; :func:`instantiate` is
the one helper that builds config nodes for :mod:`bioreg.app.run` and unwraps a ``UserError`` from it,
so a bad ``data.batch_size`` takes the same path as a misspelt key.
"""

from __future__ import annotations

from typing import Any

__all__ = ["UserError", "ConfigError", "MissingExtraError", "instantiate", "require_extra", "user_error_in"]


class UserError(Exception):
    """A mistake in the configuration, the command line or the data that the user can fix.

    The message names what is wrong (the key, value or file), and the fix (the valid choices, or
    the command that repairs it). It is shown as one line; keep it free of newlines.
    """


class ConfigError(UserError, ValueError):
    """A bad key or value in the composed config, or a place the run cannot use (checked at start-up by
    :mod:`bioreg.config.validate`; raised by any layer that meets such a value)."""


class MissingExtraError(UserError, ImportError):
    """An optional part of bioreg was asked for but its package is not installed."""


def require_extra(module: str, extra: str, what: str) -> None:
    """Raise :class:`MissingExtraError` naming the extra to install when ``module`` cannot be imported.

    ``what`` is the setting that needs it (``"logger=wandb"``). Checked with
    ``importlib.util.find_spec``, without importing the (heavy) module itself.
    """
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise MissingExtraError(
            f"{what} needs the package {module!r}, which is not installed: install bioreg's {extra!r} extra "
            f"(pip install 'bioreg[{extra}]', or uv sync --extra {extra}; uv sync installs every extra)"
        )


def user_error_in(exc: BaseException) -> UserError | None:
    """The first :class:`UserError` in ``exc`` and its chain of causes (``__cause__``/``__context__``)."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        if isinstance(e, UserError):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def instantiate(node: Any, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate(node, _convert_="all", **kwargs)``, re-raising a :class:`UserError`
    that the target raised instead of Hydra's ``InstantiationException`` around it."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate as _instantiate

    kwargs.setdefault("_convert_", "all")
    try:
        return _instantiate(node, **kwargs)
    except InstantiationException as e:
        cause = user_error_in(e)
        if cause is not None:
            raise cause from None
        raise
