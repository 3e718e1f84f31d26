#!/usr/bin/env python
"""Activation statistics over training, Singh (2023) Figs 3.1-3.10 style.

For every point (default ``48`` and ``51``) two figures under ``--out``:

* ``activation_stats_<point>.{png,pdf}`` — one panel per statistic (mean, max,
  std, variance, sparsity %; Figs 3.3-3.10), one line per model, x = epoch; the
  values are the per-epoch EWMA history of ``extra.activation_stats_history``
  (written by :class:`bioreg.lit.callbacks.activation_stats.ActivationStats`), averaged
  over the seeds of a model;
* ``activation_mean_std_<point>.{png,pdf}`` — final mean activation with the
  standard deviation as error bar, models sorted by ascending mean (Figs 3.1/3.2).

Records are read from ``--results-dir`` (``<name>/<config_key>/seed<k>.json``);
only completed records of the named experiments are used. Files are written
atomically. An argument-parsing shell over :mod:`bioreg.results.figures_activation`.

    python scripts/fig_activation_stats.py --results-dir results/runs --out results/figures
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from bioreg.results.figures_activation import (  # noqa: E402
    DEFAULT_NAMES,
    STATS,
    load_histories,
    plot_point,
    thesis_label,
)

__all__ = ["main", "thesis_label", "load_histories", "plot_point"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results-dir", type=Path, default=Path("results/runs"))
    ap.add_argument("--out", type=Path, default=Path("results/figures"))
    ap.add_argument("--names", nargs="+", default=list(DEFAULT_NAMES), help="experiment names, one line each")
    ap.add_argument("--points", nargs="+", default=["48", "51"])
    ap.add_argument("--stats", nargs="+", default=list(STATS), choices=STATS)
    args = ap.parse_args(argv)
    if not args.results_dir.is_dir():
        ap.error(f"--results-dir {args.results_dir} is not a directory")
    total = 0
    for point in args.points:
        data = load_histories(args.results_dir, args.names, point)
        if not data:
            print(
                f"point {point}: no completed records with activation statistics for {', '.join(args.names)}")
            continue
        for p in plot_point(data, point, args.out, tuple(args.stats), say=print):
            print(f"wrote {p}")
            total += 1
    return 0 if total else 1


if __name__ == "__main__":
    raise SystemExit(main())
