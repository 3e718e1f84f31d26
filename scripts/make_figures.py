#!/usr/bin/env python
"""Every figure of the sources that can be built from what is present, and a figure per table.

    python scripts/make_figures.py [--results-dir results/runs] [--out-dir results/figures]
                                   [--data-dir data] [--data digits] [--pin EXP=KEY] [--no-tables]

An argument-parsing shell over :mod:`bioreg.app.figures` (what it builds and the statuses it writes:
that module's docstring, or ``--help``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from bioreg.app.figures import (  # noqa: F401 - the names tests and users reach through the script
    activation_figures,
    ch3_figures,
    fig_2_4,
    fig_3_11,
    report_status,
    table_figures,
)
from bioreg.app.figures import main as _main


def main(argv: list[str] | None = None) -> int:
    return _main(argv, scripts_dir=Path(__file__).resolve().parent)


if __name__ == "__main__":
    sys.exit(main())
