"""GPU-hours of every thesis table's sweep (``make plan``): the command line of
:mod:`bioreg.results.plan`, which holds the cost model and its sources (measured, records, estimate).

    python scripts/plan.py [--tables 2.5,pp4] [--seeds 5] [--bench PATH] [--records DIR]
        [--step-ms 8] [--concurrency vgg16=2,resnet20=4] [--json PATH]

Last line: ``RESULT total_gpu_hours=<x> basis=<...> unique_runs=<n> ...``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None):
    from bioreg.results.plan import STEP_MS_README

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tables", default=None, help="comma-separated table ids (2.5, n3.1, pp4; default: all)")
    p.add_argument("--seeds", type=int, default=None, help="seeds per experiment (default: the sweep's, 5)")
    p.add_argument(
        "--bench",
        default=str(REPO / "results/bench/throughput_cuda.json"),
        help="GPU throughput benchmark (its folder's packing_*_cuda.json files give the packing)",
    )
    p.add_argument("--records", default=str(REPO / "results/runs"), help="run records (GPU wall times)")
    p.add_argument(
        "--step-ms",
        type=float,
        default=STEP_MS_README[1],
        help="estimated ms per training step of 128 images when nothing is measured (README: 4-8)",
    )
    p.add_argument(
        "--concurrency", default=None, help="family=N,... runs packed per GPU (default: measured, else 1)"
    )
    p.add_argument("--json", default=None, help="also write the plan as JSON here")
    return p, p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from bioreg.io import atomic_write_json
    from bioreg.results.plan import (
        PlanError,
        PlanInputs,
        load_bench,
        load_packing,
        make_plan,
        parse_concurrency,
        print_plan,
        record_seconds,
        result_line,
    )

    parser, args = parse_args(argv)
    try:
        inp = PlanInputs(
            conf_dir=REPO / "conf",
            tables=[t.strip() for t in (args.tables or "").split(",") if t.strip()] or None,
            seeds=args.seeds,
            bench=load_bench(Path(args.bench)),
            records=record_seconds(Path(args.records)),
            packing=load_packing(Path(args.bench).parent),
            concurrency=parse_concurrency(args.concurrency),
            step_ms=args.step_ms,
        )
        plan = make_plan(inp)
    except PlanError as e:
        parser.error(str(e))
    print_plan(plan)
    if args.json:
        atomic_write_json(args.json, plan)
    print(result_line(plan))
    return 0


if __name__ == "__main__":
    sys.exit(main())
