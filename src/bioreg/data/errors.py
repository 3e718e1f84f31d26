"""The single exception type raised by :mod:`bioreg.data`."""

from __future__ import annotations

from bioreg.errors import UserError

__all__ = ["DataError"]


class DataError(UserError, ValueError):
    """A data set is missing, damaged or misconfigured.

    Subclasses :class:`ValueError` so that callers validating configuration can catch
    both. Every message names what is wrong (the file or option), why, and what fixes it
    (the valid choices, or the command / URL that restores the data).
    """
