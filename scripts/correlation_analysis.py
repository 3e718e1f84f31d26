#!/usr/bin/env python
"""Dutta (2019) Ch. 3: the activation-correlation analysis of the three VGG-11 networks (Table 3.2,
Figures 3.2–3.7) from their run records and best checkpoints.

    python scripts/correlation_analysis.py                                  # analyse + figures
    python scripts/correlation_analysis.py --results-dir results/runs --data digits
    python scripts/correlation_analysis.py --figures-only                  # figures from the records
    python scripts/correlation_analysis.py --samples 20 --batch 32 --layers 3 9 --force

For every completed record of ``--experiments`` (default the three Ch. 3 networks) and seed, the
model is rebuilt from the record's config, its ``<ckpt_dir>/best.ckpt`` loaded, and
:class:`bioreg.evaluate.correlation_analysis.CorrelationAnalysis` run at ``--layers``; the result is
written into the record as ``extra.correlation_analysis`` (per layer: the four statistics of the
off-diagonal of Σ′, the Linear Exponential statistics under each distance scale, the distance
profile and the smoothed grid ``g(d, k)``) and the exact binned smoother data into
``seed<k>.correlation_bins.npz`` beside the record. A record that already has the section with the
same settings is skipped (``--force`` recomputes). Then Figures 3.2–3.6 (one per layer: contour
plots of ``g(d, k)`` for the three networks side by side, per-panel colour bars) and Fig 3.7
(layer 9, one shared colour scale) are drawn from the records (mean of the grids over seeds) under
``--fig-dir`` as PNG and PDF, and a short report compares the Linear Exponential readings with the
printed column. See docs/correlation_analysis.md. The work is done by
:func:`bioreg.app.analyse_correlations.run_analysis` (figures and report: :mod:`bioreg.results.figures_ch3`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from bioreg.evaluate.correlation_analysis import KERNELS, THESIS_LAYERS, ZERO_VARIANCE
    from bioreg.results.figures_ch3 import EXPERIMENTS

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results-dir", default="results/runs", help="run records (default: results/runs)")
    ap.add_argument("--data", default=None, metavar="NAME",
                    help="only runs trained on this data set (digits, cifar10)")
    ap.add_argument("--pin", action="append", default=[], metavar="EXPERIMENT=CONFIG_KEY",
                    help="use only this config key for the experiment (resolves duplicates)")
    ap.add_argument("--experiments", nargs="+", default=EXPERIMENTS, help="default: the three Ch. 3 networks")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--layers", nargs="+", default=[str(k) for k in THESIS_LAYERS],
                    help="thesis layer numbers or point names (default 3 5 6 8 9)")
    ap.add_argument("--samples", type=int, default=100, help="S fixed test images (thesis: 100)")
    ap.add_argument("--batch", type=int, default=64,
                    help="B mixed partners / λ values per image (default 64)")
    ap.add_argument("--analysis-seed", type=int, default=0, help="seed of the image / partner draw")
    ap.add_argument("--zero-variance", default="zero", choices=ZERO_VARIANCE,
                    help="units that do not vary in an image: zero = correlation 0 there (default), "
                         "exclude = average only where defined")
    ap.add_argument("--kernel", default="gaussian", choices=KERNELS,
                    help="eq 3.6 kernel (gaussian = squared norm)")
    ap.add_argument("--bandwidth", type=float, default=0.25, help="b of eq 3.6")
    ap.add_argument("--grid", nargs=2, type=int, default=[41, 41], metavar=("ND", "NK"))
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--tile-units", type=int, default=2048)
    ap.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    ap.add_argument("--fig-dir", default="results/figures", type=Path)
    ap.add_argument("--figures-only", action="store_true", help="only draw the figures from the records")
    ap.add_argument("--force", action="store_true",
                    help="recompute sections that exist with the same settings")
    ap.add_argument("--quiet", action="store_true")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s %(message)s")

    from bioreg.app.analyse_correlations import Options, run_analysis

    return run_analysis(Options(**vars(args)))


if __name__ == "__main__":
    sys.exit(main())
