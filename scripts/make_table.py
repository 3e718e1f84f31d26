#!/usr/bin/env python
"""Render thesis tables from run records: Markdown, LaTeX and CSV under ``--out-dir``.

The Markdown (printed and written) shows each reproduced row followed by the published numbers of
that row (``<row> (published)``) where the spec names a paper CSV under ``results/paper/``.

    python scripts/make_table.py 2.5                     # one table
    python scripts/make_table.py all --results-dir results/runs --out-dir results/tables
    python scripts/make_table.py 2.5 --pin allconvnet_baseline=1a2b3c4d5e   # choose among duplicate config
keys
    python scripts/make_table.py 2.5 --data cifar10      # only the CIFAR-10 runs (not quick digits runs)
    python scripts/make_table.py n3.1 --protocol authors # the runs of protocol=authors (selected on test)

Table ids: 2.3-2.6, 4.1-4.5 (Dutta 2019), n3.1-n3.6 (Singh 2023), pp2-pp5 (push-pull 2020);
specs in src/bioreg/results/specs/. See docs/tables.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bioreg.results.aggregate import add_record_options, records_from_args
from bioreg.results.records import PROTOCOLS
from bioreg.results.tables import build_table, load_paper, load_spec, render_markdown, table_ids, write_table


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("table", help=f"table id ({', '.join(table_ids())}) or 'all'")
    ap.add_argument("--out-dir", default="results/tables", help="output folder (default: results/tables)")
    ap.add_argument("--quiet", action="store_true", help="do not print the Markdown table")
    ap.add_argument("--protocol", default="thesis", choices=sorted(PROTOCOLS),
                    help="the runs' protocol: thesis (default) or authors (trained and selected as the "
                         "authors' code did; written as <table>_authors.*)")
    add_record_options(ap)
    args = ap.parse_args(argv)
    ids = table_ids() if args.table == "all" else [args.table]
    try:
        specs = [load_spec(i) for i in ids]
        records, pins = records_from_args(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for line in records.unreadable_lines():  # truncated or foreign files: listed, left out, not fatal
        print(line, file=sys.stderr)
    for spec in specs:
        res = build_table(spec, records, pins, reading=args.protocol)
        paper = load_paper(spec)  # the published numbers, printed under each reproduced row
        paths = write_table(res, Path(args.out_dir), paper)
        if not args.quiet:
            print(render_markdown(res, paper))
        print(f"wrote {', '.join(str(p) for p in paths.values())}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
