#!/usr/bin/env python
"""Print Table 3.4 (L∞ robust accuracies, 95 % Wilson intervals) beside the five gradient-masking
red flags of Athalye et al. (2018) for every run record that has an ``extra.attacks`` section.

    python scripts/red_flags.py --results-dir results/runs
    python scripts/red_flags.py --results-dir results/runs --name 'normout*' --format rich --recompute

The flags are the verdicts stored by :class:`bioreg.evaluate.attacks.AdversarialEvaluator`;
``--recompute`` decides them again from the stored numbers with the default thresholds
(:func:`bioreg.evaluate.gradient_masking.evaluate_red_flags`). See docs/attacks.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results-dir", default="results/runs",
                    help="the results_dir of the runs (default results/runs)")
    ap.add_argument("--name", default="*", help="only experiments whose name matches this glob (default all)")
    ap.add_argument("--format", choices=("markdown", "rich"), default="markdown")
    ap.add_argument("--recompute", action="store_true", help="decide the flags again from the stored numbers")
    args = ap.parse_args(argv)

    from bioreg.evaluate.gradient_masking import format_red_flags, run_records

    root = Path(args.results_dir)
    if not root.is_dir():
        print(f"--results-dir {root}: no such directory", file=sys.stderr)
        return 2
    print(format_red_flags(run_records(root, args.name), fmt=args.format, recompute=args.recompute))
    return 0


if __name__ == "__main__":
    sys.exit(main())
