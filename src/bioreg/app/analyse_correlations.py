"""The Ch. 3 correlation analysis over the run records (``make correlation-analysis``, ``make figures-ch3``;
``scripts/correlation_analysis.py`` is its command line).

For every chosen completed record (experiment, seed) the run's model is rebuilt from the record's config,
its ``<ckpt_dir>/best.ckpt`` loaded and :class:`bioreg.evaluate.correlation_analysis.CorrelationAnalysis`
run; the section goes into the record as ``extra.correlation_analysis`` and the exact smoother bins into
``seed<k>.correlation_bins.npz`` beside it. A record whose section has the same settings is skipped
(``force`` recomputes). Then Figs 3.2–3.7 and the Linear Exponential check
(:mod:`bioreg.results.figures_ch3`). Errors: one ``error:`` line, exit code 2.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bioreg.errors import UserError
from bioreg.results.figures_ch3 import (
    EXPERIMENTS,
    SECTION,
    linear_exponential_report,
    make_figures,
    seed_line,
)

__all__ = ["Options", "run_analysis", "analyse_record", "bins_file", "same_settings"]
log = logging.getLogger("bioreg")

#: the record's settings key -> the option it must equal for a section to be reused
_SAME = (("S", "samples"), ("B", "batch"), ("seed", "seed"), ("zero_variance", "zero_variance"),
         ("kernel", "kernel"), ("bandwidth", "bandwidth"), ("dtype", "dtype"))


@dataclass
class Options:
    """The options of ``scripts/correlation_analysis.py`` (its ``--help`` says what each means)."""

    results_dir: str = "results/runs"
    data: str | None = None
    pin: list[str] = field(default_factory=list)
    experiments: list[str] = field(default_factory=lambda: list(EXPERIMENTS))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    layers: list[str] = field(default_factory=lambda: ["3", "5", "6", "8", "9"])
    samples: int = 100
    batch: int = 64
    analysis_seed: int = 0
    zero_variance: str = "zero"
    kernel: str = "gaussian"
    bandwidth: float = 0.25
    grid: list[int] = field(default_factory=lambda: [41, 41])
    dtype: str = "float32"
    tile_units: int = 2048
    device: str | None = None
    fig_dir: Path = Path("results/figures")
    figures_only: bool = False
    force: bool = False
    quiet: bool = False

    def settings(self) -> dict[str, Any]:
        """The keyword arguments of :class:`CorrelationAnalysis` besides ``layers`` and ``grid``."""
        return {"samples": self.samples, "batch": self.batch, "seed": self.analysis_seed,
                "zero_variance": self.zero_variance, "kernel": self.kernel, "bandwidth": self.bandwidth,
                "dtype": self.dtype, "tile_units": self.tile_units}

    def layer_names(self) -> list[str]:
        return [k if str(k).startswith("layer") else f"layer{k}" for k in self.layers]


def same_settings(section: dict | None, layers: list[str], want: dict[str, Any]) -> bool:
    """Whether a record's section holds every one of ``layers`` computed with the settings ``want``."""
    got = (section or {}).get("layers") or {}
    if not all(name in got for name in layers):
        return False
    s = got[layers[0]].get("settings") or {}
    return all(s.get(k) == want[k2] for k, k2 in _SAME)


def bins_file(rec_path: Path) -> Path:
    """``seed<k>.correlation_bins.npz`` beside the record ``seed<k>.json``."""
    return rec_path.with_name(rec_path.stem + ".correlation_bins.npz")


def _load_model(rec_path: Path, record: dict, opts: Options):
    """The run's model with its best checkpoint loaded: ``(datamodule, model, checkpoint path, state)``."""
    from omegaconf import OmegaConf

    from bioreg.app.build import build
    from bioreg.app.ckpt_io import safe_load
    from bioreg.config.legacy import upgrade_config
    from bioreg.evaluate.correlation_analysis import AnalysisError, check_checkpoint_model

    ckpt = Path(record.get("ckpt_dir") or "") / "best.ckpt"
    if not ckpt.is_file():
        raise AnalysisError(f"{rec_path}: checkpoint {ckpt} not found (the analysis needs the run's "
                            "best.ckpt)")
    cfg = OmegaConf.create(upgrade_config(record["config"]))  # a record of any bioreg version
    cfg.ckpt = None
    dm, lit = build(cfg)
    dm.prepare_data()
    dm.setup("fit")
    state = safe_load(ckpt, what=f"checkpoint {ckpt}")  # weights_only=True: a checkpoint runs no code
    sd = state["state_dict"] if isinstance(state, dict) and "state_dict" in state else state
    check_checkpoint_model(sd, lit, where=str(ckpt), valid=opts.experiments)
    lit.load_state_dict(sd)
    return dm, lit, ckpt, state


