#!/usr/bin/env python
"""Compare the reproduced tables with the published ones and check the theses' claims.

    python scripts/compare.py [--results-dir results/runs] [--out results/REPORT.md] [--tables 2.5 n3.1]

Writes a Markdown report: per table, thesis vs reproduction cell by cell with the
difference and a flag where |difference| > 2 sigma (sigma: combined run-to-run std of
thesis and reproduction), and the qualitative claims marked reproduced / not reproduced /
not enough data. See docs/tables.md and docs/decisions/pipeline.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bioreg.io import atomic_write_text
from bioreg.results.compare import build_report, load_claims
from bioreg.results.tables import parse_table_args


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="results/REPORT.md")
    args, specs, records, pins = parse_table_args(ap, argv)
    for line in records.unreadable_lines():  # truncated or foreign files: listed, left out, not fatal
        print(line, file=sys.stderr)
    text, summary = build_report(specs, records, pins=pins, claims=load_claims(),
                                 results_dir=args.results_dir)
    atomic_write_text(Path(args.out), text)
    n_flag = sum(t["flagged"] for t in summary["tables"].values())
    statuses = [c["status"] for c in summary["claims"].values()]
    print(f"wrote {args.out}: {len(specs)} tables, {n_flag} flagged cells; claims: "
          + ", ".join(f"{s} {statuses.count(s)}"
                      for s in ("reproduced", "not reproduced", "not enough data")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
