"""Configuration errors of the evaluators (a ``ValueError`` whose message names the valid choices)."""

from __future__ import annotations

from bioreg.errors import UserError

__all__ = ["EvaluatorConfigError"]


class EvaluatorConfigError(UserError, ValueError):
    """Bad evaluator parameter: the message names the parameter, the value and what is valid."""