def analyse_record(rec_path: Path, record: dict, opts: Options) -> dict[str, Any]:
    """Rebuild the run's model, load its best checkpoint and run the analysis; writes the bins file and
    returns the record section."""
    import torch

    from bioreg.evaluate.correlation_analysis import CorrelationAnalysis, load_test_images, save_bins
    from bioreg.results.records import utc_now

    dm, lit, ckpt, state = _load_model(rec_path, record, opts)
    device = torch.device(opts.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = lit.model.to(device).eval()
    t0 = time.time()
    ev = CorrelationAnalysis(layers=opts.layers, grid=tuple(opts.grid), **opts.settings())
    res = ev.run(model, load_test_images(dm), device=device, progress=not opts.quiet)
    path = bins_file(rec_path)
    save_bins(str(path), res)
    return {"layers": {name: r.section() for name, r in res.items()},
            "bins_file": path.name,
            "provenance": {"ckpt": str(ckpt),
                           "epoch": state.get("epoch") if isinstance(state, dict) else None,
                           "evaluated": utc_now(), "device": str(device),
                           "wall_time_s": round(time.time() - t0, 1),
                           "script": "scripts/correlation_analysis.py"}}


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _chosen_runs(opts: Options):
    """The chosen (experiment, seed) -> config key, in the order of ``opts.experiments``, and the record
    paths; bad options and pins raise (``ValueError``)."""
    from bioreg.evaluate.correlation_analysis import CorrelationAnalysis
    from bioreg.results.aggregate import load_records, parse_pins, select_runs

    CorrelationAnalysis(layers=opts.layers, grid=tuple(opts.grid), **opts.settings())  # bad options fail here
    records = load_records(opts.results_dir, data=opts.data)
    sel = select_runs(records, opts.experiments, tuple(opts.seeds), parse_pins(opts.pin))
    for note in sel.notes():
        log.warning(note)
    runs = records.runs.set_index(["name", "config_key", "seed"])["path"]
    chosen = sorted(sel.chosen.items(), key=lambda kv: (opts.experiments.index(kv[0][0]), kv[0][1]))
    return chosen, runs


def _analysed_records(chosen, runs, layers: list[str], opts: Options) -> dict[str, list[tuple[str, dict]]]:
    """Each chosen record, analysed first where its section is missing or has other settings (unless
    ``figures_only``); prints one line of statistics per record."""
    from bioreg.app.evaluate_checkpoint import add_sections, record_files

    by_exp: dict[str, list[tuple[str, dict]]] = {e: [] for e in opts.experiments}
    want = opts.settings()
    for (exp, seed), key in chosen:
        path = Path(runs.loc[(exp, key, seed)])
        record = json.loads(path.read_text())
        sec = (record.get("extra") or {}).get(SECTION)
        if not opts.figures_only and (opts.force or not same_settings(sec, layers, want)):
            log.info("analysing %s seed %d (%s)", exp, seed, path)
            sec = analyse_record(path, record, opts)
            for p in add_sections(record_files(path, record), {SECTION: sec}):
                log.info("updated %s: extra.%s", p, SECTION)
            record = json.loads(path.read_text())
        by_exp[exp].append((str(path), record))
        if sec:
            print(seed_line(exp, seed, sec, layers))
    return by_exp


def run_analysis(opts: Options) -> int:
    """Analyse the chosen records, then draw the figures and print the Linear Exponential check; the exit
    code (2 after one ``error:`` line on stderr)."""
    try:
        chosen, runs = _chosen_runs(opts)
    except ValueError as e:  # AnalysisError (a UserError and a ValueError), bad pins
        return _error(str(e))
    if not chosen:
        return _error(f"no completed record of {', '.join(opts.experiments)} in {opts.results_dir}"
                      f"{' for data ' + opts.data if opts.data else ''}; train them first "
                      "(make reproduce-table-3.2)")
    layers = opts.layer_names()
    try:
        by_exp = _analysed_records(chosen, runs, layers, opts)
    except UserError as e:  # AnalysisError, an unreadable or unsafe checkpoint, ...
        return _error(str(e))
    opts.fig_dir.mkdir(parents=True, exist_ok=True)
    for p in make_figures(by_exp, layers, opts.fig_dir):
        print(f"wrote {p}")
    rep = linear_exponential_report(by_exp, layers)
    if rep:
        print("Linear Exponential column (eq 2.14 with the vanilla network's kernels) vs the printed one:")
        print("\n".join(rep))
    return 0

