#!/usr/bin/env python
"""Run evaluators (attacks, Fisher-Rao norm, ...) on the saved best checkpoint of a finished run and
write their sections into the run record's ``extra``, keeping everything else.

    python scripts/evaluate_checkpoint.py results/runs/<name>/<key>/seed0.json
    python scripts/evaluate_checkpoint.py outputs/<name>/<date>/             # a run dir with record.json
    python scripts/evaluate_checkpoint.py REC --eval attacks eval.evaluators.attacks.n=100
    python scripts/evaluate_checkpoint.py REC --ckpt path/to/best.ckpt --only fisher_rao data_dir=/data

The model is rebuilt from the record's ``config`` with ``bioreg.app.run.build`` and the weights come
from ``<record.ckpt_dir>/best.ckpt`` (or ``--ckpt``). ``--eval`` picks the option of the ``eval``
config group whose ``evaluators`` run (default ``attacks``). Overrides ``eval.…=…`` change that
group; any other ``key=value`` changes the record's config for this evaluation only (e.g.
``data_dir=`` when the data moved); the stored config and its key stay as they were.

Written atomically: the record given, the canonical record ``<results_dir>/<name>/<key>/seed<k>.json``
and the run dir's ``record.json`` (those that exist). The work is done by
:func:`bioreg.app.evaluate_record.evaluate_record`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("record", help="a run record (.json) or a run directory")
    ap.add_argument("--ckpt", help="checkpoint to evaluate (default <record.ckpt_dir>/best.ckpt)")
    ap.add_argument("--eval", default="attacks", help="option of the eval config group (default attacks)")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="run only these evaluators of the group")
    ap.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--dry-run", action="store_true", help="evaluate and print, but write nothing")
    ap.add_argument("overrides", nargs="*",
                    help="key=value: eval.… changes the eval group, others the run config")
    args = ap.parse_intermixed_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    from bioreg.app.evaluate_record import evaluate_record

    return evaluate_record(args.record, conf_dir=CONF_DIR, ckpt=args.ckpt, option=args.eval, only=args.only,
                           device=args.device, progress=not args.no_progress, dry_run=args.dry_run,
                           overrides=args.overrides)


if __name__ == "__main__":
    sys.exit(main())
