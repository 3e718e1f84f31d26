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
and the run dir's ``record.json`` (those that exist).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
log = logging.getLogger("bioreg")


def find_record(path: str | Path) -> Path:
    """A record file, or the record of a run dir (``record.json``, else its only ``seed*.json``)."""
    p = Path(path)
    if p.is_file():
        return p
    if p.is_dir():
        if (p / "record.json").is_file():
            return p / "record.json"
        seeds = sorted(p.glob("seed*.json"))
        if len(seeds) == 1:
            return seeds[0]
        raise SystemExit(f"{p}: no record.json and {len(seeds)} seed*.json files; give the record file itself")
    raise SystemExit(f"{p}: no such record file or run directory")


def eval_config(option: str, overrides: list[str]):
    """The ``eval`` group option ``option`` (unresolved: ``${seed}`` refers to the record's seed)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    if not (CONF_DIR / "eval" / f"{option}.yaml").is_file():
        opts = sorted(q.stem for q in (CONF_DIR / "eval").glob("*.yaml"))
        raise SystemExit(f"--eval {option!r}: no conf/eval/{option}.yaml; choose one of {', '.join(opts)}")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"eval={option}", *overrides])
    return OmegaConf.to_container(cfg.eval, resolve=False)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("record", help="a run record (.json) or a run directory")
    ap.add_argument("--ckpt", help="checkpoint to evaluate (default <record.ckpt_dir>/best.ckpt)")
    ap.add_argument("--eval", default="attacks", help="option of the eval config group (default attacks)")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="run only these evaluators of the group")
    ap.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--dry-run", action="store_true", help="evaluate and print, but write nothing")
    ap.add_argument("overrides", nargs="*", help="key=value: eval.… changes the eval group, others the run config")
    args = ap.parse_intermixed_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    from omegaconf import OmegaConf

    from bioreg.app.evaluate_checkpoint import add_sections, evaluate_checkpoint, record_files
    from bioreg.config.legacy import upgrade_config
    from bioreg.errors import UserError
    from bioreg.results.records import UNREADABLE, read_record

    rec_path = find_record(args.record)
    record = read_record(rec_path)  # truncated / non-object files come back as status "unreadable"
    if record.get("status") == UNREADABLE or "config" not in record:
        raise SystemExit(f"{rec_path}: not a bioreg run record ({record.get('error') or 'no `config`'})")
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        raise SystemExit(f"overrides must look like key=value, got {bad}")
    ev_over = [o for o in args.overrides if o.lstrip("+~").startswith("eval.")]
    run_over = [o for o in args.overrides if o not in ev_over]

    cfg = OmegaConf.create(upgrade_config(record["config"]))  # a record of any bioreg version
    if run_over:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(run_over))
    cfg.eval = eval_config(args.eval, ev_over)
    evaluators = OmegaConf.to_container(cfg.eval, resolve=True).get("evaluators") or {}
    if args.only:
        missing = [n for n in args.only if n not in evaluators]
        if missing:
            raise SystemExit(f"--only {missing}: not in eval={args.eval}; its evaluators: {', '.join(evaluators)}")
        evaluators = {k: v for k, v in evaluators.items() if k in args.only}
    evaluators = {k: v for k, v in evaluators.items() if v is not None}
    if not evaluators:
        raise SystemExit(f"eval={args.eval} has no evaluators; try --eval attacks")

    ckpt = Path(args.ckpt) if args.ckpt else Path(record.get("ckpt_dir", "")) / "best.ckpt"
    if not ckpt.is_file():
        raise SystemExit(f"checkpoint {ckpt} not found; pass --ckpt (e.g. {ckpt.parent / 'last.ckpt'})")

    progress = bool(cfg.eval.get("progress", True)) and not args.no_progress
    log.info("evaluators %s on %s", ", ".join(evaluators), ckpt)
    try:
        sections = evaluate_checkpoint(
            OmegaConf.to_container(cfg, resolve=True), ckpt, evaluators, record=record, device=args.device,
            progress=progress,
            provenance={"script": "scripts/evaluate_checkpoint.py", "eval": args.eval,
                        "overrides": list(args.overrides)})
    except UserError as e:  # a checkpoint that is unreadable, unsafe or of another model, a bad evaluator setting
        print(f"error: {e}", file=sys.stderr)
        return 2

    if args.dry_run:
        print(json.dumps(sections, indent=2, default=str))
        return 0
    for p in add_sections(record_files(rec_path, record), sections):
        log.info("updated %s: extra.%s", p, ", extra.".join(sections))
    if "attacks" in sections:
        from bioreg.evaluate.gradient_masking import format_red_flags

        print(format_red_flags([{**record, "extra": {"attacks": sections["attacks"]}}]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
