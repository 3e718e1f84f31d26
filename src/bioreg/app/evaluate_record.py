"""The command behind ``scripts/evaluate_checkpoint.py`` (``make attacks REC=…``): evaluators of an
``eval`` config group run on a finished run's saved checkpoint, their sections written into its record.

The record is found (a file, or a run dir's ``record.json`` / only ``seed*.json``), its config upgraded
to today's spelling, ``key=value`` overrides split into the eval group's (``eval.…``) and the run's
(for this evaluation only), the evaluators picked (``only``), the checkpoint found
(``<record.ckpt_dir>/best.ckpt`` or ``ckpt``), and :func:`bioreg.app.evaluate_checkpoint.evaluate_checkpoint`
run. A mistake in the call ends the command with its message (exit code 1); a checkpoint or evaluator
setting the evaluation refuses, with one ``error:`` line and exit code 2.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["find_record", "eval_config", "split_overrides", "pick_evaluators", "evaluate_record"]
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
        raise SystemExit(f"{p}: no record.json and {len(seeds)} seed*.json files; give the record file "
                         "itself")
    raise SystemExit(f"{p}: no such record file or run directory")


def eval_config(conf_dir: Path, option: str, overrides: Sequence[str]) -> dict[str, Any]:
    """The ``eval`` group option ``option`` of the configs in ``conf_dir`` (unresolved: ``${seed}``
    refers to the record's seed)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    if not (conf_dir / "eval" / f"{option}.yaml").is_file():
        opts = sorted(q.stem for q in (conf_dir / "eval").glob("*.yaml"))
        raise SystemExit(f"--eval {option!r}: no conf/eval/{option}.yaml; choose one of {', '.join(opts)}")
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        cfg = compose("config", overrides=[f"eval={option}", *overrides])
    return OmegaConf.to_container(cfg.eval, resolve=False)


def split_overrides(overrides: Sequence[str]) -> tuple[list[str], list[str]]:
    """``key=value`` overrides → (those of the eval group, ``eval.…``; those of the run config)."""
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise SystemExit(f"overrides must look like key=value, got {bad}")
    ev_over = [o for o in overrides if o.lstrip("+~").startswith("eval.")]
    return ev_over, [o for o in overrides if o not in ev_over]


def pick_evaluators(evaluators: Mapping[str, Any], only: Sequence[str] | None, option: str) -> dict[str, Any]:
    """The group's evaluators that are set, restricted to ``only``; none left ends the command."""
    if only:
        missing = [n for n in only if n not in evaluators]
        if missing:
            raise SystemExit(f"--only {missing}: not in eval={option}; its evaluators: "
                             f"{', '.join(evaluators)}")
        evaluators = {k: v for k, v in evaluators.items() if k in only}
    evaluators = {k: v for k, v in evaluators.items() if v is not None}
    if not evaluators:
        raise SystemExit(f"eval={option} has no evaluators; try --eval attacks")
    return evaluators


def _record_and_config(record_arg: str | Path, conf_dir: Path, option: str, overrides: Sequence[str]):
    """The record's path, the record and its config with the overrides and the eval group in place."""
    from omegaconf import OmegaConf

    from bioreg.config.legacy import upgrade_config
    from bioreg.results.records import UNREADABLE, read_record

    rec_path = find_record(record_arg)
    record = read_record(rec_path)  # truncated / non-object files come back as status "unreadable"
    if record.get("status") == UNREADABLE or "config" not in record:
        raise SystemExit(f"{rec_path}: not a bioreg run record ({record.get('error') or 'no `config`'})")
    ev_over, run_over = split_overrides(overrides)
    cfg = OmegaConf.create(upgrade_config(record["config"]))  # a record of any bioreg version
    if run_over:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(run_over))
    cfg.eval = eval_config(conf_dir, option, ev_over)
    return rec_path, record, cfg


def evaluate_record(record_arg: str | Path, *, conf_dir: Path, ckpt: str | None = None,
                    option: str = "attacks", only: Sequence[str] | None = None, device: str | None = None,
                    progress: bool = True, dry_run: bool = False, overrides: Sequence[str] = ()) -> int:
    """Evaluate the record's checkpoint and write the sections into every copy of the record (printed
    instead with ``dry_run``); with attacks, print the red flags. Returns the exit code."""
    from omegaconf import OmegaConf

    from bioreg.app.evaluate_checkpoint import add_sections, evaluate_checkpoint, record_files
    from bioreg.errors import UserError

    rec_path, record, cfg = _record_and_config(record_arg, conf_dir, option, overrides)
    evaluators = pick_evaluators(OmegaConf.to_container(cfg.eval, resolve=True).get("evaluators") or {},
                                 only, option)
    path = Path(ckpt) if ckpt else Path(record.get("ckpt_dir", "")) / "best.ckpt"
    if not path.is_file():
        raise SystemExit(f"checkpoint {path} not found; pass --ckpt (e.g. {path.parent / 'last.ckpt'})")
    log.info("evaluators %s on %s", ", ".join(evaluators), path)
    try:
        sections = evaluate_checkpoint(
            OmegaConf.to_container(cfg, resolve=True), path, evaluators, record=record, device=device,
            progress=bool(cfg.eval.get("progress", True)) and progress,
            provenance={"script": "scripts/evaluate_checkpoint.py", "eval": option,
                        "overrides": list(overrides)})
    except UserError as e:  # a bad checkpoint (unreadable, unsafe, another model) or evaluator setting
        print(f"error: {e}", file=sys.stderr)
        return 2
    if dry_run:
        print(json.dumps(sections, indent=2, default=str))
        return 0
    for p in add_sections(record_files(rec_path, record), sections):
        log.info("updated %s: extra.%s", p, ", extra.".join(sections))
    if "attacks" in sections:
        from bioreg.evaluate.gradient_masking import format_red_flags

        print(format_red_flags([{**record, "extra": {"attacks": sections["attacks"]}}]))
    return 0
