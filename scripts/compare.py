#!/usr/bin/env python
"""Compare the reproduced tables with the published ones and check the theses' claims: results/REPORT.md.

    python scripts/compare.py [--results-dir results/runs] [--out results/REPORT.md] [--tables 2.5 n3.1]
                              [--data digits] [--pin EXP=KEY]

The Markdown rendering of the report object (bioreg.results.report) that ``make report`` also
renders as a page: the claims first, the summary, per table the cells beside the published ones
with their verdicts (runs that follow the published protocol only; the others are smoke runs,
shown without a verdict), then the readings (ablations). Each claim is judged on the per-seed values
(supported / contradicted / inconclusive, intervals, Holm p, published support, power). See
docs/tables.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bioreg.results.aggregate import load_records
from bioreg.results.compare import load_claims
from bioreg.results.report import STAT_VERDICTS, build_report
from bioreg.results.report_page import write_compare
from bioreg.results.tables import parse_table_args


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="results/REPORT.md")
    args, specs, records, pins = parse_table_args(ap, argv)
    unfiltered = load_records(args.results_dir) if args.data else None  # unreadable files have no data set
    for line in (unfiltered or records).unreadable_lines():  # listed, left out, not fatal
        print(line, file=sys.stderr)
    report = build_report(specs, records, claims=load_claims(), pins=pins, results_dir=args.results_dir,
                          data=args.data, unfiltered=unfiltered)
    path = write_compare(report, Path(args.out))
    s = report.summary()
    stat = ", ".join(f"{v} {s['claims_' + v.replace(' ', '_')]}" for v in STAT_VERDICTS)
    print(f"wrote {path}: {len(specs)} tables; cells within 2 sigma {s['within']}/{s['checked']} with a "
          f"verdict, {s['smoke_cells']} smoke cells (no verdict); claims: {stat} (count over the means: "
          f"reproduced {s['claims_reproduced']}/{s['claims_checked']} checkable)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
