#!/usr/bin/env python
"""The reproduction report as a page: ``results/report/index.html`` and ``index.md``.

    python scripts/make_report.py [--results-dir results/runs] [--out-dir results/report]
                                  [--figures-dir results/figures] [--data digits] [--pin EXP=KEY]

Summary first (cells within 2 sigma of the published value, claims reproduced, seeds present,
what is missing and the command that trains it, failed and unreadable records), then one
section per table with its figure (drawn from the table spec), the cells beside the published
ones, its claims and notes. The sources' figures found in ``--figures-dir`` (``make figures``)
are copied beside the page. ``make report`` runs tables, compare and figures first. See
docs/tables.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bioreg.results.aggregate import load_records
from bioreg.results.compare import load_claims
from bioreg.results.report import collect, write_report
from bioreg.results.tables import parse_table_args


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", default="results/report",
                    help="where index.html goes (default: results/report)")
    ap.add_argument("--figures-dir", default="results/figures",
                    help="the sources' figures to show (make figures writes them; default: results/figures)")
    args, specs, records, pins = parse_table_args(ap, argv)
    unfiltered = load_records(args.results_dir) if args.data else None  # unreadable files have no data set
    data = collect(specs, records, claims=load_claims(), pins=pins, results_dir=args.results_dir,
                   data=args.data,
                   unfiltered=unfiltered)
    out = write_report(data, Path(args.out_dir), Path(args.figures_dir))
    print(f"wrote {out['paths']['html']} and {out['paths']['md']}: cells within 2 sigma {out['within']}/"
          f"{out['checkable']}, claims reproduced {out['claims_reproduced']}/{out['claims_checkable']}, "
          f"seeds {out['seeds_present']}/{out['seeds_asked']}, {out['tables_with_runs']}/{out['tables']} "
          f"tables with runs, {out['records_unreadable']} unreadable record(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
