"""Run evaluators on a saved checkpoint of a finished run (no training).

Used by ``scripts/evaluate_checkpoint.py`` (attacks etc. added to a record later) and by
:func:`bioreg.app.run.run` when a completed run is launched again with evaluators its record does not
have yet: the evaluators are part of the *evaluation*, not of the trained model's identity
(``eval`` is left out of the config key), so instead of retraining, the missing sections are
computed on the run's ``best.ckpt`` and merged into the record.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from bioreg.app.build import build
from bioreg.app.ckpt_io import load_for_eval
from bioreg.config.legacy import upgrade_config
from bioreg.errors import instantiate
from bioreg.io import atomic_write_json
from bioreg.results.records import utc_now

__all__ = ["evaluate_checkpoint", "record_files", "add_sections"]


def evaluate_checkpoint(config: Mapping[str, Any], ckpt: str | Path,
                        evaluators: Mapping[str, Mapping[str, Any]],
                        record: Mapping[str, Any] | None = None, device: str | torch.device | None = None,
                        progress: bool = True, provenance: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Evaluate the weights in ``ckpt`` with ``evaluators`` (name -> ``{_target_: …}``).

    ``config`` is a run's resolved config, in any version's spelling (:func:`bioreg.config.legacy.
    upgrade_config`; the model and data are rebuilt from it with :func:`bioreg.app.build.build`,
    without its fine-tuning start point ``ckpt``). ``record`` supplies
    the metrics/summary the evaluators may read (e.g. the clean accuracy). Returns one section per
    evaluator, each with a ``provenance`` entry (checkpoint, epoch, time, device, wall time).
    """
    from omegaconf import OmegaConf

    from bioreg.evaluate.core import EvalContext

    cfg = OmegaConf.create(upgrade_config(config))
    cfg.ckpt = None  # the weights come from `ckpt`, not from a fine-tuning start point
    ckpt = Path(ckpt)
    dm, lit = build(cfg)
    dm.prepare_data()
    dm.setup("fit")
    meta = load_for_eval(lit, ckpt)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = lit.model.to(device).eval()
    record = record or {}
    ctx = EvalContext(model=model, datamodule=dm, device=device, metrics=dict(record.get("metrics") or {}),
                      summary=dict(record.get("summary") or {}), cfg=dict(config), lit=lit, progress=progress)
    sections: dict[str, Any] = {}
    for name, entry in evaluators.items():
        t0 = time.time()
        out = instantiate(dict(entry))(ctx)
        out["provenance"] = {"ckpt": str(ckpt), "epoch": meta.get("epoch"),
                             "evaluated": utc_now(), "device": str(device),
                             "wall_time_s": round(time.time() - t0, 3), **dict(provenance or {})}
        sections[name] = out
    return sections


def record_files(rec_path: Path, record: Mapping[str, Any]) -> list[Path]:
    """The existing copies of one run record: ``rec_path``, the canonical
    ``<results_dir>/<name>/<key>/seed<k>.json`` of its config, and its run dir's ``record.json``
    (each once, whatever path names it)."""
    out = [Path(rec_path)]
    cfg = record.get("config") or {}
    try:
        out.append(Path(cfg["results_dir"]) / str(record["name"]) / str(record["config_key"])
                   / f"seed{int(record['seed'])}.json")
    except (KeyError, TypeError, ValueError):
        pass
    if record.get("run_dir"):
        out.append(Path(record["run_dir"]) / "record.json")
    seen, uniq = set(), []
    for p in out:
        r = p.resolve() if p.exists() else None
        if r is not None and r not in seen:
            seen.add(r)
            uniq.append(p)
    return uniq


def add_sections(files: Iterable[Path], sections: Mapping[str, Any]) -> list[Path]:
    """Merge evaluator ``sections`` into ``extra`` of each record file (atomically), keeping the rest."""
    written = []
    for p in files:
        rec = json.loads(Path(p).read_text())
        rec["extra"] = {**(rec.get("extra") or {}), **sections}
        atomic_write_json(Path(p), rec)
        written.append(Path(p))
    return written
