#!/usr/bin/env python
"""The reproduction report as a page: ``results/report/index.html`` and ``index.md``.

    python scripts/make_report.py [--results-dir results/runs] [--out-dir results/report]
                                  [--figures-dir results/figures] [--data digits] [--pin EXP=KEY]

Claims first (each judged on the per-seed values: verdict, intervals, Holm p, published support,
power), then the summary (cells with a verdict, smoke cells, claims, seeds, failed runs,
interrupted or requeued runs, unreadable records, other files), one section per table (its
published protocol and the runs' settings, figure, cells with per-seed values, 95 % intervals and
links to the runs, provenance, the command that fills its missing runs, notes), the readings
(ablations) and the sources' figures found in ``--figures-dir`` (``make figures``). The folder is
self-contained: figures, a CSV per table and a copy of every run record (with its config and log)
lie beside the page. See docs/tables.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bioreg.results.aggregate import load_records
from bioreg.results.compare import load_claims
from bioreg.results.report import build_report
from bioreg.results.report_page import write_report
from bioreg.results.tables import parse_table_args


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", default="results/report",
                    help="where index.html goes (default: results/report)")
    ap.add_argument("--figures-dir", default="results/figures",
                    help="the sources' figures to show (make figures writes them; default: results/figures)")
    args, specs, records, pins = parse_table_args(ap, argv)
    unfiltered = load_records(args.results_dir) if args.data else None  # unreadable files have no data set
    report = build_report(specs, records, claims=load_claims(), pins=pins, results_dir=args.results_dir,
                          data=args.data, unfiltered=unfiltered)
    out = write_report(report, Path(args.out_dir), Path(args.figures_dir))
    print(f"wrote {out['paths']['html']} and {out['paths']['md']}: cells within 2 sigma {out['within']}/"
          f"{out['checked']} with a verdict, {out['smoke_cells']} smoke cells (no verdict), claims "
          f"supported {out['claims_supported']} / contradicted {out['claims_contradicted']} / inconclusive "
          f"{out['claims_inconclusive']} / no verdict {out['claims_no_verdict']} (count over the means: "
          f"reproduced {out['claims_reproduced']}/{out['claims_checked']}), seeds "
          f"{out['seeds_present']}/{out['seeds_asked']}, {out['records_failed']} failed run(s), "
          f"{out['records_incomplete']} interrupted or requeued, "
          f"{out['records_unreadable']} unreadable record(s), "
          f"{out['other_files']} other file(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
